package server

import (
	"runtime"
	"sync/atomic"

	"github.com/phext/sq/protocol"
)

// The server-wide memory budget (issue 13; Redis' maxmemory-clients): the
// memory clients make the server hold, summed over every connection and
// REST request, stays under Options.MaxClientMemory. Charged before the
// allocation happens:
//
//   - a request frame above bigFrame, from the moment its header is read
//     (before its body is waited for) until its reply is sent;
//   - a decompressed body, as its buffer grows (protocol.Decoder.Budget);
//   - the reply of GET, TOC and DELTA and a DELTA request's parsed form,
//     measured by the store before they are built (store.Limit.Reserve),
//     until the reply is handed to the socket;
//   - a REST request body and the REST replies above, and json-export's.
//
// What does not fit is answered BUSY (REST: 503 with Retry-After) and not
// queued: a frame refused at its header has its body discarded as it
// arrives. Small frames (≤ bigFrame) are bounded per connection instead
// (MaxInFlight, queueBytes), like Redis' client-query-buffer-limit.

// Each tenant has its own share (Options.MaxClientMemoryPerTenant, default
// a quarter of the server budget): a tenant's budget has the server's as
// its parent and a reservation must fit in both, so one tenant cannot hold
// the whole server budget (nine headers declaring 64 MiB frames used to
// fill the default 1 GiB). A connection charges the budget of the tenant it
// authenticated as (connState.mem, fixed for the connection's life, so a
// release goes to the budget the bytes were reserved in); a reload that
// replaces a tenant's *tenant value but keeps its name and data dir (a
// token rotation) carries its budget over (newTenant). The admin's connections charge the server budget directly.
// A REST request charges its tenant's budget (auth comes first).
//
// Within its share, a tenant's large frames (above bigFrame, from their
// header until they are answered) may hold at most
// Options.MaxFrameMemoryPerTenant (default half the share, at least one max
// frame): a budget of its own whose parent is the tenant's. A tenant
// sending 60 MiB frames on four connections at once (row M2) has one
// received at a time and the others answered BUSY at their header, their
// bodies dropped in the socket uncopied, instead of the server receiving
// three of them at once into fresh memory; a single max-size frame of a
// tenant alone always fits.

// memBudget counts reserved bytes against a limit, and against its
// parent's when it has one. Safe for concurrent use.
type memBudget struct {
	limit   int64
	parent  *memBudget // nil for the server budget
	used    atomic.Int64
	peak    atomic.Int64
	refused atomic.Uint64

	// Server budget only (see freed): bytes released since the last
	// collection it started, whether one runs, and how many it started.
	garbage    atomic.Int64
	collecting atomic.Bool
	gcs        atomic.Uint64
	headroom   int64 // a max frame: what the next request may allocate before a collection ends
	// spare holds idle frame mappings (framepool.go), whose bytes are in
	// used until a reservation that needs them evicts them.
	spare *framePool
}

// errBusyMemory answers a request the budget refused.
var errBusyMemory = &protocol.Error{Status: protocol.StatusBusy,
	Msg: "the server's memory budget for client requests is in use; retry later"}

// tryReserve reserves n bytes, or reserves nothing and returns false when
// they do not fit.
func (b *memBudget) tryReserve(n int64) bool {
	if n <= 0 || b.limit < 0 { // a negative limit: no budget (Options.MaxClientMemory)
		return true
	}
	u := b.used.Add(n)
	over := u > b.limit
	if over && b.spare != nil {
		// Idle frame mappings give way to any reservation (framepool.go).
		u -= b.spare.evict(u - b.limit)
		over = u > b.limit
	}
	if !over && b.parent == nil {
		// Client buffers dropped but not yet collected are memory too
		// (see freed): the server budget counts them until a collection
		// has run, and starts one if none is running.
		if g := b.garbage.Load(); g > 0 && u+g > b.limit {
			if b.spare != nil {
				u -= b.spare.evict(u + g - b.limit)
			}
			if u+g > b.limit {
				over = true
				b.collect(true)
			}
		}
	}
	if over {
		b.used.Add(-n)
		b.refused.Add(1)
		if r := b.root(); r != b {
			// The server's refused counter counts every BUSY for memory,
			// whichever budget refused.
			r.refused.Add(1)
		}
		return false
	}
	if b.parent != nil && !b.parent.tryReserve(n) {
		b.used.Add(-n)
		return false
	}
	for {
		p := b.peak.Load()
		if u <= p || b.peak.CompareAndSwap(p, u) {
			return true
		}
	}
}

