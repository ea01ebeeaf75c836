package server

import (
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/phext/sq/protocol"
)

// Limit refusals (issue 13, M3: GET of an 80 MiB phext from 8 clients,
// binary, REST get and json-export, all refused): a request refused at a
// limit costs the server a read, a turn, a reply and, on REST, usually a
// TCP connection of its own (~136 µs of CPU, most of it syscalls), and a
// client that repeats it learns nothing new: no correct client gets
// TOO_LARGE or QUOTA hundreds of times a second. 6,500 of them a second
// from one tenant took 4.45 s of the server's 5 s of CPU and put another
// tenant's p99 at 2.85× its quiet value.
//
// So each tenant has a budget of Options.RefusalRate limit refusals a
// second (a burst of Options.RefusalBurst at once), one rule for both
// front ends: the binary dispatch and the REST front end (server/httpapi,
// through Server.Refuse) book every answer they give with a counted
// status here. Within the budget an answer goes out at once. Past it, the
// answer (the usual one: TOO_LARGE, QUOTA, 413, 507) waits refusalHold on
// a timer (at most half the frame timeout, Options.refusalHold), costing
// no CPU: a closed-loop client then gets one refusal per refusalHold per
// request it has outstanding, instead of one per round trip (binary: the
// refusals of one batch are held together, see holdReplies). A waiting answer holds a goroutine (the connection's worker, or
// net/http's) and a socket, so only maxTenantHeld of a tenant and
// Options.maxHeldRefusals of the whole server wait at once; past either
// bound the answer goes out at once and its connection is closed (binary:
// after a BUSY naming --refusal-rate, and the tenant's next HELLO waits
// like after malformed frames; REST: Connection: close), so that a flood
// wider than the bounds pays a new connection per refusal, which
// --hello-rate paces on the binary port.
//
// What counts: TOO_LARGE and QUOTA, the answers of a request over a limit
// the client was told about (max frame, quota), each weighing one plus
// one per MiB of its frame (refusalWeight). Not BUSY: it is the server's
// own load (memory budget, in-flight limits), which a correct client
// meets through no fault of its own, except the bytes of a large frame
// refused BUSY at its header and dropped (refusalWeight); nor AUTH, which the
// per-address limiter of failed HELLOs handles (authlimit.go, no tenant is
// known); nor BAD_NAME, BAD_COORD, BAD_SCROLL or UNKNOWN_OP, which cost
// no more than a request that is served and so are plain load, like a
// flood of valid cheap requests (docs/RELIABILITY.md: a per-tenant share
// of CPU would answer both). A malformed frame answered TOO_LARGE counts
// here and in the budget of malformed frames (pace.go). The admin token
// is never counted.
//
// The state carries over a reload with the tenant's store tenant (the same
// name and data dir), like its memory share (reload.go, newTenant): such a
// reload (a token rotation, a quota change) neither refills an exhausted
// budget nor loses a held answer's slot; a renamed tenant, a name given to
// another data dir and a tenant removed and added again start afresh.

// refusals is a tenant's budget of limit refusals and the count of its
// answers waiting.
type refusals struct {
	tat  atomic.Int64 // monoNow nanos: the budget's schedule (admitBudget)
	held atomic.Int64 // answers of the tenant waiting (Refusal.Hold)
}

// refusalHold is how long an answer past the budget waits: a second, as a
// HELLO refused at the connection limit (refuseDelay). A variable for
// tests (SetRefusalHold).
var refusalHold = time.Second

// maxRefusalHold is the longest a heavy answer past the budget waits
// (refuseN): half the frame timeout, for the reason refusalHold gives.
func (o *Options) maxRefusalHold() time.Duration {
	if o.FrameTimeout <= 0 {
		return refusalHold
	}
	return max(o.FrameTimeout/2, o.refusalHold())
}

// refusalHold is how long an answer past the budget waits: refusalHold,
// at most half the frame timeout. A REST answer must be written within
// twice the frame timeout of its request's headers (net/http's
// WriteTimeout, httpapi), its body read within one: with --frame-timeout
// 500 ms a hold of a second missed that deadline and the client got a
// broken connection instead of its 413. Half leaves the other half for
// the request's work and the write.
func (o *Options) refusalHold() time.Duration {
	if o.FrameTimeout <= 0 {
		return refusalHold
	}
	return min(refusalHold, o.FrameTimeout/2)
}

// maxTenantHeld bounds one tenant's waiting answers: a variable for tests
// (SetMaxTenantHeld).
var maxTenantHeld int64 = 128

// maxHeldRefusals is how many answers may wait server-wide: as many as
// waiting HELLO refusals (maxRefusals), a separate pool.
func (o *Options) maxHeldRefusals() int64 {
	return int64(max(1, o.MaxConns/refusalShare))
}

