package bench

import (
	"testing"
)

func TestParseWatchText(t *testing.T) {
	buf := watchText(nil, 499, 3, 123456, 1_795_000_000_123_456_789)
	ti, wi, s, ns, ok := parseWatchText(buf)
	if !ok || ti != 499 || wi != 3 || s != 123456 || ns != 1_795_000_000_123_456_789 {
		t.Fatalf("parseWatchText(%q) = %d %d %d %d %v", buf, ti, wi, s, ns, ok)
	}
	for _, bad := range []string{"", "1:2:3", "1:2:3:", ":1:2:3", "1:2:3:4:5", "1:x:3:4", "1:2:3:99999999999999999999"} {
		if _, _, _, _, ok := parseWatchText([]byte(bad)); ok {
			t.Errorf("parseWatchText(%q) accepted", bad)
		}
	}
	if a := testing.AllocsPerRun(100, func() { parseWatchText(buf) }); a != 0 {
		t.Errorf("parseWatchText allocates %v times", a)
	}
}
