package store_test

// Crash cases of issue 14, restated for the shared commit log: each was
// found in the per-phext WAL of an earlier version, and every test here
// fails if its fix is taken out.

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

// crashAndReopen abandons the store like kill -9 (no flush, fsync or
// checkpoint) and opens a new one on the same files, faults cleared and
// the trace reset first.
func (p *pair) crashAndReopen() {
	p.t.Helper()
	p.fs.clear()
	store.Crash(p.s)
	p.s = nil
	p.fs.resetTrace()
	p.open()
}

// logFiles returns the commit log's files.
func (p *pair) logFiles() []string {
	fs, _ := filepath.Glob(filepath.Join(p.dir("log"), "sq-*.log"))
	return fs
}

// A checkpoint whose directory fsync failed renamed the snapshot without
// making the rename durable; the process dies. The reopen finds the new
// snapshot covering every record and nothing to apply, but it must still
// fsync the directory before it deletes the logs: otherwise a power loss
// brings back the old snapshot with the acknowledged writes gone from the
// logs.
func TestCrashDirFsyncFailedDuringCheckpointThenReopen(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("acked")); err != nil {
		t.Fatal(err)
	}
	r := p.fs.armOnce("syncdir", "victim", syscall.EIO)
	if err := p.victim.Compact([]byte("f")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("compact: %v", err)
	}
	if p.fs.hits(r) != 1 {
		t.Fatal("the directory fsync never failed")
	}
	old := p.logFiles()
	p.crashAndReopen()
	if got := get(t, p.victim, "f"); got != "acked" {
		t.Fatalf("got %q", got)
	}
	tr := p.fs.traced()
	dirSync := indexOf(tr, "syncdir ", "victim")
	drop := indexOf(tr, "remove ", filepath.Base(old[0]))
	if drop < 0 {
		t.Fatalf("the reopen did not drop the old log; trace %q", tr)
	}
	if dirSync < 0 || dirSync > drop {
		t.Fatalf("the old log was deleted before the data directory was fsynced; trace %q", tr)
	}
}

// The same failure, with the store running on: the generation holding the
// phext's records must outlive a rotation until a checkpoint's rename is
// durable, and a crash then still recovers every acknowledged write.
func TestCrashCheckpointDirFsyncFailedThenRotation(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("acked")); err != nil {
		t.Fatal(err)
	}
	p.fs.armOnce("syncdir", "victim", syscall.EIO)
	if err := p.victim.Compact([]byte("f")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("compact: %v", err)
	}
	// The rotation checkpoints the phext again: this time the rename is
	// durable and the old generation may go. Make that one fail too.
	p.fs.arm("syncdir", "victim", syscall.EIO)
	if err := store.Rotate(p.s); !errors.Is(err, syscall.EIO) {
		t.Fatalf("rotate: %v", err)
	}
	// The old generation may go only because the phext's records in it
	// were carried into the current one (review 14, F8): the crash below
	// checks that nothing was lost.
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("next")); err != nil {
		t.Fatal(err)
	}
	p.crashAndReopen()
	if got := get(t, p.victim, "f"); got != "acked\x17next" {
		t.Fatalf("after the crash got %q", got)
	}
	// With the fault gone a rotation drops every old generation.
	if _, err := p.victim.Insert([]byte("f"), c9(3), []byte("more")); err != nil {
		t.Fatal(err)
	}
	if err := store.Rotate(p.s); err != nil {
		t.Fatal(err)
	}
	if fs := p.logFiles(); len(fs) != 1 {
		t.Fatalf("logs after a clean rotation: %q", fs)
	}
}

// The reopen after the crash cannot fsync the victim's directory either:
// the victim's phext refuses to open (its records are kept, carried into
// the new generation), the bystander works, and a later reopen with the
// fault gone restores it.
func TestCrashDirFsyncStillFailingAtReopen(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	for _, ten := range []*store.Tenant{p.victim, p.bystander} {
		if _, err := ten.Insert([]byte("f"), c9(1), []byte("acked")); err != nil {
			t.Fatal(err)
		}
	}
	store.Crash(p.s)
	p.s = nil
	p.fs.arm("syncdir", "victim", syscall.EIO)
	p.open()
	if _, err := p.victim.AppendGet(nil, []byte("f")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("victim opened although its recovery failed: %v", err)
	}
	if got := get(t, p.bystander, "f"); got != "acked" {
		t.Fatalf("bystander got %q", got)
	}
	if _, err := p.bystander.Insert([]byte("f"), c9(2), []byte("on")); err != nil {
		t.Fatal(err)
	}
	// Close cannot empty the logs (a phext was not restored); the next
	// open replays them.
	p.reopen()
	if got := get(t, p.victim, "f"); got != "acked" {
		t.Fatalf("victim after the fault cleared: %q", got)
	}
	if got := get(t, p.bystander, "f"); got != "acked\x17on" {
		t.Fatalf("bystander after reopen: %q", got)
	}
}

