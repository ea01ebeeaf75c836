package store

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// budgetGateFS is the OS whose fsyncs of snapshot temp files (the
// evictor's checkpoints: it has no syncfs) each wait for a token (allow),
// or for release; entered and passed count them.
type budgetGateFS struct {
	osFS
	tokens  chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	entered int
	passed  int
}

func newBudgetGate() *budgetGateFS {
	return &budgetGateFS{tokens: make(chan struct{}, 1024), release: make(chan struct{})}
}

// OpenFSSync: none (the per-file fsyncs are what the gate holds).
func (*budgetGateFS) OpenFSSync(string) (FSSync, error) { return nil, errNoFSSync }

func (f *budgetGateFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fl, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &budgetGateFile{File: fl, fs: f, path: name}, nil
}

// allow lets n more temp-file fsyncs through.
func (f *budgetGateFS) allow(n int) {
	for range n {
		f.tokens <- struct{}{}
	}
}

// open lets every temp-file fsync through from now on (idempotent).
func (f *budgetGateFS) open() { f.once.Do(func() { close(f.release) }) }

func (f *budgetGateFS) counts() (entered, passed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.entered, f.passed
}

type budgetGateFile struct {
	File
	fs   *budgetGateFS
	path string
}

func (f *budgetGateFile) Sync() error {
	if strings.HasSuffix(f.path, tmpExt) {
		f.fs.mu.Lock()
		f.fs.entered++
		f.fs.mu.Unlock()
		select {
		case <-f.fs.tokens:
		case <-f.fs.release:
		}
		f.fs.mu.Lock()
		f.fs.passed++
		f.fs.mu.Unlock()
	}
	return f.File.Sync()
}

// TestOpenWaiterSmallBatch (issue 13): one tenant's burst of dirty phexts
// fills the open set to the ceiling and the evictor starts one batch of
// all of them. An opener of a new phext that then waits at the ceiling
// gets its slot once evictCkptUrgent snapshots are written, not after the
// whole batch: the evictor writes no more of the batch while it waits
// (the rest stay dirty and open, and are checkpointed later).
func TestOpenWaiterSmallBatch(t *testing.T) {
	const capN, ceil = 4, 64
	fs := newBudgetGate()
	defer fs.open() // before the test's Close, which checkpoints
	db := MustOpen(t, &Options{MaxOpenPhexts: 1000, Durability: DurabilityEverySec, FS: fs, OpenWait: time.Minute})
	db.lmu.Lock()
	db.Store.openCeil = ceil
	db.lmu.Unlock()
	// ceil-1 dirty phexts under a cap that needs no eviction, then the cap
	// drops and the last one starts the evictor: its first round takes
	// (nearly) all of them, one batch.
	for i := range ceil - 1 {
		if _, err := db.ten.Insert([]byte("p"+strconv.Itoa(i)), coord(1), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	db.lmu.Lock()
	db.Store.opts.MaxOpenPhexts = capN
	db.lmu.Unlock()
	if _, err := db.ten.Insert([]byte("p"+strconv.Itoa(ceil-1)), coord(1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	// The batch's writers are at the gate.
	deadline := time.Now().Add(10 * time.Second)
	for entered, _ := fs.counts(); entered < evictCkptParallel; entered, _ = fs.counts() {
		if time.Now().After(deadline) {
			t.Fatalf("%d checkpoints started, want %d", entered, evictCkptParallel)
		}
		time.Sleep(time.Millisecond)
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.ten.Insert([]byte("new"), coord(1), []byte("y"))
		done <- err
	}()
	waitWaiters(t, db.Store, 1)
	// Enough fsyncs for a small batch only: the whole one needs ~60.
	fs.allow(evictCkptUrgent)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiter: %v", err)
		}
	case <-time.After(20 * time.Second): // a deadlock detector: the work is milliseconds
		_, passed := fs.counts()
		t.Fatalf("opener still waiting after %d snapshots written (a small batch is %d)", passed, evictCkptUrgent)
	}
	if _, passed := fs.counts(); passed > evictCkptUrgent {
		t.Errorf("%d snapshots written before the opener's slot, want <= %d", passed, evictCkptUrgent)
	}
	// The rest are checkpointed and closed once checkpoints go again;
	// nothing is lost.
	fs.open()
	waitOpenAtMost(t, db.Store, capN)
	db.MustReopen()
	for i := range ceil {
		if got := mustSelect(t, db.ten, "p"+strconv.Itoa(i), coord(1)); got != "x" {
			t.Errorf("p%d: %q", i, got)
		}
	}
	if got := mustSelect(t, db.ten, "new", coord(1)); got != "y" {
		t.Errorf("new: %q", got)
	}
}

// BenchmarkEvictDirty: 8 writers of one tenant write 2,048 phexts (16 KiB
// each) with a cap of 256 (ceiling 512); an op ends when the evictor has brought the
// open set back to the cap. "burst": the cap holds from the start, so
// writers wait at the ceiling and the evictor checkpoints small batches
// (evictCkptUrgent) while they do. "drain": the phexts are written under
// a cap that needs no eviction, then the cap drops to 256 and the evictor
// checkpoints them with nobody waiting (batches of evictCkptBatch).
// max-write-ms is the slowest single write (in "burst", an opener's wait
// for a slot at the ceiling).
//
//	go test -run '^$' -bench EvictDirty -benchtime 5x ./store
func BenchmarkEvictDirty(b *testing.B) {
	const capN, n, writers = 256, 2048, 8
	val := []byte(strings.Repeat("x", 1024))
	for _, mode := range []string{"burst", "drain"} {
		b.Run(mode, func(b *testing.B) {
			var waits, busy uint64
			var worst time.Duration
			for range b.N {
				b.StopTimer()
				cap0 := capN
				if mode == "drain" {
					cap0 = 4 * n
				}
				db := MustOpen(b, &Options{MaxOpenPhexts: cap0, Durability: DurabilityEverySec})
				if mode == "burst" {
					b.StartTimer()
				}
				var wg sync.WaitGroup
				var nbusy atomic.Uint64
				var mu sync.Mutex
				var longest time.Duration // the slowest write (mu)
				for w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := w; i < n; i += writers {
							name := []byte("p" + strconv.Itoa(i))
							for k := range 16 {
								t0 := time.Now()
								_, err := db.ten.Update(name, coord(uint16(k+1)), val)
								for err == ErrBusy {
									nbusy.Add(1)
									_, err = db.ten.Update(name, coord(uint16(k+1)), val)
								}
								d := time.Since(t0)
								mu.Lock()
								longest = max(longest, d)
								mu.Unlock()
								if err != nil {
									b.Error(err)
									return
								}
							}
						}
					}()
				}
				wg.Wait()
				busy += nbusy.Load()
				worst = max(worst, longest)
				if mode == "drain" {
					b.StartTimer()
					db.lmu.Lock()
					db.Store.opts.MaxOpenPhexts = capN
					db.Store.startEvictor()
					db.lmu.Unlock()
				}
				for {
					db.lmu.Lock()
					open := len(db.Store.open)
					db.lmu.Unlock()
					if open <= capN {
						break
					}
					time.Sleep(time.Millisecond)
				}
				b.StopTimer()
				waits += db.Store.openWaits.Load()
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(waits)/float64(b.N), "waits/op")
			b.ReportMetric(float64(busy)/float64(b.N), "busy/op")
			b.ReportMetric(float64(worst)/float64(time.Millisecond), "max-write-ms")
		})
	}
}
