package server

import (
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/phext/sq/protocol"
)

// Pacing a tenant's new connections (issue 13, the compressed size bomb
// M1): a tenant that opens connections by the thousand per second costs
// the server ~280 µs of CPU each (accept, HELLO, its frames, close: all
// syscalls on the event loops), and a good tenant sharing those loops
// waits behind them. Each tenant's HELLOs therefore follow a schedule, a
// token bucket of Options.HelloBurst HELLOs refilled at Options.HelloRate
// per second: within it a HELLO is answered at once; past it the answer
// waits until the schedule reaches it. A waiting connection costs no CPU
// (its answer is a timer's wake-up of its event loop) and counts against
// the tenant's and the server's connection limits like any other. A HELLO
// that would wait longer than helloMaxWait is refused with BUSY, after
// the same wait: an immediate refusal would invite an immediate retry,
// which costs the server as much as the connection it refused.
//
// The schedule is the generic cell rate algorithm: one atomic, the time
// at which the bucket would be full again (tat). Admitting a HELLO moves
// tat one interval later; the HELLO waits for whatever of tat lies more
// than the bucket's depth (burst intervals) in the future.

// pace is a tenant's schedule of new connections, shared across reloads
// like its memory share (newTenant).
type pace struct {
	helloTAT atomic.Int64 // monoNow nanos
	badTAT   atomic.Int64 // monoNow nanos: the budget of malformed frames
	refusing atomic.Int64 // HELLOs refused at the connection limit waiting for their answer (refuseLate)
}

// helloMaxWait is the longest a HELLO waits for its tenant's schedule.
// At most half the HELLO timeout, so that the HELLO timeout never closes
// a connection that waits for its answer.
func (o *Options) helloMaxWait() time.Duration {
	return min(5*time.Second, o.HelloTimeout/2)
}

// admitHello books a HELLO arriving at now (monoNow) in the tenant's
// schedule and returns how long its answer waits. ok=false means the wait
// would pass maxWait: nothing is booked and the HELLO is refused (after
// maxWait). A rate ≤ 0 admits everything at once.
func (p *pace) admitHello(now int64, rate float64, burst int, maxWait time.Duration) (wait time.Duration, ok bool) {
	if rate <= 0 {
		return 0, true
	}
	interval := budgetInterval(rate)
	depth := budgetDepth(burst, interval)
	for {
		tat := p.helloTAT.Load()
		next := max(tat, now) + interval
		w := next - now - depth
		if w > int64(maxWait) {
			return maxWait, false
		}
		if p.helloTAT.CompareAndSwap(tat, next) {
			return time.Duration(max(w, 0)), true
		}
	}
}

// Malformed frames (issue 13, M1 and its variant that keeps its
// connections open): a frame that fails to decode costs the server a read,
// a worker's turn and a reply, and no correct client sends one. Each
// tenant has a budget of Options.BadFrameRate such frames per second (a
// second's worth at once). Past it, the frame is answered and its
// connection is closed after a BUSY that says why (close reason
// bad_frames); the tenant's schedule of new connections is pushed so that
// its next HELLO waits at least badFramePenalty. So a tenant that streams
// garbage, on new connections or on open ones, gets about one connection
// per pending dial per badFramePenalty, each closed at its first frame
// over the budget.
const badFramePenalty = time.Second

// admitBadFrame books one malformed frame of the tenant at now
// (monoNow) and reports whether it is within the tenant's budget of rate per
// second. A rate ≤ 0 admits every one.
func (p *pace) admitBadFrame(now int64, rate float64) bool {
	if rate <= 0 {
		return true
	}
	return admitBudget(&p.badTAT, now, rate, int(max(rate, 1)))
}

// The schedules of this file and refusal.go are budgets of rate events a
// second with burst of them at once, kept as one time (a TAT) in monoNow
// nanoseconds. Their arithmetic follows one rule, so that no flag value
// makes it wrap: the interval (budgetInterval) is at most
// maxBudgetInterval (13 days: a rate that slow refills never, for a
// server) and the depth (budgetDepth) at most maxBudgetDepth (73 years: a
// burst that large is never exhausted), so every TAT is a monoNow reading
// plus a depth, an interval and a wait or penalty of seconds, far inside
// an int64. Before, --hello-burst 2^62 wrapped the HELLO schedule's
// depth to 0 (every HELLO past the first waited), and --refusal-rate
// 1e-30 made a negative interval (every refusal admitted).
const (
	maxBudgetInterval = int64(1) << 50
	maxBudgetDepth    = int64(1) << 61
)

