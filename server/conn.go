package server

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// maxHelloFrame bounds the first frame of a connection: nothing larger is
// buffered for a peer that has not authenticated.
const maxHelloFrame = 512

// maxSpare is the largest request batch buffer a connection keeps between
// batches while busy; idleSpare while its worker is gone. Larger ones are
// dropped for the GC.
const (
	maxSpare  = 256 << 10
	idleSpare = 4 << 10
	bigFrame  = 64 << 10 // frames above this are queued as their own copy
	// directRead is the most a loop reads from a socket straight into a
	// large frame's buffer per OnTraffic, after the bytes gnet read
	// (its read buffer, 64 KiB). gnet copies what it reads into the
	// frame's buffer once more, and reads 64 KiB per event: a 60 MiB
	// frame was 960 reads and a copy of 60 MiB on the loop (row M2:
	// 0.44 s of the server's 1.6 s CPU in those copies), where direct
	// reads take one copy (the kernel's). A request of another
	// connection on the loop waits for at most one such read per round:
	// 1 MiB was 0.1–0.3 ms into resident memory, about what the good
	// tenant's whole round trip takes on a quiet server (0.1–0.2 ms),
	// so the M2 attack's reads (~20 frames of 60 MiB a 5 s window after
	// the refusal weights) still reached its p99; 256 KiB bounds that
	// wait to a quarter, for ~4 loop rounds a MiB instead of one (an
	// epoll_wait and gnet's read each, microseconds against the copy).
	directRead = 256 << 10
)

