// Package bench is SQ's load generator: it drives many authenticated
// connections, each with a pipeline of requests, checks every answer
// against a model of what its tenant should hold, and reports throughput,
// HDR latency percentiles per operation, error counts and the server's
// CPU and memory.
//
// The pieces, each usable on its own:
//
//   - Run drives a workload (Options) against one address and returns a
//     Result. It speaks SQ's binary protocol through client.RawConn, or
//     RESP (Redis) with the same generator, model and histograms, so the
//     numbers of the two are comparable.
//   - NewTenants and WriteConfig make a tenants.json with random tokens;
//     StartHost runs `sq host` as a child process; ReadProc reads a process's CPU time
//     and RSS from /proc. Together they provision the world `sq bench`
//     measures.
//   - StartEcho runs a do-nothing gnet server that answers SQ frames with
//     answers of the same sizes: the ceiling of this machine's network path.
//   - RunBigPhext, RunIdle and the reload loop implement the scenarios that
//     need more than one Run.
//
// The load loop keeps one goroutine per connection, builds each request in
// a reused buffer from a shared read-only pool of random text and records
// latencies in per-connection batches flushed into sharded HDR histograms,
// so a steady-state operation allocates nothing (see TestRunAllocs).
//
// # Model and verification
//
// A connection owns a disjoint set of scrolls of its tenant (different
// connections of one tenant never touch the same scroll), so it can predict
// every answer exactly: answers come back in request order and the server
// executes one connection's requests in order, so the model is advanced
// when an answer arrives. Each text written starts with an 8-byte tag
// naming the tenant ("T000042|"); a SELECT that returns bytes the model did
// not write is a mismatch, and one that carries another tenant's tag is
// counted as a cross-tenant read.
//
// # Goroutines and locks
//
// Run starts one goroutine per connection; it alone touches its conn (the
// wire, the model, the in-flight ring, the counters), except conn.done,
// an atomic the progress reporter sums. The runner's phase, recording
// flag and Ops budget are atomics the connection goroutines read. Each
// histogram shard has a mutex, taken only to flush a batch of 256
// latencies and to merge at the end; problem lines have their own mutex.
// No lock is held across I/O. StartHost adds two goroutines per child
// (stdout scanner, Wait); RunIdle one pinger; Echo's handlers run on gnet
// event loops and touch only their connection's state.
//
// # Caveats
//
//   - A scroll written by someone else while the bench runs (another client,
//     or a second bench on the same tenants) shows up as mismatches.
//   - INSERT appends; once a scroll would grow past Options.MaxScroll the
//     generator sends an UPDATE instead (counted as an UPDATE), so a
//     write-heavy mix cannot grow scrolls without bound.
//   - Every scroll is written once (or, with Options.NoPreload, deleted)
//     before the warm-up, so data left by an earlier run on the same tenants
//     does not confuse the model.
//   - Latencies are measured from when a request is buffered to when its
//     answer is decoded; with a pipeline they include queueing behind the
//     earlier requests of the same connection.
//   - /proc readers are Linux-only; elsewhere server stats are left zero.
package bench
