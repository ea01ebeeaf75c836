package store

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// logSyncGate returns a faultFS hook that, while armed, holds each fsync of a
// commit log file until release is closed (entered is closed at the first)
// and then fails it with failWith (nil: the fsync goes on).
func logSyncGate(armed *atomic.Bool, entered, release chan struct{}, failWith error) func(op, path string) error {
	var once sync.Once
	return func(op, path string) error {
		if op != "sync" || !strings.HasSuffix(path, logSuffix) || !armed.Load() {
			return nil
		}
		once.Do(func() { close(entered) })
		<-release
		return failWith
	}
}

// TestCheckpointRecordFsyncLetsWritersThrough: while the fsync of a
// checkpoint's log record runs, everysec writes of the same phext are
// logged and acknowledged (before, their group waited for that fsync:
// the writers' stall of BenchmarkCheckpointStall); the checkpoint itself
// still renames its snapshot only once the record is durable, and
// everything survives a reopen.
func TestCheckpointRecordFsyncLetsWritersThrough(t *testing.T) {
	var armed atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	fs := &faultFS{fail: logSyncGate(&armed, entered, release, nil)}
	// No syncer fsync in the test's time: the only log fsync is the
	// checkpoint record's.
	db := MustOpen(t, &Options{FS: fs, Durability: DurabilityEverySec, CompactMinWAL: 1 << 40, SyncInterval: time.Hour})
	ten := db.ten
	name := []byte("d")
	for i := range 20 {
		if _, err := ten.Update(name, coord(uint16(i+1)), []byte("before")); err != nil {
			t.Fatal(err)
		}
	}
	var renamed atomic.Bool
	checkpointHook = func(*pfile) { renamed.Store(true) }
	defer func() { checkpointHook = nil }()
	var open sync.Once
	letGo := func() { open.Do(func() { armed.Store(false); close(release) }) }
	defer letGo() // a failure below must not leave Close waiting on the gate
	armed.Store(true)
	done := make(chan error, 1)
	go func() { done <- ten.Compact(name) }()
	within(t, 10*time.Second, "the checkpoint's log fsync", func() { <-entered })
	within(t, 10*time.Second, "a write during the checkpoint record's fsync", func() {
		for i := range 5 {
			if _, err := ten.Update(name, coord(uint16(i+1)), []byte("during")); err != nil {
				t.Error(err)
			}
		}
	})
	if renamed.Load() {
		t.Fatal("the snapshot was switched before its checkpoint record was durable")
	}
	letGo()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !renamed.Load() {
		t.Fatal("the checkpoint never reached its switch")
	}
	if got := mustSelect(t, ten, "d", coord(1)); got != "during" {
		t.Fatalf("scroll 1: %q", got)
	}
	db.MustReopen()
	if got := mustSelect(t, db.ten, "d", coord(5)); got != "during" {
		t.Fatalf("scroll 5 after reopen: %q", got)
	}
	if got := mustSelect(t, db.ten, "d", coord(6)); got != "before" {
		t.Fatalf("scroll 6 after reopen: %q", got)
	}
}

// TestCheckpointRecordFsyncFails: a failed fsync of the checkpoint record
// (now outside the group commit, so the record cannot be cut back) fails
// the checkpoint, keeps the old snapshot, and makes the logs suspect; the
// store repairs itself and nothing acknowledged is lost.
func TestCheckpointRecordFsyncFails(t *testing.T) {
	var armed atomic.Bool
	release := make(chan struct{})
	close(release)
	fs := &faultFS{fail: logSyncGate(&armed, make(chan struct{}), release, syscall.EIO)}
	db := MustOpen(t, &Options{FS: fs, Durability: DurabilityEverySec, CompactMinWAL: 1 << 40, SyncInterval: time.Hour})
	ten := db.ten
	name := []byte("d")
	if _, err := ten.Update(name, coord(1), []byte("one")); err != nil {
		t.Fatal(err)
	}
	snap := fileBytes(t, db.dir()+"/d.phext")
	armed.Store(true)
	err := ten.Compact(name)
	armed.Store(false)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("checkpoint with a failing record fsync: %v", err)
	}
	if got := fileBytes(t, db.dir()+"/d.phext"); !bytes.Equal(got, snap) {
		t.Fatalf("the snapshot changed: %q", got)
	}
	if db.Store.logHealthy() == nil {
		t.Fatal("the logs are not suspect after a failed fsync")
	}
	// The next write repairs (checkpoints from memory) and goes on.
	if _, err := ten.Update(name, coord(2), []byte("two")); err != nil {
		t.Fatal(err)
	}
	db.MustReopen()
	if got := mustGet(t, db.ten, "d"); got != "one\x17two" {
		t.Fatalf("after reopen: %q", got)
	}
}
