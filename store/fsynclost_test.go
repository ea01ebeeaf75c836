package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestAlwaysWriteUnderFailedFsyncNotAcknowledged (review15b): an always
// write's group is written, and while its own fsync runs another fsync of
// the same file fails (the syncer's). That failed write-back may have
// dropped the group's pages, and the kernel reports the failure to one
// fsync only: the group's own fsync then succeeds. The write must not be
// acknowledged on it, or a power loss before the repair checkpointed the
// phext from memory loses an acknowledged always write. The power loss is
// taken just after the write returned (the repair cannot finish: its new
// log file cannot be created), with the log cut to its last good fsync.
func TestAlwaysWriteUnderFailedFsyncNotAcknowledged(t *testing.T) {
	ffs := &faultFS{}
	db := MustOpen(t, &Options{FS: ffs, Durability: DurabilityAlways, SyncInterval: time.Hour})
	ten := db.ten
	name := []byte("d")
	if _, err := ten.Update(name, coord(1), []byte("one")); err != nil {
		t.Fatal(err)
	}
	w := db.Store.wlog
	oldPath, durableSize := durableLog(t, w)

	entered, release := make(chan struct{}), make(chan struct{})
	// The always group's fsync is held while the syncer's fails.
	failing := failBeside(ffs, oldPath, func() { close(entered); <-release }, func() {})
	var once sync.Once
	letGo := func() { once.Do(func() { close(release) }) }
	defer letGo()
	done := make(chan error, 1)
	go func() {
		_, err := ten.Update(name, coord(2), []byte("two"))
		done <- err
	}()
	within(t, 10*time.Second, "the always group's fsync", func() { <-entered })
	if err := w.sync(); err == nil {
		t.Fatal("the syncer's fsync did not fail")
	}
	letGo()
	werr := <-done
	image := t.TempDir()
	copyTree(t, db.root, image)
	failing.Store(false)
	if werr == nil {
		// Acknowledged in mode always: a power loss now must keep it.
		if got := afterPowerLoss(t, image, oldPath, durableSize); got != "two" {
			t.Fatalf("an always write acknowledged after an fsync of its pages failed is lost at a power loss: scroll 2 %q", got)
		}
	}
	// The repair finishes once the fault clears; nothing acknowledged is
	// lost.
	Quiesce(db.Store)
	if _, err := ten.Update(name, coord(3), []byte("three")); err != nil {
		t.Fatal(err)
	}
	nd := reopenCrashed(t, db)
	if got := mustSelect(t, nd.ten, "d", coord(1)); got != "one" {
		t.Fatalf("after kill -9 and reopen, scroll 1: %q", got)
	}
	if got := mustSelect(t, nd.ten, "d", coord(3)); got != "three" {
		t.Fatalf("after kill -9 and reopen, scroll 3: %q", got)
	}
}

