package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/phext/sq/phext"
)

// testLog builds a log file: header, a dir record for dir, then one
// INSERT per text into phext "f", at scrolls 1, 2, … It returns the bytes
// and the offset where each record starts.
func testLog(dir string, texts ...string) ([]byte, []int) {
	b := appendLogHeader(nil, 1, 1)
	b = appendLogRecord(b, opDir, 0, 1, "", phext.Coordinate{}, []byte(dir))
	var offs []int
	for i, tx := range texts {
		offs = append(offs, len(b))
		b = appendLogRecord(b, opInsert, uint64(i+1), 1, "f", coord(uint16(i+1)), []byte(tx))
	}
	return b, offs
}

// A group of records is written with one write(); after a power loss a
// page of it may be missing. A damaged record followed only by zeros is a
// torn tail: the records before it replay and the store opens. Damage
// followed by anything but zeros is still corruption.
func TestCrashTornBatchFollowedByZeros(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "t1")
	log, offs := testLog(dir, "kept", "torn record payload", "third of the batch")
	second, third := offs[1], offs[2]

	torn := append([]byte(nil), log...)
	torn[second+logRecHeader+logFixed+1+3] = 0 // a lost page inside record 2
	clear(torn[third:])                        // and the rest of the batch
	w, err := scanLog(torn, "x.log")
	if err != nil {
		t.Fatalf("torn tail reported as %v", err)
	}
	if len(w.recs) != 1 || w.end != int64(second) {
		t.Fatalf("recs %d end %d, want 1 record ending at %d", len(w.recs), w.end, second)
	}

	damaged := append([]byte(nil), log...)
	damaged[second+logRecHeader+2] ^= 0x40 // its LSN: the head fails; record 3 intact after it
	if _, err := scanLog(damaged, "x.log"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damage followed by a valid record: %v", err)
	}

	// Through the store: the phext has the first record; the log is
	// replaced by a fresh generation.
	if err := os.MkdirAll(filepath.Join(root, "log"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "log", logName(1, workerLog)), torn, 0o640); err != nil {
		t.Fatal(err)
	}
	db := &testDB{tb: t, root: root}
	db.open()
	defer db.Close()
	if got := mustGet(t, db.ten, "f"); got != "kept" {
		t.Fatalf("got %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, "log", logName(1, workerLog))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("torn log not replaced: %v", err)
	}
}

// A per-phext WAL left by an earlier version (here with a torn tail) is
// replayed once at open, folded into the snapshot and removed.
func TestLegacyWALUpgrade(t *testing.T) {
	wal := appendWALHeader(nil, walID{0, xxh3Hash(nil)})
	wal = appendRecord(wal, opInsert, coord(1), []byte("kept"))
	second := len(wal)
	wal = appendRecord(wal, opInsert, coord(2), []byte("torn"))
	wal = wal[:second+5]
	db := MustOpen(t, nil)
	if err := os.WriteFile(filepath.Join(db.dir(), "f.phext"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(db.dir(), "f.phext.wal"), wal, 0o640); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, db.ten, "f"); got != "kept" {
		t.Fatalf("got %q", got)
	}
	if _, err := os.Stat(filepath.Join(db.dir(), "f.phext.wal")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("legacy WAL not removed: %v", err)
	}
	if snap, _ := os.ReadFile(filepath.Join(db.dir(), "f.phext")); string(snap) != "kept" {
		t.Fatalf("snapshot %q", snap)
	}
	if _, err := db.ten.Insert([]byte("f"), coord(2), []byte("more")); err != nil {
		t.Fatal(err)
	}
	db.MustReopen()
	if got := mustGet(t, db.ten, "f"); got != "kept\x17more" {
		t.Fatalf("after reopen %q", got)
	}
}
