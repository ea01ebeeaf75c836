package bulk

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
)

// niceOf reads thread tid's nice value from /proc (field 19 of stat).
func niceOf(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.Atoi(f[16]) // field 19; f[0] is field 3
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lowered counts the process's threads at Nice.
func lowered(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		tid, err := strconv.Atoi(filepath.Base(e.Name()))
		if err != nil {
			continue
		}
		if niceOf(t, tid) >= Nice {
			n++
		}
	}
	return n
}

func skipIfLowered(t *testing.T) {
	t.Helper()
	if niceOf(t, os.Getpid()) >= Nice {
		t.Skip("the test process already runs at nice", Nice)
	}
}

// TestJobsRunLowered: a job runs on a thread at Nice; the caller's thread,
// a Critical section inside the job and ordinary goroutines stay at the
// process's nice; the only lowered threads are the workers', and none is
// left once they idled out.
func TestJobsRunLowered(t *testing.T) {
	skipIfLowered(t)
	p := newPool(4, time.Second)
	var job, crit int
	p.run(func() {
		job = niceOf(t, syscall.Gettid())
		Critical(func() { crit = niceOf(t, syscall.Gettid()) })
	})
	if job != Nice {
		t.Errorf("job ran at nice %d, want %d", job, Nice)
	}
	if crit != 0 {
		t.Errorf("Critical inside a job ran at nice %d, want 0", crit)
	}
	// Many ordinary goroutines, each on a thread of its own while it
	// sleeps in a system call: none gets a lowered thread.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []int
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := niceOf(t, syscall.Gettid())
			syscall.Nanosleep(&syscall.Timespec{Nsec: 2e6}, nil)
			if m := niceOf(t, syscall.Gettid()); m > n {
				n = m
			}
			if n != 0 {
				mu.Lock()
				bad = append(bad, n)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("ordinary goroutines ran at nice %v", bad)
	}
	// Workers first: a worker's thread ends before its count does.
	if w := int(p.workers.Load()); lowered(t) > w {
		t.Errorf("more threads at nice %d than the %d workers", Nice, w)
	}
	sqtest.CheckFor(t, 5*time.Second, "idle workers end with their threads", func() bool {
		return p.workers.Load() == 0 && lowered(t) == 0
	})
}

// TestWorkersReused: jobs one after another go to the idle worker: one
// thread, not one per job.
func TestWorkersReused(t *testing.T) {
	skipIfLowered(t)
	p := newPool(4, time.Second)
	tids := map[int]bool{}
	for range 50 {
		p.run(func() { tids[syscall.Gettid()] = true })
	}
	if len(tids) != 1 || p.workers.Load() != 1 {
		t.Errorf("50 jobs in turn ran on %d threads, %d workers; want 1", len(tids), p.workers.Load())
	}
	sqtest.CheckFor(t, 5*time.Second, "workers end", func() bool {
		return p.workers.Load() == 0 && lowered(t) == 0
	})
}

// TestRunPanicKeepsWorker: a job's panic reaches Run's caller, and the
// worker (its lowered thread) goes on serving jobs: no thread leaks.
func TestRunPanicKeepsWorker(t *testing.T) {
	skipIfLowered(t)
	p := newPool(4, 100*time.Millisecond)
	for i := range 20 {
		func() {
			defer func() {
				if r := recover(); r != i {
					t.Fatalf("recovered %v, want %d", r, i)
				}
			}()
			p.run(func() { panic(i) })
		}()
	}
	if w := p.workers.Load(); w != 1 {
		t.Errorf("%d workers after 20 panicking jobs, want 1", w)
	}
	sqtest.CheckFor(t, 5*time.Second, "workers end after panics", func() bool {
		return p.workers.Load() == 0 && lowered(t) == 0
	})
}

// TestOverflowNotQueued: with every worker busy the next job runs at once
// on an ordinary goroutine, so a job waiting for another cannot deadlock.
func TestOverflowNotQueued(t *testing.T) {
	skipIfLowered(t)
	p := newPool(2, 100*time.Millisecond)
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	for range 2 {
		p.goJob(job{fn: func() { started.Done(); <-release }})
	}
	started.Wait()
	var nice int
	p.run(func() { nice = niceOf(t, syscall.Gettid()) })
	close(release)
	if nice != 0 || p.overflows.Load() != 1 {
		t.Errorf("overflow job at nice %d, %d overflows; want 0, 1", nice, p.overflows.Load())
	}
	sqtest.CheckFor(t, 5*time.Second, "workers end", func() bool {
		return p.workers.Load() == 0 && lowered(t) == 0
	})
}

// TestSetNiceZero: with SetNice(0) jobs still run on the pool's threads,
// at the process's priority.
func TestSetNiceZero(t *testing.T) {
	skipIfLowered(t)
	SetNice(0)
	defer SetNice(Nice)
	p := newPool(4, 100*time.Millisecond)
	var n int
	p.run(func() { n = niceOf(t, syscall.Gettid()) })
	if n != 0 || p.workers.Load() != 1 {
		t.Errorf("job at nice %d on %d workers; want 0 on 1", n, p.workers.Load())
	}
	sqtest.CheckFor(t, 5*time.Second, "workers end", func() bool { return p.workers.Load() == 0 })
}