// connState is the per-connection state, set as the gnet Conn's context in
// OnOpen.
//
// Ownership: the fields marked "loop" are touched only by the connection's
// event loop; "worker" only by its worker goroutine (at most one runs at a
// time); the queue fields only under mu; the rest are atomics or immutable.
type connState struct {
	s        *Server
	c        gnet.Conn
	remote   string // kept from OnOpen: gnet recycles RemoteAddr at close
	ip       string
	loopback bool

	// authed and tenant are the loop's (and, after the mu handoff, the
	// worker's) plain copies; authedA and tenantPtr hold the same facts
	// for goroutines without that handoff: the ticker (OnTick's HELLO
	// timeout reads authedA) and a reload's scan of the connections
	// (tenantPtr). OnClose reads tenantPtr too. All are set once, at
	// HELLO, on the loop.
	authed    bool // loop
	authedA   atomic.Bool
	admin     bool    // loop, then read by the worker after the mu handoff
	maxFrame  int     // loop
	tenant    *tenant // loop, then read by the worker after the mu handoff
	tenantPtr atomic.Pointer[tenant]
	// paced is a HELLO whose answer waits for its tenant's schedule of
	// new connections (loop); pacing says the connection has one, so the
	// HELLO timeout spares it (OnTick).
	paced  *pacedHello
	pacing atomic.Bool
	// refusal is the schedule of the tenant whose waiting refusal's slot
	// this connection holds until it closes (refuseLate; loop).
	refusal *pace
	// authWaiting says this connection's failed HELLO is counted among
	// the waiting ones until it closes (waitAuthRefusal; loop);
	// authAnswer is that delayed answer (set on the loop, ended by its
	// timer, Shutdown or the close: authlimit.go).
	authWaiting bool
	authAnswer  atomic.Pointer[authAnswer]
	// helloTimer marks a waiting HELLO due (waitHello), stopped if the
	// connection closes first (OnClose; loop).
	helloTimer *time.Timer

	// Times are monoNow readings (clock.go).
	lastActive atomic.Int64 // the last read
	// discardedAt: the last inbound bytes discarded while closing
	// (lingerClose waits for them to stop).
	discardedAt  atomic.Int64
	openedAt     int64
	partialSince atomic.Int64 // when a partial frame was first seen; 0 if none
	closing      atomic.Bool  // stop reading: a fatal reply or a close is on its way
	gone         atomic.Bool  // closed or being closed: workers stop running its frames
	blocked      atomic.Bool  // reading paused at MaxInFlight; the worker wakes it
	inflight     atomic.Int64 // frames read and not yet answered

	mu sync.Mutex
	// The queue: whole frames in arrival order. Small frames are packed
	// into arena; a large one gets its own exact-size copy so no append
	// doubling or arena slack multiplies its memory.
	frames      [][]byte
	arena       []byte
	fatal       []byte // an error reply to send after the queue, then close
	running     bool
	spareFrames [][]byte
	spareArena  []byte
	queuedBytes atomic.Int64 // bytes of frames queued or being executed

	// Budget (budget.go): arriving is what the large frame being
	// received reserved at its header (loop); big is that frame, an
	// exact-size buffer its bytes are moved into as they arrive, so it
	// never sits in gnet's inbound buffer (loop); skip counts body bytes
	// of a frame refused at its header still to be discarded (loop); held
	// is what the replies being built reserved, released once sent
	// (worker).
	arriving int64
	big      []byte
	// arrivingA mirrors arriving, bigGot len(big) and bigSize cap(big)
	// (the frame's size, which from hugeFrame on is less than what it is
	// charged), for the OnTick sweep (slowFrames).
	arrivingA atomic.Int64
	bigGot    atomic.Int64
	bigSize   atomic.Int64
	// bufCharged is what gnet holds for this connection (unsent replies,
	// unparsed input) as last charged to mem (loop, see chargeBuffers);
	// bufChargedA mirrors it for the OnTick sweep, which wakes the loop to
	// recount once the socket has taken the replies.
	bufCharged  int64
	bufChargedA atomic.Int64
	skip        int
	held        hold
	// putChk checks the document of a large uncompressed PUT being
	// received into big against its tenant's quota as its bytes arrive
	// (checkPut), so one charged more than the whole quota is refused
	// before the rest is received; putOn says it runs, putAt is how much
	// of big it has counted (0 until the payload's offset is known)
	// (loop).
	putChk store.PutCheck
	putAt  int
	putOn  bool
	// counted holds the finished quota checks of the large uncompressed
	// PUTs queued whose whole document the loop counted (checkPut), for
	// the worker to hand to the store with the document
	// (store.Tenant.PutCounted), so that it is counted once. An entry is
	// appended with its frame (enqueueOwned) and leaves when the worker
	// takes it (takeCounted) or gives the frame back (releaseFrame),
	// before the frame's buffer can be reused. Under mu.
	counted []countedPut
	// putDone is the check the worker hands to the store for the PUT it
	// runs: the loop's (handle) or, for a compressed PUT, decChk once it
	// saw the whole document (decode); exec's PUT takes it. Worker.
	putDone *store.PutCheck
	// mem is the budget this connection charges: its tenant's share once
	// HELLO authenticated it, else the server's. Set on the loop before
	// any reservation and never changed after, so every release goes to
	// the budget its bytes were reserved in (even after a reload).
	mem *memBudget
	// frameMem is the budget its large frames charge (from their header
	// until answered): its tenant's frame share, whose parent is mem, or
	// mem itself (the admin's connections). Set with mem.
	frameMem *memBudget

	dec     protocol.Decoder // worker
	writes  []store.Write    // worker: scratch for runs of pipelined writes
	loopDec protocol.Decoder // loop: the fast path (uncompressed frames only)
	codec   uint8            // agreed compression codec; set on loop before the worker exists
	// hold is what the refusal budget decided for the frames the worker
	// has just run, holdUntil (monoNow) when the batch's held replies go
	// out, 0 if they are not held (refusal.go: refused, holdReplies;
	// worker). holdCh ends their wait early (under mu, see holdWake);
	// shut says the connection is closed or being closed without more
	// replies: send drops them.
	hold      Refusal
	holdUntil int64
	holdCh    chan struct{}
	shut      atomic.Bool
	// decChk is the quota check of a compressed PUT's document while dec
	// decompresses it (decode). Worker.
	decChk store.PutCheck
	// pre is the fast path's decoding of a frame it could not answer, so
	// that the worker does not decode the frame again (queue.go). Written
	// on the loop (fast, then enqueue under mu, which re-points it into the
	// queued copy) only while nothing of the connection is in flight, so
	// no worker batch is reading it; then the worker's (decode), until its
	// batch's replies are written. missed says fast has just filled it for
	// the frame OnTraffic enqueues next (loop).
	pre    decodedFrame
	missed bool
	// The writes answered on the loop in this OnTraffic round (loop):
	// their records wait in round until endRound writes them; roundAt are
	// the offsets of their replies in the round's reply buffer, roundExec
	// says the round counts in Server.executing.
	round     store.LoopRound
	roundAt   []int
	roundExec bool

	watch  connWatch    // the change feed (watch.go)
	nwatch atomic.Int64 // subscriptions held (OnTick's idle check)
}

func (s *Server) registerConn(cs *connState) {
	s.connsMu.Lock()
	s.conns[cs] = struct{}{}
	s.connsMu.Unlock()
}

func (s *Server) unregisterConn(cs *connState) {
	s.connsMu.Lock()
	delete(s.conns, cs)
	s.connsMu.Unlock()
}

func (s *Server) snapshotConns() []*connState {
	s.connsMu.Lock()
	out := make([]*connState, 0, len(s.conns))
	for cs := range s.conns {
		out = append(out, cs)
	}
	s.connsMu.Unlock()
	return out
}

// closeWith closes the connection from any goroutine, recording why.
func (cs *connState) closeWith(r closeReason) {
	cs.gone.Store(true)
	cs.wakeHold(true)
	if cs.closing.Swap(true) && r != closeShutdown {
		return
	}
	cs.s.stats.closed[r].Add(1)
	cs.c.Close()
}

