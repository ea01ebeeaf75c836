// Package schedslice asks the kernel for a short scheduler slice for every
// thread of the process (issue 13: a good tenant's latency while another
// tenant keeps the CPUs busy).
//
// Linux's EEVDF scheduler (6.6 and later) gives each thread a slice, 1.4 ms
// by default on a 2-CPU box, and a thread that wakes up waits for a
// running thread of the same or lower priority to use up its protected
// slice (RUN_TO_PARITY) unless its own slice is shorter, which since 6.12
// lets it preempt at once (PREEMPT_SHORT). An event loop woken by a
// request is such a thread: while another tenant's bulk work, or any other
// process on the host (even at nice 19), runs its slice out, the request
// waits. Measured on the 2-core test box with issue 13's compressed PUT
// attack (M4c): the good tenant's p99 under attack 0.84–1.05 ms with the
// kernel's slice, 0.37–0.54 ms with 100 µs (bench/RESULTS.md). Asking for a
// shorter slice needs no privilege; it changes when a thread may be
// preempted, not its share of the CPU (nice and cgroup weights decide
// that).
//
// Threads inherit the slice of the thread that creates them, so setting it
// on every thread of the process once, early, covers the threads the Go
// runtime starts later.
package schedslice

import "time"

// Default is the slice sq host asks for: the shortest the kernel accepts
// (it clamps sched_runtime to 100 µs … 100 ms).
const Default = 100 * time.Microsecond

// Set asks for slice d for every thread of the process and reports how
// many threads took it. Off Linux it does nothing (0, nil). On a kernel
// without custom slices (before 6.12) the request is accepted and has no
// effect.
func Set(d time.Duration) (int, error) { return set(d) }

// Supported reports whether the kernel honours a thread's own slice
// (Linux 6.12 and later).
func Supported() bool { return supported() }
