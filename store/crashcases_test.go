package store_test

// Crash cases of issue 14, each found in an earlier version of the WAL:
// every test here fails on that version.

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/store"
)

// indexOf returns the index of the first trace entry with prefix and
// suffix, or -1.
func indexOf(trace []string, prefix, suffix string) int {
	return slices.IndexFunc(trace, func(s string) bool {
		return strings.HasPrefix(s, prefix) && strings.HasSuffix(s, suffix)
	})
}

// A compaction whose directory fsync failed renamed the snapshot without
// making the rename durable. The reopen that follows must fsync the
// directory before it resets the WAL (which then stops describing the old
// snapshot); otherwise a power loss brings back the old snapshot with a
// WAL that no longer holds the acknowledged writes.
func TestCrashDirFsyncFailedDuringCompactionThenReopen(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("acked")); err != nil {
		t.Fatal(err)
	}
	// Close compacts in place (COMPACT record, rename, reset); its
	// directory fsync fails.
	closeWithDirFsyncFailing(t, p)
	p.fs.resetTrace()
	if got := get(t, p.victim, "f"); got != "acked" {
		t.Fatalf("got %q", got)
	}
	tr := p.fs.traced()
	dirSync := indexOf(tr, "syncdir ", "victim")
	reset := indexOf(tr, "truncate ", "victim/f.phext.wal")
	if reset < 0 {
		t.Fatalf("the reopen did not reset the covered WAL; trace %q", tr)
	}
	if dirSync < 0 || dirSync > reset {
		t.Fatalf("the WAL was reset before the directory was fsynced; trace %q", tr)
	}
}

// closeWithDirFsyncFailing closes the store while directory fsyncs of the
// victim fail once (Close compacts: the rename is not made durable), then
// opens a new store on the same files with faults cleared.
func closeWithDirFsyncFailing(t *testing.T, p *pair) {
	t.Helper()
	r := p.fs.armOnce("syncdir", "victim", syscall.EIO)
	if err := p.s.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close: %v", err)
	}
	if p.fs.hits(r) != 1 {
		t.Fatal("the directory fsync never failed")
	}
	p.fs.clear()
	p.open()
}

// A checkpoint whose directory fsync after the snapshot's rename failed:
// the next acknowledged always-mode write fsyncs the directory first, so
// the switch to the new snapshot and WAL is durable before it.
func TestCrashCheckpointDirFsyncFailedThenWrite(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("acked")); err != nil {
		t.Fatal(err)
	}
	r := p.fs.armAfter("syncdir", "victim", syscall.EIO, 1) // the one after the rename
	if err := p.victim.Compact([]byte("f")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("compact: %v", err)
	}
	if p.fs.hits(r) != 1 {
		t.Fatal("the directory fsync after the rename never failed")
	}
	p.fs.resetTrace()
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("next")); err != nil {
		t.Fatal(err)
	}
	tr := p.fs.traced()
	if indexOf(tr, "syncdir ", "victim") < 0 {
		t.Fatalf("write acknowledged before the checkpoint's renames were durable; trace %q", tr)
	}
	p.reopen()
	if got := get(t, p.victim, "f"); got != "acked\x17next" {
		t.Fatalf("after reopen got %q", got)
	}
}

// The same, with the directory fsync failing at the reopen too: reads are
// served, the WAL is left as it is, and the first write fsyncs the
// directory before it resets the WAL.
func TestCrashDirFsyncStillFailingAtReopen(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("acked")); err != nil {
		t.Fatal(err)
	}
	closeWithDirFsyncFailing(t, p)
	r := p.fs.arm("syncdir", "victim", syscall.EIO)
	if got := get(t, p.victim, "f"); got != "acked" {
		t.Fatalf("got %q", got)
	}
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("no")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write while the dir cannot be fsynced: %v", err)
	}
	if p.fs.hits(r) < 2 {
		t.Fatalf("directory fsync tried %d times", p.fs.hits(r))
	}
	p.fs.clear()
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("yes")); err != nil {
		t.Fatal(err)
	}
	p.reopen()
	if got := get(t, p.victim, "f"); got != "acked\x17yes" {
		t.Fatalf("after reopen got %q", got)
	}
}

// A close (here RemoveTenant) racing the everysec syncer: the syncer has
// picked the WAL and is about to fsync it when the close runs. The close
// must fsync the WAL itself; the syncer's "file already closed" is not a
// durable fsync.
func TestCrashCloseRacesEverysecSyncer(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityEverySec, SyncInterval: 2 * time.Millisecond})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("first")); err != nil {
		t.Fatal(err)
	}
	wal := filepath.Join("victim", "f.phext.wal")
	// Let the syncer fsync the first write, so the gate catches a round
	// that has the second write to fsync.
	time.Sleep(20 * time.Millisecond)
	g := p.fs.gateSync(wal)
	defer func() {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
	}()
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("acked")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the syncer never fsynced the dirty WAL")
	}
	p.fs.resetTrace()
	if err := p.s.RemoveTenant("victim"); err != nil {
		t.Fatal(err)
	}
	if indexOf(p.fs.traced(), "sync ", wal) < 0 {
		t.Fatalf("close skipped the fsync while the syncer's was still pending; trace %q", p.fs.traced())
	}
	close(g.release)
}

