package store

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ckptGateFS is the OS whose fsyncs of snapshot temp files (checkpoints)
// wait until release is closed; entered counts the ones that arrived.
type ckptGateFS struct {
	osFS
	mu      sync.Mutex
	entered int
	release chan struct{}
}

// OpenFSSync: none (the per-file fsyncs are what the gate holds).
func (*ckptGateFS) OpenFSSync(string) (FSSync, error) { return nil, errNoFSSync }

type ckptGateFile struct {
	File
	fs   *ckptGateFS
	path string
}

func (f *ckptGateFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fl, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &ckptGateFile{File: fl, fs: f, path: name}, nil
}

func (f *ckptGateFile) Sync() error {
	if strings.HasSuffix(f.path, tmpExt) {
		f.fs.mu.Lock()
		f.fs.entered++
		f.fs.mu.Unlock()
		<-f.fs.release
	}
	return f.File.Sync()
}

func (f *ckptGateFS) gated() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.entered
}

// within runs fn and fails the test if it has not returned after d (a
// deadlock detector, not a timing assertion: the work is milliseconds).
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still waiting after %v", what, d)
	}
}

// TestOpenPastCapNeverWaitsForCheckpoint: with every open phext dirty and
// every checkpoint stalled on the disk, opening and writing phexts past
// MaxOpenPhexts returns at once: no opener closes a dirty phext itself
// (which would checkpoint it on the request's path); the open set grows
// only by dirty phexts, and shrinks back to the cap once the background
// evictor's checkpoints finish. Nothing is lost across a reopen.
func TestOpenPastCapNeverWaitsForCheckpoint(t *testing.T) {
	const capN, n = 4, 24
	fs := &ckptGateFS{release: make(chan struct{})}
	db := MustOpen(t, &Options{MaxOpenPhexts: capN, Durability: DurabilityEverySec, FS: fs})
	released := false
	defer func() {
		if !released {
			close(fs.release)
		}
	}()
	name := func(i int) []byte { return []byte("p" + strconv.Itoa(i)) }
	for i := 0; i < n; i++ {
		within(t, 10*time.Second, "write to phext "+strconv.Itoa(i)+" past the cap", func() {
			if _, err := db.ten.Insert(name(i), coord(1), []byte("v"+strconv.Itoa(i))); err != nil {
				t.Error(err)
			}
		})
	}
	// Reads of the first (least recently used, dirty) phexts are served
	// from memory while their checkpoints wait.
	for i := 0; i < n; i++ {
		within(t, 10*time.Second, "read past the cap", func() {
			if got := mustSelect(t, db.ten, string(name(i)), coord(1)); got != "v"+strconv.Itoa(i) {
				t.Errorf("phext %d: %q", i, got)
			}
		})
	}
	db.lmu.Lock()
	open := len(db.Store.open)
	db.lmu.Unlock()
	if open != n {
		t.Errorf("%d phexts open with every checkpoint stalled, want all %d (all dirty)", open, n)
	}
	// The evictor's checkpoints arrive at the gate (bounded in number).
	for deadline := time.Now().Add(20 * time.Second); fs.gated() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint started past the cap")
		}
	}
	if g := fs.gated(); g > evictCkptParallel {
		t.Errorf("%d checkpoints running, want at most %d", g, evictCkptParallel)
	}
	close(fs.release)
	released = true
	waitOpenAtMost(t, db.Store, capN)
	for i := 0; i < n; i++ {
		if got := mustSelect(t, db.ten, string(name(i)), coord(1)); got != "v"+strconv.Itoa(i) {
			t.Errorf("phext %d: %q", i, got)
		}
	}
	db.MustReopen()
	for i := 0; i < n; i++ {
		if got := mustSelect(t, db.ten, string(name(i)), coord(1)); got != "v"+strconv.Itoa(i) {
			t.Errorf("after reopen, phext %d: %q", i, got)
		}
	}
}

