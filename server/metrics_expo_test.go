package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirSizes(t *testing.T) {
	dir := t.TempDir()
	for name, n := range map[string]int{"a.phext": 10, "a.phext.wal": 7, ".phext": 3, ".phext.wal": 2, "x.json": 100, "b.phext.tmp": 50} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Repeat("x", n)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	snap, wal, ok := dirSizes(dir)
	if !ok || snap != 13 || wal != 9 {
		t.Fatalf("snap %d wal %d ok %v", snap, wal, ok)
	}
	if _, _, ok := dirSizes(filepath.Join(dir, "missing")); ok {
		t.Fatal("missing dir reported")
	}
}
