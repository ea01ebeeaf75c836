package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/phext/sq/phext"
)

// TestWatchCommand: sq watch --from resumes after a position and prints
// the changes since, one JSON object a line (pos, op, coord, len,
// checksum, text), only under --prefix; a position the server cannot
// vouch for prints one resync line. The plain form prints one line each.
func TestWatchCommand(t *testing.T) {
	ts := startTestServer(t)
	vars := map[string]string{"SQ_ADDR": ts.addr, "SQ_TOKEN": ts.tokens["tenant-001"], "SQ_PHEXT": "w"}

	// From position 1 (never seen): one resync line, at the position now.
	r := runCLI(vars, "", "watch", "--from", "1", "--count", "1", "--json")
	if r.code != 0 {
		t.Fatalf("watch: %d %s", r.code, r.stderr)
	}
	var first watchLine
	if err := json.Unmarshal([]byte(r.stdout), &first); err != nil || first.Op != "resync" || first.Reason != "gap" || first.Pos == 0 {
		t.Fatalf("resync line %q: %+v %v", r.stdout, first, err)
	}

	writes := [][]string{
		{"insert", "1.1.1/1.1.1/1.1.1", "hello"},
		{"update", "1.1.1/1.1.1/2.1.1", "elsewhere"}, // outside the prefix
		{"insert", "1.1.1/1.1.1/1.1.1", " world"},
		{"delete", "1.1.1/1.1.1/1.1.1"},
	}
	for _, w := range writes {
		if r := runCLI(vars, "", w[0], w[1:]...); r.code != 0 {
			t.Fatalf("%v: %s", w, r.stderr)
		}
	}
	r = runCLI(vars, "", "watch", "--from", strconv.FormatUint(first.Pos, 10), "--count", "3", "--json", "--text", "--prefix", "1.1.1/1.1.1/1.1")
	if r.code != 0 {
		t.Fatalf("watch --from: %d %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := []struct{ op, text string }{{"insert", "hello"}, {"insert", "hello world"}, {"delete", ""}}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines: %q", len(lines), r.stdout)
	}
	last := first.Pos
	for i, l := range lines {
		var got watchLine
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		w := want[i]
		if got.Op != w.op || got.Coord != "1.1.1/1.1.1/1.1.1" || got.Phext != "w" || got.Len == nil || *got.Len != uint64(len(w.text)) ||
			got.Checksum != phext.Checksum([]byte(w.text)) || got.Pos <= last {
			t.Fatalf("line %d: %s", i, l)
		}
		if w.op != "delete" && (got.Text == nil || *got.Text != w.text) {
			t.Fatalf("line %d: text %v, want %q", i, got.Text, w.text)
		}
		last = got.Pos
	}

	// Plain text, whole phext.
	r = runCLI(vars, "", "watch", "--from", strconv.FormatUint(first.Pos, 10), "--count", "2", "--text")
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 || !strings.HasSuffix(lines[1], `update 1.1.1/1.1.1/2.1.1 9 `+phext.Checksum([]byte("elsewhere"))+` "elsewhere"`) {
		t.Fatalf("plain: %d %q %s", r.code, r.stdout, r.stderr)
	}

	// A bad --prefix is a usage error (exit 2, like a bad coordinate),
	// found before anything is dialled.
	for _, bad := range []string{"1.x", "0", "1.1.1/1.1.1/1.1.1/1", "1000"} {
		if r := runCLI(vars, "", "watch", "--prefix", bad); r.code != 2 || !strings.Contains(r.stderr, "prefix") {
			t.Errorf("--prefix %q: exit %d, stderr %q; want 2 and a word on the prefix", bad, r.code, r.stderr)
		}
	}
	if r := runCLI(map[string]string{"SQ_ADDR": "127.0.0.1:1", "SQ_TOKEN": "x"}, "", "watch", "--prefix", "1.x"); r.code != 2 {
		t.Errorf("--prefix 1.x with no server: exit %d, want 2 (refused before dialling)", r.code)
	}
}
