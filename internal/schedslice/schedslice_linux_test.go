package schedslice

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// ThreadSlices reads "se.slice", the nice value and the policy of every
// thread of process pid ("self" for this one) from /proc, keyed by thread
// id.
func threadSlices(t *testing.T, pid string) map[int][3]int64 {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		t.Fatal(err)
	}
	m := map[int][3]int64{}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		b, err := os.ReadFile(fmt.Sprintf("/proc/%s/task/%d/sched", pid, tid))
		if err != nil {
			continue // ended meanwhile
		}
		var v [3]int64
		v[0] = -1
		for _, l := range strings.Split(string(b), "\n") {
			k, val, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			switch strings.TrimSpace(k) {
			case "se.slice":
				v[0] = n
			case "prio":
				v[1] = n - 120 // nice
			case "policy":
				v[2] = n
			}
		}
		m[tid] = v
	}
	return m
}

// needCustomSlices skips on kernels before 6.12, which accept the request
// and keep their own slice.
func needCustomSlices(t *testing.T) {
	if !Supported() {
		t.Skip("the kernel has no custom scheduler slices")
	}
}

// TestSetEveryThreadAndLater: after Set every thread of the process runs
// with the slice, a thread started afterwards inherits it, and a thread's
// nice value is kept.
func TestSetEveryThreadAndLater(t *testing.T) {
	needCustomSlices(t)
	// A thread of nice 7 before Set: Set must not reset it to 0.
	niced := make(chan int)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		tid := unix.Gettid()
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 7); err != nil {
			t.Error(err)
		}
		niced <- tid
		<-done
	}()
	nicedTid := <-niced
	defer close(done)

	n, err := Set(Default)
	if err != nil {
		t.Fatal(err)
	}
	before := threadSlices(t, "self")
	if n < len(before)-1 { // a thread may have started or ended meanwhile
		t.Fatalf("Set took %d threads of %d", n, len(before))
	}
	for tid, v := range before {
		if v[2] != unix.SCHED_NORMAL && v[2] != unix.SCHED_BATCH {
			continue // no slice (TestSetKeepsPolicy's IDLE thread, if it was the main thread: never ends)
		}
		if v[0] != Default.Nanoseconds() {
			t.Errorf("thread %d: slice %d ns, want %d", tid, v[0], Default.Nanoseconds())
		}
	}
	if v := before[nicedTid]; v[1] != 7 {
		t.Errorf("the niced thread's nice is %d after Set, want 7", v[1])
	}

	// Threads the runtime starts later (locked goroutines force new ones).
	const extra = 4
	tids := make(chan int, extra)
	stop := make(chan struct{})
	for range extra {
		go func() {
			runtime.LockOSThread()
			tids <- unix.Gettid()
			<-stop
		}()
	}
	later := map[int]bool{}
	for range extra {
		later[<-tids] = true
	}
	after := threadSlices(t, "self")
	close(stop)
	newThreads := 0
	for tid := range later {
		if _, old := before[tid]; old {
			continue
		}
		newThreads++
		if v := after[tid]; v[0] != Default.Nanoseconds() {
			t.Errorf("thread %d started after Set: slice %d ns, want %d", tid, v[0], Default.Nanoseconds())
		}
	}
	if newThreads == 0 {
		t.Fatal("no thread started after Set: the inheritance was not tested")
	}
}

// TestSetKeepsPolicy: Set gives its slice to a thread of SCHED_BATCH and
// keeps its policy and nice value, and leaves a thread of SCHED_IDLE as it
// is (the policies `chrt -b`, `chrt -i` or systemd's CPUSchedulingPolicy=
// start a server with; IDLE has no slice). Before, sched_setattr moved
// both to SCHED_OTHER, IDLE at nice 0. Kernels before 6.12 keep their own
// slice, so the slice is only checked on 6.12 and later.
func TestSetKeepsPolicy(t *testing.T) {
	type thread struct {
		tid    int
		before *unix.SchedAttr
	}
	started := make(chan thread)
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	for _, policy := range []uint32{unix.SCHED_BATCH, unix.SCHED_IDLE} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			tid := unix.Gettid()
			// Back to SCHED_OTHER at the end where allowed (IDLE to
			// OTHER needs CAP_SYS_NICE): a locked main thread does not
			// end with its goroutine.
			defer unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: unix.SCHED_NORMAL}, 0)
			if err := unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: policy, Nice: 5}, 0); err != nil {
				t.Errorf("policy %d: %v", policy, err)
			}
			a, err := unix.SchedGetAttr(tid, 0)
			if err != nil {
				t.Error(err)
			}
			started <- thread{tid, a}
			<-done
		}()
	}
	ths := []thread{<-started, <-started}
	if t.Failed() {
		t.FailNow()
	}
	if _, err := Set(Default); err != nil {
		t.Fatalf("Set: %v", err)
	}
	for _, th := range ths {
		a, err := unix.SchedGetAttr(th.tid, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := th.before
		if a.Policy != b.Policy || a.Nice != b.Nice {
			t.Errorf("thread of policy %d nice %d: policy %d nice %d after Set", b.Policy, b.Nice, a.Policy, a.Nice)
		}
		want := b.Runtime // IDLE: untouched
		if b.Policy == unix.SCHED_BATCH && Supported() {
			want = uint64(Default.Nanoseconds())
		}
		if a.Runtime != want {
			t.Errorf("thread of policy %d: slice %d ns after Set, want %d", b.Policy, a.Runtime, want)
		}
	}
}
