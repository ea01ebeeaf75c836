package store

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Review 15: tests that try to break the background evictor and the
// batched close checkpoints.

// failTmpFS is the OS whose snapshot temp files cannot be created while
// fail is set (the data dir's disk full): every checkpoint fails at once.
// attempts counts the temp files the store tried to create.
type failTmpFS struct {
	osFS
	fail     atomic.Bool
	attempts atomic.Int64
}

func (f *failTmpFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if strings.HasSuffix(name, tmpExt) {
		f.attempts.Add(1)
		if f.fail.Load() {
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
		}
	}
	return f.osFS.OpenFile(name, flag, perm)
}

// TestEvictorBacksOffFailingCheckpoints: dirty phexts past the cap whose checkpoints
// keep failing (disk full) are retried by the evictor, but not every
// 50 ms: each try serializes the whole phext into a temp file (up to
// MaxSnapshot) and logs a warning. Once the disk has room again the set
// shrinks back to the cap and nothing is lost.
func TestEvictorBacksOffFailingCheckpoints(t *testing.T) {
	const capN, n = 2, 6
	fs := &failTmpFS{}
	fs.fail.Store(true)
	db := MustOpen(t, &Options{MaxOpenPhexts: capN, Durability: DurabilityEverySec, FS: fs})
	for i := range n {
		if _, err := db.ten.Insert([]byte("p"+strconv.Itoa(i)), coord(1), []byte("v"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	tries := fs.attempts.Load()
	// n-capN phexts waiting; one try each per round. A round every 50 ms
	// is 40 rounds in 2 s; backing off (doubling the pause) is about 6.
	if limit := int64(12 * (n - capN)); tries > limit {
		t.Errorf("%d checkpoint attempts of %d failing phexts in 2 s, want at most %d (a retry storm: a whole snapshot write and a warning each)",
			tries, n-capN, limit)
	}
	fs.fail.Store(false)
	waitOpenAtMost(t, db.Store, capN)
	db.MustReopen()
	for i := range n {
		if got := mustSelect(t, db.ten, "p"+strconv.Itoa(i), coord(1)); got != "v"+strconv.Itoa(i) {
			t.Errorf("p%d: %q", i, got)
		}
	}
}

// failOnceGateFS is the OS where the next fsync of a snapshot temp file
// (armed) waits until release is closed and then fails with EIO.
type failOnceGateFS struct {
	osFS
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

type failOnceGateFile struct {
	File
	fs   *failOnceGateFS
	path string
}

func (f *failOnceGateFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fl, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &failOnceGateFile{File: fl, fs: f, path: name}, nil
}

func (f *failOnceGateFile) Sync() error {
	if strings.HasSuffix(f.path, tmpExt) && f.fs.armed.CompareAndSwap(true, false) {
		close(f.fs.entered)
		<-f.fs.release
		return &os.PathError{Op: "fsync", Path: f.path, Err: syscall.EIO}
	}
	return f.File.Sync()
}

// TestCloseTakesFailedInflightCheckpoint: Close finds a phext whose
// checkpoint (Compact, the evictor, a background compaction) is running:
// its records are frozen, so it does not look dirty. When that checkpoint
// fails, Close must still checkpoint the phext in its batch (the disk is
// fine): a clean Close, an empty log, nothing to replay.
func TestCloseTakesFailedInflightCheckpoint(t *testing.T) {
	fs := &failOnceGateFS{entered: make(chan struct{}), release: make(chan struct{})}
	db := MustOpen(t, &Options{Durability: DurabilityEverySec, FS: fs})
	if _, err := db.ten.Insert([]byte("p"), coord(1), []byte("acked")); err != nil {
		t.Fatal(err)
	}
	fs.armed.Store(true)
	cerr := make(chan error, 1)
	go func() { cerr <- db.ten.Compact([]byte("p")) }()
	<-fs.entered
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	// Close drains the phext and decides what to checkpoint while the
	// Compact holds the frozen records.
	time.Sleep(200 * time.Millisecond)
	close(fs.release)
	if err := <-cerr; err == nil {
		t.Fatal("Compact succeeded through a failed fsync")
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v (the batch could have checkpointed the phext)", err)
	}
	logs, _ := filepath.Glob(filepath.Join(db.root, "log", "*.log"))
	for _, l := range logs {
		if r := LogRecords(l, db.dir(), "p"); len(r) > 0 {
			t.Errorf("%s still holds %d records of p after Close", l, len(r))
		}
	}
	db.open()
	if got := mustSelect(t, db.ten, "p", coord(1)); got != "acked" {
		t.Errorf("after reopen: %q", got)
	}
}

// TestSyncfsTrusted: syncfs stands for the fsyncs of a batch only
// where it reports every error (Linux 5.17 on) and reaches the
// storage (local file systems); elsewhere the batch fsyncs each file.
func TestSyncfsTrusted(t *testing.T) {
	const (
		ext4    = 0xEF53
		xfs     = 0x58465342
		fuse    = 0x65735546
		smb2    = 0xFE534D42
		overlay = 0x794C7630
		nfs     = 0x6969
	)
	for _, c := range []struct {
		release string
		fsType  int64
		want    bool
	}{
		{"6.18.44-fc-v769", ext4, true},
		{"5.17.0", xfs, true},
		{"6.1.0-13-amd64", ext4, true},
		{"5.15.0-91-generic", ext4, false}, // syncfs drops ->sync_fs errors
		{"5.8.0", xfs, false},
		{"5.4.0-150-generic", ext4, false}, // syncfs reports no write-back error
		{"4.19.0", xfs, false},
		{"3.10.0-1160.el7.x86_64", ext4, false},
		{"6.8.0", fuse, false}, // syncfs does not reach the FUSE server
		{"6.8.0", smb2, false},
		{"6.8.0", overlay, false},
		{"6.8.0", nfs, false},
		{"", ext4, false},
		{"garbage", ext4, false},
	} {
		if got := syncfsTrusted(c.release, c.fsType); got != c.want {
			t.Errorf("syncfsTrusted(%q, %#x) = %v, want %v", c.release, c.fsType, got, c.want)
		}
	}
	// The OS seam declines (the batch falls back to fsyncs) exactly when
	// the predicate does for the running kernel and the dir's file system.
	dir := t.TempDir()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	h, err := osFS{}.OpenFSSync(dir)
	if trusted := syncfsTrusted(kernelRelease(), int64(st.Type)); trusted != (err == nil) {
		t.Fatalf("OpenFSSync(%s) on f_type %#x: %v, trusted %v", dir, st.Type, err, trusted)
	}
	if err == nil {
		if err := h.Sync(); err != nil {
			t.Error(err)
		}
		h.Close()
	} else if err != errNoFSSync {
		t.Fatal(err)
	}
}

// failSyncfsFS is the OS with a syncfs handle whose Sync number failAt
// (1: after the temp files, 2: after the renames) fails with EIO.
type failSyncfsFS struct {
	osFS
	failAt int
	n      atomic.Int32
}

type failSyncfs struct {
	FSSync
	fs *failSyncfsFS
}

func (f *failSyncfsFS) OpenFSSync(dir string) (FSSync, error) {
	h, err := osFS{}.OpenFSSync(dir)
	if err == errNoFSSync {
		h, err = noFSSync{}, nil
	}
	if err != nil {
		return nil, err
	}
	return failSyncfs{FSSync: h, fs: f}, nil
}

func (h failSyncfs) Sync() error {
	if int(h.fs.n.Add(1)) == h.fs.failAt {
		return &os.PathError{Op: "syncfs", Err: syscall.EIO}
	}
	return h.FSSync.Sync()
}

// TestCloseBatchSyncfsFails: a failed syncfs (of the temp files, or of
// the renames) fails every phext of the batch on that file system: Close
// reports it, the records stay, no temp file is left, and the next Open
// restores every phext.
func TestCloseBatchSyncfsFails(t *testing.T) {
	for _, failAt := range []int{1, 2} {
		t.Run(strconv.Itoa(failAt), func(t *testing.T) {
			const tenants, per = 3, 4
			root := t.TempDir()
			s := dirtyWorld(t, root, &failSyncfsFS{failAt: failAt}, tenants, per)
			err := s.Close()
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("close: %v, want the syncfs EIO", err)
			}
			if st := s.Stats(); st.CompactionFailures != tenants*per {
				t.Errorf("checkpoint failures %d, want %d", st.CompactionFailures, tenants*per)
			}
			checkWorld(t, root, tenants, per)
		})
	}
}

// TestReloadRacesEvictor: writers on two tenants past a small cap
// (the evictor busy), while one tenant is removed and added again (a
// reload) in a loop: every acknowledged write is there after a Close and
// an Open, and no close reports an error.
func TestReloadRacesEvictor(t *testing.T) {
	t.Run("ok", func(t *testing.T) { reloadRacesEvictor(t, nil, false) })
	// Temp files refused half the time (a disk filling and freeing):
	// closes may fail (pinned, restored at the next open), nothing
	// acknowledged may be lost.
	t.Run("enospc", func(t *testing.T) {
		fs := &failTmpFS{}
		reloadRacesEvictor(t, fs, true)
	})
}

func reloadRacesEvictor(t *testing.T, fs *failTmpFS, flaky bool) {
	const capN, writers, per = 4, 4, 12
	root := t.TempDir()
	var fsys FS
	if fs != nil {
		fsys = fs
		go func() {
			for i := 0; i < 300; i++ {
				fs.fail.Store(i%2 == 0)
				time.Sleep(5 * time.Millisecond)
			}
			fs.fail.Store(false)
		}()
	}
	s, err := Open(&Options{Logger: discardLogger(), FS: fsys, MaxOpenPhexts: capN, LogDir: filepath.Join(root, "log"), Durability: DurabilityEverySec})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b"}
	for _, n := range names {
		if _, err := s.AddTenant(TenantConfig{Name: n, DataDir: filepath.Join(root, n)}); err != nil {
			t.Fatal(err)
		}
	}
	type ack struct {
		tenant, phext string
		c             uint16
		tok           string
	}
	var (
		mu    sync.Mutex
		acks  []ack
		stop  atomic.Bool
		wg    sync.WaitGroup
		rmErr atomic.Value
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tn := names[w%2]
			for i := 0; !stop.Load(); i++ {
				ten := s.Tenant(tn)
				if ten == nil {
					time.Sleep(time.Millisecond)
					continue
				}
				ph := "p" + strconv.Itoa(i%per)
				tok := "w" + strconv.Itoa(w) + "i" + strconv.Itoa(i) + ";"
				c := uint16(w + 1)
				if _, err := ten.Insert([]byte(ph), coord(c), []byte(tok)); err != nil {
					continue // removed under it
				}
				mu.Lock()
				acks = append(acks, ack{tn, ph, c, tok})
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			time.Sleep(time.Duration(5+time.Now().UnixNano()%15) * time.Millisecond)
			if err := s.RemoveTenant("a"); err != nil {
				rmErr.Store(err)
			}
			if _, err := s.AddTenant(TenantConfig{Name: "a", DataDir: filepath.Join(root, "a")}); err != nil {
				rmErr.Store(err)
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if err := rmErr.Load(); err != nil && !flaky {
		t.Errorf("reload: %v", err)
	}
	if fs != nil {
		for fs.fail.Load() {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(1600 * time.Millisecond)
	}
	cerr := s.Close()
	if cerr != nil && !flaky {
		t.Errorf("close: %v", cerr)
	}
	t.Logf("checkpoint failures %d; reload error %v; close error %v", s.Stats().CompactionFailures, rmErr.Load(), cerr)
	s2, err := Open(&Options{Logger: discardLogger(), LogDir: filepath.Join(root, "log")})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got := map[string]string{}
	for _, n := range names {
		ten, err := s2.AddTenant(TenantConfig{Name: n, DataDir: filepath.Join(root, n)})
		if err != nil {
			t.Fatal(err)
		}
		for k := range per {
			for w := range writers {
				ph := "p" + strconv.Itoa(k)
				got[n+"/"+ph+"/"+strconv.Itoa(w+1)] = mustSelect(t, ten, ph, coord(uint16(w+1)))
			}
		}
	}
	lost := 0
	for _, a := range acks {
		if !strings.Contains(got[a.tenant+"/"+a.phext+"/"+strconv.Itoa(int(a.c))], a.tok) {
			if lost++; lost < 5 {
				t.Errorf("acknowledged %s/%s %d %q lost", a.tenant, a.phext, a.c, a.tok)
			}
		}
	}
	t.Logf("%d acknowledged, %d lost", len(acks), lost)
}

// TestReview15OpenSetBounded: with every checkpoint stalled on the disk
// and a stream of writes to distinct phexts, the open set stops at the
// hard ceiling: the opener past it waits OpenWait and gets ErrBusy
// (nothing written), and once checkpoints go again the writes go through
// and the set shrinks back to the cap.
func TestReview15OpenSetBounded(t *testing.T) {
	const capN, n, wait = 8, 300, 100 * time.Millisecond
	fs, release := newCkptGate()
	defer release() // before the test's Close, which checkpoints
	db := MustOpen(t, &Options{MaxOpenPhexts: capN, Durability: DurabilityEverySec, FS: fs, OpenWait: wait})
	ceil := db.Store.openCeil
	if want := openCeiling(capN, readMaxMapCount(maxMapCountPath)); ceil != want || ceil > 2*capN+256 {
		t.Fatalf("ceiling %d, want %d", ceil, want)
	}
	busyAt := -1
	for i := range n {
		start := time.Now()
		_, err := db.ten.Insert([]byte("p"+strconv.Itoa(i)), coord(1), []byte("x"))
		if errors.Is(err, ErrBusy) {
			if d := time.Since(start); d < wait {
				t.Errorf("ErrBusy after %v, before OpenWait %v", d, wait)
			}
			busyAt = i
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	db.lmu.Lock()
	open := len(db.Store.open)
	db.lmu.Unlock()
	if open > ceil {
		t.Errorf("%d phexts open with cap %d, ceiling %d", open, capN, ceil)
	}
	if busyAt < 0 {
		if n > ceil {
			t.Fatalf("%d phexts written past a ceiling of %d with checkpoints stalled, no ErrBusy", n, ceil)
		}
		busyAt = n
	}
	release()
	// ErrBusy is retryable: the evictor catches up and the writes go in.
	deadline := time.Now().Add(20 * time.Second)
	for i := busyAt; i < n; i++ {
		_, err := db.ten.Insert([]byte("p"+strconv.Itoa(i)), coord(1), []byte("x"))
		if errors.Is(err, ErrBusy) && time.Now().Before(deadline) {
			i--
			continue
		}
		if err != nil {
			t.Fatalf("p%d after checkpoints resumed: %v", i, err)
		}
	}
	waitOpenAtMost(t, db.Store, capN)
	db.MustReopen()
	for i := range n {
		if got := mustSelect(t, db.ten, "p"+strconv.Itoa(i), coord(1)); got != "x" {
			t.Errorf("p%d: %q", i, got)
		}
	}
}
