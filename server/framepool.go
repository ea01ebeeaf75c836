package server

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Mapped frames (framebuf.go) are kept, once answered, for the next large
// frame of the same mapped length (issue 13, row M2: 4 connections × 3
// DELTAs of 60 MiB). Filling fresh memory is what a large frame cost the
// event loop that receives it: every 2 MiB page is faulted in and zeroed
// on first touch, and on this project's VM (a paravirtualized guest whose
// balloon reports free pages to the host, which discards them) a page
// freed a few seconds earlier is faulted in by the host as well. Measured
// here, filling a fresh 60 MiB mapping in 64 KiB copies (gnet's read
// buffer) took 130–200 ms with single copies of 5–13 ms when its pages had
// been free for 3 s, and 5 ms when they had just been freed; the same
// copies into a mapping already resident took 2.2–3.6 ms, no copy above
// 0.12 ms. The execution trace of M2 showed the loops 986 ms of 1.16 s
// "running" in stretches of over 2 ms inside those copies, nearly none of
// it on a CPU, and the good tenant's slow requests inside them.
//
// The rules of an idle mapping:
//
//   - it is memory the server holds for clients, so its bytes stay in the
//     server's memory budget (used) while idle, and the pool holds at most
//     Options.FramePool bytes of them;
//   - it yields to every other reservation: when a reservation would take
//     the server budget over its limit, idle mappings are taken out of the
//     budget at once (evict, oldest first) and unmapped by a goroutine, so
//     the reservation never waits for them, and never unmaps on an event
//     loop or under a caller's lock (a reservation may be made on a loop,
//     or by the store under a phext's lock). Until that goroutine has
//     unmapped them the process holds up to FramePool bytes more than the
//     budget says (an munmap of 60 MiB of huge pages takes 0.2–0.7 ms
//     here);
//   - it is unmapped after frameIdleFor unused (the OnTick sweep), so a
//     server that stops receiving large frames gives the memory back;
//   - it counts as one of maxMappedFrames;
//   - a frame is received into an idle mapping only of exactly its mapped
//     length (frameMapLen): the frame's size gives its mapping's length
//     wherever it is released (freeFrameBuf), and from hugeFrame on lengths
//     are whole 2 MiB pages, so frames of similar sizes share them.
//
// A reused mapping still holds the bytes of the frame it held before,
// possibly another tenant's: the frame is handed on only once all of its
// own bytes have been copied over them (conn.go), and its slice's capacity
// is the frame's size, so nothing past it is ever read.

// frameIdleFor is how long an idle mapping waits to be reused before the
// OnTick sweep unmaps it. A var for tests.
var frameIdleFor = 10 * time.Second

// framePool holds answered frames' mappings. Safe for concurrent use; mu
// is a leaf lock (no other lock, no I/O, no munmap under it).
type framePool struct {
	s   *Server
	max int64 // bytes it may hold (Options.FramePool); ≤ 0: it holds none

	mu     sync.Mutex
	idle   []idleFrame // oldest first
	closed bool        // drained at shutdown: holds nothing more

	bytes  atomic.Int64  // bytes idle, all of them in the server budget's used
	reused atomic.Uint64 // frames received into an idle mapping (counted by frameBuf once reserved)
}

type idleFrame struct {
	b     []byte // the whole mapping
	since int64  // monoNow when it went idle
}

// take removes an idle mapping of exactly n bytes from the pool and from
// the server budget (its bytes are to be reserved anew for the frame), or
// returns nil. Any goroutine (the event loop at a frame's header).
func (p *framePool) take(n int) []byte {
	if p.bytes.Load() == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.idle) - 1; i >= 0; i-- { // the newest: the likeliest resident
		if b := p.idle[i].b; len(b) == n {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			p.bytes.Add(-int64(n))
			p.s.mem.unholdIdle(int64(n))
			return b
		}
	}
	return nil
}