// TestEvictClosesOnlyClean: an opener past the cap plus one batch closes
// the least recently used clean phext itself (no I/O but the munmap), and
// never a dirty one.
func TestEvictClosesOnlyClean(t *testing.T) {
	const capN = 4
	fs := &ckptGateFS{release: make(chan struct{})}
	defer close(fs.release)
	db := MustOpen(t, &Options{MaxOpenPhexts: capN, Durability: DurabilityEverySec, FS: fs})
	// Clean phexts: snapshots written outside, only read.
	for i := 0; i < 6; i++ {
		if err := os.WriteFile(filepath.Join(db.dir(), "c"+strconv.Itoa(i)+".phext"), []byte("clean"+strconv.Itoa(i)), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// Two dirty ones, used first (least recently used).
	for i := 0; i < 2; i++ {
		if _, err := db.ten.Insert([]byte("d"+strconv.Itoa(i)), coord(1), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 6; i++ {
		within(t, 10*time.Second, "read of a clean phext", func() {
			if got := mustSelect(t, db.ten, "c"+strconv.Itoa(i), coord(1)); got != "clean"+strconv.Itoa(i) {
				t.Errorf("c%d: %q", i, got)
			}
		})
	}
	db.lmu.Lock()
	var dirtyOpen int
	for p := range db.Store.open {
		if strings.HasPrefix(p.key, "d") {
			dirtyOpen++
		}
	}
	open := len(db.Store.open)
	db.lmu.Unlock()
	if dirtyOpen != 2 {
		t.Errorf("%d of the 2 dirty phexts open: a dirty one was closed while its checkpoint waits", dirtyOpen)
	}
	if open > capN+evictBatch(capN)+2 {
		t.Errorf("%d open, want at most cap %d + batch + the 2 dirty", open, capN)
	}
}

// waitOpenAtMost waits until at most n phexts are open (the background
// evictor converged), failing after 20 s.
func waitOpenAtMost(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.lmu.Lock()
		open := len(s.open)
		s.lmu.Unlock()
		if open <= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d phexts still open, cap %d", open, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCloseRacesEvictor: Close while the evictor checkpoints batches of
// dirty phexts past the cap and writers keep opening more: both batch
// checkpoints take many phexts' locks, and Close must neither deadlock
// with the evictor nor lose an acknowledged write.
func TestCloseRacesEvictor(t *testing.T) {
	const capN, writers, per = 8, 4, 40
	root := t.TempDir()
	s, err := Open(&Options{Logger: discardLogger(), MaxOpenPhexts: capN, LogDir: filepath.Join(root, "log"), Durability: DurabilityNo})
	if err != nil {
		t.Fatal(err)
	}
	ten, err := s.AddTenant(TenantConfig{Name: "t", DataDir: filepath.Join(root, "t")})
	if err != nil {
		t.Fatal(err)
	}
	acked := make([][]bool, writers)
	var wg sync.WaitGroup
	for w := range writers {
		acked[w] = make([]bool, per*3)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per * 3 {
				name := []byte("w" + strconv.Itoa(w) + "p" + strconv.Itoa(i%per))
				if _, err := ten.Insert(name, coord(uint16(i/per+1)), []byte("x")); err != nil {
					return // closed under it
				}
				acked[w][i] = true
			}
		}()
	}
	time.Sleep(time.Duration(5+time.Now().UnixNano()%20) * time.Millisecond)
	within(t, 30*time.Second, "Close racing the evictor", func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	s2, err := Open(&Options{Logger: discardLogger(), LogDir: filepath.Join(root, "log")})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ten2, err := s2.AddTenant(TenantConfig{Name: "t", DataDir: filepath.Join(root, "t")})
	if err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		for i := range per * 3 {
			if !acked[w][i] {
				continue
			}
			name := "w" + strconv.Itoa(w) + "p" + strconv.Itoa(i%per)
			if got := mustSelect(t, ten2, name, coord(uint16(i/per+1))); got != "x" {
				t.Fatalf("acknowledged write %s #%d lost: %q", name, i, got)
			}
		}
	}
}
