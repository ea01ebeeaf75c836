package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// traceFS is the OS (without syncfs: the per-file fallback) recording the
// order of the durable steps; rename of a path containing failRename
// fails with EIO.
type traceFS struct {
	osFS
	mu         sync.Mutex
	ops        []string
	failRename string
}

type traceFile struct {
	File
	fs   *traceFS
	path string
}

// OpenFSSync: not an FSSyncer (the method set of osFS would make it one).
func (*traceFS) OpenFSSync(string) (FSSync, error) { return nil, errNoFSSync }

func (f *traceFS) add(op string) {
	f.mu.Lock()
	f.ops = append(f.ops, op)
	f.mu.Unlock()
}

func (f *traceFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fl, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &traceFile{File: fl, fs: f, path: name}, nil
}

func (f *traceFile) Sync() error {
	f.fs.add("sync " + f.path)
	return f.File.Sync()
}

func (f *traceFS) Rename(o, n string) error {
	if f.failRename != "" && strings.Contains(n, f.failRename) {
		return &os.PathError{Op: "rename", Path: n, Err: syscall.EIO}
	}
	f.add("rename " + n)
	return f.osFS.Rename(o, n)
}

func (f *traceFS) SyncDir(dir string) error {
	f.add("syncdir " + dir)
	return f.osFS.SyncDir(dir)
}

func (f *traceFS) trace() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// dirtyWorld opens a store on root with tenants×per phexts, each written
// once and left dirty (records in the log, no checkpoint).
func dirtyWorld(t *testing.T, root string, fsys FS, tenants, per int) *Store {
	t.Helper()
	s, err := Open(&Options{Logger: discardLogger(), FS: fsys, LogDir: filepath.Join(root, "log"), Durability: DurabilityNo})
	if err != nil {
		t.Fatal(err)
	}
	for i := range tenants {
		ten, err := s.AddTenant(TenantConfig{Name: "t" + strconv.Itoa(i), DataDir: filepath.Join(root, "d"+strconv.Itoa(i))})
		if err != nil {
			t.Fatal(err)
		}
		for k := range per {
			if _, err := ten.Insert([]byte("p"+strconv.Itoa(k)), coord(1), []byte(strconv.Itoa(i)+"/"+strconv.Itoa(k))); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.dmu.Lock()
	n := len(s.dirtyP)
	s.dmu.Unlock()
	if n != tenants*per {
		t.Fatalf("%d dirty phexts, want %d", n, tenants*per)
	}
	return s
}

// checkWorld opens root again and checks every phext of dirtyWorld, and
// that no temp file is left; it returns the log records replayed.
func checkWorld(t *testing.T, root string, tenants, per int) {
	t.Helper()
	s, err := Open(&Options{Logger: discardLogger(), LogDir: filepath.Join(root, "log")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range tenants {
		ten, err := s.AddTenant(TenantConfig{Name: "t" + strconv.Itoa(i), DataDir: filepath.Join(root, "d"+strconv.Itoa(i))})
		if err != nil {
			t.Fatal(err)
		}
		for k := range per {
			if got, want := mustSelect(t, ten, "p"+strconv.Itoa(k), coord(1)), strconv.Itoa(i)+"/"+strconv.Itoa(k); got != want {
				t.Fatalf("tenant %d phext %d: %q, want %q", i, k, got, want)
			}
		}
	}
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, tmpExt) {
			t.Errorf("temp file left: %s", path)
		}
		return nil
	})
}

// TestCloseBatchesCheckpoints: Close checkpoints every dirty phext with a
// constant number of syncs (one syncfs per step and one log fsync for all
// checkpoint records), not three fsyncs each; the next Open finds the
// snapshots complete and the log empty.
func TestCloseBatchesCheckpoints(t *testing.T) {
	const tenants, per = 40, 5
	root := t.TempDir()
	s := dirtyWorld(t, root, nil, tenants, per)
	before := s.Stats().Fsyncs
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	// Where syncfs is not trusted (an old kernel, overlayfs: see
	// syncfsTrusted) the batch fsyncs each file.
	h, err := osFS{}.OpenFSSync(root)
	if err == nil {
		h.Close()
		if n := st.Fsyncs - before; n > 8 {
			t.Errorf("Close made %d fsyncs for %d dirty phexts, want a constant few", n, tenants*per)
		}
	} else {
		t.Logf("no syncfs on %s (%v): the batch fsyncs each file", root, err)
	}
	if st.Compactions != tenants*per || st.CompactionFailures != 0 {
		t.Errorf("checkpoints %d (failed %d), want %d", st.Compactions, st.CompactionFailures, tenants*per)
	}
	logs, _ := filepath.Glob(filepath.Join(root, "log", "*.log"))
	for _, l := range logs {
		for i := range tenants {
			if r := LogRecords(l, filepath.Join(root, "d"+strconv.Itoa(i)), "p0"); len(r) > 0 {
				t.Errorf("%s still holds records of tenant %d", l, i)
			}
		}
	}
	checkWorld(t, root, tenants, per)
}

// TestCloseBatchOrderFallback: on an FS without syncfs the batch fsyncs
// every temp file, then logs all checkpoint records with one log fsync,
// only then renames, and fsyncs each data dir once after its renames.
func TestCloseBatchOrderFallback(t *testing.T) {
	const tenants, per = 6, 3
	root := t.TempDir()
	tfs := &traceFS{}
	s := dirtyWorld(t, root, tfs, tenants, per)
	start := len(tfs.trace())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tr := tfs.trace()[start:]
	var tmpSyncs, logSyncs, renames, dirSyncs int
	firstRename, lastTmpSync, firstLogSync, firstDirSync := -1, -1, -1, -1
	for i, op := range tr {
		switch {
		case strings.HasPrefix(op, "sync ") && strings.HasSuffix(op, tmpExt):
			tmpSyncs++
			lastTmpSync = i
		case strings.HasPrefix(op, "sync ") && strings.HasSuffix(op, ".log"):
			logSyncs++
			if firstLogSync < 0 {
				firstLogSync = i
			}
		case strings.HasPrefix(op, "rename ") && strings.HasSuffix(op, snapExt):
			renames++
			if firstRename < 0 {
				firstRename = i
			}
		case strings.HasPrefix(op, "syncdir ") && !strings.HasSuffix(op, "log"):
			dirSyncs++
			if firstDirSync < 0 {
				firstDirSync = i
			}
		}
	}
	if tmpSyncs != tenants*per || renames != tenants*per || dirSyncs != tenants {
		t.Errorf("%d temp fsyncs, %d renames, %d data dir fsyncs; want %d, %d, %d", tmpSyncs, renames, dirSyncs, tenants*per, tenants*per, tenants)
	}
	if !(lastTmpSync < firstLogSync && firstLogSync < firstRename && firstRename < firstDirSync) {
		t.Errorf("order: last temp fsync %d, first log fsync %d, first rename %d, first dir fsync %d\n%s",
			lastTmpSync, firstLogSync, firstRename, firstDirSync, strings.Join(tr, "\n"))
	}
	if logSyncs > 3 {
		t.Errorf("%d log fsyncs, want one for the checkpoint records (and the log's end)", logSyncs)
	}
	checkWorld(t, root, tenants, per)
}

// TestCloseBatchRenameFails: one phext's rename fails: Close reports it,
// the others are checkpointed, and the next Open restores the failed one
// from the log records Close kept.
func TestCloseBatchRenameFails(t *testing.T) {
	const tenants, per = 4, 3
	root := t.TempDir()
	tfs := &traceFS{}
	s := dirtyWorld(t, root, tfs, tenants, per)
	tfs.failRename = filepath.Join("d2", "p1"+snapExt)
	err := s.Close()
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "p1") {
		t.Fatalf("close: %v, want the EIO of d2/p1", err)
	}
	if st := s.Stats(); st.CompactionFailures != 1 || st.Compactions != tenants*per-1 {
		t.Errorf("checkpoints %d, failed %d", st.Compactions, st.CompactionFailures)
	}
	checkWorld(t, root, tenants, per)
}