// budgetInterval is the time between two events of a budget of rate a
// second (rate > 0): at least 1 ns, at most maxBudgetInterval.
func budgetInterval(rate float64) int64 {
	iv := float64(time.Second) / rate
	if !(iv < float64(maxBudgetInterval)) { // also NaN
		return maxBudgetInterval
	}
	return max(int64(iv), 1)
}

// budgetDepth is how far ahead of now a budget of burst events at once,
// one per interval nanoseconds (budgetInterval), may book:
// burst×interval, at most maxBudgetDepth.
func budgetDepth(burst int, interval int64) int64 {
	b := int64(max(burst, 1))
	if interval > 0 && b > maxBudgetDepth/interval {
		return maxBudgetDepth
	}
	return b * interval
}

// admitBudget books one event at now (monoNow) in the budget whose
// schedule is tat, of rate events a second with burst of them at once,
// and reports whether it is within; past it nothing is booked. The budget
// of malformed frames and that of limit refusals (refusal.go) are
// such budgets. rate > 0.
func admitBudget(tat *atomic.Int64, now int64, rate float64, burst int) bool {
	return admitBudgetN(tat, now, rate, burst, 1)
}

// admitBudgetN is admitBudget for an event that weighs n events (n ≥ 1;
// a weight above burst weighs burst, so that one event always fits an
// unused budget).
func admitBudgetN(tat *atomic.Int64, now int64, rate float64, burst int, n int64) bool {
	interval := budgetInterval(rate)
	depth := budgetDepth(burst, interval)
	cost := depth // n×interval, at most the depth (no wrap)
	if n < depth/interval {
		cost = max(n, 1) * interval
	}
	for {
		t := tat.Load()
		next := max(t, now) + cost
		if next-now > depth {
			return false
		}
		if tat.CompareAndSwap(t, next) {
			return true
		}
	}
}

// bookBudgetN books an event that weighs n events (n ≥ 1, as
// admitBudgetN) in a budget it does not fit, past its depth, when the
// booking comes within it in at most maxWait nanoseconds, and returns that
// wait; otherwise nothing is booked and ok is false. Later events then
// wait behind it: what the events past the budget book paces them all to
// its rate.
func bookBudgetN(tat *atomic.Int64, now int64, rate float64, burst int, n int64, maxWait int64) (wait int64, ok bool) {
	interval := budgetInterval(rate)
	depth := budgetDepth(burst, interval)
	cost := depth
	if n < depth/interval {
		cost = max(n, 1) * interval
	}
	for {
		t := tat.Load()
		next := max(t, now) + cost
		wait = next - depth - now
		if wait > maxWait {
			return 0, false
		}
		if tat.CompareAndSwap(t, next) {
			return max(wait, 0), true
		}
	}
}

// penalize pushes the tenant's schedule of new connections so that its
// next HELLO waits at least badFramePenalty (never pulling it earlier).
func (p *pace) penalize(now int64, rate float64, burst int) {
	if rate <= 0 {
		return // no pacing of HELLOs to push
	}
	want := now + budgetDepth(burst, budgetInterval(rate)) + int64(badFramePenalty)
	for {
		tat := p.helloTAT.Load()
		if tat >= want || p.helloTAT.CompareAndSwap(tat, want) {
			return
		}
	}
}

// badFrame counts a frame of cs that failed to decode with status (its
// error reply is out already, or the connection is closing for it)
// against its tenant's budget when it is malformed: BAD_FRAME (a bad
// length, flag, body layout or compressed body) or TOO_LARGE (a size past
// the limits). A bad name, coordinate or opcode is the client's request
// being refused, not a broken frame, and costs no more than a request
// that is served. Past the budget it pushes the tenant's HELLO schedule
// and reports true: the caller closes the connection (badFrameClose)
// unless it closes anyway. Worker or loop; the admin is never counted.
func (s *Server) badFrame(cs *connState, status protocol.Status) bool {
	t := cs.tenant
	if t == nil || cs.admin || (status != protocol.StatusBadFrame && status != protocol.StatusTooLarge) {
		return false
	}
	now := monoNow()
	if t.pace.admitBadFrame(now, s.opts.BadFrameRate) {
		return false
	}
	t.pace.penalize(now, s.opts.HelloRate, s.opts.HelloBurst)
	return true
}