// closeWithFrame is closeWith, but sends frame (an error for a request the
// client did not make, telling it why) before the connection closes. Any
// goroutine may call it: the frame goes through AsyncWrite, after replies
// already queued, and the close happens in its callback.
func (cs *connState) closeWithFrame(r closeReason, frame []byte) {
	cs.gone.Store(true)
	cs.wakeHold(true)
	if cs.closing.Swap(true) {
		return
	}
	cs.s.stats.closed[r].Add(1)
	cs.s.asyncPending.Add(1)
	err := cs.c.AsyncWrite(frame, func(c gnet.Conn, _ error) error {
		cs.s.asyncPending.Add(-1)
		if c != nil {
			c.Close()
		}
		return nil
	})
	if err != nil {
		cs.s.asyncPending.Add(-1)
		cs.c.Close()
	}
}

// OnOpen sets up the connection state, or refuses the connection while
// draining or over MaxConns.
func (s *loopHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if s.draining.Load() || s.stats.conns.Load() >= int64(s.opts.MaxConns) {
		s.stats.closed[closeLimit].Add(1)
		return nil, gnet.Close
	}
	now := monoNow()
	cs := &connState{s: s.Server, c: c, openedAt: now, maxFrame: maxHelloFrame}
	cs.mem, cs.frameMem = &s.mem, &s.mem
	cs.held.b = cs.mem
	if a := c.RemoteAddr(); a != nil {
		cs.remote = a.String()
		if ta, ok := a.(*net.TCPAddr); ok {
			cs.ip = ta.IP.String()
			cs.loopback = ta.IP.IsLoopback()
		}
	}
	cs.lastActive.Store(now)
	cs.round.SetLoop(s.loopIndex(c.EventLoop()))
	c.SetContext(cs)
	s.registerConn(cs)
	s.stats.conns.Add(1)
	s.stats.accepted.Add(1)
	return nil, gnet.None
}

// loopIndex numbers the event loops in the order they first open a
// connection (0, 1, …): a connection's loop rounds write that loop's log
// (store.LoopRound.SetLoop), which no other loop writes.
func (s *Server) loopIndex(el gnet.EventLoop) int {
	if el == nil {
		return 0
	}
	if v, ok := s.loopIdx.Load(el); ok {
		return v.(int)
	}
	v, _ := s.loopIdx.LoadOrStore(el, int(s.loopCount.Add(1)-1))
	return v.(int)
}

// OnClose releases the connection's tenant slot.
func (s *loopHandler) OnClose(c gnet.Conn, err error) gnet.Action {
	cs, _ := c.Context().(*connState)
	if cs == nil {
		return gnet.None
	}
	cs.gone.Store(true)
	if !cs.closing.Swap(true) {
		s.stats.closed[closeClient].Add(1)
	}
	cs.wakeHold(true) // held replies: their slot back now, nothing written
	if cs.big != nil {
		// A frame that never fully arrived: its mapping goes to the idle
		// pool, or is unmapped by a goroutine (work in proportion to the
		// pages it touched, never done on the loop).
		s.releaseFrameBuf(cs.frameMem, cs.big, cs.arriving, true)
	} else {
		cs.frameMem.release(cs.arriving)
	}
	cs.arriving, cs.big = 0, nil
	cs.mem.release(cs.bufCharged)
	cs.bufCharged = 0
	cs.bufChargedA.Store(0)
	cs.closeWatches()
	cs.arrivingA.Store(0)
	s.releaseRefusal(cs)
	s.releaseAuthRefusal(cs)
	if cs.helloTimer != nil {
		cs.helloTimer.Stop()
		cs.helloTimer = nil
	}
	s.unregisterConn(cs)
	s.stats.conns.Add(-1)
	if t := cs.tenantPtr.Load(); t != nil {
		t.conns.Add(-1)
	}
	return gnet.None
}

