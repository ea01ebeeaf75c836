package server

import (
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/phext/sq/protocol"
)

// opSlots maps an opcode to a small index for per-op counters; unknown
// opcodes share slot 0.
var opSlots = func() (t [256]uint8) {
	for i, op := range countedOps {
		t[op] = uint8(i + 1)
	}
	return t
}()

// countedOps lists the operations with their own counters.
var countedOps = []protocol.Op{
	protocol.OpPing, protocol.OpSelect, protocol.OpInsert, protocol.OpUpdate,
	protocol.OpDelete, protocol.OpTOC, protocol.OpGet, protocol.OpPut,
	protocol.OpChecksum, protocol.OpDelta, protocol.OpWhere, protocol.OpList,
	protocol.OpStatus, protocol.OpVersion, protocol.OpWatch, protocol.OpUnwatch,
	protocol.OpCompact, protocol.OpReload,
}

const (
	numOpSlots    = 19
	numStatuses   = 12
	latencyBucket = 24 // log2 buckets of microseconds: <1µs … ≥ 2^22 µs (~4 s)
)

// OpStats are the counters of one operation of one tenant. All fields are
// updated with atomics by worker goroutines and read by the metrics code.
type OpStats struct {
	Requests atomic.Uint64
	BytesIn  atomic.Uint64
	BytesOut atomic.Uint64
	Status   [numStatuses]atomic.Uint64
	LatSum   atomic.Uint64 // µs
}

// latHist is a latency histogram: b[i] counts requests that took
// [2^(i-1), 2^i) µs (bucket 0: < 1 µs; the last one: the rest).
type latHist struct {
	b   [latencyBucket]atomic.Uint64
	sum atomic.Uint64 // µs
}

func (h *latHist) add(us uint64) {
	b := bits.Len64(us)
	if b >= latencyBucket {
		b = latencyBucket - 1
	}
	h.b[b].Add(1)
	h.sum.Add(us)
}

// tenantStats are one tenant's counters. They are sized for a host with
// 10,000 mostly idle tenants: an operation's OpStats is allocated at its
// first request (an idle tenant holds 17 nil pointers), and latency
// histograms per tenant exist only with Options.TenantDetailMetrics; the
// server-wide histograms of every operation live in serverStats.
type tenantStats struct {
	ops [numOpSlots]atomic.Pointer[OpStats]
	srv *serverStats         // the server's per-op totals
	lat *[numOpSlots]latHist // nil unless TenantDetailMetrics
}

// initTenantStats makes ts, zero, the empty counters of a tenant of s.
func (s *Server) initTenantStats(ts *tenantStats) {
	ts.srv = &s.stats
	if s.opts.TenantDetailMetrics {
		ts.lat = new([numOpSlots]latHist)
	}
}

// op returns the counters of slot i, or nil if it has served no request.
func (ts *tenantStats) op(i int) *OpStats { return ts.ops[i].Load() }

// opSlotName names the counter slot i of tenantStats.ops.
func opSlotName(i int) string {
	if i == 0 || i > len(countedOps) {
		return "OTHER"
	}
	return countedOps[i-1].String()
}

func (ts *tenantStats) record(op protocol.Op, status protocol.Status, in, out int, d time.Duration) {
	slot := opSlots[op]
	s := ts.ops[slot].Load()
	if s == nil {
		// First request of this operation for this tenant.
		ts.ops[slot].CompareAndSwap(nil, new(OpStats))
		s = ts.ops[slot].Load()
	}
	s.Requests.Add(1)
	s.BytesIn.Add(uint64(in))
	s.BytesOut.Add(uint64(out))
	if int(status) < numStatuses {
		s.Status[status].Add(1)
	}
	us := uint64(d / time.Microsecond)
	s.LatSum.Add(us)
	if ts.lat != nil {
		ts.lat[slot].add(us)
	}
	if ts.srv != nil {
		ts.srv.opLat[slot].add(us)
	}
}