// badFrameClose closes cs after the replies of its batch being built and a
// BUSY saying why; the rest of what it sent is not run. Its worker only.
func (cs *connState) badFrameClose() {
	cs.gone.Store(true) // the rest of the batch is dropped, unanswered
	if cs.closing.Load() {
		// Closing already (an undelimitable frame, a timeout), with its
		// own answer and reason.
		return
	}
	cs.queueFatal(protocol.AppendError(nil, 0, protocol.StatusBusy,
		"too many malformed frames from this tenant (sq host --bad-frame-rate); closing"), closeBadFrames)
}

// Refusals at the connection limit (issue 13, attack 6 of the figures): a
// tenant that holds all its connections (MaxConnsPerTenant) gets BUSY for
// every further HELLO. Answered at once, a refusal invites an immediate
// redial, and each refused dial costs the event loops about half of an
// accepted connection (accept, HELLO read, write, close: ~130 µs of
// syscalls); 64 dialers made ~5,000 a second. So the BUSY is answered
// after refuseDelay, the connection waiting like a paced HELLO (a timer
// wakes its loop; no CPU meanwhile), which holds each dialer to one
// refusal per refuseDelay.
//
// A waiting refusal is an open connection outside its tenant's count, so
// only maxTenantRefusals of a tenant and MaxConns/refusalShare of the
// whole server wait at once: unbounded, one tenant's held dials would take
// --max-conns from every other tenant. Past either bound the refusal is
// answered at once, as it was before waiting refusals existed. That is
// the lesser harm: it costs CPU, not other tenants' connections, and only
// a tenant dialing from more than maxTenantRefusals sockets at once (or
// many tenants together) gets there, which is the case of many dialers
// that an address-level connection rate in front of the server handles
// (docs/RELIABILITY.md, third pass).
const refusalShare = 8

// maxTenantRefusals is a variable for tests (SetMaxTenantRefusals).
var maxTenantRefusals int64 = 256

// refuseDelay is how long a HELLO refused at its tenant's connection
// limit waits for its BUSY: a second, at most helloMaxWait (so the HELLO
// timeout never closes it first).
func (o *Options) refuseDelay() time.Duration {
	return min(time.Second, o.helloMaxWait())
}

// maxRefusals is how many refusals may wait server-wide.
func (o *Options) maxRefusals() int64 {
	return int64(max(1, o.MaxConns/refusalShare))
}

// refuseLate makes the HELLO of cs (id, size bytes still in c's inbound
// buffer), refused with BUSY msg at tenant t's connection limit, wait
// refuseDelay for its answer, if a waiting refusal's slot is free; false
// means none is: answer at once. The slot is given back when the
// connection closes (OnClose). What the connection sends meanwhile is
// charged to t's share of the memory budget (pacedHello), as a paced
// HELLO's is: it is the tenant's dial. Loop only.
func (s *Server) refuseLate(cs *connState, c gnet.Conn, t *tenant, id uint32, size int, msg string) bool {
	p := t.pace
	if p.refusing.Add(1) > maxTenantRefusals {
		p.refusing.Add(-1)
		return false
	}
	if s.refusing.Add(1) > s.opts.maxRefusals() {
		s.refusing.Add(-1)
		p.refusing.Add(-1)
		return false
	}
	cs.refusal = p
	// Nothing is reserved before HELLO (see hello).
	cs.mem = t.mem
	cs.held.b = t.mem
	c.Discard(size)
	cs.waitHello(c, &pacedHello{id: id, refuse: msg}, s.opts.refuseDelay())
	return true
}

// releaseRefusal gives back the waiting refusal's slot cs holds, if any,
// when it closes. Loop only.
func (s *Server) releaseRefusal(cs *connState) {
	if p := cs.refusal; p != nil {
		cs.refusal = nil
		p.refusing.Add(-1)
		s.refusing.Add(-1)
	}
}
