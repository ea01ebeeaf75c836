package server

import (
	"encoding/binary"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// Heavy requests (issue 13, a good tenant's latency under attack): work
// proportional to what a client sent or stored (a DELTA, PUT, WHERE or
// large UPDATE of more than heavyBytes, a compressed body declaring more,
// GET, TOC, CHECKSUM or DELTA of a phext charged more) runs under two
// limits:
//
//   - server-wide, at most max(1, CPUs−1) at once (CPUs: the Ps the
//     runtime chose at start, not a GOMAXPROCS raised by Procs), so one
//     CPU always stays free for the event loops and light requests. Without it, four
//     60 MiB DELTAs kept both Ps busy and a good tenant's round trip
//     waited for the Go scheduler's 10 ms preemption: gnet's loop yields
//     its P after every busy round (runtime.Gosched in its poller) and
//     then queues behind every runnable worker;
//   - per tenant, one at a time, so one tenant's many connections take
//     turns with each other instead of with everyone, and a waiting
//     worker is parked (not runnable) rather than queued ahead of the
//     loops: 64 connections pipelining compressed frames that each
//     declare 64 MiB made 64 runnable workers.
//
// A worker waiting for its turn holds its connection's queue, which stops
// the loop reading that connection past MaxInFlight or queueBytes (the
// bounds of today): the wait is backpressure on the sender, and what the
// waiting frames reserved stays in the memory budget, so further large
// frames get BUSY there. The tenant's turn is taken before the server's,
// so at most one worker per tenant waits for the server and tenants
// alternate (channel waiters are served in order).
//
// Writes hold their turn across the store call, including a group
// commit's log write and, in mode always, its fsync: only writes of more
// than heavyBytes do, and they are the ones whose copying and indexing
// compete for a core.

// heavyBytes is the size above which input (a frame, a compressed body's
// declared size) or a stored phext (its quota charge, store.ScrollCost a
// scroll included) makes a request heavy: the frames that are already
// received into their own reserved buffer (bigFrame).
const heavyBytes = bigFrame

// HeavyBytes is heavyBytes for the HTTP API, which asks for a turn
// (HeavyTurn) only for requests with more input or whole-phext work.
const HeavyBytes = heavyBytes

// heavyGate is a counting semaphore.
type heavyGate chan struct{}

func newHeavyGate(n int) heavyGate { return make(heavyGate, n) }

// heavySlots is the server-wide limit: all CPUs but one.
func heavySlots() int { return max(1, CPUs()-1) }

// heavyTurn waits for cs's tenant's turn and then the server's; the
// returned func gives both back.
func (s *Server) heavyTurn(t *tenant) func() {
	t.heavy <- struct{}{}
	s.heavy <- struct{}{}
	if hook := s.heavyHook.Load(); hook != nil {
		(*hook)(t)
	}
	return func() {
		<-s.heavy
		<-t.heavy
	}
}

// heavyFrame reports whether a request frame is heavy by its input: its
// size, or the uncompressed size a compressed body declares (decoding it
// is work in proportion to that claim until the decoder fails).
func heavyFrame(frame []byte) bool {
	if len(frame) > heavyBytes {
		return true
	}
	if len(frame) >= protocol.HeaderSize+4 && frame[5]&protocol.FlagCompressed != 0 {
		return binary.BigEndian.Uint32(frame[protocol.HeaderSize:]) > heavyBytes
	}
	return false
}

// wholePhext reports whether op's work is proportional to the size of the
// phext it names (see heavyPhext).
func wholePhext(op protocol.Op) bool {
	switch op {
	case protocol.OpGet, protocol.OpTOC, protocol.OpChecksum, protocol.OpDelta:
		return true
	}
	return false
}

// HeavyTurn takes t's heavy turn (heavyTurn) when a request of input
// bytes is heavy: input above heavyBytes, or whole (its work is that of
// the whole phext name: GET, TOC, CHECKSUM, DELTA, json-export) and the
// phext is (heavyPhext). The HTTP API's rule (server/httpapi); the binary
// protocol's is in handle, which knows the frame before decoding it. The
// returned func gives the turn back (a no-op when none was taken); call it
// before writing the reply, so a slow reader holds no turn.
func (s *Server) HeavyTurn(t Tenant, input int, whole bool, name []byte) func() {
	return s.heavyTurnIf(t.t, input, whole, name)
}

func (s *Server) heavyTurnIf(t *tenant, input int, whole bool, name []byte) func() {
	if input > heavyBytes || whole && heavyPhext(t, name) {
		return s.heavyTurn(t)
	}
	return func() {}
}

// heavyPhext reports whether phext name of t is charged more than
// heavyBytes (a constant-time look under its read lock). An error (no
// such phext, a bad name) is light: the request fails the same way
// without the turn.
func heavyPhext(t *tenant, name []byte) bool {
	b, n, err := t.store.TextSize(name)
	return err == nil && b+n*store.ScrollCost > heavyBytes
}
