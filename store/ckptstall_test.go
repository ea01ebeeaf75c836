package store

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/phext"
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

// TestCheckpointRecordFsyncAfterItsFileChanged: a checkpoint's record is
// written, and before its own fsync (syncWritten) the file it went to is
// rotated away or fails an fsync. The record counts as durable only when an
// fsync of that file covered it: when the rotation's fsync of the old file
// failed and the new file was fsynced since (the logs' write count then
// passes the record's, review14a), when another fsync of the file (the
// syncer's, an always group's) failed and a later one succeeded (the kernel
// reports a lost write-back once), or when that other fsync runs beside the
// record's own, the snapshot is not renamed in and the checkpoint fails. The store repairs
// itself and nothing acknowledged is lost: across a kill -9, and in the
// files as they are just after the next snapshot's rename with the old log
// cut to what its last good fsync covered (a power loss that takes the
// pages the failed fsync did not write).
func TestCheckpointRecordFsyncAfterItsFileChanged(t *testing.T) {
	cases := []struct {
		name string
		// during runs while the record is written and not yet fsynced;
		// after (when it returns one) once the checkpoint goes on.
		during  func(t *testing.T, db *testDB, sc *ckptScene) (after func())
		wantErr bool
	}{
		{
			name: "rotation fsyncs the old file",
			during: func(t *testing.T, db *testDB, _ *ckptScene) func() {
				rotateUnderCheckpoint(t, db)
				return nil
			},
		},
		{
			name: "rotation's fsync of the old file fails, the new file is fsynced",
			during: func(t *testing.T, db *testDB, sc *ckptScene) func() {
				sc.failOld.Store(true)
				rotateUnderCheckpoint(t, db)
				// The syncer's round: the new file's fsync succeeds and
				// the write count it vouches for passes the record's
				// (sync reports the writes the failed fsync should have
				// covered as not durable, review15b).
				w := db.Store.wlog
				if err := w.sync(); err != nil && !errors.Is(err, errLogSuspect) {
					t.Fatalf("fsync of the new file: %v", err)
				}
				if w.sgen.Load() != w.wgen.Load() {
					t.Fatal("the new file's fsync did not pass the record's write")
				}
				return nil
			},
			wantErr: true,
		},
		{
			name: "the syncer's fsync of the file fails, a later one succeeds",
			during: func(t *testing.T, db *testDB, sc *ckptScene) func() {
				sc.failOld.Store(true)
				if err := db.Store.wlog.sync(); !errors.Is(err, syscall.EIO) {
					t.Fatalf("the syncer's fsync: %v", err)
				}
				return nil
			},
			wantErr: true,
		},
		{
			name: "an always writer's group fsync of the file fails",
			during: func(t *testing.T, db *testDB, sc *ckptScene) func() {
				a, err := db.AddTenant(TenantConfig{Name: "a", DataDir: filepath.Join(db.root, "a"), Durability: DurabilityAlways})
				if err != nil {
					t.Fatal(err)
				}
				sc.failOld.Store(true)
				if _, err := a.Insert([]byte("e"), coord(1), []byte("x")); !errors.Is(err, syscall.EIO) {
					t.Fatalf("the always write: %v", err)
				}
				return nil
			},
			wantErr: true,
		},
		{
			// The kernel tells one fsync of a file about a failed
			// write-back: the syncer's, which runs (held at the gate)
			// when the record's fsync would start, gets the error for
			// the record's pages; the record's own fsync must not run
			// beside it and succeed.
			name: "the syncer's fsync of the file runs when the record's would, and fails",
			during: func(t *testing.T, db *testDB, sc *ckptScene) func() {
				sc.gateOld.Store(true)
				syncErr := make(chan error, 1)
				go func() { syncErr <- db.Store.wlog.sync() }()
				within(t, 10*time.Second, "the syncer's fsync", func() { <-sc.gateEntered })
				return func() {
					// Until the checkpoint ended, or its fsync waits
					// for the syncer's (a writer is pending on syncMu).
					w := db.Store.wlog
					within(t, 10*time.Second, "the checkpoint's fsync", func() {
						for !sc.ckptDone.Load() {
							if !w.syncMu.TryRLock() {
								return
							}
							w.syncMu.RUnlock()
							time.Sleep(time.Millisecond)
						}
					})
					close(sc.gateRelease)
					if err := <-syncErr; !errors.Is(err, syscall.EIO) {
						t.Fatalf("the syncer's fsync: %v", err)
					}
				}
			},
			wantErr: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ffs := &faultFS{}
			db := MustOpen(t, &Options{FS: ffs, Durability: DurabilityEverySec, CompactMinWAL: 1 << 40, SyncInterval: time.Hour})
			ten := db.ten
			name := []byte("d")
			// Inserts append: records applied again over a snapshot that
			// holds them would show.
			for i := range 10 {
				if _, err := ten.Insert(name, coord(uint16(i%3+1)), []byte{'a' + byte(i)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := ten.Sync(); err != nil {
				t.Fatal(err)
			}
			want := map[phext.Coordinate]string{coord(1): "adgj", coord(2): "beh", coord(3): "cfi"}
			w := db.Store.wlog
			w.mu.Lock()
			oldPath := w.path
			w.mu.Unlock()
			fi, err := os.Stat(oldPath)
			if err != nil {
				t.Fatal(err)
			}
			durableSize := fi.Size() // what the old file's last good fsync covered

			var records atomic.Int32
			var firstRenamed, imaged atomic.Bool
			sc := &ckptScene{gateEntered: make(chan struct{}), gateRelease: make(chan struct{})}
			image := t.TempDir()
			ffs.setFail(func(op, path string) error {
				switch {
				case op == "sync" && path == oldPath && sc.failOld.CompareAndSwap(true, false):
					return syscall.EIO
				case op == "sync" && path == oldPath && sc.gateOld.CompareAndSwap(true, false):
					close(sc.gateEntered)
					<-sc.gateRelease
					return syscall.EIO
				case op == "syncdir" && path == db.dir() && records.Load() > 0 && imaged.CompareAndSwap(false, true):
					// Just after the first rename since the record
					// was written: the files as a crash would find them.
					copyTree(t, db.root, image)
				}
				return nil
			})
			entered, release := make(chan struct{}), make(chan struct{})
			ckptWrittenHook = func() {
				if records.Add(1) == 1 {
					close(entered)
					<-release
				}
			}
			checkpointHook = func(*pfile) {
				if records.Load() == 1 {
					firstRenamed.Store(true)
				}
			}
			defer func() { ckptWrittenHook, checkpointHook = nil, nil }()
			var once sync.Once
			letGo := func() { once.Do(func() { close(release) }) }
			defer letGo()
			done := make(chan error, 1)
			go func() {
				err := ten.Compact(name)
				sc.ckptDone.Store(true)
				done <- err
			}()
			within(t, 10*time.Second, "the checkpoint's record", func() { <-entered })
			after := tc.during(t, db, sc)
			letGo()
			if after != nil {
				after()
			}
			err = <-done
			switch {
			case tc.wantErr && (err == nil || firstRenamed.Load()):
				t.Fatalf("checkpoint whose record an fsync may have lost: err %v, snapshot renamed in %v", err, firstRenamed.Load())
			case tc.wantErr && !errors.Is(err, errLogSuspect):
				t.Fatalf("checkpoint: %v, want the logs suspect", err)
			case !tc.wantErr && (err != nil || !firstRenamed.Load()):
				t.Fatalf("checkpoint: %v (renamed in: %v)", err, firstRenamed.Load())
			}
			// The repair (a rotation checkpointing from memory) ends; the
			// next write goes through.
			Quiesce(db.Store)
			if !imaged.Load() {
				t.Fatal("no checkpoint renamed a snapshot in")
			}
			if _, err := ten.Insert(name, coord(4), []byte("z")); err != nil {
				t.Fatal(err)
			}
			nd := reopenCrashed(t, db)
			for c, s := range want {
				if got := mustSelect(t, nd.ten, "d", c); got != s {
					t.Fatalf("after kill -9 and reopen, scroll %v: %q, want %q", c, got, s)
				}
			}
			if got := mustSelect(t, nd.ten, "d", coord(4)); got != "z" {
				t.Fatalf("after kill -9 and reopen, the write after the repair: %q", got)
			}
			if err := nd.Close(); err != nil {
				t.Fatal(err)
			}

			// The files just after the rename, the old log cut to its
			// last good fsync when an fsync of it failed.
			ents, err := os.ReadDir(db.root)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if err := os.RemoveAll(filepath.Join(db.root, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
			copyTree(t, image, db.root)
			if tc.wantErr {
				if err := os.Truncate(oldPath, durableSize); err != nil {
					t.Fatal(err)
				}
			}
			pd := &testDB{tb: t, root: db.root, opts: nd.opts}
			pd.open()
			defer pd.Close()
			for c, s := range want {
				if got := mustSelect(t, pd.ten, "d", c); got != s {
					t.Fatalf("after a power loss just after the rename, scroll %v: %q, want %q", c, got, s)
				}
			}
		})
	}
}

// ckptScene is what TestCheckpointRecordFsyncAfterItsFileChanged's cases
// arm: failOld fails the next fsync of the record's file; gateOld holds it
// at the gate (gateEntered closed) until gateRelease, then fails it.
type ckptScene struct {
	failOld, gateOld, ckptDone atomic.Bool
	gateEntered, gateRelease   chan struct{}
}

// rotateUnderCheckpoint starts a rotation while a checkpoint waits in
// ckptWrittenHook and returns once the logs switched to the new generation
// (the rotation then waits for that checkpoint to end when it checkpoints
// the same phext).
func rotateUnderCheckpoint(t *testing.T, db *testDB) {
	t.Helper()
	w := db.Store.wlog
	w.mu.Lock()
	gen := w.gen
	w.mu.Unlock()
	go func() { _ = db.Store.rotate() }()
	within(t, 10*time.Second, "the rotation's switch", func() {
		for {
			w.mu.Lock()
			g := w.gen
			w.mu.Unlock()
			if g > gen {
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// copyTree copies the regular files under src to dst (same relative
// paths).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o750)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
}