// OnTraffic frames every complete request buffered on the connection,
// answers what it can on the loop (fast) and queues the rest, in one batch,
// for the connection's worker. Its only disk I/O is the round's one
// commit-log write() of the writes it applied (endRound), before their
// replies; it never fsyncs and never waits for a lock.
func (s *loopHandler) OnTraffic(c gnet.Conn) gnet.Action {
	cs := c.Context().(*connState)
	if cs.closing.Load() {
		if c.InboundBuffered() > 0 {
			cs.discardedAt.Store(monoNow())
		}
		c.Discard(c.InboundBuffered())
		return gnet.None
	}
	now := monoNow()
	if c.InboundBuffered() > 0 { // not a wake-up to recount buffers (OnTick)
		cs.lastActive.Store(now)
	}
	queued := false
	var fastOut *bytebufferpool.ByteBuffer
	for {
		if !cs.authed {
			if a, done := s.hello(cs, c); !done {
				return a
			}
			continue
		}
		if cs.skip > 0 {
			// The body of a frame refused for memory: drop it as it
			// arrives, never buffer it; once gnet holds none of it, what
			// the socket holds goes without being copied at all.
			n := min(cs.skip, c.InboundBuffered())
			c.Discard(n)
			cs.skip -= n
			if cs.skip > 0 {
				d := discardSocket(c.Fd(), cs.skip) // at most directRead a round
				cs.skip -= d
				s.stats.socketDropped.Add(uint64(d))
			}
			if cs.skip > 0 {
				break
			}
			cs.partialSince.Store(0) // the next frame's clock starts at its own bytes
			continue
		}
		if cs.big != nil {
			// A large frame is arriving: move what came into its buffer,
			// then read what the socket holds straight into it (see
			// directRead).
			n, _ := c.Read(cs.big[len(cs.big):cap(cs.big)])
			cs.big = cs.big[:len(cs.big)+n]
			if len(cs.big) < cap(cs.big) && c.InboundBuffered() == 0 {
				had := len(cs.big)
				cs.big = readSocket(c.Fd(), cs.big, directRead)
				s.stats.socketRead.Add(uint64(len(cs.big) - had))
			}
			cs.bigGot.Store(int64(len(cs.big)))
			if cs.putOn {
				if err := cs.checkPut(); err != nil {
					// Refused by what has arrived: answer in order (as the
					// worker would answer the whole frame), give the
					// buffer back and drop the rest as it comes.
					status, msg := s.arrivingPutRefusal(cs, err)
					cs.enqueueRefusal(cs.big, status, msg)
					cs.skip = cap(cs.big) - len(cs.big)
					// To the idle pool, or unmapped by a goroutine: work
					// in proportion to the pages it touched, never on the
					// loop (as in OnClose).
					s.releaseFrameBuf(cs.frameMem, cs.big, cs.arriving, true)
					cs.big, cs.arriving, cs.putOn = nil, 0, false
					cs.arrivingA.Store(0)
					// partialSince runs on: the rest of the frame must
					// still arrive within the frame timeout.
					queued = true
					continue
				}
			}
			if len(cs.big) < cap(cs.big) {
				break
			}
			// Whole: it goes to the worker (never answered on the loop)
			// with its reservation, released once it is answered (see
			// releaseFrame), and a PUT's document with its count when
			// checkPut counted all of it.
			var chk *store.PutCheck
			if cs.putOn && cs.putAt > 0 && cs.putAt == len(cs.big) {
				chk = &cs.putChk
			}
			cs.putOn = false
			cs.enqueueOwned(cs.big, chk)
			cs.big, cs.arriving = nil, 0
			cs.arrivingA.Store(0)
			cs.partialSince.Store(0) // the next frame's clock starts at its own bytes
			queued = true
			continue
		}
		if cs.overQueue() {
			// Stop reading; the worker wakes us when replies have gone.
			cs.blocked.Store(true)
			if !cs.overQueue() && cs.blocked.Swap(false) {
				continue
			}
			break
		}
		if fastOut != nil && len(fastOut.B) >= maxBatchReply {
			// Replies built on the loop are bounded per round, as the
			// worker's are: a round of 64 KiB of SELECTs could otherwise
			// build hundreds of MiB of replies before any check. Go on in
			// the next round.
			c.Wake(nil)
			break
		}
		hdr, err := c.Peek(4)
		if err != nil {
			break
		}
		size, err := protocol.FrameSize(hdr, cs.maxFrame)
		if err != nil {
			// The frame cannot be delimited (or we will not buffer it):
			// answer after what is queued, then close.
			var id uint32
			if b, err2 := c.Peek(protocol.HeaderSize); err2 == nil {
				id = binary.BigEndian.Uint32(b[6:10])
			}
			flushFast(c, s.endRound(cs, fastOut))
			s.badFrame(cs, protocol.StatusBadFrame) // counted; the connection closes anyway
			cs.queueFatal(protocol.AppendError(nil, id, protocol.StatusOf(err), err.Error()), closeProtocol)
			c.Discard(c.InboundBuffered())
			return gnet.None
		}
		if size > bigFrame {
			// A large frame is reserved before its body is waited for,
			// then received into its own exact-size buffer (above): gnet
			// reads at most its read buffer (64 KiB) per OnTraffic, and
			// what this loop reads out is never kept in gnet's inbound
			// buffer, which would grow by doubling to hold the frame
			// (issue 13: 4 DELTAs of 60 MiB took +713 MiB over a 256 MiB
			// budget that way).
			if c.InboundBuffered() < protocol.HeaderSize {
				break
			}
			// Never a make of the whole frame here (framebuf.go).
			big, ok := s.frameBuf(cs.frameMem, size)
			if !ok {
				b, _ := c.Peek(protocol.HeaderSize)
				cs.enqueueBusy(b)
				queued = true
				cs.skip = size
				continue
			}
			// A PUT's document is checked against the quota as it
			// arrives (a compressed one only once decoded, by the store).
			hdr, _ := c.Peek(protocol.HeaderSize)
			cs.putOn, cs.putAt = false, 0
			if protocol.Op(hdr[4]) == protocol.OpPut && hdr[5]&protocol.FlagCompressed == 0 && cs.tenant != nil && !cs.admin {
				cs.putChk = cs.tenant.store.PutCheck()
				cs.putOn = cs.putChk.Active()
			}
			cs.bigSize.Store(int64(size)) // before arrivingA: slowFrames reads it once that is set
			cs.arriving = bigFrameCost(size)
			cs.arrivingA.Store(cs.arriving)
			cs.bigGot.Store(0)
			cs.partialSince.Store(now) // FrameTimeout and slowFrames time it from its header
			cs.big = big
			continue
		}
		if c.InboundBuffered() < size {
			break
		}
		frame, err := c.Peek(size)
		if err != nil {
			break
		}
		// Cheap reads answer on the loop while nothing of this connection
		// is queued (so replies stay in order); everything else, and
		// everything after the first queued frame, goes to the worker.
		if !queued && cs.inflight.Load() == 0 {
			if out, ok := s.fast(cs, frame, fastOut); ok {
				fastOut = out
				c.Discard(size)
				continue
			}
		}
		cs.enqueue(frame)
		queued = true
		c.Discard(size)
	}
	// One log write for the round's writes, before any of its replies.
	flushFast(c, s.endRound(cs, fastOut))
	if cs.blocked.Load() && c.InboundBuffered() > s.opts.MaxFrame+s.opts.queueBytes() {
		// gnet keeps reading a connection we stopped parsing; a client that
		// ignores MaxInFlight (sent in HELLO) would grow this buffer
		// without bound. Answer after what is queued, then close.
		cs.queueFatal(protocol.AppendError(nil, 0, protocol.StatusBusy,
			"too much sent past the in-flight limit without reading replies"), closeInboundLimit)
		c.Discard(c.InboundBuffered())
		return gnet.None
	}
	// The slowloris clock runs while a started frame is incomplete, a
	// refused one whose body is being dropped (skip) included: the loop
	// reads that body whatever the worker does, so only its sender can
	// stall it.
	s.stats.noteInbound(c.InboundBuffered())
	if cs.skip == 0 && ((c.InboundBuffered() == 0 && cs.big == nil) || cs.blocked.Load()) {
		cs.partialSince.Store(0)
	} else if cs.partialSince.Load() == 0 {
		cs.partialSince.Store(now)
	}
	if queued {
		cs.kick()
	}
	cs.chargeBuffers(c)
	if c.OutboundBuffered() > s.opts.MaxOutbound {
		cs.closeWith(closeSlowConsumer)
	}
	return gnet.None
}

