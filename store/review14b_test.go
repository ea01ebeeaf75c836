package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Review of the per-loop commit logs (issue 14, 69a0adc).

// TestReviewAlwaysAfterTwoLoopLogs: f's records went l1 (loop 1), then l0
// (loop 0; l1's round had ended, so in the kernel but not fsynced), then
// the tenant was switched to always and the worker acknowledged a write
// of f. awaitLoopRound fsynced l0 (f's latest log) but not l1: a power
// loss takes l1's record, recovery cuts f's chain at l0's record (its
// predecessor is missing) and drops the acknowledged always write with it.
func TestReviewAlwaysAfterTwoLoopLogs(t *testing.T) {
	fs := &syncCountFS{}
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

// TestReviewRetryPinnedAwaitsLoopRound: f's close checkpoint fails (pinned:
// its records stay in the logs) while its latest record still waits in
// loop 0's unflushed round. The reopen restores f from the log files
// (retryPinned): it must not read them before that round wrote them, or
// the restored snapshot misses the write its round then acknowledges (and
// its checkpoint record covers it away for good).
func TestReviewRetryPinnedAwaitsLoopRound(t *testing.T) {
	fs := &failTmpFS{}
	db := loopDB(t, fs)
	var r0 LoopRound
	r0.SetLoop(0)
	t.Cleanup(func() { _ = r0.Flush() })
	loopApply(t, db.ten, &r0, "f", "b")
	db.ten.mu.RLock()
	p := db.ten.files["f"]
	db.ten.mu.RUnlock()
	fs.fail.Store(true)
	if err := db.ten.closeFile(p, closeEvict); err == nil {
		t.Fatal("the close checkpoint did not fail")
	}
	fs.fail.Store(false)
	flushed := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		flushed <- r0.Flush()
	}()
	got, err := db.ten.AppendGet(nil, []byte("f"))
	if ferr := <-flushed; ferr != nil {
		t.Fatal(ferr) // the write of "b" is acknowledged from here
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = got
	if got := mustSelect(t, db.ten, "f", coord(1)); got != "ab" {
		t.Fatalf("f after the reopen: %q, want %q", got, "ab")
	}
	db.MustReopen()
	if got := mustSelect(t, db.ten, "f", coord(1)); got != "ab" {
		t.Fatalf("f after a restart: %q, want %q", got, "ab")
	}
}

// noNewLogFS is syncCountFS on a log dir that takes no new file while
// block is set (its disk full): a repair's rotation fails.
type noNewLogFS struct {
	*syncCountFS
	block atomic.Bool
}

func (f *noNewLogFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if f.block.Load() && flag&os.O_CREATE != 0 && strings.HasPrefix(filepath.Base(name), logPrefix) {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	return f.syncCountFS.OpenFile(name, flag, perm)
}

// TestReviewSuspectLogsStillSynced: loop 1 acknowledged a write of g (in
// the kernel), then loop 0's write failed (the logs suspect) and the
// repair cannot start a new generation (the log dir's disk full). Writes
// are refused meanwhile, but the everysec syncer stopped fsyncing every
// log: g's acknowledged record stayed in the page cache for as long as the
// repair failed, and a power loss took it, far past the ~1 s everysec
// allows.
func TestReviewSuspectLogsStillSynced(t *testing.T) {
	cfs := &syncCountFS{}
	fs := &noNewLogFS{syncCountFS: cfs}
	db := MustOpen(t, &Options{FS: fs, Durability: DurabilityEverySec, SyncInterval: 10 * time.Millisecond, LoopLogs: 2})
	for _, name := range []string{"f", "g"} {
		if _, err := db.ten.Insert([]byte(name), coord(1), []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.ten.Sync(); err != nil {
		t.Fatal(err)
	}
	var r0, r1 LoopRound
	r0.SetLoop(0)
	r1.SetLoop(1)
	t.Cleanup(func() { _ = r0.Flush(); _ = r1.Flush() })
	loopApply(t, db.ten, &r1, "g", "b")
	if err := r1.Flush(); err != nil {
		t.Fatal(err)
	}
	fs.block.Store(true)
	cfs.failL0.Store(true)
	loopApply(t, db.ten, &r0, "f", "b")
	if err := r0.Flush(); err == nil {
		t.Fatal("loop 0's write did not fail")
	}
	time.Sleep(300 * time.Millisecond) // 30 syncer rounds
	if db.suspect.Load() == nil {
		t.Fatal("the repair succeeded")
	}
	paths := []string{logPath(db.wlog), logPath(db.loopLogs[0]), logPath(db.loopLogs[1])}
	Crash(db.Store)
	db.closed = true
	cfs.powerLoss(t, paths...)
	nd := &testDB{tb: t, root: db.root, opts: db.opts}
	nd.opts.FS = nil
	nd.open()
	t.Cleanup(func() { nd.Close() })
	if got := mustSelect(t, nd.ten, "g", coord(1)); got != "ab" {
		t.Fatalf("g after the power loss: %q, want %q (acknowledged 300 ms before, SyncInterval 10 ms)", got, "ab")
	}
}

// TestReviewPowerLossPrefix: two loops and a worker append to one scroll
// while the syncer fsyncs each log on its own and rotations switch them;
// a power loss then cuts every log back to its last fsync. Whatever
// recovery keeps must be a prefix of what was applied (in LSN order): a
// record never without one before it.
func TestReviewPowerLossPrefix(t *testing.T) {
	cfs := &syncCountFS{}
	db := MustOpen(t, &Options{FS: cfs, Durability: DurabilityEverySec, SyncInterval: 3 * time.Millisecond, LoopLogs: 2})
	name := []byte("f")
	if _, err := db.ten.Insert(name, coord(1), []byte(">")); err != nil {
		t.Fatal(err)
	}
	const rounds, perRound = 40, 6
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r LoopRound
			r.SetLoop(g)
			for i := 0; i < rounds; i++ {
				for k := 0; k < perRound; k++ {
					w := Write{Kind: WriteInsert, Name: name, Coord: coord(1), Text: []byte(fmt.Sprintf("L%d.%d.%d;", g, i, k))}
					if ok, _ := db.ten.TryApply(&r, &w); ok {
						continue
					}
					if err := r.Flush(); err != nil {
						t.Error(err)
					}
					if _, err := db.ten.Insert(name, coord(1), w.Text); err != nil {
						t.Error(err)
					}
				}
				if err := r.Flush(); err != nil {
					t.Error(err)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < rounds; i++ {
			if _, err := db.ten.Insert(name, coord(1), []byte(fmt.Sprintf("W%d;", i))); err != nil {
				t.Error(err)
			}
			if i%15 == 14 {
				if err := db.rotate(); err != nil {
					t.Error(err)
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	wg.Wait()
	// A last burst across the logs; the syncer fsyncs some logs and not
	// others.
	var r0, r1 LoopRound
	r0.SetLoop(0)
	r1.SetLoop(1)
	for i := 0; i < 6; i++ {
		for _, r := range []*LoopRound{&r0, &r1} {
			w := Write{Kind: WriteInsert, Name: name, Coord: coord(1), Text: []byte(fmt.Sprintf("B%d;", i))}
			if ok, _ := db.ten.TryApply(r, &w); !ok {
				t.Fatal("declined")
			}
			if err := r.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if i%3 == 2 {
			if _, err := db.ten.Insert(name, coord(1), []byte(fmt.Sprintf("BW%d;", i))); err != nil {
				t.Fatal(err)
			}
		}
		// The syncer reached loop 1's log (and the worker's) but not loop 0's.
		if err := db.loopLogs[1].sync(); err != nil {
			t.Fatal(err)
		}
		if err := db.wlog.sync(); err != nil {
			t.Fatal(err)
		}
	}
	mem := mustSelect(t, db.ten, "f", coord(1))
	Crash(db.Store)
	db.closed = true
	paths, _ := filepath.Glob(filepath.Join(db.logDir, logPrefix+"*"+logSuffix))
	cfs.powerLoss(t, paths...)
	nd := &testDB{tb: t, root: db.root, opts: db.opts}
	nd.opts.FS = nil
	nd.open()
	t.Cleanup(func() { nd.Close() })
	got := mustSelect(t, nd.ten, "f", coord(1))
	if !strings.HasPrefix(mem, got) {
		t.Fatalf("recovered scroll is not a prefix of the applied one:\n mem %q\n got %q", mem, got)
	}
	t.Logf("kept %d of %d tokens, %d chain cuts", strings.Count(got, ";"), strings.Count(mem, ";"), nd.chainCuts.Load())
}

// TestReviewAlwaysAfterLoopThenWorker: f's records went l1 (loop 1, in
// the kernel), then w (an everysec worker write), then the tenant was
// switched to always: f's latest record is in the worker log, so the
// always write found nothing to wait for and fsynced only w. A power loss
// takes l1's record, recovery cuts f's chain at the worker's everysec
// record (its predecessor is missing) and drops the acknowledged always
// write with it.
func TestReviewAlwaysAfterLoopThenWorker(t *testing.T) {
	fs := &syncCountFS{}
	db := loopDB(t, fs)
	if err := db.ten.Sync(); err != nil {
		t.Fatal(err)
	}
	var r1 LoopRound
	r1.SetLoop(1)
	t.Cleanup(func() { _ = r1.Flush() })
	loopApply(t, db.ten, &r1, "f", "b")
	if err := r1.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ten.Insert([]byte("f"), coord(1), []byte("c")); err != nil {
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

// TestReviewMissingLogFileIsNotACut: a whole loop log file of the current
// generation is gone (deleted by hand, lost by the file system): damage,
// not a power loss (every file of a generation is created, fsynced and its
// directory entry made durable before any record goes to it). f's record
// in l1 is missing while both other files of the generation hold records
// written after it, so no file's lost tail can explain the gap: f refuses
// to open (ErrCorrupt), it is not cut silently (a Warn, chainCuts) to open
// without its acknowledged writes.
func TestReviewMissingLogFileIsNotACut(t *testing.T) {
	db := loopDB(t, nil)
	var r0, r1 LoopRound
	r0.SetLoop(0)
	r1.SetLoop(1)
	t.Cleanup(func() { _ = r0.Flush(); _ = r1.Flush() })
	loopApply(t, db.ten, &r1, "f", "b")
	if err := r1.Flush(); err != nil {
		t.Fatal(err)
	}
	loopApply(t, db.ten, &r0, "g", "b")
	if err := r0.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ten.Insert([]byte("f"), coord(1), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := db.ten.Sync(); err != nil {
		t.Fatal(err)
	}
	l1 := logPath(db.loopLogs[1])
	Crash(db.Store)
	db.closed = true
	if err := os.Remove(l1); err != nil {
		t.Fatal(err)
	}
	nd := &testDB{tb: t, root: db.root, opts: db.opts}
	nd.open()
	t.Cleanup(func() { nd.Close() })
	got, err := nd.ten.AppendGet(nil, []byte("f"))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("f after its log file was deleted: %q, %v (chain cuts %d): damage taken for a power loss", got, err, nd.chainCuts.Load())
	}
	if got := mustSelect(t, nd.ten, "g", coord(1)); got != "ab" {
		t.Fatalf("g: %q", got)
	}
}