// TestSyncBesideFailedFsyncNotSuccess (review15b): Tenant.Sync's fsync
// succeeds while the syncer's fsync of the same file, running beside it,
// fails: the kernel reports a failed write-back to one fsync only, so the
// pages of the tenant's acknowledged write may be gone although Sync's own
// fsync said success. Sync must not return nil before that failure is
// known, or a power loss before the repair loses a write Sync promised
// durable.
func TestSyncBesideFailedFsyncNotSuccess(t *testing.T) {
	ffs := &faultFS{}
	db := MustOpen(t, &Options{FS: ffs, Durability: DurabilityEverySec, SyncInterval: time.Hour})
	ten := db.ten
	name := []byte("d")
	if _, err := ten.Update(name, coord(1), []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := ten.Sync(); err != nil {
		t.Fatal(err)
	}
	w := db.Store.wlog
	oldPath, durableSize := durableLog(t, w)
	if _, err := ten.Update(name, coord(2), []byte("two")); err != nil {
		t.Fatal(err)
	}

	syncIn, syncGo := make(chan struct{}), make(chan struct{})
	otherIn, otherGo := make(chan struct{}), make(chan struct{})
	// Tenant.Sync's fsync is held while the syncer's enters; the syncer's
	// fails once Sync's went on.
	failing := failBeside(ffs, oldPath, func() { close(syncIn); <-syncGo }, func() { close(otherIn); <-otherGo })
	var once1, once2 sync.Once
	letSync := func() { once1.Do(func() { close(syncGo) }) }
	letOther := func() { once2.Do(func() { close(otherGo) }) }
	defer letOther()
	defer letSync()
	syncErr := make(chan error, 1)
	go func() { syncErr <- ten.Sync() }()
	within(t, 10*time.Second, "Tenant.Sync's fsync", func() { <-syncIn })
	otherErr := make(chan error, 1)
	go func() { otherErr <- w.sync() }()
	within(t, 10*time.Second, "the syncer's fsync", func() { <-otherIn })
	letSync()
	var serr error
	var image string
	select {
	case serr = <-syncErr:
		// Returned before the failure beside it was known: a power
		// loss now (the log cut to its last good fsync) must keep the
		// write Sync vouched for.
		image = t.TempDir()
		copyTree(t, db.root, image)
	case <-time.After(200 * time.Millisecond):
		// Sync waits for the fsync beside it.
	}
	letOther()
	if err := <-otherErr; err == nil {
		t.Fatal("the syncer's fsync did not fail")
	}
	if image == "" {
		serr = <-syncErr
	}
	failing.Store(false)
	if serr == nil {
		if image == "" {
			image = t.TempDir()
			copyTree(t, db.root, image)
		}
		if got := afterPowerLoss(t, image, oldPath, durableSize); got != "two" {
			t.Fatalf("Tenant.Sync returned nil while an fsync of the write's pages beside it failed: after a power loss scroll 2 reads %q", got)
		}
	}
	Quiesce(db.Store)
	nd := reopenCrashed(t, db)
	if got := mustSelect(t, nd.ten, "d", coord(2)); got != "two" {
		t.Fatalf("after kill -9 and reopen, scroll 2: %q", got)
	}
}

// durableLog returns w's current file and its size: what its last fsync
// covered when nothing was written since.
func durableLog(t *testing.T, w *commitLog) (path string, size int64) {
	t.Helper()
	w.mu.Lock()
	path = w.path
	w.mu.Unlock()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, fi.Size()
}

// afterPowerLoss opens the store copied to image with log file logPath cut
// to size (a power loss that took the pages a failed fsync did not write)
// and returns scroll 2 of phext d.
func afterPowerLoss(t *testing.T, image, logPath string, size int64) string {
	t.Helper()
	if err := os.Truncate(filepath.Join(image, "log", filepath.Base(logPath)), size); err != nil {
		t.Fatal(err)
	}
	pd := &testDB{tb: t, root: image, opts: Options{SyncInterval: time.Hour}}
	pd.open()
	defer pd.Close()
	return mustSelect(t, pd.ten, "d", coord(2))
}

// failBeside arms ffs for the first two fsyncs of logPath: the first runs
// first and goes on, the second runs second and fails with EIO; the
// repair's new log file cannot be created. Storing false disarms it.
func failBeside(ffs *faultFS, logPath string, first, second func()) *atomic.Bool {
	var syncs atomic.Int32
	var armed atomic.Bool
	armed.Store(true)
	ffs.setFail(func(op, path string) error {
		if !armed.Load() {
			return nil
		}
		switch {
		case op == "sync" && path == logPath:
			switch syncs.Add(1) {
			case 1:
				first()
			case 2:
				second()
				return syscall.EIO
			}
		case op == "open" && strings.HasSuffix(path, logSuffix) && path != logPath:
			return syscall.ENOSPC
		}
		return nil
	})
	return &armed
}

// TestFailedWriteThenFailedFsyncRepairsCleanly (review15b): a group whose
// write() failed (cut back, no count taken) leaves no write in progress,
// so a failed fsync after it marks only the writes so far as possibly
// lost. Before, the failed write's count stayed pending, the fsync marked
// one write more, and the repair's own checkpoint record (the next write)
// was refused: the repair's checkpoint failed for nothing.
func TestFailedWriteThenFailedFsyncRepairsCleanly(t *testing.T) {
	ffs := &faultFS{}
	db := MustOpen(t, &Options{FS: ffs, Durability: DurabilityEverySec, SyncInterval: time.Hour, CompactMinWAL: 1 << 40})
	ten := db.ten
	name := []byte("d")
	if _, err := ten.Update(name, coord(1), []byte("one")); err != nil {
		t.Fatal(err)
	}
	w := db.Store.wlog
	oldPath, _ := durableLog(t, w)
	failOp := failOnce(ffs, oldPath, "write")
	if _, err := ten.Update(name, coord(2), []byte("two")); err == nil {
		t.Fatal("the write did not fail")
	}
	failOp.Store("sync")
	if err := w.sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("the syncer's fsync: %v", err)
	}
	// The repair (kicked by the failure) checkpoints d from memory.
	Quiesce(db.Store)
	repairedCleanly(t, db)
}

// failOnce makes the next op named in the returned value (first op) on the
// file at path fail with EIO; store another op name to arm it again.
func failOnce(ffs *faultFS, path, op string) *atomic.Value {
	var failOp atomic.Value
	failOp.Store(op)
	ffs.setFail(func(op, p string) error {
		if p == path && failOp.CompareAndSwap(op, "") {
			return syscall.EIO
		}
		return nil
	})
	return &failOp
}

// repairedCleanly rotates (a repair when the logs are suspect), expects no
// failed checkpoint so far, and checks that scroll 1 of phext d ("one")
// survives a kill -9.
func repairedCleanly(t *testing.T, db *testDB) {
	t.Helper()
	if err := db.Store.rotate(); err != nil {
		t.Fatalf("a rotation after the repair: %v", err)
	}
	if st := db.Stats(); st.CompactionFailures != 0 {
		t.Fatalf("%d failed checkpoints in the repair", st.CompactionFailures)
	}
	nd := reopenCrashed(t, db)
	if got := mustSelect(t, nd.ten, "d", coord(1)); got != "one" {
		t.Fatalf("after kill -9 and reopen, scroll 1: %q", got)
	}
}

