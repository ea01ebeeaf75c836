// Package client is the Go client of the SQ server: it speaks the binary
// protocol of docs/PROTOCOL.md using the codec of package protocol.
//
// Dial connects, sends HELLO with a tenant token and negotiates
// compression. A *Conn has one method per operation (Select, Insert,
// Update, Delete, TOC, Get, Put, Checksum, Delta, Where, List, Status,
// Version, Ping, Compact, Reload), each taking a context.Context and the
// phext name explicitly ("" is the tenant's default phext):
//
//	c, err := client.Dial(ctx, "127.0.0.1:1337", token)
//	n, err := c.Insert(ctx, "", coord, []byte("hello"))
//	text, err := c.Select(ctx, "", coord)
//
// An error answer from the server is a *StatusError carrying the status
// code (use StatusOf or errors.As), so QUOTA can be told from BAD_SCROLL
// and from a network error, which is never a *StatusError.
//
// A Conn is safe for concurrent use and pipelines: many goroutines share
// one TCP connection, their requests are written in turn and answered in
// order. Pool spreads calls over several connections. RawConn is a lean
// single-owner connection for benchmarks (no goroutine, no allocation per
// request).
//
// The change feed: Conn.Watch subscribes to the committed changes of a
// phext (PROTOCOL.md §2.10) on that connection; the package-level Watch
// follows a phext on its own connection and resumes across reconnects:
//
//	events, err := client.Watch(ctx, addr, token, "notes", client.WatchOptions{Text: true})
//	for ev := range events {
//		if ev.Resync { /* read the phext again: Delta or Get */ }
//	}
//
// # Goroutines and locks
//
// Each Conn owns one reader goroutine (readLoop), started by Dial and ended
// when the connection breaks or is closed; Close waits for it. It also
// delivers change-feed events to each Subscription's channel (watchState.smu
// guards the subscriptions; a full channel makes it wait). A package-level
// Watch runs one goroutine that forwards events and re-dials. Callers
// write: Conn.wmu serializes id assignment, encoding, queueing and the
// socket write. Conn.pmu guards the FIFO of pending calls and the broken
// state. Lock order: wmu before pmu; the reader takes only pmu. No lock is
// held while a caller waits for its answer. Pool.mu guards the connection
// slice and is never held across I/O except in Close.
//
// # Caveats
//
//   - A Conn never reconnects (the package-level Watch does, for its own
//     connection). After a network error or protocol violation
//     every pending and later call fails with an error wrapping ErrClosed;
//     Dial again (or Pool.Redial) when you want a new connection.
//   - Cancelling a call's context makes the call return ctx.Err() at once,
//     but the request may already be on the wire and may still be executed
//     by the server (an INSERT can happen); its answer is discarded.
//   - A write blocked by a server that does not read can only be
//     interrupted by a context deadline, and a write that times out breaks
//     the connection (a partial frame cannot be taken back).
//   - Byte slices returned by the typed methods belong to the caller. The
//     body appended by Do is a copy too. RawConn.Recv's Response.Body is
//     valid only until the next Recv.
//   - Requests larger than the server's max frame (from HELLO) are refused
//     locally with a StatusError TOO_LARGE and not sent.
//   - Plain TCP only; wrap the connection with Options.Dialer for TLS.
package client
