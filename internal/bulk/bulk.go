package bulk

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Nice is the default nice value of a bulk thread: the lowest normal
// priority.
const Nice = 19

// nice is the nice value new bulk threads take (SetNice); 0 leaves them at
// the process's priority.
var nice atomic.Int32

func init() { nice.Store(Nice) }

// SetNice sets the nice value (0 to 19) of bulk threads started from now
// on; 0 runs bulk work at the process's priority (still on the pool's
// threads). For a command's flag, called before any job starts (sq host
// --bulk-nice): threads already lowered stay as they are.
func SetNice(n int) {
	nice.Store(int32(min(max(n, 0), 19)))
}

// MaxWorkers bounds the bulk threads: beyond it a job runs on an ordinary
// goroutine (see Go).
const MaxWorkers = 64

// IdleTimeout is how long a worker waits for a job before it ends (its
// thread with it).
const IdleTimeout = 30 * time.Second

// pool is a set of bulk workers; std is the process's.
type pool struct {
	mu        sync.Mutex
	idle      []*worker // waiting for a job, the latest last (LIFO: warm threads first)
	workers   atomic.Int32
	overflows atomic.Int64
	max       int32
	idleFor   time.Duration
	// lower lowers the calling (locked) thread's priority; a failure
	// leaves the worker at the process's priority.
	lower func() error
}

// worker is one bulk thread's goroutine.
type worker struct {
	wake chan job // buffered 1: a job is handed over without waiting
}

// job is fn, and done to close once the worker is idle again (Run), so a
// caller's next job finds it idle instead of starting another.
type job struct {
	fn   func()
	done chan struct{}
}

var std = newPool(MaxWorkers, IdleTimeout)

func newPool(max int, idle time.Duration) *pool {
	return &pool{max: int32(max), idleFor: idle, lower: lowerThread}
}

// Go runs fn on a bulk thread without waiting: an idle worker's, else a
// new worker's; with MaxWorkers busy, on an ordinary goroutine. Any
// goroutine may call it; it never blocks.
func Go(fn func()) { std.goJob(job{fn: fn}) }

// Run runs fn on a bulk thread (as Go) and waits until it returned; a
// panic in fn is raised again in the caller. fn's effects are visible to
// the caller when Run returns.
func Run(fn func()) { std.run(fn) }

// Critical runs fn on an ordinary goroutine at the process's priority and
// waits until it returned: for a section of a bulk job that
// latency-sensitive goroutines wait on (a lock they need held across it).
// From any other goroutine it only costs a goroutine's start.
func Critical(fn func()) {
	var pv any
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { pv = recover() }()
		fn()
	}()
	<-done
	if pv != nil {
		panic(pv)
	}
}

// Workers reports how many bulk workers exist (busy or idle).
func Workers() int { return int(std.workers.Load()) }

// Overflows reports how many jobs ran on an ordinary goroutine because
// MaxWorkers were busy.
func Overflows() int64 { return std.overflows.Load() }

func (p *pool) goJob(j job) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.wake <- j
		return
	}
	p.mu.Unlock()
	if p.workers.Add(1) <= p.max {
		go p.work(j)
		return
	}
	p.workers.Add(-1)
	p.overflows.Add(1)
	go func() {
		j.fn()
		if j.done != nil {
			close(j.done)
		}
	}()
}

func (p *pool) run(fn func()) {
	var pv any
	done := make(chan struct{})
	p.goJob(job{fn: func() {
		defer func() { pv = recover() }()
		fn()
	}, done: done})
	<-done
	if pv != nil {
		panic(pv)
	}
}

// work runs j, then the jobs handed to it until it was idle for p.idleFor.
func (p *pool) work(j job) {
	// Never unlocked once lowered: when this goroutine ends, the runtime
	// ends the thread instead of giving a lowered thread other goroutines.
	runtime.LockOSThread()
	if mainThread() {
		// The main thread is never ended (the runtime parks it for good
		// when its locked goroutine exits), and what a process forks
		// inherits its nice: hand over to a worker started while this
		// goroutine holds the main thread, so it gets another.
		go p.work(j)
		runtime.UnlockOSThread()
		return
	}
	defer p.workers.Add(-1)
	_ = p.lower()
	w := &worker{wake: make(chan job, 1)}
	t := time.NewTimer(p.idleFor)
	defer t.Stop()
	for {
		j.fn()
		p.mu.Lock()
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		if j.done != nil {
			close(j.done)
		}
		t.Reset(p.idleFor)
		select {
		case j = <-w.wake:
			continue
		case <-t.C:
		}
		p.mu.Lock()
		if i := slices.Index(p.idle, w); i >= 0 {
			p.idle = slices.Delete(p.idle, i, i+1)
			p.mu.Unlock()
			return
		}
		// Taken just as the timer fired: its job is on the way.
		p.mu.Unlock()
		j = <-w.wake
	}
}
