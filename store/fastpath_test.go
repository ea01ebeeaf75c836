package store

import (
	"testing"

	"github.com/phext/sq/phext"
)

// TestTryAppendSelect: the never-waiting SELECT answers only for open,
// unlocked phexts and short scrolls, and never allocates.
func TestTryAppendSelect(t *testing.T) {
	db := MustOpen(t, nil)
	ten := db.ten
	name := []byte("fast")
	bad := phext.Origin
	bad[0] = 0
	if _, ok := ten.TryAppendSelect(nil, name, coord(1), 100); ok {
		t.Fatal("answered for a phext that is not open")
	}
	if _, err := ten.Insert(name, coord(1), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		pname  []byte
		c      phext.Coordinate
		maxLen int
		want   string
		ok     bool
	}{
		{name: "open phext", pname: name, c: coord(1), maxLen: 100, want: "hello", ok: true},
		{name: "absent scroll", pname: name, c: coord(2), maxLen: 100, want: "", ok: true},
		{name: "too long", pname: name, c: coord(1), maxLen: 4, ok: false},
		{name: "bad name", pname: []byte("../x"), c: coord(1), maxLen: 100, ok: false},
		{name: "bad coord", pname: name, c: bad, maxLen: 100, ok: false},
		{name: "other phext", pname: []byte("other"), c: coord(1), maxLen: 100, ok: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ten.TryAppendSelect(nil, tc.pname, tc.c, tc.maxLen)
			if ok != tc.ok || (ok && string(got) != tc.want) {
				t.Fatalf("got %q %v, want %q %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	// A held write lock makes it give up instead of waiting.
	p := ten.files["fast"]
	p.mu.Lock()
	_, ok := ten.TryAppendSelect(nil, name, coord(1), 100)
	p.mu.Unlock()
	if ok {
		t.Error("answered while the phext was write-locked")
	}
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(200, func() { buf, _ = ten.TryAppendSelect(buf[:0], name, coord(1), 100) })
	if allocs != 0 {
		t.Errorf("%v allocs", allocs)
	}
}