// serverStats are server-wide counters.
type serverStats struct {
	conns        atomic.Int64
	accepted     atomic.Uint64
	authFailures atomic.Uint64
	// reloadsOK and reloadsFailed count every reload: SIGHUP, RELOAD,
	// REST and admin.
	reloadsOK     atomic.Uint64
	reloadsFailed atomic.Uint64
	closed        [numCloseReasons]atomic.Uint64
	// helloPaced counts HELLOs whose answer waited for their tenant's
	// schedule of new connections (pace.go).
	helloPaced atomic.Uint64
	// refusalsHeld counts limit refusals whose answer waited past their
	// tenant's budget, refusalsClosed those answered at once with their
	// connection closed because no more could wait (refusal.go).
	refusalsHeld   atomic.Uint64
	refusalsClosed atomic.Uint64
	// loopWrites counts writes answered on the event loop (fastWrite).
	loopWrites atomic.Uint64
	// loopLogWrites counts the log writes of loop rounds (endRound): one
	// per round that applied writes, whatever their number.
	loopLogWrites atomic.Uint64
	// inboundPeak is the most bytes gnet held unread for one connection
	// at the end of an OnTraffic (noteInbound): bounded by the read buffer
	// while frames are drained, since a large frame is moved out of it.
	inboundPeak atomic.Int64
	// framesMapped counts large frames received into mapped memory,
	// frameBytesMapped the bytes of those not unmapped yet (framebuf.go).
	framesMapped     atomic.Uint64
	frameBytesMapped atomic.Int64
	framesMappedNow  atomic.Int64 // mapped and not unmapped yet (maxMappedFrames)
	// socketRead counts the bytes of large frames the loops read straight
	// from the socket into the frame's buffer (readSocket), socketDropped
	// those of refused frames they dropped there uncopied (discardSocket).
	socketRead    atomic.Uint64
	socketDropped atomic.Uint64
	// The change feed (watch.go): subscriptions now, events queued to
	// watchers, subscriptions ended for a slow watcher, resyncs at WATCH,
	// resumes served from the commit log.
	watches         atomic.Int64
	watchEvents     atomic.Uint64
	watchDropped    atomic.Uint64
	watchResyncs    atomic.Uint64
	watchLogResumes atomic.Uint64
	watchBacklogs   atomic.Uint64 // sq_watch_backlogs_total
	watchLat        latHist       // sq_watch_delivery_seconds
	// opLat are the request-duration histograms of each operation over
	// all tenants.
	opLat [numOpSlots]latHist
}

// noteInbound records n bytes left unread in a connection's inbound
// buffer (an atomic load unless it is a new peak).
func (st *serverStats) noteInbound(n int) {
	for {
		p := st.inboundPeak.Load()
		if int64(n) <= p || st.inboundPeak.CompareAndSwap(p, int64(n)) {
			return
		}
	}
}

// closeReason says why the server closed a connection.
type closeReason uint8

const (
	closeClient   closeReason = iota // the peer closed or the socket failed
	closeAuth                        // bad HELLO or a frame before HELLO
	closeProtocol                    // undelimitable or oversize frame
	closeHelloTimeout
	closeIdleTimeout
	closeSlowFrame // a frame trickled in slower than FrameTimeout
	closeSlowConsumer
	closeTenantGone // reload removed or disabled the tenant
	closeLimit      // over a connection limit
	closeShutdown
	closeInboundLimit // sent far past MaxInFlight without reading replies
	closeBadFrames    // the tenant sent malformed frames past its budget (pace.go)
	closeRefusals     // the tenant's requests were refused past its budget, no answer could wait (refusal.go)
	numCloseReasons
)

var closeReasonNames = [numCloseReasons]string{
	"client", "auth", "protocol", "hello_timeout", "idle_timeout",
	"slow_frame", "slow_consumer", "tenant_gone", "limit", "shutdown", "inbound_limit",
	"bad_frames", "refusals",
}

func (r closeReason) String() string { return closeReasonNames[r] }