// admit books one refusal at now (monoNow) in a budget of rate a second
// with a burst of burst and reports whether it is within (pace.go,
// admitBudget).
func (r *refusals) admit(now int64, rate float64, burst int) bool {
	return admitBudget(&r.tat, now, rate, burst)
}

// book books a refusal of weight n past the budget (pace.go,
// bookBudgetN) and returns how long it waits for room.
func (r *refusals) book(now int64, rate float64, burst int, n, maxWait int64) (int64, bool) {
	return bookBudgetN(&r.tat, now, rate, burst, n, maxWait)
}

// admitN is admit for a refusal that weighs n refusals (refusalWeight).
func (r *refusals) admitN(now int64, rate float64, burst int, n int64) bool {
	return admitBudgetN(&r.tat, now, rate, burst, n)
}

// over reports whether a refusal at now would be past the budget, without
// booking it.
func (r *refusals) over(now int64, rate float64, burst int) bool {
	interval := budgetInterval(rate)
	return max(r.tat.Load(), now)+interval-now > budgetDepth(burst, interval)
}

// countsAsRefusal reports whether an answer of status is a limit refusal
// (see above).
func countsAsRefusal(status protocol.Status) bool {
	return status == protocol.StatusTooLarge || status == protocol.StatusQuota
}

// refusalUnit is the bytes of a refused frame that weigh one refusal.
const refusalUnit = 1 << 20

// refusalWeight is how many refusals the answer status to a frame of size
// bytes (its length field) weighs in its tenant's budget: 0 when it does
// not count. A refused frame costs the server every byte of it, received
// or dropped as it arrives (a body refused at its header is still read
// out of the socket), so a refusal weighs one plus one per refusalUnit of
// its frame (issue 13, row M2: 4 connections sending DELTAs of 60 MiB,
// each answered TOO_LARGE or, while another of the tenant's frames held
// its frame share, BUSY at its header: ~1 GB/s through the server's
// socket reads and the attacker's writes, 5 GB in a 5 s window, counted
// as ~17 refusals a second, within the budget). For the same reason a
// large frame answered BUSY at its header for memory (its body dropped)
// weighs its bytes, though BUSY is otherwise no refusal: a correct client
// does not push tens of MB a second of bodies into BUSY answers, and
// what holds such an answer is the same budget that holds TOO_LARGE.
//
// A compressed PUT refused QUOTA while it is decompressed weighs the size
// its frame declares uncompressed (handleFrame): the document the tenant
// asked to store, as an uncompressed PUT's frame is. Its wire bytes would
// let a document of 30 M one-byte scrolls, a few KB compressed, weigh one
// refusal a round (issue 13, row M4c: ~190 such PUTs a 5 s window, each
// followed by an accepted one, against M4's 8 with the same documents
// uncompressed). A declared size cannot be inflated to any gain: a body
// that decodes to more than it declared is BAD_FRAME, and one declaring
// more only weighs its sender more.
func refusalWeight(status protocol.Status, size int) int64 {
	switch {
	case countsAsRefusal(status):
		return 1 + int64(size)/refusalUnit
	case status == protocol.StatusBusy && size > bigFrame:
		return int64(size) / refusalUnit
	}
	return 0
}

// Refusal is how the answer of one refused request goes out (Server.Refuse).
// The zero Refusal: at once, the connection kept.
type Refusal struct {
	// Hold is how long the answer waits before it is sent: the caller
	// waits with Wait, which ends early at Shutdown, and gives the slot
	// back.
	Hold time.Duration
	// Close: past the budget with no free slot to wait in: the answer
	// goes out at once and the connection is closed after it.
	Close bool

	r *refusals
	s *Server
}

// Done gives back the slot of a held answer; a no-op for the others.
// Wait calls it.
func (f Refusal) Done() {
	if f.r != nil {
		f.r.held.Add(-1)
		f.s.heldRefusals.Add(-1)
	}
}

// Refuse books an answer with status that tenant t's request gets against
// its budget of limit refusals (TOO_LARGE and QUOTA count; other statuses
// return the zero Refusal at once) and says how the answer goes out: at
// once, held for Refusal.Hold, or at once with the connection closed.
// Front ends call it once per answer, before writing it; any goroutine.
func (s *Server) Refuse(t Tenant, status protocol.Status) Refusal {
	return s.refuse(t.t, false, status)
}

// refuse is Refuse for a small frame (REST's answers are to requests
// whose bodies it bounds first).
func (s *Server) refuse(t *tenant, admin bool, status protocol.Status) Refusal {
	return s.refuseN(t, admin, refusalWeight(status, 0))
}

