package store

import "testing"

// Review 14, finding 4. A phext's generation is recorded (p.logged → oldestGen,
// markDirty) only after the group commit returned, and a rotation reads
// dirtyP without waiting for commits that already wrote. Here the
// scheduler's worst case is played by hand, with the exact calls of
// logBatch: the record of an always-mode write is written and fsynced to
// generation g; a rotation (size limit or repair, on another goroutine)
// switches to g+1, does not see the phext as dirty and deletes g; then the
// writer records "logged in g", applies, acknowledges. A crash loses the
// acknowledged write: its only copy was in the deleted file.
func TestRotationDropsGenerationOfAckedWrite(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityAlways})
	if _, err := db.ten.Insert([]byte("f"), coord(1), []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := db.ten.Compact([]byte("f")); err != nil {
		t.Fatal(err)
	}
	db.ten.mu.RLock()
	p := db.ten.files["f"]
	db.ten.mu.RUnlock()
	s := db.Store

	// writeBatch/logBatch of Insert(f, 2, "acked"), up to the commit.
	p.fmu.Lock()
	items := []logItem{{kind: opInsert, c: coord(2), payload: []byte("acked")}}
	last, gen, err := s.wlog.commit(p.t.dir, p.key, items, true)
	if err != nil {
		t.Fatal(err)
	}
	// The writer goroutine is descheduled here; a rotation runs.
	if err := s.rotate(); err != nil {
		t.Fatal(err)
	}
	// The writer resumes: logged, applied, acknowledged.
	p.logged(last, gen, 64)
	p.mu.Lock()
	p.apply(opInsert, coord(2), []byte("acked"))
	p.mu.Unlock()
	p.fmu.Unlock()

	Crash(db.Store)
	db.open()
	if got := mustGet(t, db.ten, "f"); got != "first\x17acked" {
		t.Fatalf("after a crash got %q: the fsynced, acknowledged write went with the generation the rotation deleted", got)
	}
}
