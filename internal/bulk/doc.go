// Package bulk runs the server's bulk work — work proportional to what a
// client sent or stored, whose caller can wait (a heavy request's
// execution, a compaction, a log rotation and its carry-over, the
// evictor's checkpoints) — on OS threads at the lowest normal priority
// (nice 19), while the event loops and light requests keep running on the
// runtime's ordinary threads at the process's priority.
//
// Why (issue 13, a good tenant's latency under attack): on a busy host the
// slow requests of a good tenant were its loop's thread runnable but not
// on a CPU, while the server's own work for an attacker (the index of an
// accepted PUT, the rotation's carry-over, compactions) ran at the same
// priority as that loop. The kernel's scheduler knows nothing of tenants;
// it knows thread priorities. A thread at nice 19 gets a CPU at once when
// one is idle and only ~1.5 % of one while a thread at nice 0 wants it, so
// the rule is work-conserving by construction: bulk work alone runs at
// full speed, and with latency-sensitive threads runnable the kernel runs
// them first, so the attacker's service shrinks, not the good tenant's.
//
// How: a pool of long-lived goroutines, each locked to its own OS thread
// (runtime.LockOSThread) whose nice value is raised once when the worker
// starts and never lowered — an unprivileged process cannot lower it
// (RLIMIT_NICE), so a thread that was bulk stays bulk. Jobs are handed to
// an idle worker through a channel: no thread is made per job. A worker
// idle for IdleTimeout ends without unlocking, and the Go runtime then
// ends its thread, so a lowered thread never goes back to the runtime's
// pool to run other goroutines. Goroutines a job starts are ordinary ones
// (they run on the runtime's threads): Critical uses that.
//
// Off Linux the workers are plain goroutines (no per-thread priority).
//
// # Caveats
//
//   - A lock a bulk job holds is waited for at the job's priority: a
//     section that latency-sensitive code waits on (a commit log's write
//     side, every log's switch in a rotation) belongs in Critical.
//   - A bulk thread keeps its P while it waits for a CPU, and a garbage
//     collector's stop-the-world waits for every P: measured in
//     docs/RELIABILITY.md (ninth pass).
//   - When MaxWorkers jobs run, Go and Run start the next one on an
//     ordinary goroutine (counted by Overflows): it is never queued, so
//     a job that waits for another job cannot deadlock.
//   - A job's panic in Go ends the process, as a goroutine's would; Run
//     raises it again in the caller.
package bulk
