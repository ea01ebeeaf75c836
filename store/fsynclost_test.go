package store

import (
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
	w.mu.Lock()
	oldPath := w.path
	w.mu.Unlock()
	fi, err := os.Stat(oldPath)
	if err != nil {
		t.Fatal(err)
	}
	durableSize := fi.Size() // what the last good fsync covered

	var syncs atomic.Int32
	var failing atomic.Bool
	failing.Store(true)
	entered, release := make(chan struct{}), make(chan struct{})
	ffs.setFail(func(op, path string) error {
		if !failing.Load() {
			return nil
		}
		switch {
		case op == "sync" && path == oldPath:
			switch syncs.Add(1) {
			case 1: // the always group's fsync: held while the other fails
				close(entered)
				<-release
			case 2: // the syncer's
				return syscall.EIO
			}
		case op == "open" && strings.HasSuffix(path, logSuffix) && path != oldPath:
			return syscall.ENOSPC // the repair's new generation
		}
		return nil
	})
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
		if err := os.Truncate(filepath.Join(image, "log", filepath.Base(oldPath)), durableSize); err != nil {
			t.Fatal(err)
		}
		pd := &testDB{tb: t, root: image, opts: Options{Durability: DurabilityAlways, SyncInterval: time.Hour}}
		pd.open()
		got := mustSelect(t, pd.ten, "d", coord(2))
		pd.Close()
		if got != "two" {
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
