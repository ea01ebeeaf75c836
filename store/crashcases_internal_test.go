package store

import (
	"os"
	"path/filepath"
	"testing"
)

// A batch of records is written with one write(); after a power loss a page
// of it may be missing. A damaged record followed only by zeros is a torn
// tail: the records before it replay, the phext opens, and the tail is cut.
// Damage followed by anything but zeros is still corruption.
func TestCrashTornBatchFollowedByZeros(t *testing.T) {
	wal := appendWALHeader(nil, walID{0, xxh3Hash(nil)})
	wal = appendRecord(wal, opInsert, coord(1), []byte("kept"))
	second := len(wal)
	wal = appendRecord(wal, opInsert, coord(2), []byte("torn record payload"))
	third := len(wal)
	wal = appendRecord(wal, opInsert, coord(3), []byte("third of the batch"))

	torn := append([]byte(nil), wal...)
	torn[second+recHeaderSize+recFixed+3] = 0 // a lost page inside record 2
	clear(torn[third:])                       // and the rest of the batch
	w, err := scanWAL(torn, "x.wal")
	if err != nil {
		t.Fatalf("torn tail reported as %v", err)
	}
	if len(w.recs) != 1 || w.end != int64(second) {
		t.Fatalf("recs %d end %d, want 1 record ending at %d", len(w.recs), w.end, second)
	}

	damaged := append([]byte(nil), wal...)
	damaged[second+recHeaderSize+recFixed+3] = 0 // record 3 intact after it
	if _, err := scanWAL(damaged, "x.wal"); err == nil {
		t.Fatal("damage followed by a valid record was not reported")
	}

	// Through the store: the phext opens with the first record and the
	// file is cut back to it.
	db := MustOpen(t, nil)
	if err := os.WriteFile(filepath.Join(db.dir(), "f.phext"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(db.dir(), "f.phext.wal"), torn, 0o640); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, db.ten, "f"); got != "kept" {
		t.Fatalf("got %q", got)
	}
	if fi, err := os.Stat(filepath.Join(db.dir(), "f.phext.wal")); err != nil || fi.Size() != int64(second) {
		t.Fatalf("WAL not cut back to the torn tail: %v %v", fi, err)
	}
}
