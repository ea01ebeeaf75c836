package store

import (
	"os"
	"sync"
	"testing"
)

// Review of the per-loop commit logs (issue 14, 69a0adc).

// durSizeFS remembers each file's size at its last fsync: a power loss
// (powerLoss) cuts every log back to it.
type durSizeFS struct {
	osFS
	mu   sync.Mutex
	size map[string]int64
}

type durSizeFile struct {
	File
	fs   *durSizeFS
	path string
}

func (f *durSizeFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fl, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &durSizeFile{File: fl, fs: f, path: name}, nil
}

func (f *durSizeFile) Sync() error {
	if err := f.File.Sync(); err != nil {
		return err
	}
	fi, err := f.File.Stat()
	if err != nil {
		return err
	}
	f.fs.mu.Lock()
	if f.fs.size == nil {
		f.fs.size = map[string]int64{}
	}
	f.fs.size[f.path] = fi.Size()
	f.fs.mu.Unlock()
	return nil
}

// powerLoss cuts the given logs back to their size at their last fsync.
func (f *durSizeFS) powerLoss(t *testing.T, paths ...string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range paths {
		truncateTo(t, p, f.size[p])
	}
}

// TestReviewAlwaysAfterTwoLoopLogs: f's records went l1 (loop 1), then l0
// (loop 0; l1's round had ended, so in the kernel but not fsynced), then
// the tenant was switched to always and the worker acknowledged a write
// of f. awaitLoopRound fsynced l0 (f's latest log) but not l1: a power
// loss takes l1's record, recovery cuts f's chain at l0's record (its
// predecessor is missing) and drops the acknowledged always write with it.
func TestReviewAlwaysAfterTwoLoopLogs(t *testing.T) {
	fs := &durSizeFS{}
	db := loopDB(t, fs)
	if err := db.ten.Sync(); err != nil {
		t.Fatal(err)
	}
	var r0, r1 LoopRound
	r0.SetLoop(0)
	r1.SetLoop(1)
	t.Cleanup(func() { _ = r0.Flush(); _ = r1.Flush() })
	loopApply(t, db.ten, &r1, "f", "b")
	if err := r1.Flush(); err != nil {
		t.Fatal(err)
	}
	loopApply(t, db.ten, &r0, "f", "c")
	if err := r0.Flush(); err != nil {
		t.Fatal(err)
	}
	db.ten.dur.Store(uint32(DurabilityAlways))
	if _, err := db.ten.Insert([]byte("f"), coord(1), []byte("d")); err != nil {
		t.Fatal(err)
	}
	paths := []string{logPath(db.wlog), logPath(db.loopLogs[0]), logPath(db.loopLogs[1])}
	Crash(db.Store)
	db.closed = true
	fs.powerLoss(t, paths...)
	nd := &testDB{tb: t, root: db.root, opts: db.opts}
	nd.opts.FS = nil
	nd.open()
	t.Cleanup(func() { nd.Close() })
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != "abcd" {
		t.Fatalf("f after the power loss: %q, want %q (the always write was acknowledged)", got, "abcd")
	}
}
