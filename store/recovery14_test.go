package store_test

// Issue 14 review findings (shared commit log): each test failed on 5b9942c.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/store"
)

// readdVictim registers the victim tenant again after RemoveTenant (what
// an admin "enable" does after a "disable").
func (p *pair) readdVictim(d store.Durability) {
	p.t.Helper()
	v, err := p.s.AddTenant(store.TenantConfig{Name: "victim", DataDir: p.dir("victim"), Durability: d})
	if err != nil {
		p.t.Fatal(err)
	}
	p.victim = v
}

// Review 14, finding 1. A disabled tenant's data dir is self-contained (the docs say
// it may be backed up, restored or moved). Restore an older backup of a
// phext while the tenant is disabled, enable it, write (always: fsynced and
// acknowledged), crash. The log still holds the CHECKPOINT record the
// disable wrote, naming the snapshot identity that the restore replaced:
// recovery calls the restored snapshot "none of those its checkpoint
// records name", refuses the phext with ErrCorrupt and carries its records
// (and that stale CHECKPOINT record) into every new generation, so the
// phext never opens again and the acknowledged write is unreachable.
func TestRestoredSnapshotWhileDisabledThenCrash(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("live")); err != nil {
		t.Fatal(err)
	}
	// Disable: the phext is checkpointed, its dir self-contained.
	if err := p.s.RemoveTenant("victim"); err != nil {
		t.Fatal(err)
	}
	// Restore a backup (or a document edited with another phext tool):
	// a snapshot no checkpoint record of this log names.
	snap := filepath.Join(p.dir("victim"), "f.phext")
	if err := os.WriteFile(snap, []byte("restored"), 0o640); err != nil {
		t.Fatal(err)
	}
	p.readdVictim(store.DurabilityAlways)
	if got := get(t, p.victim, "f"); got != "restored" {
		t.Fatalf("restored phext reads %q", got)
	}
	if _, err := p.victim.Insert([]byte("f"), c9(3), []byte("acked")); err != nil {
		t.Fatal(err)
	}
	p.crashAndReopen()
	b, err := p.victim.AppendGet(nil, []byte("f"))
	if err != nil {
		t.Fatalf("after the crash the restored phext refuses to open (an fsynced, acknowledged write unreachable): %v", err)
	}
	if string(b) != "restored\x17\x17acked" {
		t.Fatalf("after the crash got %q", b)
	}
	// And it must not stay refused across further restarts.
	p.reopen()
	if _, err := p.victim.AppendGet(nil, []byte("f")); err != nil {
		t.Fatalf("second reopen: %v", err)
	}
}

// Review 14, finding 1c. The restored backup is a snapshot an earlier checkpoint
// wrote: recovery takes that old checkpoint's coverage and applies every
// record after it, so a write the restore removed ("b") comes back after
// a crash, merged into the restored document.
func TestRestoredOlderCheckpointResurrectsWrites(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := p.victim.Compact([]byte("f")); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(p.dir("victim"), "f.phext")
	backup, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := p.s.RemoveTenant("victim"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snap, backup, 0o640); err != nil {
		t.Fatal(err)
	}
	p.readdVictim(store.DurabilityAlways)
	if _, err := p.victim.Insert([]byte("f"), c9(3), []byte("c")); err != nil {
		t.Fatal(err)
	}
	want := get(t, p.victim, "f") // "a\x17\x17c": b went with the restore
	p.crashAndReopen()
	if got := get(t, p.victim, "f"); got != want {
		t.Fatalf("after the crash got %q, acknowledged state was %q", got, want)
	}
}

// Review 14, finding 1b. Same with the phext deleted while the tenant was disabled
// (e.g. a tenant move that dropped it): the first write recreates an empty
// snapshot, the crash makes the phext refuse to open for good.
func TestDeletedSnapshotWhileDisabledThenCrash(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := p.s.RemoveTenant("victim"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(p.dir("victim"), "f.phext")); err != nil {
		t.Fatal(err)
	}
	p.readdVictim(store.DurabilityAlways)
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("acked")); err != nil {
		t.Fatal(err)
	}
	p.crashAndReopen()
	b, err := p.victim.AppendGet(nil, []byte("f"))
	if err != nil {
		t.Fatalf("after the crash: %v", err)
	}
	if string(b) != "acked" {
		t.Fatalf("after the crash got %q, want %q", b, "acked")
	}
}

