package server

import "github.com/phext/sq/internal/cpus"

// CPUs is the number of CPUs the process may use, by Go's count at start
// (cpus.N: the affinity mask and, in a container, the cgroup CPU limit; or
// $GOMAXPROCS), whatever GOMAXPROCS the process then set (Procs): what
// CPU-bound work is sized by (heavySlots; protocol sizes its zstd
// decoders the same way). The default number of event loops
// (Options.EventLoops) is this, not runtime.NumCPU, which ignores the
// cgroup limit: a host of 64 CPUs running sq in a container limited to 2
// would otherwise start 64 loops and, by Procs, 67 Ps — a quarter of them
// GC mark workers on 2 CPUs' quota (found in review of 683482e).
func CPUs() int { return cpus.N() }

// Procs is the GOMAXPROCS a process serving with loops event loops should
// run with: one P per CPU (CPUs) plus one for each goroutine of gnet
// that waits in epoll_wait — every event loop and the acceptor.
//
// Why: gnet's pollers wait in a blocking epoll_wait system call, and a
// goroutine in a system call keeps its P until sysmon takes it back,
// which takes two of sysmon's ticks, up to 10 ms each once sysmon has
// been idle. With GOMAXPROCS at the CPU count (2 on a 2-core box, 2
// loops and the acceptor), two idle pollers hold both Ps, or one holds
// the P the heavy lane leaves free (heavySlots) while the heavy worker
// has the other; a loop woken by its good tenant's request, or one that
// yielded its P (gnet's runtime.Gosched after a busy round), then waited
// for sysmon or for the worker's 10 ms preemption. Issue 13's M4 (a
// tenant's 60 MB PUT refused for its quota, then a 400 k-scroll PUT,
// about 4 a second): the good tenant's loop waited for a P more than
// 1 ms 38 times in 5 s, up to 28.7 ms, 189 ms in all — over half of the
// time its slow requests took (docs/RELIABILITY.md, M4 sixth pass). With
// a P for every poller, a woken loop finds an idle P at once and waits
// only for a CPU, which the kernel shares in slices of a millisecond or
// two instead of Go's 10 ms.
//
// What it costs: the Ps beyond the CPUs cost throughput while the loops
// are busy, ~15 % of the dense benchmark's (10,000 tenants, a connection
// each) on a quiet box. Under load the server, and its client whose Ps
// did not change, spent more CPU on each request, with no GC cycle and no
// eviction needed and under 1 % of samples in the scheduler: the same code
// ran slower. Fewer Ps did not pay for
// themselves: at CPUs + loops (no P for the acceptor) the cost per
// request and issue 13's M4 were those of this rule within the noise, and
// at CPUs + 1 loops waited for a P again (bench/RESULTS.md, "GOMAXPROCS
// and the dense benchmark").
func Procs(loops int) int { return procsFor(CPUs(), loops) }

// procsFor is Procs for a process of n CPUs.
func procsFor(n, loops int) int { return n + loops + 1 }
