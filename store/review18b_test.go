package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestReadChangesBoundsCopiedTexts (review18b): ReadChanges keeps at most
// maxBytes of the phext's log records, and the texts it copies from the
// phext's state (the backward pass: inserts whose scroll's earlier state
// is not in the log) count too. It used to copy every such scroll's whole
// text, so a resume over a few one-byte inserts into big scrolls made the
// server allocate (and copy under the phext's locks) the phext's size,
// whatever the 8 MiB reservation said: here 16 MiB for 64 bytes of
// records. Past the bound the answer is ErrNotInLog (one resync).
func TestReadChangesBoundsCopiedTexts(t *testing.T) {
	db := MustOpen(t, &Options{LogKeepBytes: 1})
	name := []byte("big")
	mustOK := mustWrite(t)
	const scrolls, size = 64, 256 << 10
	big := bytes.Repeat([]byte("b"), size)
	for i := 0; i < scrolls; i++ {
		mustOK(db.ten.Update(name, coord(uint16(i+1)), big))
	}
	db.MustReopen() // the updates leave the log (and its 1-byte history)
	from := db.ten.Position()
	for i := 0; i < scrolls; i++ {
		mustOK(db.ten.Insert(name, coord(uint16(i+1)), []byte("i")))
	}
	const maxBytes = 256 << 10
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	chs, _, err := db.ten.ReadChanges("big", from, maxBytes)
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4*maxBytes+(1<<20) {
		t.Fatalf("ReadChanges with maxBytes %d allocated %d bytes (%d changes, err %v)", maxBytes, alloc, len(chs), err)
	}
	if !errors.Is(err, ErrNotInLog) {
		t.Fatalf("ReadChanges past its bound: %d changes, %v; want ErrNotInLog", len(chs), err)
	}
	// Within the bound the same read back works.
	chs, _, err = db.ten.ReadChanges("big", from, 64<<20)
	if err != nil || len(chs) != scrolls || chs[0].Len != size+1 {
		t.Fatalf("ReadChanges within its bound: %d changes, %v", len(chs), err)
	}
}

// TestReadChangesGenerationMissingOneWriter (review18b): with several logs
// (Options.LoopLogs) a generation is several files. When one of them could
// not be renamed into the history and was deleted, its generation was
// still there by number (the other writers' files), so the read back saw
// no gap and silently skipped that file's records (here a worker's update
// between a loop round's and a later one, the snapshot chain intact).
// Each data record names its phext's previous one (prev): a record whose
// predecessor is missing is ErrNotInLog.
func TestReadChangesGenerationMissingOneWriter(t *testing.T) {
	fs := &faultFS{}
	db := MustOpen(t, &Options{LogKeepBytes: DefaultLogKeep, LoopLogs: 1, FS: fs, Durability: DurabilityEverySec})
	f := &recFeed{}
	head := db.ten.SetFeed(f)
	name := []byte("n")
	mustOK := mustWrite(t)
	rotate := func() {
		t.Helper()
		if err := db.rotate(); err != nil {
			t.Fatal(err)
		}
	}
	mustOK(db.ten.Update(name, coord(1), []byte("v0")))
	rotate() // n checkpointed: its snapshot file exists (a loop round may write it)
	rotate()
	var r LoopRound
	w := Write{Kind: WriteUpdate, Name: name, Coord: coord(1), Text: []byte("v1")}
	if ok, logged := db.ten.TryApply(&r, &w); !ok || !logged || w.Err != nil {
		t.Fatalf("loop write: %v %v %v", ok, logged, w.Err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	mustOK(db.ten.Update(name, coord(1), []byte("v1b"))) // the worker log, same generation
	lost := fmt.Sprintf("%ssq-%016x-%s", histPrefix, db.gen.Load(), workerLog)
	fs.setFail(func(op, path string) error {
		if op == "rename" && strings.Contains(path, lost) {
			return syscall.EIO
		}
		return nil
	})
	rotate()
	fs.setFail(nil)
	mustOK(db.ten.Update(name, coord(1), []byte("v2")))
	all := f.of("n")
	if len(all) != 4 {
		t.Fatalf("published %+v", all)
	}
	if hs, _ := db.listHist(); !slices.ContainsFunc(hs, func(h histFile) bool { return h.gen == db.gen.Load()-1 }) {
		t.Fatalf("history %v: want the other writer's file of the generation that lost one", hs)
	}
	if chs, _, err := db.ten.ReadChanges("n", head, 1<<20); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("from before a generation that lost a file: %d changes %+v, %v; want ErrNotInLog (published %d)", len(chs), chs, err, len(all))
	}
	checkReadChanges(t, db.ten, "n", all[2].Pos, all[3:])
}

// tornFS fails every fsync and ftruncate of a log file while armed: a
// write's fsync fails and its cut-back too (a failing disk).
type tornFS struct {
	osFS
	armed atomic.Bool
}

type tornFile struct {
	File
	fs   *tornFS
	path string
}

func (f *tornFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	file, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &tornFile{File: file, fs: f, path: name}, nil
}

func (f *tornFile) Sync() error {
	if f.fs.armed.Load() && strings.HasSuffix(f.path, logSuffix) {
		return syscall.EIO
	}
	return f.File.Sync()
}

func (f *tornFile) Truncate(n int64) error {
	if f.fs.armed.Load() && strings.HasSuffix(f.path, logSuffix) {
		return syscall.EIO
	}
	return f.File.Truncate(n)
}

// TestReadChangesSkipsFailedWrite (review18b): a write whose fsync failed
// and whose bytes could not be cut back was refused (never applied, never
// published), but its record stays whole in the file, which the repair
// then keeps in the feed's history: a resume from before it was sent that
// change, a text no reader ever saw. Its successor names the write before
// it (prev), so the read back leaves the failed record out.
func TestReadChangesSkipsFailedWrite(t *testing.T) {
	fs := &tornFS{}
	db := MustOpen(t, &Options{LogKeepBytes: DefaultLogKeep, FS: fs, Durability: DurabilityAlways})
	f := &recFeed{}
	head := db.ten.SetFeed(f)
	name := []byte("n")
	mustOK := mustWrite(t)
	mustOK(db.ten.Update(name, coord(1), []byte("v1")))
	mustOK(db.ten.Update(name, coord(2), []byte("w1")))
	fs.armed.Store(true)
	if _, err := db.ten.Update(name, coord(1), []byte("never")); err == nil {
		t.Fatal("a write whose fsync failed succeeded")
	}
	fs.armed.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for { // writes are refused until the repair ran
		if _, err := db.ten.Update(name, coord(1), []byte("v2")); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no write after the repair: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	all := f.of("n")
	if len(all) != 3 || string(all[2].Text) != "v2" {
		t.Fatalf("published %+v", all)
	}
	for _, from := range []uint64{head, all[0].Pos, all[1].Pos} {
		chs, _, err := db.ten.ReadChanges("n", from, 1<<20)
		for _, c := range chs {
			if string(c.Text) == "never" {
				t.Fatalf("from %d: the refused write is read back as a change: %+v", from, chs)
			}
		}
		if err != nil && !errors.Is(err, ErrNotInLog) {
			t.Fatal(err)
		}
	}
	checkReadChanges(t, db.ten, "n", all[1].Pos, all[2:])
}