// swapIdle replaces out bytes of idle frame mappings in the server budget
// by in bytes of others (framepool.go), unless the difference does not fit
// beside what is reserved and the uncollected garbage: an idle mapping
// never takes the room of a reservation. Refused, it changes nothing.
func (b *memBudget) swapIdle(out, in int64) bool {
	if b.limit < 0 {
		return true
	}
	d := in - out
	if u := b.used.Add(d); d > 0 && u+max(b.garbage.Load(), 0) > b.limit {
		b.used.Add(-d)
		return false
	}
	return true
}

// unholdIdle takes n bytes of idle frame mappings out of the server
// budget (reused by a frame, which reserves them anew, or unmapped).
func (b *memBudget) unholdIdle(n int64) {
	if b.limit >= 0 && n > 0 {
		b.used.Add(-n)
	}
}

// release returns n reserved bytes (to the parent too), which the Go GC
// has yet to collect (see freed).
func (b *memBudget) release(n int64) {
	b.releaseAs(n, true)
}

// releaseUnmapped returns n reserved bytes whose memory went back to the
// system already (a mapped frame buffer, framebuf.go): no garbage.
func (b *memBudget) releaseUnmapped(n int64) {
	b.releaseAs(n, false)
}

func (b *memBudget) releaseAs(n int64, garbage bool) {
	if n > 0 && b.limit >= 0 {
		root := b
		for x := b; x != nil; x = x.parent {
			x.used.Add(-n)
			root = x
		}
		if garbage {
			root.freed(n)
		}
	}
}

// root is the server budget b belongs to.
func (b *memBudget) root() *memBudget {
	for b.parent != nil {
		b = b.parent
	}
	return b
}

// freed notes that n bytes a client made the server allocate were dropped
// (server budget). They are free for reuse only after the Go GC has run,
// and its pacer (GOGC=100) lets garbage grow to the size of the live heap
// first: a client sending large frames one after another would hold the
// budget live plus up to as much again in garbage (issue 13, row M2: 4
// DELTAs of 60 MiB kept the server ~350 MiB over its 256 MiB budget
// after they stopped sitting in gnet's inbound buffer). So once the bytes
// dropped since the last collection plus those still reserved come within
// a max frame of the limit, a collection runs in the
// background: live client memory plus its garbage stays about the budget.
// The threshold leaves a max frame of headroom (headroom), since the next
// large request allocates its buffer before a collection started then has
// ended; a floor of a sixteenth of the limit keeps a budget held near full
// from collecting on every small release.
//
// A collection also runs once half a max frame of them is garbage,
// however full the budget: until it does, every new large buffer is fresh
// memory whose pages the kernel faults in one by one. Frames of a MiB
// and more no longer come from the heap (framebuf.go: mapped, unmapped
// once answered, released with releaseUnmapped, never garbage); decoded
// bodies and replies still do.
//
// Until the collection that took them has run, dropped bytes count
// against the server budget (tryReserve): the collection runs in the
// background, and frames arriving at loopback speed meanwhile would be
// fresh memory on top of the garbage (row M2 measured +267 to +275 MiB
// over a 256 MiB budget that way).
func (b *memBudget) freed(n int64) {
	b.garbage.Add(n)
	b.collect(false)
}