// Review 14, finding 5. A tenant's data dir is deleted after a crash (the tenant was
// removed from the config; design14: "a dir that no longer exists: skip
// its records with a warning"). Recovery instead carries its records into
// every new generation, forever, and remembers the phext as unrecovered.
// When the path is used again (a new tenant, a recycled name), the new
// tenant's phext refuses to open; after the next restart the deleted
// tenant's records are replayed into the new tenant's phext: its data
// leaks into another tenant.
func TestDeletedDirRecordsLeakIntoNewTenant(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("old tenant's secret")); err != nil {
		t.Fatal(err)
	}
	store.Crash(p.s)
	p.s = nil
	if err := os.RemoveAll(p.dir("victim")); err != nil {
		t.Fatal(err)
	}
	// The store restarts without that tenant...
	o := p.opts
	o.FS, o.LogDir, o.Logger = p.fs, p.dir("log"), quiet()
	s, err := store.Open(&o)
	if err != nil {
		t.Fatal(err)
	}
	// ...and later a new tenant gets the same path.
	nt, err := s.AddTenant(store.TenantConfig{Name: "new", DataDir: p.dir("victim")})
	if err != nil {
		t.Fatal(err)
	}
	_, rerr := nt.Insert([]byte("f"), c9(1), []byte("mine"))
	if err := s.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	p.open() // victim is re-added on the same path: "the new tenant" now
	got, err := p.victim.AppendGet(nil, []byte("f"))
	if rerr != nil || err != nil || string(got) != "mine" {
		t.Fatalf("new tenant on a reused path: write err %v; after a restart reads %q (err %v), want %q", rerr, got, err, "mine")
	}
}

// Review 14, finding 10 (docs/API). Tenant.Sync promises "every write of the tenant
// acknowledged so far durable". When a rotation closes the file while Sync
// is in its fsync and the rotation's own fsync of that file failed (and the
// repair cannot finish), Sync's "file already closed" is returned as
// success: the caller is told its writes are durable when they are not.
//
// The failed fsync kicks a background repair (a rotation that logs the
// phext from memory as a fsynced PUT and clears the suspect state); if it
// finished before Sync's last check, nil would be correct. So the next
// generation cannot be created until Sync returned (the repair cannot
// finish: Sync must fail); then the fault clears, the repair completes,
// and only now Sync returns nil, and the write survives a crash.
func TestTenantSyncClosedFileIsNotSuccess(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityEverySec, SyncInterval: time.Hour})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	cur := filepath.Base(p.logFiles()[0])
	var gen uint64
	if _, err := fmt.Sscanf(cur, "sq-%016x-", &gen); err != nil {
		t.Fatalf("log file name %q: %v", cur, err)
	}
	g := p.fs.gateSync(cur)
	syncErr := make(chan error, 1)
	go func() { syncErr <- p.victim.Sync() }()
	<-g.entered
	p.fs.arm("rename", "victim", syscall.ENOSPC)        // the repair's checkpoint fails
	closeFail := p.fs.armOnce("sync", cur, syscall.EIO) // the rotation's fsync of the old file fails
	// Store.Rotate creates generation gen+1; the repair it kicks needs
	// gen+2, which cannot be created.
	p.fs.arm("open", fmt.Sprintf("sq-%016x-", gen+2), syscall.ENOSPC)
	rotated := make(chan struct{})
	go func() {
		defer close(rotated)
		_ = store.Rotate(p.s)
	}()
	// Sync's fsync ends once the rotation closed the file: the rotation's
	// checkpoint record waits for it (a checkpoint record's fsync runs
	// alone).
	sqtest.CheckFor(t, 30*time.Second, "the rotation's failed fsync of the old file", func() bool {
		return p.fs.hits(closeFail) > 0
	})
	close(g.release)
	<-rotated
	if err := <-syncErr; err == nil {
		t.Fatal("Tenant.Sync returned nil although the fsync of the file holding the write failed and the repair cannot finish")
	}
	// The fault clears: the repair finishes, Sync succeeds, and the write
	// is durable.
	p.fs.clear()
	if err := store.Rotate(p.s); err != nil {
		t.Fatalf("repair after the fault cleared: %v", err)
	}
	if err := p.victim.Sync(); err != nil {
		t.Fatalf("Tenant.Sync after the repair: %v", err)
	}
	p.crashAndReopen()
	if got := get(t, p.victim, "f"); got != "x" {
		t.Fatalf("after Sync returned nil and a crash, f reads %q, want %q", got, "x")
	}
}