// checkPut counts what has arrived of a large PUT's document (cs.big)
// with its quota check (store.PutCheck) and returns the check's refusal.
// It counts each byte once, at most a read buffer (64 KiB) a call, and
// stops checking a frame whose name length Decode will refuse. Loop only.
func (cs *connState) checkPut() error {
	b := cs.big
	if cs.putAt == 0 {
		if len(b) <= protocol.HeaderSize {
			return nil
		}
		off, ok := protocol.PayloadOffset(b[protocol.HeaderSize])
		if !ok {
			cs.putOn = false // BAD_NAME from the worker's decode
			return nil
		}
		cs.putAt = off
	}
	if len(b) <= cs.putAt {
		return nil
	}
	err := cs.putChk.Add(b[cs.putAt:])
	cs.putAt = len(b)
	return err
}

// arrivingPutRefusal is the answer to the large PUT arriving in cs.big,
// whose document its quota check refused (qerr): the decoder's checks of
// what has arrived (the name and coordinate are there: the check refuses
// only once some of the payload is), then putRefusal. Loop only.
func (s *Server) arrivingPutRefusal(cs *connState, qerr error) (protocol.Status, string) {
	var req protocol.Request
	ok, err := cs.loopDec.DecodeArriving(cs.big, cap(cs.big), &req)
	if !ok || err != nil {
		if err == nil {
			err = qerr // not reached: the check refuses only within the payload
		}
		status, _ := StatusOf(err)
		return status, err.Error()
	}
	return s.putRefusal(cs, &req, cap(cs.big)-protocol.RequestSize(len(req.Name), 0), qerr)
}

