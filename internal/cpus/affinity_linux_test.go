package cpus

import (
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNFollowsAffinity: a process started on fewer CPUs than the machine
// has (taskset, a container's cpuset) counts those, not runtime.NumCPU of
// the machine. The child inherits the affinity mask of the thread that
// starts it. (The cgroup CPU limit is counted by the same runtime rule,
// which a test cannot set without changing the host's cgroups.)
func TestNFollowsAffinity(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Skipf("no affinity mask: %v", err)
	}
	if all.Count() < 2 {
		t.Skip("one CPU: no smaller mask to start on")
	}
	first := -1
	for i := 0; first < 0 && i < len(all)*64; i++ {
		if all.IsSet(i) {
			first = i
		}
	}
	done := make(chan error)
	go func() {
		// This thread's mask changes: it must not serve other
		// goroutines afterwards, so it stays locked and exits with
		// this goroutine.
		runtime.LockOSThread()
		var one unix.CPUSet
		one.Set(first)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			done <- fmt.Errorf("set affinity: %w", err)
			return
		}
		done <- runChild(childCmd(), 1)
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
