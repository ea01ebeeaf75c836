package server

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// schedWaits reads the runtime's histogram of how long goroutines waited
// runnable for a P.
func schedWaits() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64Histogram()
}

// waitsOver counts the waits recorded between a and b of at least d.
func waitsOver(a, b *metrics.Float64Histogram, d time.Duration) (over, all uint64) {
	for i := range b.Counts {
		n := b.Counts[i] - a.Counts[i]
		all += n
		if b.Buckets[i] >= d.Seconds() {
			over += n
		}
	}
	return over, all
}

// TestLoopsGetAPWhileCPUsBusy: in a process of 2 CPUs serving with 2
// event loops, at Procs' GOMAXPROCS (procsFor(2, 2)), a good tenant's
// writes and reads answered on its loop get a P at once while CPU-bound
// work keeps as many goroutines busy as there are CPUs (issue 13's M4:
// the heavy worker's PUT and a checkpoint). With GOMAXPROCS 2 instead,
// the idle pollers in epoll_wait held the Ps the busy goroutines left and
// a woken loop waited for sysmon or a 10 ms preemption: round trips p50
// 32-34 ms, 56-64 of the runtime's 115-132 waits for a P took 1 ms or
// more (two runs at load 11.5); at procsFor(2, 2), p50 35 us and none of
// 31 (same load). Three runs each at load 6-8.3: GOMAXPROCS 2, 56-82
// waits of 1 ms or more; 3, 1-2 (round trips up to 13 ms); 4 and
// procsFor(2, 2) = 5, none (round trips up to 1.6 and 6 ms). The
// kernel's sharing of 2 CPUs among the busy threads (and the box's load)
// is in the round trips, not in Go's waits.
func TestLoopsGetAPWhileCPUsBusy(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procsFor(2, 2)))
	e := startEnv(t, envOptions{tenants: []string{"good"}, durability: store.DurabilityNo, opts: Options{EventLoops: 2}})
	c := e.dial("good")
	coord := phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 1}
	c.ok(protocol.OpInsert, "p", coord, []byte("x")) // the phext exists: later writes are the loop's

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var spins atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				if n%(1<<16) == 0 {
					select {
					case <-stop:
						spins.Add(int64(n))
						return
					default:
					}
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // the spinners hold their Ps
	w0 := schedWaits()
	var rtts []time.Duration
	for i := range 100 {
		t0 := time.Now()
		c.ok(protocol.OpInsert, "p", coord, []byte("y"))
		c.ok(protocol.OpSelect, "p", coord, nil)
		rtts = append(rtts, time.Since(t0)/2)
		if i%10 == 0 {
			time.Sleep(time.Millisecond) // idle loops go back to epoll_wait
		}
	}
	w1 := schedWaits()
	close(stop)
	wg.Wait()
	slices.Sort(rtts)
	over, all := waitsOver(w0, w1, time.Millisecond)
	t.Logf("round trips p50 %v p90 %v max %v; goroutine waits for a P ≥ 1 ms: %d of %d; load average %s",
		rtts[len(rtts)/2], rtts[len(rtts)*9/10], rtts[len(rtts)-1], over, all, loadAverage())
	if spins.Load() == 0 {
		t.Fatal("the spinners never ran")
	}
	// Go's waits for a P are the claim, and the only thing held: the
	// round trips also carry the kernel's sharing of 2 CPUs among 4 busy
	// threads and the box's load (a loaded CI box), so they are only
	// logged (review of 683482e; speed lives in benchmarks). At
	// GOMAXPROCS 2 the waits alone fail it: half of them 1 ms or more.
	if over > 5 {
		t.Errorf("%d waits for a P of 1 ms or more (of %d)", over, all)
	}
}

// loadAverage is the machine's 1-minute load average, "?" where
// /proc/loadavg is missing.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// TestDefaultEventLoopsAreCPUs: without Options.EventLoops the server runs
// one loop per CPU Go counted at start (cgroup limit included), not
// runtime.NumCPU (found in review of 683482e). The count is taken when the
// process starts, so the test runs itself again as a child that starts
// with $GOMAXPROCS at a count NumCPU cannot give, as the runtime would
// count a cgroup limit or affinity mask.
func TestDefaultEventLoopsAreCPUs(t *testing.T) {
	want := runtime.NumCPU() + 1
	if os.Getenv("SQ_TEST_DEFAULT_LOOPS_CHILD") != "" {
		if n := (&Options{}).withDefaults().EventLoops; n != want || CPUs() != want {
			t.Fatalf("started with GOMAXPROCS=%d: default event loops %d, CPUs() %d, want %d", want, n, CPUs(), want)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDefaultEventLoopsAreCPUs$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SQ_TEST_DEFAULT_LOOPS_CHILD=1", "GOMAXPROCS="+strconv.Itoa(want))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