// chargeBuffers keeps the bytes gnet holds for the connection, its unsent
// replies and its unparsed input, in the client memory budget (issue 13,
// open issue 10): per connection they are bounded (MaxOutbound, the
// in-flight stop), but summed over thousands of connections they were in
// no count. They are allocated already, so they are charged without
// refusal (further large requests get BUSY); when that takes the tenant's
// share or the server budget over its limit and this connection holds
// more than a large frame's worth, it is closed as a slow consumer, the
// way Redis' maxmemory-clients evicts clients, and its buffers go back at
// close. Loop only: at the end of each round and after each worker write.
func (cs *connState) chargeBuffers(c gnet.Conn) {
	n := int64(c.OutboundBuffered() + c.InboundBuffered())
	d := n - cs.bufCharged
	if d == 0 {
		return
	}
	cs.bufCharged = n
	cs.bufChargedA.Store(n)
	if d < 0 {
		cs.mem.release(-d)
		return
	}
	cs.mem.force(d)
	if n > bigFrame && cs.mem.over() {
		cs.closeWith(closeSlowConsumer)
	}
}

// flushFast writes the replies built on the loop in one write (gnet copies
// what the socket does not take at once) and recycles the buffer.
func flushFast(c gnet.Conn, out *bytebufferpool.ByteBuffer) {
	if out == nil {
		return
	}
	if len(out.B) > 0 {
		c.Write(out.B)
	}
	protocol.PutBuffer(out)
}

// hello handles the first frame. done=false means stop processing this
// OnTraffic call and return the action.
func (s *Server) hello(cs *connState, c gnet.Conn) (gnet.Action, bool) {
	if cs.paced != nil {
		return s.pacedHello(cs, c)
	}
	hdr, err := c.Peek(4)
	if err != nil {
		return gnet.None, false
	}
	size, err := protocol.FrameSize(hdr, maxHelloFrame)
	if err != nil {
		s.authFail(cs, c, 0, protocol.StatusAuth, "first frame must be HELLO")
		return gnet.None, false
	}
	if c.InboundBuffered() < size {
		if cs.partialSince.Load() == 0 {
			cs.partialSince.Store(monoNow())
		}
		return gnet.None, false
	}
	frame, _ := c.Peek(size)
	cs.partialSince.Store(0)
	h := protocol.ParseHeader(frame)
	if protocol.Op(h.Op) != protocol.OpHello {
		s.authFail(cs, c, h.ID, protocol.StatusAuth, "first frame must be HELLO")
		return gnet.None, false
	}
	hello, id, err := protocol.DecodeHello(frame)
	if err != nil {
		s.authFail(cs, c, id, protocol.StatusOf(err), err.Error())
		return gnet.None, false
	}
	if s.draining.Load() {
		c.Write(protocol.AppendError(nil, id, protocol.StatusShuttingDown, "server is shutting down"))
		cs.closing.Store(true)
		s.stats.closed[closeShutdown].Add(1)
		return gnet.Close, false
	}
	tab := s.table.Load()
	var name string
	t := tab.lookup(hello.Token)
	switch {
	case t != nil && !t.closed.Load():
		if t.conns.Add(1) > int64(s.opts.MaxConnsPerTenant) {
			t.conns.Add(-1)
			const msg = "too many connections for this tenant"
			if s.refuseLate(cs, c, t, id, size, msg) {
				// Answered when due; what came with the HELLO is
				// bounded and charged now, as for a paced one.
				return s.pacedHello(cs, c)
			}
			c.Write(protocol.AppendError(nil, id, protocol.StatusBusy, msg))
			cs.closing.Store(true)
			s.stats.closed[closeLimit].Add(1)
			return gnet.Close, false
		}
		cs.tenant = t
		cs.tenantPtr.Store(t)
		// From here on the connection charges its tenant's share (nothing
		// is reserved before HELLO).
		cs.mem, cs.frameMem = t.mem, t.frames
		cs.held.b = t.mem
		if t.closed.Load() {
			// A reload removed the tenant between the lookup and the
			// Store above, and may have scanned the connections before it.
			s.authFail(cs, c, id, protocol.StatusAuth, "unknown or disabled token")
			return gnet.None, false
		}
		name = t.name
		// The tenant's schedule of new connections (pace.go): the
		// answer may wait, the connection counting as open meanwhile.
		wait, ok := t.pace.admitHello(monoNow(), s.opts.HelloRate, s.opts.HelloBurst, s.opts.helloMaxWait())
		if wait > 0 {
			c.Discard(size)
			s.stats.helloPaced.Add(1)
			p := &pacedHello{id: id, name: name, codecs: hello.Codecs, version: hello.Version}
			if !ok {
				p.refuse = "too many new connections for this tenant (sq host --hello-rate); retry later"
			}
			cs.waitHello(c, p, wait)
			// What came with the HELLO is bounded and charged now, not
			// only once more arrives.
			return s.pacedHello(cs, c)
		}
	case tab.isAdmin(hello.Token):
		cs.admin = true
		name = "admin"
	default:
		s.authFail(cs, c, id, protocol.StatusAuth, "unknown or disabled token")
		return gnet.None, false
	}
	s.welcome(cs, c, id, name, hello.Version, hello.Codecs)
	c.Discard(size)
	return gnet.None, true
}