// TestCloseBatchCrashBeforeRenames: a crash after the batch logged its
// checkpoint records but before any rename (the disk then holds the temp
// files, the old snapshots and every record): the next Open restores every
// phext. The disk state is captured at that point and put back after
// Close, as a kill -9 there would leave it (everything was written).
func TestCloseBatchCrashBeforeRenames(t *testing.T) {
	const tenants, per = 5, 4
	root := t.TempDir()
	s := dirtyWorld(t, root, nil, tenants, per)
	var saved map[string][]byte
	checkpointHook = func(*pfile) {
		if saved == nil {
			saved = captureTree(t, root)
		}
	}
	defer func() { checkpointHook = nil }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkpointHook = nil
	if saved == nil {
		t.Fatal("the hook never ran")
	}
	restoreTree(t, root, saved)
	checkWorld(t, root, tenants, per)
}

// captureTree reads every regular file under root (but the LOCK).
func captureTree(t *testing.T, root string) map[string][]byte {
	m := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || d.Name() == "LOCK" {
			return err
		}
		b, err := os.ReadFile(path)
		m[path] = b
		return err
	})
	if err != nil {
		t.Error(err)
	}
	return m
}

// restoreTree makes the regular files under root exactly m.
func restoreTree(t *testing.T, root string, m map[string][]byte) {
	t.Helper()
	var del []string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() != "LOCK" {
			if _, ok := m[path]; !ok {
				del = append(del, path)
			}
		}
		return nil
	})
	for _, p := range del {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	for p, b := range m {
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkClose10KDirty: Store.Close of 10,000 tenants with one dirty
// phext each (20 scrolls of 1 KiB, written since their last checkpoint),
// the shutdown of `sq bench --tenants 10000`. SQ_BENCH_BIG=1.
func BenchmarkClose10KDirty(b *testing.B) {
	if !bigEnabled() {
		b.Skip("set SQ_BENCH_BIG=1")
	}
	const n = 10000
	val := []byte(strings.Repeat("x", 1024))
	for range b.N {
		b.StopTimer()
		root := b.TempDir()
		s, err := Open(&Options{Logger: discardLogger(), LogDir: filepath.Join(root, "log"), MaxOpenPhexts: 2 * n})
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			ten, err := s.AddTenant(TenantConfig{Name: "t" + strconv.Itoa(i), DataDir: filepath.Join(root, "d"+strconv.Itoa(i))})
			if err != nil {
				b.Fatal(err)
			}
			for k := range 20 {
				if _, err := ten.Update(nil, coord(uint16(k+1)), val); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StartTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
