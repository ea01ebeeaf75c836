package store_test

// Review of 3b7f45b (the rotation's carry checks the records it carries).

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/phext/sq/store"
)

// damageVictimRecord rewrites p's only log file with the i-th of the n
// data records of the victim's phext "f" changed by damage (b the file,
// off the record's offset).
func (p *pair) damageVictimRecord(t *testing.T, n, i int, damage func(b []byte, off int)) {
	t.Helper()
	path := p.logFile(t)
	offs := store.LogRecords(path, p.dir("victim"), "f")
	if len(offs) != n {
		t.Fatalf("the victim's records at %v, want %d", offs, n)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damage(b, int(offs[i]))
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// A record of the carried phext that replay needs (after its latest PUT)
// and would refuse is not carried, whatever makes replay refuse it: its
// CRC (a flipped bit: scanLog judges the file and names the record
// damaged) or a kind no writer writes (its CRCs good). The carry of
// 3b7f45b dropped such a record without a word, carried the rest and
// deleted the generation: after a crash the phext opened without the
// acknowledged insert, where Open on the old files names the damage. A
// damaged record that a later PUT replaces is not needed: it is left out
// and the generation goes.
func TestRotationCarryDamagedRecord(t *testing.T) {
	for _, d := range []struct {
		name   string
		damage func(b []byte, off int)
	}{
		{name: "CRC mismatch", damage: func(b []byte, off int) { b[off+store.LogRecHeader+45] ^= 0x40 }},
		{name: "unknown kind, CRCs good", damage: func(b []byte, off int) {
			b[off+store.LogRecHeader] = 0xFF // the op
			store.FixLogRecordCRCs(b, off)
		}},
	} {
		for _, tc := range []struct {
			name       string
			superseded bool
		}{
			{name: "needed", superseded: false},
			{name: "replaced by a PUT", superseded: true},
		} {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				p := openPair(t, store.Options{Durability: store.DurabilityAlways})
				must := mustWrite(t)
				must(p.victim.Put([]byte("f"), []byte("A")))
				must(p.victim.Insert([]byte("f"), c9(2), []byte("the acknowledged insert")))
				n, want := 2, "B\x17y"
				if tc.superseded {
					must(p.victim.Put([]byte("f"), []byte("B")))
					must(p.victim.Insert([]byte("f"), c9(2), []byte("y")))
					n = 4
				}
				// A whole record after it: the damage is not a torn tail.
				must(p.bystander.Insert([]byte("f"), c9(1), []byte("bystander's")))
				p.damageVictimRecord(t, n, 1, d.damage)
				p.fs.arm("sync", "victim", syscall.EIO) // the checkpoint's temp file
				rerr := store.Rotate(p.s)
				files := p.logFiles()
				p.crashAndReopen()
				got, err := p.victim.AppendGet(nil, []byte("f"))
				if tc.superseded {
					if !errors.Is(rerr, syscall.EIO) || errors.Is(rerr, store.ErrCorrupt) {
						t.Errorf("rotate: %v, want the checkpoint's EIO only", rerr)
					}
					if len(files) != 1 {
						t.Errorf("log files %q: the old generation was kept although what replay needs was carried", files)
					}
					if err != nil || string(got) != want {
						t.Errorf("after the crash: %q, %v; want %q", got, err, want)
					}
				} else {
					if !errors.Is(rerr, store.ErrCorrupt) {
						t.Errorf("rotate: %v, want the damaged record named", rerr)
					}
					if len(files) != 2 {
						t.Errorf("log files %q: the victim's generation went although its damaged record was not carried", files)
					}
					if !errors.Is(err, store.ErrCorrupt) {
						t.Errorf("after the crash the victim's phext: %q, %v; want ErrCorrupt (its record damaged)", got, err)
					}
				}
				if got := get(t, p.bystander, "f"); got != "bystander's" {
					t.Fatalf("bystander after the crash got %q", got)
				}
			})
		}
	}
}