// put offers the mapping b (whole, from mapFrame, no longer used and out
// of every budget) to the pool and reports whether it took it. It takes b
// only while b fits in the pool and in the server budget; to make room in
// the pool it lets go of its oldest mappings, which it appends to drop for
// the caller to unmap (off the loops, see idleOrUnmap), but only when b
// then fits in the budget: otherwise they stay, and only b is refused
// (their bytes leave the budget as b's enter, in one step, swapIdle).
func (p *framePool) put(b []byte, drop [][]byte) (kept bool, _ [][]byte) {
	n := int64(len(b))
	if n > p.max {
		return false, drop
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false, drop
	}
	k, freed := 0, int64(0)
	for p.bytes.Load()-freed+n > p.max && k < len(p.idle) {
		freed += int64(len(p.idle[k].b))
		k++
	}
	if !p.s.mem.swapIdle(freed, n) {
		return false, drop
	}
	for _, o := range p.idle[:k] {
		drop = append(drop, o.b)
	}
	p.idle = append(p.idle[:0], p.idle[k:]...)
	p.idle = append(p.idle, idleFrame{b: b, since: monoNow()})
	p.bytes.Add(n - freed)
	return true, drop
}

// evict takes idle mappings, oldest first, out of the pool and out of the
// server budget until need bytes are freed or none is left, has a
// goroutine unmap them and returns the bytes it took out of the budget.
// Called by the server budget's tryReserve (any goroutine, possibly a loop
// or one holding a store lock) and at maxMappedFrames: nothing here waits
// or unmaps.
func (p *framePool) evict(need int64) (freed int64) {
	if p.bytes.Load() == 0 {
		return 0
	}
	var drop [][]byte
	p.mu.Lock()
	for freed < need && len(p.idle) > 0 {
		o := p.idle[0].b
		p.idle = append(p.idle[:0], p.idle[1:]...)
		freed += int64(len(o))
		drop = append(drop, o)
	}
	p.bytes.Add(-freed)
	p.s.mem.unholdIdle(freed)
	p.mu.Unlock()
	if len(drop) > 0 {
		// The bytes are the budget's again from here, while the
		// goroutine unmaps them (the bound in the comment above).
		go p.s.unmapFrames(drop)
	}
	return freed
}

// expire takes out, unholds and returns the mappings idle since before
// cutoff (monoNow), or all of them with closing (shutdown; the pool
// then keeps nothing more). The caller unmaps them.
func (p *framePool) expire(cutoff int64, closing bool) (drop [][]byte) {
	if p.bytes.Load() == 0 && !closing {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = p.closed || closing
	i := 0
	for i < len(p.idle) && (closing || p.idle[i].since < cutoff) {
		drop = append(drop, p.idle[i].b)
		p.bytes.Add(-int64(len(p.idle[i].b)))
		p.s.mem.unholdIdle(int64(len(p.idle[i].b)))
		i++
	}
	p.idle = append(p.idle[:0], p.idle[i:]...)
	return drop
}

// unmapFrames unmaps whole mappings taken out of the pool (any goroutine
// but a loop).
func (s *Server) unmapFrames(bs [][]byte) {
	for _, b := range bs {
		s.unmapFrameBuf(b)
	}
}

// releaseFrameBuf gives back the buffer b of a large frame (any length;
// its capacity, the frame's size, says how it was made), which reserved
// reserved in mem: the reservation goes back, and a mapped buffer goes to
// the idle pool or is unmapped. The caller holds no other slice into b;
// onLoop says it is an event loop, which never unmaps.
func (s *Server) releaseFrameBuf(mem *memBudget, b []byte, reserved int64, onLoop bool) {
	if cap(b) < mappedFrame {
		mem.release(reserved) // heap memory: garbage until collected
		return
	}
	// Out of the budget first: the pool then holds it again only if the
	// server budget has room for it as an idle mapping.
	mem.releaseUnmapped(reserved)
	s.idleOrUnmap(unsafe.Slice(unsafe.SliceData(b), frameMapLen(cap(b))), onLoop)
}

// idleOrUnmap offers the whole mapping b, in no budget, to the idle pool,
// and unmaps it (off the loops) if the pool does not take it.
func (s *Server) idleOrUnmap(b []byte, onLoop bool) {
	kept, drop := s.frames.put(b, nil)
	if !kept {
		drop = append(drop, b)
	}
	switch {
	case len(drop) == 0:
	case onLoop:
		go s.unmapFrames(drop)
	default:
		s.unmapFrames(drop)
	}
}
