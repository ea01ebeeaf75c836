package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestReadChangesRefusesBadName: ReadChanges is a package entry point that
// takes a phext name like every other (the server passes FeedName's
// result, but any caller of the package may pass anything), so it refuses
// a name that breaks the rule with ErrBadName before it touches a file.
// It opened the phext instead: a name of "../victim/doc" removed the
// temp files of a phext outside the tenant's directory (pfile.open clears
// stale temp files) and mapped that phext's snapshot as one of the
// tenant's own.
func TestReadChangesRefusesBadName(t *testing.T) {
	db := MustOpen(t, nil)
	victim := filepath.Join(db.root, "victim")
	if err := os.MkdirAll(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(victim, "doc"+snapExt+tmpExt)
	if err := os.WriteFile(tmp, []byte("not the tenant's"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../victim/doc", "a/b", ".hidden", "a\x00b"} {
		_, _, err := db.ten.ReadChanges(name, 0, 1<<20)
		if !errors.Is(err, ErrBadName) {
			t.Errorf("ReadChanges(%q): %v, want ErrBadName", name, err)
		}
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("a file outside the tenant's directory: %v", err)
	}
	db.ten.mu.RLock()
	n := len(db.ten.files)
	db.ten.mu.RUnlock()
	if n != 0 {
		t.Errorf("%d phexts open after refused names, want 0", n)
	}
}