// TestFailedLoopWriteThenFailedFsyncRepairsCleanly is
// TestFailedWriteThenFailedFsyncRepairsCleanly for an event loop round's
// failed write (LoopRound.Flush): it leaves no write in progress either, so
// the syncer's failed fsync after it does not mark the repair's own
// checkpoint record (the next write) lost.
func TestFailedLoopWriteThenFailedFsyncRepairsCleanly(t *testing.T) {
	ffs := &faultFS{}
	db := MustOpen(t, &Options{FS: ffs, Durability: DurabilityEverySec, SyncInterval: time.Hour, CompactMinWAL: 1 << 40})
	w := db.Store.wlog
	if db.Store.loopLog(0) != w {
		t.Skip("loop logs (SQ_TEST_LOOPLOGS): checkpoint records go to the worker log, loop rounds elsewhere")
	}
	name := []byte("d")
	if _, err := db.ten.Update(name, coord(1), []byte("one")); err != nil {
		t.Fatal(err)
	}
	oldPath, _ := durableLog(t, w)
	failOp := failOnce(ffs, oldPath, "write")
	// No repair before the syncer's fsync has failed too.
	db.Store.rotating.Store(true)
	r := new(LoopRound)
	wr := Write{Kind: WriteUpdate, Name: name, Coord: coord(2), Text: []byte("two")}
	if ok, logged := db.ten.TryApply(r, &wr); !ok || !logged {
		t.Fatalf("declined: %v %v", ok, logged)
	}
	if err := r.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("the round's write: %v", err)
	}
	failOp.Store("sync")
	if err := w.sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("the syncer's fsync: %v", err)
	}
	db.Store.rotating.Store(false)
	repairedCleanly(t, db)
}

// TestSyncAfterCloseBesideFailedFsync (review15b): a rotation's fsync of
// the old file succeeds while the syncer's fsync of it, beside it, is still
// running and then fails. A Tenant.Sync in between finds the write count
// fsynced (the rotation's) and must not return nil before the syncer's
// failure is known: its pages may be the ones the failed write-back
// dropped.
func TestSyncAfterCloseBesideFailedFsync(t *testing.T) {
	ffs := &faultFS{}
	db := MustOpen(t, &Options{FS: ffs, Durability: DurabilityEverySec, SyncInterval: time.Hour, CompactMinWAL: 1 << 40})
	ten := db.ten
	name := []byte("d")
	if _, err := ten.Update(name, coord(1), []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := ten.Sync(); err != nil {
		t.Fatal(err)
	}
	w := db.Store.wlog
	oldPath, durableSize := durableLog(t, w)
	if _, err := ten.Update(name, coord(2), []byte("two")); err != nil {
		t.Fatal(err)
	}
	otherIn, otherGo := make(chan struct{}), make(chan struct{})
	// The syncer's fsync is held; the rotation's goes on; the syncer's
	// then fails.
	// The rotation's checkpoint of d waits in its temp file's write, so
	// nothing is written to the new log, and no snapshot or carried
	// record holds the write, before the image.
	var syncs, tmps atomic.Int32
	ckptIn, ckptGo := make(chan struct{}), make(chan struct{})
	ffs.setFail(func(op, path string) error {
		switch {
		case op == "sync" && path == oldPath && syncs.Add(1) == 1:
			close(otherIn)
			<-otherGo
			return syscall.EIO
		case op == "write" && strings.HasSuffix(path, ".tmp") && tmps.Add(1) == 1:
			close(ckptIn)
			<-ckptGo
		}
		return nil
	})
	var ckOnce sync.Once
	letCkpt := func() { ckOnce.Do(func() { close(ckptGo) }) }
	defer letCkpt()
	var once sync.Once
	letOther := func() { once.Do(func() { close(otherGo) }) }
	defer letOther()
	otherErr := make(chan error, 1)
	go func() { otherErr <- w.sync() }()
	within(t, 10*time.Second, "the syncer's fsync", func() { <-otherIn })
	rotateUnderCheckpoint(t, db)
	within(t, 10*time.Second, "the rotation's checkpoint", func() { <-ckptIn })
	syncErr := make(chan error, 1)
	go func() { syncErr <- ten.Sync() }()
	var serr error
	var image string
	select {
	case serr = <-syncErr:
		image = t.TempDir()
		copyTree(t, db.root, image)
	case <-time.After(200 * time.Millisecond):
	}
	letOther()
	if err := <-otherErr; err == nil {
		t.Fatal("the syncer's fsync did not fail")
	}
	if image == "" {
		serr = <-syncErr
	}
	if serr == nil && image == "" {
		image = t.TempDir()
		copyTree(t, db.root, image)
	}
	letCkpt()
	if serr == nil {
		if got := afterPowerLoss(t, image, oldPath, durableSize); got != "two" {
			t.Fatalf("Tenant.Sync returned nil while an fsync of the write's pages beside the rotation's failed: after a power loss scroll 2 reads %q", got)
		}
	}
	Quiesce(db.Store)
	nd := reopenCrashed(t, db)
	if got := mustSelect(t, nd.ten, "d", coord(2)); got != "two" {
		t.Fatalf("after kill -9 and reopen, scroll 2: %q", got)
	}
}
