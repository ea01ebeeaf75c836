// Package server is the SQ binary-protocol server: a gnet v2 engine with
// one event loop per core, a token table swapped atomically on reload, and
// per-connection workers that run requests against the store.
//
// Event loops only frame requests (protocol.FrameSize), check the HELLO
// token against a preloaded map of token digests, and queue whole frames.
// Each connection has at most one worker goroutine, started when frames
// are queued and gone when the queue is empty; it decodes, runs the store
// operation, and sends all replies of a batch with one AsyncWrite, so
// replies leave in request order and the loops never wait on the disk.
//
// Entry points: New/Start build a Server over a store.Store and a
// config.Config (package config reads the tenants.json format); Serve runs it;
// Reload swaps the tenant table; Shutdown drains it. The HTTP front end is
// package server/httpapi, which reaches the engine only through the
// methods of front.go, watch_stream.go (Watch) and metrics_expo.go
// (AppendMetrics).
//
// # Caveats
//
//   - The caller owns the store: close it after Serve returns (after
//     Shutdown), never before, or in-flight writes fail.
//   - Reload keeps the *tenant of every tenant whose token, name and data
//     dir are unchanged; quota and durability changes apply in place.
//     Connections of removed, disabled or re-keyed tenants are closed.
//   - Limits (connections, in-flight, frame size, timeouts) are enforced
//     per connection; a client that breaks the protocol only loses its
//     own connection.
//   - A tenant's new connections are paced and its malformed frames
//     budgeted per tenant (pace.go, Options.HelloRate, BadFrameRate): a
//     HELLO may be answered seconds late, and a tenant past its budget of
//     malformed frames loses the connection that sent one. Pacing is per
//     tenant, not per address: many hostile tenants need a limit in front.
//
// See LOCKS.md for lock order and goroutine ownership.
package server