// pacedHello is a HELLO whose answer waits for its tenant's schedule of
// new connections (pace.go), or a refusal at the connection limit that
// waits (refuseLate): due is set by its timer (waitHello); refuse, when
// not empty, is the message of the BUSY it is then answered with before
// the close.
type pacedHello struct {
	due     atomic.Bool
	id      uint32
	name    string
	codecs  uint8
	version uint8
	refuse  string
}

// maxPacedInbound bounds what a connection may send while its HELLO
// waits; past it the connection is closed.
const maxPacedInbound = bigFrame

// chargeWaiting charges the n bytes of input a connection whose HELLO
// waits holds (all gnet holds for it: nothing is written to it before the
// answer) and reports whether they fit the budget. Unlike a served
// connection's buffers (chargeBuffers) they are not forced past it: the
// caller closes the connection instead. Loop only.
func (cs *connState) chargeWaiting(n int64) bool {
	d := n - cs.bufCharged
	if d > 0 && !cs.mem.tryReserve(d) {
		return false
	}
	if d < 0 {
		cs.mem.release(-d)
	}
	// Not mirrored in bufChargedA: the OnTick sweep would wake every
	// waiting connection each tick to recount what only changes when more
	// arrives (which runs OnTraffic anyway). chargeBuffers takes over
	// from this count once the HELLO is answered.
	cs.bufCharged = n
	return true
}

// waitHello makes the HELLO of cs wait d for its answer (p): a timer
// marks it due and wakes the loop, which answers it (pacedHello). Due is
// the timer's word, not a comparison of clock readings: the timer runs on
// the monotonic clock, and the answer of a connection that waits must
// not depend on another clock agreeing with it (the HELLO timeout leaves
// such a connection alone). Loop only.
func (cs *connState) waitHello(c gnet.Conn, p *pacedHello, d time.Duration) {
	cs.pacing.Store(true)
	cs.paced = p
	cs.helloTimer = time.AfterFunc(d, func() {
		p.due.Store(true)
		c.Wake(nil)
	})
}

// pacedHello answers a paced HELLO once it is due (its timer, set by
// waitHello, wakes the loop then); before that it only bounds what the peer sends
// meanwhile: at most maxPacedInbound, charged to the tenant's budget
// (chargeWaiting) and never past its limit (2,000 waiting connections of a
// tenant, MaxConnsPerTenant, could otherwise hold 125 MiB out of its sight
// for 5 s).
func (s *Server) pacedHello(cs *connState, c gnet.Conn) (gnet.Action, bool) {
	p := cs.paced
	if !p.due.Load() {
		n := c.InboundBuffered()
		if n <= maxPacedInbound && cs.chargeWaiting(int64(n)) {
			return gnet.None, false
		}
		// Answered, then closed once the peer's bytes stop arriving
		// (lingerClose), so the answer is not lost to a reset.
		c.Discard(n)
		cs.queueFatal(protocol.AppendError(nil, p.id, protocol.StatusBusy, "too much sent before the HELLO answer"), closeInboundLimit)
		return gnet.None, false
	}
	cs.paced = nil
	var msg string
	reason := closeLimit
	switch {
	case s.draining.Load():
		msg, reason = "server is shutting down", closeShutdown
	case cs.tenant != nil && cs.tenant.closed.Load(): // nil: a refusal at the limit
		s.authFail(cs, c, p.id, protocol.StatusAuth, "unknown or disabled token")
		return gnet.None, false
	case p.refuse != "":
		msg = p.refuse
	}
	if msg != "" {
		st := protocol.StatusBusy
		if reason == closeShutdown {
			st = protocol.StatusShuttingDown
		}
		// As above: what the client pipelined behind its HELLO must not
		// turn the close into a reset that loses the answer.
		c.Discard(c.InboundBuffered())
		cs.queueFatal(protocol.AppendError(nil, p.id, st, msg), reason)
		return gnet.None, false
	}
	s.welcome(cs, c, p.id, p.name, p.version, p.codecs)
	return gnet.None, true
}

// welcome authenticates the connection (HELLO accepted) and writes the
// HELLO reply.
func (s *Server) welcome(cs *connState, c gnet.Conn, id uint32, name string, version, codecs uint8) {
	cs.authed = true
	cs.authedA.Store(true)
	cs.maxFrame = s.opts.MaxFrame
	cs.codec = protocol.ChooseCodec(codecs, s.opts.Codecs)
	cs.dec = protocol.Decoder{MaxFrame: s.opts.MaxFrame, Codec: cs.codec, Budget: cs.mem}
	cs.loopDec = protocol.Decoder{MaxFrame: s.opts.MaxFrame}
	reply := protocol.HelloReply{
		Version:           protocol.NegotiateVersion(version),
		Codec:             cs.codec,
		MaxFrame:          uint32(s.opts.MaxFrame),
		TenantName:        name,
		ServerVersion:     Version,
		CompressThreshold: protocol.CompressThreshold,
		MaxInFlight:       uint32(s.opts.MaxInFlight),
		Ops:               countedOps,
	}
	var a [256]byte
	c.Write(protocol.AppendHelloReply(a[:0], id, &reply))
}

