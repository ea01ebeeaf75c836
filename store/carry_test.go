package store_test

// A rotation carries the records of a phext whose checkpoint failed into
// the current generation (carryOver). Issue 13, M4: a tenant PUTting large
// documents many times a second filled whole generations with its PUTs,
// and the carry read each of them whole into memory (RSS +240..+329 MiB at
// every rotation).

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/store"
)

// bigDoc is a document of about size bytes (scrolls of 4 KiB), told
// apart by i.
func bigDoc(i, size int) string {
	var b strings.Builder
	for b.Len() < size {
		if b.Len() > 0 {
			b.WriteByte(0x17)
		}
		fmt.Fprintf(&b, "doc %d ", i)
		b.WriteString(strings.Repeat("x", 4096))
	}
	return b.String()
}

// mustWrite returns a check of a write's (count, error) that fails t on
// an error.
func mustWrite(t *testing.T) func(int, error) {
	return func(_ int, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// The carry costs memory of the order of one record, not of the
// generation: a phext that PUT 48 documents of 1 MiB carries only its last
// one (a PUT replaces everything before it) and the record after it,
// reading the old generation record by record. On the code that read
// each old generation whole, the rotation allocated more than 96 MiB.
func TestRotationCarryMemoryBounded(t *testing.T) {
	const size, puts = 1 << 20, 48
	p := openPair(t, store.Options{})
	var last string
	for i := range puts {
		last = bigDoc(i, size)
		if _, err := p.victim.Put([]byte("f"), []byte(last)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.victim.Insert([]byte("f"), c9(2, 1), []byte("after")); err != nil {
		t.Fatal(err)
	}
	want := get(t, p.victim, "f")
	if !strings.HasPrefix(want, last[:20]) || !strings.HasSuffix(want, "after") {
		t.Fatalf("before the rotation: %.40q…%q", want, want[max(0, len(want)-10):])
	}
	// The rotation's checkpoint renames the new snapshot but cannot make
	// the rename durable: the phext's records are carried.
	p.fs.arm("syncdir", "victim", syscall.EIO)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := store.Rotate(p.s); !errors.Is(err, syscall.EIO) {
		t.Fatalf("rotate: %v", err)
	}
	runtime.ReadMemStats(&after)
	got := after.TotalAlloc - before.TotalAlloc
	t.Logf("the rotation allocated %.1f MiB", float64(got)/(1<<20))
	if got > 8*size {
		t.Errorf("the rotation allocated %d MiB carrying a phext of %d MiB PUT %d times; want at most %d MiB",
			got>>20, size>>20, puts, 8*size>>20)
	}
	if fs := p.logFiles(); len(fs) != 1 {
		t.Fatalf("the old generation was kept although its records were carried: %q", fs)
	}
	p.crashAndReopen()
	if got := get(t, p.victim, "f"); got != want {
		t.Fatalf("after the crash: %d bytes %.40q, want %d bytes %.40q", len(got), got, len(want), want)
	}
}

// What a carry leaves out (the data records before the phext's latest
// PUT) changes nothing a crash brings back: every acknowledged write after
// that PUT is there, applied onto whichever snapshot is on disk, whether
// the rotation's checkpoint failed before its record (the snapshot on disk
// is named only by a checkpoint record older than the PUT) or after its
// rename.
func TestRotationCarrySupersededRecordsReplay(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   string // the rotation's checkpoint fails at this step
		want string
	}{
		{name: "temp file fsync", op: "sync", want: "B\x17y\x17z"},
		{name: "dir fsync after rename", op: "syncdir", want: "B\x17y\x17z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := openPair(t, store.Options{Durability: store.DurabilityAlways})
			must := mustWrite(t)
			must(p.victim.Insert([]byte("f"), c9(1), []byte("a")))
			// A checkpoint renames snapshot S1 without a durable rename: the
			// generation holds on, with S1's checkpoint record in it.
			p.fs.armOnce("syncdir", "victim", syscall.EIO)
			if err := p.victim.Compact([]byte("f")); !errors.Is(err, syscall.EIO) {
				t.Fatalf("compact: %v", err)
			}
			must(p.victim.Put([]byte("f"), []byte("A\x17x")))
			must(p.victim.Insert([]byte("f"), c9(3), []byte("gone")))
			must(p.victim.Put([]byte("f"), []byte("B")))
			must(p.victim.Insert([]byte("f"), c9(2), []byte("y")))
			must(p.victim.Update([]byte("f"), c9(3), []byte("z")))
			if got := get(t, p.victim, "f"); got != tc.want {
				t.Fatalf("before: %q", got)
			}
			p.fs.arm(tc.op, "victim", syscall.EIO)
			if err := store.Rotate(p.s); !errors.Is(err, syscall.EIO) {
				t.Fatalf("rotate: %v", err)
			}
			if fs := p.logFiles(); len(fs) != 1 {
				t.Fatalf("the old generation was kept although its records were carried: %q", fs)
			}
			p.crashAndReopen()
			if got := get(t, p.victim, "f"); got != tc.want {
				t.Fatalf("after the crash got %q, want %q", got, tc.want)
			}
			// And once more: the carried records are carried again.
			must(p.victim.Insert([]byte("f"), c9(4), []byte("w")))
			p.fs.arm(tc.op, "victim", syscall.EIO)
			_ = store.Rotate(p.s)
			p.crashAndReopen()
			if got, want := get(t, p.victim, "f"), tc.want+"\x17w"; got != want {
				t.Fatalf("after the second crash got %q, want %q", got, want)
			}
		})
	}
}

// A damaged record in an old generation (another phext's, its head
// intact) is not a run of whole records: the carry reads that file whole
// as recovery does, and still carries the phext's records.
func TestRotationCarryPastDamagedRecord(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	must := mustWrite(t)
	must(p.bystander.Insert([]byte("f"), c9(1), []byte("bystander's")))
	must(p.victim.Put([]byte("f"), []byte("A")))
	must(p.bystander.Insert([]byte("f"), c9(2), []byte("more")))
	must(p.victim.Insert([]byte("f"), c9(2), []byte("x")))
	off := p.firstRecordOf(t, p.dir("bystander"), "f")
	flipAt(t, p.logFile(t), off+store.LogRecHeader+45) // in its payload
	p.fs.arm("syncdir", "victim", syscall.EIO)
	rerr := store.Rotate(p.s)
	if !errors.Is(rerr, syscall.EIO) {
		t.Fatalf("rotate: %v", rerr)
	}
	if fs := p.logFiles(); len(fs) != 1 {
		t.Fatalf("the old generation was kept although the victim's records were carried: %q (rotate: %v)", fs, rerr)
	}
	p.crashAndReopen()
	if got := get(t, p.victim, "f"); got != "A\x17x" {
		t.Fatalf("after the crash got %q", got)
	}
	if got := get(t, p.bystander, "f"); got != "bystander's\x17more" {
		t.Fatalf("bystander after the crash got %q", got)
	}
}

// The carry reads old generations without checking every record's
// content (a generation of a phext PUT every few ms holds hundreds of
// documents; checking each was most of a rotation's CPU under issue 13's
// M4), but it checks each record it carries: a record whose CRCs match
// and whose content replay refuses is not carried, the phext keeps its
// generations, and the next Open names the damage. The old code read
// such a file again whole, dropped the damaged record, carried the rest
// and deleted the generation: an acknowledged insert was gone without a
// word.
func TestRotationCarryChecksCarriedRecords(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	must := mustWrite(t)
	must(p.victim.Put([]byte("f"), []byte("A")))
	must(p.victim.Insert([]byte("f"), c9(2), []byte("x")))
	must(p.bystander.Insert([]byte("f"), c9(1), []byte("bystander's")))
	// The insert's coordinate: the library part 0 (invalid), CRCs good.
	p.damageVictimRecord(t, 2, 1, func(b []byte, off int) {
		b[off+store.LogRecHeader+14+1+1] = 0
		store.FixLogRecordCRCs(b, off)
	})
	p.fs.arm("sync", "victim", syscall.EIO) // the checkpoint's temp file
	rerr := store.Rotate(p.s)
	if !errors.Is(rerr, store.ErrCorrupt) {
		t.Fatalf("rotate: %v, want the damaged record named", rerr)
	}
	if fs := p.logFiles(); len(fs) != 2 {
		t.Fatalf("log files %q: the victim's generation went although its record was not carried", fs)
	}
	p.crashAndReopen()
	if _, err := p.victim.AppendGet(nil, []byte("f")); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("after the crash the victim's phext: %v, want ErrCorrupt (its record damaged)", err)
	}
	if got := get(t, p.bystander, "f"); got != "bystander's" {
		t.Fatalf("bystander after the crash got %q", got)
	}
}

// BenchmarkRotationCarry is a rotation carrying a phext whose checkpoint
// fails, after it PUT 16 documents of about 1 MiB into the old generation:
// of 4 KiB scrolls, and of one-byte scrolls (issue 13's M4, where the
// check of each document's content was most of the rotation's cost).
func BenchmarkRotationCarry(b *testing.B) {
	const size, puts = 1 << 20, 16
	for _, bc := range []struct {
		name string
		doc  func(i int) []byte
	}{
		{name: "4KiB-scrolls", doc: func(i int) []byte { return []byte(bigDoc(i, size)) }},
		{name: "1B-scrolls", doc: func(i int) []byte { return append([]byte{byte('a' + i)}, sqtest.TinyScrolls(size / 2)[1:]...) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := openPair(b, store.Options{})
			docs := make([][]byte, puts)
			n := 0
			for i := range docs {
				docs[i] = bc.doc(i)
				n += len(docs[i])
			}
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				b.StopTimer()
				p.fs.clear()
				for _, d := range docs {
					if _, err := p.victim.Put([]byte("f"), d); err != nil {
						b.Fatal(err)
					}
				}
				p.fs.arm("syncdir", "victim", syscall.EIO)
				b.StartTimer()
				if err := store.Rotate(p.s); !errors.Is(err, syscall.EIO) {
					b.Fatalf("rotate: %v", err)
				}
			}
		})
	}
}