// refuseN is Refuse for an answer of weight n (refusalWeight; 0: not
// counted).
func (s *Server) refuseN(t *tenant, admin bool, n int64) Refusal {
	if t == nil || admin || s.opts.RefusalRate <= 0 || n <= 0 {
		return Refusal{}
	}
	if t.refusals.admitN(monoNow(), s.opts.RefusalRate, s.opts.RefusalBurst, n) {
		return Refusal{}
	}
	r := t.refusals
	if r.held.Add(1) > maxTenantHeld {
		r.held.Add(-1)
		s.stats.refusalsClosed.Add(1)
		return Refusal{Close: true}
	}
	hold, ok := s.opts.refusalHold(), s.heldRefusals.Add(1) <= s.opts.maxHeldRefusals()
	if ok && n > 1 {
		// A heavy answer (a large frame's, refusalWeight) waits until
		// the budget has room for its weight, at least the hold, and
		// books it: the tenant's large refused frames, over all its
		// connections, are answered at the budget's rate, not one a hold
		// per connection (row M2: 4 connections, each a 60 MiB frame a
		// second, ~240 MB/s; at 50 a second now one every 1.2 s). When
		// the budget has no room for it within maxRefusalHold, it goes
		// out at once and its connection is closed, as when no slot is
		// free: waiting that long without booking gave every connection
		// one such answer a maxRefusalHold, whatever the budget (review16:
		// 8 connections, 24 answers of weight 12 in 3 s against a budget
		// of one a minute; with the defaults 128 connections of 60 MiB
		// frames ~10× --refusal-rate).
		var w int64
		w, ok = r.book(monoNow(), s.opts.RefusalRate, s.opts.RefusalBurst, n, int64(s.opts.maxRefusalHold()))
		hold = max(time.Duration(w), hold)
	}
	if !ok {
		// No server-wide slot free, or no room in the budget in time.
		s.heldRefusals.Add(-1)
		r.held.Add(-1)
		s.stats.refusalsClosed.Add(1)
		return Refusal{Close: true}
	}
	s.stats.refusalsHeld.Add(1)
	return Refusal{Hold: hold, r: r, s: s}
}

// refusedOnLoop decides for a write the event loop refused with err
// (fastWrite): true means the tenant is past its budget and the answer
// must come from the worker, which may hold it; nothing is booked then
// (the worker books it when it answers the write again, which is safe:
// the store refused it without a side effect). Otherwise the refusal is
// booked, within the budget. Loop only.
func (s *Server) refusedOnLoop(cs *connState, err error) bool {
	status, _ := StatusOf(err)
	t := cs.tenant
	if t == nil || cs.admin || s.opts.RefusalRate <= 0 || !countsAsRefusal(status) {
		return false
	}
	now := monoNow()
	if t.refusals.over(now, s.opts.RefusalRate, s.opts.RefusalBurst) {
		return true
	}
	t.refusals.admit(now, s.opts.RefusalRate, s.opts.RefusalBurst) // a small frame: weight 1
	return false
}

// refused books an answer of status cs's worker has built for a frame of
// size bytes (its length field). The first one of a batch past the
// budget decides (cs.hold, acted on by holdReplies); later ones in the
// same batch are only booked: they wait with it, in the slot it took.
// Worker only.
func (s *Server) refused(cs *connState, status protocol.Status, size int) {
	n := refusalWeight(status, size)
	if cs.hold.Hold > 0 || cs.hold.Close {
		if t := cs.tenant; t != nil && !cs.admin && s.opts.RefusalRate > 0 && n > 0 {
			t.refusals.admitN(monoNow(), s.opts.RefusalRate, s.opts.RefusalBurst, n)
		}
		return
	}
	cs.hold = s.refuseN(cs.tenant, cs.admin, n)
}

// A binary connection's held answers wait per batch (the frames its
// worker took from the queue at once, up to --max-inflight): the first
// answer of a batch past the budget starts the hold, the replies of the
// batch before it leave at once, and every reply after it, held refusals
// or not (replies keep their order), is sent together when the hold ends,
// refusalHold after it started. So a client with k requests outstanding
// gets its k refusals after one hold, as a REST client with k requests
// in flight does, not after k holds in a row (the first version held each
// step of the batch in turn: k refusals pipelined in one batch waited k
// seconds, and every request behind them with them). The replies built
// meanwhile stay in the worker's buffer, charged to the connection's
// budget (waitHold); the loop stops reading at --max-inflight as always.
// A hold ends early when Shutdown begins (its replies go out), when the
// connection is closing after a fatal reply (they go out before it), or
// when it is closed (nothing is written; send drops them and the slot is
// given back at once).