// authFail answers a failed HELLO with status and closes the
// connection. Past the address's budget the answer is delayed, so guessing
// tokens from one address is slow, at most helloMaxWait (no longer than a
// silent connection may stay; authlimit.go).
func (s *Server) authFail(cs *connState, c gnet.Conn, id uint32, status protocol.Status, msg string) {
	s.stats.authFailures.Add(1)
	cs.closing.Store(true)
	s.stats.closed[closeAuth].Add(1)
	c.Discard(c.InboundBuffered())
	reply := protocol.AppendError(nil, id, status, msg)
	delay := min(s.auth.fail(cs.ip, time.Now()), s.opts.helloMaxWait())
	if delay <= 0 {
		c.Write(reply)
		c.Close()
		return
	}
	s.log.Debug("auth failures over budget; slowing down", "addr", cs.ip, "delay", delay)
	// What waits is bounded by the open connections, not by how fast a
	// peer dials and leaves: the connection's close drops the answer.
	s.delayAuthAnswer(cs, c, reply, delay)
}

// OnTick closes connections past their HELLO, idle or frame timeouts.
func (s *loopHandler) OnTick() (time.Duration, gnet.Action) {
	now := time.Now()
	nowN := monoNow()
	s.auth.sweep(now)
	s.sweepHubs(now)
	conns := s.snapshotConns()
	for _, cs := range conns {
		if cs.closing.Load() {
			continue
		}
		switch {
		case !cs.authedA.Load() && !cs.pacing.Load() && nowN-cs.openedAt > int64(s.opts.HelloTimeout):
			cs.closeWith(closeHelloTimeout)
		case cs.partialSince.Load() != 0 && nowN-cs.partialSince.Load() > int64(s.opts.FrameTimeout):
			cs.closeWith(closeSlowFrame)
		case s.opts.IdleTimeout > 0 && cs.inflight.Load() == 0 && !cs.watching() &&
			nowN-cs.lastActive.Load() > int64(s.opts.IdleTimeout):
			cs.closeWith(closeIdleTimeout)
		case cs.bufChargedA.Load() > 0:
			// Recount what gnet holds: the socket may have taken the
			// replies since (see chargeBuffers).
			cs.c.Wake(nil)
		}
		if cs.watch.backlogs.Load() > 0 {
			// A backlog waits for its socket to drain: look again.
			connSink{cs}.kick()
		}
	}
	s.slowFrames(conns, nowN)
	// Idle frame mappings not reused for frameIdleFor go (framepool.go).
	s.unmapFrames(s.frames.expire(nowN-int64(frameIdleFor), false))
	return s.tickInterval(), gnet.None
}

// A large frame is stalled when it has been arriving for more than
// slowFrameGrace and slower than its size per slowFramePace (so a 60 MiB
// frame is stalled below 6 MiB/s); stalled frames count against
// Options.MaxSlowFrameMemory.
const (
	slowFrameGrace = time.Second
	slowFramePace  = 10 * time.Second
)

// slowFrames closes connections whose large frame is stalled once stalled
// frames hold more than MaxSlowFrameMemory in all (issue 13, open issue
// 9c: a header holds its reservation until the frame timeout, so senders
// that stall after headers on a few tenants could hold the whole budget
// for 30 s). Which of the stalled senders are closed is arbitrary; frames
// that arrive on pace are never counted.
func (s *Server) slowFrames(conns []*connState, nowN int64) {
	if s.opts.MaxSlowFrameMemory < 0 {
		return // no budget
	}
	var slow int64
	for _, cs := range conns {
		a, since := cs.arrivingA.Load(), cs.partialSince.Load()
		el := nowN - since
		if a == 0 || since == 0 || el < int64(slowFrameGrace) || cs.closing.Load() {
			continue
		}
		// The pace is the frame's own bytes; what it holds (a) may be
		// more (bigFrameCost).
		if got := cs.bigGot.Load(); float64(got)*float64(slowFramePace) >= float64(cs.bigSize.Load())*float64(el) {
			continue // on pace: it arrives within slowFramePace
		}
		if slow+a > s.opts.MaxSlowFrameMemory {
			cs.closeWith(closeSlowFrame)
			continue
		}
		slow += a
	}
}

func (s *Server) tickInterval() time.Duration {
	d := time.Second
	for _, t := range []time.Duration{s.opts.HelloTimeout, s.opts.FrameTimeout, s.opts.IdleTimeout} {
		if t > 0 && t/4 < d {
			d = t / 4
		}
	}
	if d < 10*time.Millisecond {
		d = 10 * time.Millisecond
	}
	return d
}
