package store

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestOpenCeiling(t *testing.T) {
	for _, c := range []struct{ capN, maxMaps, want int }{
		{8, 0, 264},
		{256, 0, 512},
		{5000, 65530, 10000},
		{20000, 65530, 32765},
		{1, 0, 257},
		{8, 10, 5},
		{1, 2, 2},
	} {
		if got := openCeiling(c.capN, c.maxMaps); got != c.want {
			t.Errorf("openCeiling(%d, %d) = %d, want %d", c.capN, c.maxMaps, got, c.want)
		}
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "max_map_count")
	os.WriteFile(f, []byte("65530\n"), 0o600)
	if n := readMaxMapCount(f); n != 65530 {
		t.Errorf("readMaxMapCount: %d", n)
	}
	if n := readMaxMapCount(filepath.Join(dir, "none")); n != 0 {
		t.Errorf("readMaxMapCount of a missing file: %d", n)
	}
}

// ceilingDB opens a store with cap capN whose ceiling is lowered to ceil,
// checkpoints held until release is called, and fills it with ceil dirty
// phexts p0...
func ceilingDB(t *testing.T, capN, ceil int, wait time.Duration) (db *testDB, release func()) {
	t.Helper()
	fs, release := newCkptGate()
	ok := false
	defer func() {
		if !ok {
			release()
		}
	}()
	db = MustOpen(t, &Options{MaxOpenPhexts: capN, Durability: DurabilityEverySec, FS: fs, OpenWait: wait})
	db.lmu.Lock()
	db.Store.openCeil = ceil
	db.lmu.Unlock()
	for i := range ceil {
		if _, err := db.ten.Insert([]byte("p"+strconv.Itoa(i)), coord(1), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	ok = true
	return db, release
}

// newCkptGate returns a ckptGateFS holding every checkpoint and the func
// that lets them go (idempotent).
func newCkptGate() (*ckptGateFS, func()) {
	fs := &ckptGateFS{release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(fs.release) }) }
	return fs, release
}

// waitWaiters waits until n openers waited at the ceiling.
func waitWaiters(t *testing.T, s *Store, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.openWaits.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d openers waited, want %d", s.openWaits.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOpenWaiterReleased: at the ceiling with every checkpoint stalled, an
// opener of a new phext waits; a write to an open phext does not; when
// checkpoints go again the evictor closes one and the waiter's write goes
// through.
func TestOpenWaiterReleased(t *testing.T) {
	const capN, ceil = 4, 8
	db, release := ceilingDB(t, capN, ceil, time.Minute)
	defer release() // before the test's Close, which checkpoints
	done := make(chan error, 1)
	go func() {
		_, err := db.ten.Insert([]byte("new"), coord(1), []byte("y"))
		done <- err
	}()
	waitWaiters(t, db.Store, 1)
	select {
	case err := <-done:
		t.Fatalf("opener past the ceiling did not wait: %v", err)
	default:
	}
	// Already open: never waits.
	if _, err := db.ten.Update([]byte("p0"), coord(1), []byte("z")); err != nil {
		t.Fatal(err)
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiter: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("waiter not released after checkpoints resumed")
	}
	if got := mustSelect(t, db.ten, "new", coord(1)); got != "y" {
		t.Errorf("new: %q", got)
	}
}

// TestOpenWaiterBusy: with checkpoints stalled the waiter gets ErrBusy
// after OpenWait, nothing written, the open set at the ceiling.
func TestOpenWaiterBusy(t *testing.T) {
	const capN, ceil, wait = 4, 8, 50 * time.Millisecond
	db, release := ceilingDB(t, capN, ceil, wait)
	defer release() // before the test's Close, which checkpoints
	var wg sync.WaitGroup
	errs := make([]error, 3)
	start := time.Now()
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = db.ten.Insert([]byte("new"+strconv.Itoa(i)), coord(1), []byte("y"))
		}()
	}
	wg.Wait()
	if d := time.Since(start); d < wait {
		t.Errorf("answered after %v, before OpenWait %v", d, wait)
	}
	for i, err := range errs {
		if !errors.Is(err, ErrBusy) {
			t.Errorf("opener %d: %v, want ErrBusy", i, err)
		}
	}
	db.lmu.Lock()
	open, opening := len(db.Store.open), db.Store.opening
	db.lmu.Unlock()
	if open > ceil || opening != 0 {
		t.Errorf("%d open, %d opening; ceiling %d", open, opening, ceil)
	}
	release()
	waitOpenAtMost(t, db.Store, capN)
	db.MustReopen()
	for i := range errs {
		if got := mustSelect(t, db.ten, "new"+strconv.Itoa(i), coord(1)); got != "" {
			t.Errorf("new%d written through ErrBusy: %q", i, got)
		}
	}
}

// TestOpenWaiterClose: Close wakes the openers waiting at the ceiling
// (ErrClosed) before its checkpoints, which are stalled.
func TestOpenWaiterClose(t *testing.T) {
	const capN, ceil = 4, 8
	db, release := ceilingDB(t, capN, ceil, time.Minute)
	defer release() // before the test's Close, which checkpoints
	done := make(chan error, 2)
	for i := range 2 {
		go func() {
			_, err := db.ten.Insert([]byte("new"+strconv.Itoa(i)), coord(1), []byte("y"))
			done <- err
		}()
	}
	waitWaiters(t, db.Store, 2)
	closed := make(chan error, 1)
	go func() { closed <- db.Store.Close() }()
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("waiter: %v, want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not wake the waiters")
		}
	}
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	db.closed = true
}