// A rotation (or close) racing the everysec syncer: the syncer has taken
// the log file and is about to fsync it when the rotation closes it. The
// rotation must fsync the file itself; the syncer's "file already closed"
// is not a durable fsync.
func TestCrashCloseRacesEverysecSyncer(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityEverySec, SyncInterval: 2 * time.Millisecond})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := p.victim.Sync(); err != nil {
		t.Fatal(err)
	}
	g := p.fs.gateSync(logMatch)
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
	case <-time.After(30 * time.Second):
		t.Fatal("the syncer never fsynced the dirty log")
	}
	old := p.logFiles()[0]
	p.fs.resetTrace()
	done := make(chan error, 1)
	go func() { done <- store.Rotate(p.s) }()
	sqtest.CheckFor(t, 30*time.Second, "the rotation's own fsync of the old file", func() bool {
		return indexOf(p.fs.traced(), "sync ", old) >= 0
	})
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.crashAndReopen()
	if got := get(t, p.victim, "f"); got != "first\x17acked" {
		t.Fatalf("after the crash got %q", got)
	}
}

// A store whose tenants are all in mode "no" creates its log files; a
// tenant then switches to "always". Its first acknowledged write must not
// depend on a log file whose directory entry was never made durable: every
// log file's entry is fsynced when the file is created, whatever the mode.
func TestCrashNoToAlwaysFsyncsDirectory(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityNo})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("lazy")); err != nil {
		t.Fatal(err)
	}
	p.fs.resetTrace()
	if err := store.Rotate(p.s); err != nil { // a new log file, in mode no
		t.Fatal(err)
	}
	if _, err := p.s.AddTenant(store.TenantConfig{Name: "victim", DataDir: p.dir("victim"), Durability: store.DurabilityAlways}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("durable")); err != nil {
		t.Fatal(err)
	}
	// The new file's entry is fsynced before the file takes any record:
	// between its creation and its second write (the first is its header).
	tr := p.fs.traced()
	created := indexOf(tr, "open ", "-w.log")
	if created < 0 {
		t.Fatalf("no log file created; trace %q", tr)
	}
	name := strings.TrimPrefix(tr[created], "open ")
	writes := 0
	for _, e := range tr[created:] {
		if e == "syncdir "+p.dir("log") {
			return
		}
		if e == "write "+name {
			if writes++; writes == 2 {
				break
			}
		}
	}
	t.Fatalf("a record went to a log file whose directory entry was not fsynced yet; trace %q", tr)
}

// After a failed fsync the page cache is not trusted: the syncer's failure
// makes the store start a new log file (a new inode) and checkpoint every
// phext with records in the old one from memory (the snapshot holds the
// write whose fsync failed, acknowledged before it), then delete the old
// file, instead of trusting what the cache shows.
func TestCrashFailedFsyncRewritesFromMemory(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityEverySec, SyncInterval: 2 * time.Millisecond})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("base")); err != nil {
		t.Fatal(err)
	}
	if err := p.victim.Sync(); err != nil { // clean before the fault is armed
		t.Fatal(err)
	}
	old := p.logFiles()
	p.fs.armOnce("sync", logMatch, syscall.EIO)
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte(" acked")); err != nil {
		t.Fatal(err)
	}
	sqtest.CheckFor(t, 30*time.Second, "the failed fsync and the repair", func() bool {
		return p.s.Stats().Rewrites >= 1 && p.victim.Sync() == nil
	})
	snap, err := os.ReadFile(filepath.Join(p.dir("victim"), "f.phext"))
	if err != nil || string(snap) != "base acked" {
		t.Fatalf("snapshot after the repair: %q %v", snap, err)
	}
	if _, err := os.Stat(old[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the log whose fsync failed is still there: %v", err)
	}
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("next")); err != nil {
		t.Fatal(err)
	}
	p.crashAndReopen()
	if got := get(t, p.victim, "f"); got != "base acked\x17next" {
		t.Fatalf("after the crash got %q", got)
	}
}
