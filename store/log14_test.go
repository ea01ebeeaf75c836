package store

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/phext/sq/phext"
)

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
	last, gen, err := s.wlog.commit(p.t.dir, p.key, items, true, p.lastLSN)
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

// twoTenantLog builds a log with dir ids 1 (victim) and 2 (bystander):
// victim "v1", bystander "b1", victim "v2", bystander "b2", each an INSERT
// into phext "f" at scroll 1 (appending). It returns the bytes and each
// record's offset.
func twoTenantLog(victim, bystander string) ([]byte, []int) {
	b := appendLogHeader(nil, 1, 1)
	b = appendLogRecord(b, opDir, 0, 1, "", phext.Coordinate{}, []byte(victim))
	b = appendLogRecord(b, opDir, 0, 2, "", phext.Coordinate{}, []byte(bystander))
	var offs []int
	for i, r := range []struct {
		id uint32
		tx string
	}{{1, "v1"}, {2, "b1"}, {1, "v2"}, {2, "b2"}} {
		offs = append(offs, len(b))
		b = appendLogRecord(b, opInsert, uint64(i+1), r.id, "f", coord(1), []byte(r.tx))
	}
	return b, offs
}

// openOn opens a Store on root/log with tenants victim and bystander.
func openOn(t *testing.T, root string) (*Store, *Tenant, *Tenant, error) {
	t.Helper()
	s, err := Open(&Options{LogDir: filepath.Join(root, "log"), Logger: discardLogger()})
	if err != nil {
		return nil, nil, nil, err
	}
	v, err := s.AddTenant(TenantConfig{Name: "victim", DataDir: filepath.Join(root, "victim")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.AddTenant(TenantConfig{Name: "bystander", DataDir: filepath.Join(root, "bystander")})
	if err != nil {
		t.Fatal(err)
	}
	return s, v, b, nil
}

func writeLog(t *testing.T, root string, data []byte) {
	t.Helper()
	for _, d := range []string{"log", "victim", "bystander"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "log", logName(1, workerLog)), data, 0o640); err != nil {
		t.Fatal(err)
	}
}

// Review 14, finding 6. One damaged (whole, CRC-good, invalid content) record of one
// phext pins the old log files, as documented, but pinGen also keeps every
// later generation for the rest of the process: rotations keep creating
// files and never delete any, so the log grows without bound, and the next
// Open reads all of it into memory at once (readAll of every file, records
// kept as views until the end of recovery).
func TestPinnedGenerationsGrowWithoutBound(t *testing.T) {
	root := t.TempDir()
	log, offs := twoTenantLog(filepath.Join(root, "victim"), filepath.Join(root, "bystander"))
	// The victim's first record: coordinate part 0 (invalid), CRCs good.
	at := offs[0] + logRecHeader + 14 + 1 + 1 // the name "f", then the library's low byte
	log[at] = 0
	FixLogRecordCRCs(log, offs[0])
	writeLog(t, root, log)
	s, v, b, err := openOn(t, root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := v.AppendGet(nil, []byte("f")); err == nil {
		t.Fatal("the victim's damaged phext opened")
	}
	for i := range 10 {
		if _, err := b.Insert([]byte("g"), coord(uint16(i+1)), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := s.rotate(); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(root, "log", "sq-*.log"))
	if len(files) > 3 {
		t.Fatalf("%d log files after 10 rotations: one damaged record of one phext keeps every later generation", len(files))
	}
}