// holdReplies acts on cs.hold once the worker has appended the replies of
// the frames of one step (from pos in out, n frames; done frames' replies
// in all). For Close, the connection is closed after the step's replies
// with a BUSY saying why and the tenant's next HELLO waits as after
// malformed frames. For a hold not yet started, the replies before pos
// are sent at once and the hold starts (cs.holdUntil); its replies wait in
// out until sendReplies. It returns the buffer and count to go on with.
// Worker only.
func (s *Server) holdReplies(cs *connState, out *bytebufferpool.ByteBuffer, pos, n, done int) (*bytebufferpool.ByteBuffer, int) {
	f := cs.hold
	if f.Close {
		cs.hold = Refusal{}
		if t := cs.tenant; t != nil {
			t.pace.penalize(monoNow(), s.opts.HelloRate, s.opts.HelloBurst)
		}
		cs.gone.Store(true) // the rest of the batch is dropped, unanswered
		if !cs.closing.Load() {
			cs.queueFatal(protocol.AppendError(nil, 0, protocol.StatusBusy,
				"too many refused requests (TOO_LARGE, QUOTA) from this tenant (sq host --refusal-rate); closing"), closeRefusals)
		}
		return out, done
	}
	if f.Hold <= 0 || cs.holdUntil != 0 {
		return out, done // no hold, or this batch's has started
	}
	if pos > 0 && done > n {
		// The earlier replies of the batch are not the refused one's:
		// they leave now.
		rest := protocol.GetBuffer()
		rest.B = append(rest.B[:0], out.B[pos:]...)
		out.B = out.B[:pos]
		s.send(cs, out, done-n)
		out, done = rest, n
	}
	cs.holdUntil = monoNow() + int64(f.Hold)
	return out, done
}

// sendReplies sends out, the replies of n frames, after the batch's hold
// if one runs (waitHold). Worker only.
func (s *Server) sendReplies(cs *connState, out *bytebufferpool.ByteBuffer, n int) {
	if cs.holdUntil != 0 {
		s.waitHold(cs, out)
	}
	s.send(cs, out, n)
}

// waitHold waits out the hold of cs's batch, whose replies are in out,
// and gives its slot back. While they wait the replies' buffer is
// charged to the connection's budget, beyond what building them reserved
// (cs.held, released once they are sent): it is allocated already, so it
// is charged without refusal, like the buffers gnet holds (chargeBuffers).
// Worker only.
func (s *Server) waitHold(cs *connState, out *bytebufferpool.ByteBuffer) {
	f := cs.hold
	f.Hold = time.Duration(cs.holdUntil - monoNow())
	cs.hold, cs.holdUntil = Refusal{}, 0
	if extra := int64(cap(out.B)) - cs.held.n; extra > 0 {
		cs.held.b.force(extra)
		cs.held.n += extra
	}
	wake := cs.holdWake()
	if wake == nil {
		f.Done() // closing or closed already: no wait
		return
	}
	f.Wait(wake, nil)
	cs.endHoldWake()
}

// Wait waits out a held answer: until Hold has passed, the server's
// Shutdown has begun (the same signal for every front end), or left or
// stop is closed (either may be nil: left is the client going, stop the
// front end stopping). Then it gives back the slot (Done). It reports
// false when left ended the wait (nobody to answer). Any goroutine; the
// zero Refusal returns at once.
func (f Refusal) Wait(left, stop <-chan struct{}) bool {
	defer f.Done()
	if f.Hold <= 0 || f.s == nil {
		return true
	}
	return f.s.waitAnswer(f.Hold, left, stop)
}

// waitAnswer is the wait of an answer the server delays (a held refusal,
// a failed authentication): d, or until Shutdown begins or left or stop
// (either may be nil) is closed; false when left ended it.
func (s *Server) waitAnswer(d time.Duration, left, stop <-chan struct{}) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-s.drainCh:
	case <-stop:
	case <-left:
		return false
	}
	return true
}

// holdWake returns the channel that ends the wait of cs's held replies
// early, or nil when the connection is closing or closed already (no
// wait). Worker only; endHoldWake after the wait.
func (cs *connState) holdWake() chan struct{} {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closing.Load() || cs.shut.Load() {
		return nil
	}
	cs.holdCh = make(chan struct{})
	return cs.holdCh
}

// endHoldWake forgets the channel of holdWake. Worker only.
func (cs *connState) endHoldWake() {
	cs.mu.Lock()
	cs.holdCh = nil
	cs.mu.Unlock()
}

// wakeHold ends the wait of the connection's held replies, if one runs:
// it is closing after a fatal reply (the held replies go first), or with
// shut, it is closed or being closed without more replies (send drops
// them). Any goroutine; call it after setting closing.
func (cs *connState) wakeHold(shut bool) {
	if shut {
		cs.shut.Store(true)
	}
	cs.mu.Lock()
	if cs.holdCh != nil {
		close(cs.holdCh)
		cs.holdCh = nil
	}
	cs.mu.Unlock()
}