// Review 14, finding 11. Recovery rewrites each touched snapshot (rename, dir fsync)
// before the new generation that says what those snapshots cover exists
// (openLogs: recoverLogs, then startGen). A crash (or, here, a failure) in
// between leaves the old logs with the new snapshots and no CHECKPOINT
// record naming them: the next Open applies every record a second time
// (a phext without CHECKPOINT records: coverage 0), so an INSERT is
// duplicated; a phext with CHECKPOINT records refuses to open instead.
func TestCrashDuringRecoveryAppliesTwice(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("once")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.bystander.Insert([]byte("g"), c9(1), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := p.bystander.Compact([]byte("g")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.bystander.Insert([]byte("g"), c9(1), []byte("c")); err != nil {
		t.Fatal(err)
	}
	store.Crash(p.s)
	p.s = nil
	// Recovery gets as far as rewriting the snapshots, then the new
	// generation cannot be created (ENOSPC; a kill -9 at that point is
	// the same).
	p.fs.arm("open", "0000000000000002-w.log", syscall.ENOSPC)
	o := p.opts
	o.FS, o.LogDir, o.Logger = p.fs, p.dir("log"), quiet()
	if s, err := store.Open(&o); err == nil {
		s.Close()
		t.Fatal("the injected fault did not fail Open")
	}
	p.fs.clear()
	p.open()
	if got, err := p.victim.AppendGet(nil, []byte("f")); err != nil || string(got) != "once" {
		t.Errorf("victim after a failed recovery and a second Open: %q, %v (want %q)", got, err, "once")
	}
	if got, err := p.bystander.AppendGet(nil, []byte("g")); err != nil || string(got) != "bc" {
		t.Errorf("bystander after a failed recovery and a second Open: %q, %v (want %q)", got, err, "bc")
	}
}

// Review 14, finding 14. Tenant.write calls Store.repair before anything else, also
// on a closed Store: a write after Close while the log is suspect runs a
// whole rotation on the closed store (creates a log file in a log dir whose
// lock Close released, leaks its descriptor, deletes older generations).
// A second Store opened on that dir meanwhile would have its current file
// truncated (same generation number, O_TRUNC).
func TestWriteAfterCloseRotates(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	p.fs.arm("rename", "victim", syscall.ENOSPC)
	p.fs.armOnce("sync", logMatch, syscall.EIO)
	if _, err := p.bystander.Insert([]byte("g"), c9(1), []byte("y")); err == nil {
		t.Fatal("no fsync failure")
	}
	s := p.s
	_ = s.Close()
	p.s = nil
	before := p.logFiles()
	if _, err := p.bystander.Insert([]byte("g"), c9(1), []byte("after close")); err == nil {
		t.Fatal("write after Close succeeded")
	}
	if after := p.logFiles(); !slices.Equal(before, after) {
		t.Fatalf("a write after Close changed the log dir: %q → %q", before, after)
	}
}

// Review 14, finding 15. If Open cannot delete the old logs (here: the log dir's
// fsync after the removal fails once), the recovery's CHECKPOINT records
// (s.recCkpts) are kept in memory and written again at the start of every
// later generation, naming the snapshot recovery wrote. Once the phext was
// checkpointed again and the generation holding that newer record was
// deleted, the stale record is the only one left: after the next crash
// recovery calls the (correct) snapshot "none of those its checkpoint
// records name" and the phext refuses to open.
func TestStaleRecoveryCheckpointOutlivesItsSnapshot(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("a")); err != nil {
		t.Fatal(err)
	}
	store.Crash(p.s)
	p.s = nil
	r := p.fs.armOnce("syncdir", p.dir("log"), syscall.EIO)
	p.fs.mu.Lock()
	r.after = 1 // the new generation's own dir fsync passes; the one after removing the old logs fails
	p.fs.mu.Unlock()
	o := p.opts
	o.FS, o.LogDir, o.Logger = p.fs, p.dir("log"), quiet()
	s, err := store.Open(&o)
	if err != nil {
		t.Fatal(err)
	}
	p.s = s
	if p.victim, err = s.AddTenant(store.TenantConfig{Name: "victim", DataDir: p.dir("victim")}); err != nil {
		t.Fatal(err)
	}
	if p.bystander, err = s.AddTenant(store.TenantConfig{Name: "bystander", DataDir: p.dir("bystander")}); err != nil {
		t.Fatal(err)
	}
	if p.fs.hits(r) != 1 {
		t.Fatal("the log dir fsync after removing the old logs did not fail")
	}
	if _, err := p.victim.Insert([]byte("f"), c9(2), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := p.victim.Compact([]byte("f")); err != nil {
		t.Fatal(err)
	}
	if err := store.Rotate(p.s); err != nil {
		t.Fatal(err)
	}
	p.crashAndReopen()
	if got, err := p.victim.AppendGet(nil, []byte("f")); err != nil || string(got) != "a\x17b" {
		t.Fatalf("after the crash: %q, %v (want %q)", got, err, "a\x17b")
	}
}

// Review 14, finding 13. One transient directory-fsync failure while a phext is
// closed (LRU eviction, disable/reload) makes that phext refuse to open for
// the rest of the process (days, until a restart), although the fault is
// gone and the records it needs are in the log.
func TestTransientCloseFailureRefusesUntilRestart(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("acked")); err != nil {
		t.Fatal(err)
	}
	p.fs.armOnce("syncdir", "victim", syscall.EIO)
	_ = p.s.RemoveTenant("victim") // its close's checkpoint fails once
	p.readdVictim(store.DurabilityAlways)
	if got, err := p.victim.AppendGet(nil, []byte("f")); err != nil || string(got) != "acked" {
		t.Fatalf("after a transient fault during close the phext reads %q, %v", got, err)
	}
}

// Review 14, finding 8. One tenant whose checkpoints fail (its data dir's disk is
// full or read-only: a per-tenant fault, the others are healthy) holds the
// oldest generation, and generations are deleted only below the oldest one
// any phext holds (and not at all when a rotation's checkpoint failed): the
// shared log then grows without bound for every tenant, each rotation
// adding a file, until the log disk is full and every tenant's writes fail.
func TestOneTenantsFailingCheckpointsGrowTheSharedLog(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityEverySec})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	p.fs.arm("rename", "victim", syscall.ENOSPC) // its checkpoints fail from now on
	for i := range 10 {
		if _, err := p.bystander.Insert([]byte("g"), c9(uint16(i+1)), []byte("y")); err != nil {
			t.Fatal(err)
		}
		_ = store.Rotate(p.s)
	}
	if fs := p.logFiles(); len(fs) > 3 {
		t.Fatalf("%d log files after 10 rotations: one tenant's failing checkpoint keeps the whole shared log", len(fs))
	}
}

// Review 14, finding 9. After one failed log fsync (a transient fault of the log's
// disk) writes are refused store-wide until the repair checkpointed every
// dirty phext; a phext whose own data dir refuses the checkpoint (another
// tenant's full disk) keeps the repair failing, so every tenant's writes
// stay refused although the log's disk is healthy again.
func TestRepairBlockedByOneTenantsDisk(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	if _, err := p.victim.Insert([]byte("f"), c9(1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	p.fs.arm("rename", "victim", syscall.ENOSPC) // the victim's disk is full
	p.fs.armOnce("sync", logMatch, syscall.EIO)  // one transient log fault
	if _, err := p.bystander.Insert([]byte("g"), c9(1), []byte("lost")); err == nil {
		t.Fatal("the injected fsync failure was not reported")
	}
	var err error
	for range 20 {
		if _, err = p.bystander.Insert([]byte("g"), c9(1), []byte("y")); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("bystander's writes still refused after the log's fault cleared, because another tenant's checkpoint fails: %v", err)
}