// collect starts a background collection when the garbage calls for one
// (see freed), or when force is set and there is garbage at all, unless
// one is running. A finished collection takes off the garbage counted
// when it started (bytes dropped while it ran may have been marked
// already) and checks again for what was dropped meanwhile.
func (b *memBudget) collect(force bool) {
	g := b.garbage.Load()
	if g <= 0 || !force && (g < b.limit/16 || (g+b.used.Load()+b.headroom < b.limit && g < b.headroom/2)) ||
		!b.collecting.CompareAndSwap(false, true) {
		return
	}
	b.gcs.Add(1)
	go func() {
		runtime.GC()
		b.garbage.Add(-g)
		b.collecting.Store(false)
		b.collect(false)
	}()
}

// force charges n bytes that are allocated already (gnet's buffers of a
// connection), past the limit if need be; see over.
func (b *memBudget) force(n int64) {
	for x := b; x != nil && x.limit >= 0; x = x.parent {
		u := x.used.Add(n)
		if u > x.limit && x.spare != nil {
			// Idle frame mappings give way to this charge too
			// (framepool.go): counted over the limit, they would have
			// the caller close a connection for memory no client uses.
			u -= x.spare.evict(u - x.limit)
		}
		for {
			p := x.peak.Load()
			if u <= p || x.peak.CompareAndSwap(p, u) {
				break
			}
		}
	}
}

// over reports whether the budget or its parent holds more than its limit.
func (b *memBudget) over() bool {
	for x := b; x != nil; x = x.parent {
		if x.limit >= 0 && x.used.Load() > x.limit {
			return true
		}
	}
	return false
}

// Reserve and Release make the budget a protocol.Budget.
func (b *memBudget) Reserve(n int) bool { return b.tryReserve(int64(n)) }

// Release returns n bytes (protocol.Budget).
func (b *memBudget) Release(n int) { b.release(int64(n)) }

// hold collects what one request reserved, to be released once its reply
// has left. Owned by one goroutine.
type hold struct {
	b *memBudget
	n int64
}

// reserve is a store.Limit.Reserve: it refuses with BUSY.
func (h *hold) reserve(n int) error {
	if !h.b.tryReserve(int64(n)) {
		return errBusyMemory
	}
	h.n += int64(n)
	return nil
}

// done releases everything held.
func (h *hold) done() {
	h.b.release(h.n)
	h.n = 0
}

// MemoryStats reports the client memory budget: bytes reserved now, the
// most ever reserved at once, the limit, and how many reservations were
// refused (answered BUSY). InboundPeak is outside the budget: the most
// bytes gnet held unread for one connection after a read (its inbound
// buffer), which stays about one read buffer (64 KiB) because large frames
// are moved into their reserved buffer as they arrive.
type MemoryStats struct {
	Used, Peak, Limit int64
	Refused           uint64
	InboundPeak       int64
	// FrameBytesIdle is the part of Used (and of FrameBytesMapped) held by
	// answered frames' mappings kept for the next large frame
	// (framepool.go); FramesReused counts the frames received into one.
	FrameBytesIdle int64
	FramesReused   uint64
	// Collections counts the garbage collections the budget started
	// because client buffers dropped since the last one, plus those still
	// reserved, reached the limit (see freed).
	Collections uint64
	// FramesMapped counts the large frames received into mapped memory
	// (framebuf.go); FrameBytesMapped is the memory of those not yet
	// unmapped.
	FramesMapped     uint64
	FrameBytesMapped int64
}

// Memory returns the client memory budget's counters.
func (s *Server) Memory() MemoryStats {
	return MemoryStats{Used: s.mem.used.Load(), Peak: s.mem.peak.Load(), Limit: s.mem.limit,
		Refused: s.mem.refused.Load(), InboundPeak: s.stats.inboundPeak.Load(), Collections: s.mem.gcs.Load(),
		FramesMapped: s.stats.framesMapped.Load(), FrameBytesMapped: s.stats.frameBytesMapped.Load(),
		FrameBytesIdle: s.frames.bytes.Load(), FramesReused: s.frames.reused.Load()}
}