// A tenant whose files were created in mode "no" (no directory fsync)
// switches to "always": its first acknowledged write must also make the
// WAL's directory entry durable.
func TestCrashNoToAlwaysFsyncsDirectory(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityNo})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("lazy")); err != nil {
		t.Fatal(err)
	}
	if i := indexOf(p.fs.traced(), "syncdir ", "victim"); i >= 0 {
		t.Fatalf("mode no fsynced the directory; the test needs it not to")
	}
	if _, err := p.s.AddTenant(store.TenantConfig{Name: "victim", DataDir: p.dir("victim"), Durability: store.DurabilityAlways}); err != nil {
		t.Fatal(err)
	}
	p.fs.resetTrace()
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("durable")); err != nil {
		t.Fatal(err)
	}
	if indexOf(p.fs.traced(), "syncdir ", "victim") < 0 {
		t.Fatalf("always-mode write acknowledged without fsyncing the WAL's directory entry; trace %q", p.fs.traced())
	}
}

// After a failed fsync the page cache is not trusted: the syncer writes the
// state held in memory to new files (a new snapshot holding the
// acknowledged write, a fresh WAL) instead of reopening and replaying what
// the cache shows.
func TestCrashFailedFsyncRewritesFromMemory(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityEverySec, SyncInterval: 2 * time.Millisecond})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("base")); err != nil {
		t.Fatal(err)
	}
	if err := p.victim.Sync(); err != nil { // clean before the fault is armed
		t.Fatal(err)
	}
	walPath := filepath.Join(p.dir("victim"), "f.phext.wal")
	before, err := os.Stat(walPath)
	if err != nil {
		t.Fatal(err)
	}
	p.fs.armOnce("sync", filepath.Join("victim", "f.phext.wal"), syscall.EIO)
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte(" acked")); err != nil {
		t.Fatal(err)
	}
	sqtest.CheckFor(t, 5*time.Second, "the failed fsync and the rewrite", func() bool { return p.s.Stats().Rewrites >= 1 })
	snap, err := os.ReadFile(filepath.Join(p.dir("victim"), "f.phext"))
	if err != nil || string(snap) != "base acked" {
		t.Fatalf("snapshot after the rewrite: %q %v", snap, err)
	}
	after, err := os.Stat(walPath)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Fatal("the WAL whose fsync failed is still in use")
	}
	if after.Size() != 32 {
		t.Fatalf("new WAL is %d bytes, want a bare header", after.Size())
	}
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("next")); err != nil {
		t.Fatal(err)
	}
	p.reopen()
	if got := get(t, p.victim, "f"); got != "base acked\x17next" {
		t.Fatalf("after reopen got %q", got)
	}
}

// A rewrite that crashed after switching the snapshot but before switching
// the WAL: open must take the new WAL, not judge the new snapshot by the
// old WAL.
func TestCrashRewriteBetweenRenames(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("one")); err != nil {
		t.Fatal(err)
	}
	p.fs.armOnce("sync", filepath.Join("victim", "f.phext.wal"), syscall.EIO)
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("lost")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("err = %v", err)
	}
	// The next write rewrites first; its WAL rename fails.
	p.fs.arm("rename", filepath.Join("victim", "f.phext.wal"), syscall.EIO)
	if _, err := p.victim.Insert([]byte("f"), c9(3), []byte("refused")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(p.dir("victim"), "f.phext.wal.new")); err != nil {
		t.Fatalf("the crash window was not reached: %v", err)
	}
	// Crash now: copy the files as they are and open a new store on them.
	crashed := t.TempDir()
	for _, fn := range []string{"f.phext", "f.phext.wal", "f.phext.wal.new"} {
		b, err := os.ReadFile(filepath.Join(p.dir("victim"), fn))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, fn), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := store.Open(&store.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ten, err := s2.AddTenant(store.TenantConfig{Name: "c", DataDir: crashed})
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, ten, "f"); got != "one" {
		t.Fatalf("after the crash got %q", got)
	}
	if _, err := os.Stat(filepath.Join(crashed, "f.phext.wal.new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("wal.new left behind: %v", err)
	}
	if _, err := ten.Insert([]byte("f"), c9(2), []byte("two")); err != nil {
		t.Fatal(err)
	}
}
