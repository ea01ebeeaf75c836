package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime/metrics"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// The watch scenario (issue 18): W writer connections and N watcher
// connections per tenant. Each writer UPDATEs its own scroll of the
// tenant's bench phext with "<tenant>:<writer>:<seq>:<send unixnano>";
// each watcher follows the phext with text, so it can check that it saw
// every write of every writer of its tenant in order (seq+1 each time),
// nothing of another tenant, and measure send-to-delivery latency. The
// same writers also run without watchers, interleaved (with, without,
// with, without…), so the watchers' cost on writers is a ratio of medians
// from one server under one load.

// WatchOptions configure RunWatch on top of Options (Addr, Tokens,
// Duration, Phext, Compression, ServerPID).
type WatchOptions struct {
	Writers  int // writer connections per tenant (default 1)
	Watchers int // watcher connections per tenant (default 2)
	Rounds   int // with/without pairs (default 2)
	// Pause between phases: longer than the server's --watch-linger plus
	// a tick, so that a phase without watchers runs without feeds.
	Pause time.Duration
	// Rate paces the writers to this many writes per second in all (an
	// open loop: latencies then measure the feed, not the queueing of a
	// saturated machine); 0 lets each write as fast as it can.
	Rate float64
}

// WatchPhase is one measured phase.
type WatchPhase struct {
	Watchers     int     `json:"watchers"`
	Seconds      float64 `json:"seconds"`
	Writes       int64   `json:"writes"`
	WritesPerSec float64 `json:"writes_per_sec"`
	Events       int64   `json:"events"`
	EventsPerSec float64 `json:"events_per_sec"`
	// Latency is from the writer's send of an UPDATE to a watcher's
	// receipt of its event (so it includes the write's own trip to the
	// server and its commit): an upper bound of commit-to-delivery.
	Latency Latency `json:"send_to_delivery"`
	// Arrival is from the same send to the kernel's receipt of the event
	// in the watcher's socket (SO_TIMESTAMPNS, Linux): the server's and
	// the network's part of Latency without the load generator's wait for
	// a core to read it. Zero where arrivals are not timed.
	Arrival  Latency `json:"send_to_arrival"`
	WriteLat Latency `json:"write_latency"`
	// WriteArrival is a write's send to its answer's arrival in the
	// writer's socket, as Arrival is for events.
	WriteArrival Latency `json:"write_arrival"`
	// BenchCPU is the load generator's own CPU seconds in the phase (it
	// shares the machine with the server); BenchGCs its GC cycles.
	BenchCPU   float64 `json:"bench_cpu_seconds,omitempty"`
	BenchGCs   uint64  `json:"bench_gc_cycles"`
	Resyncs    int64   `json:"resyncs"`
	ServerCPU  float64 `json:"server_cpu_seconds,omitempty"`
	VerifiedOK bool    `json:"verified"`
}

// WatchResult is the watch scenario's outcome.
type WatchResult struct {
	Tenants, WritersPerTenant, WatchersPerTenant int
	Phases                                       []WatchPhase `json:"phases"`
	// Medians over the phases of each kind, and their ratio.
	WithWritesPerSec    float64 `json:"with_writes_per_sec"`
	WithoutWritesPerSec float64 `json:"without_writes_per_sec"`
	WriterRatio         float64 `json:"writer_ratio"`
	P50us, P99us        float64
	ArrivalP99us        float64 `json:"arrival_p99_us"` // median of the phases' Arrival.P99
	EventsPerSec        float64 `json:"events_per_sec"`
}

// RunWatch runs the watch scenario.
func RunWatch(ctx context.Context, o *Options, w WatchOptions) (*WatchResult, error) {
	if w.Writers <= 0 {
		w.Writers = 1
	}
	if w.Watchers <= 0 {
		w.Watchers = 2
	}
	if w.Rounds <= 0 {
		w.Rounds = 2
	}
	if len(o.Tokens) == 0 {
		return nil, fmt.Errorf("%w: watch needs tenant tokens", ErrUsage)
	}
	d := o.Duration
	if d <= 0 {
		d = 10 * time.Second
	}
	opts := []client.Option{client.WithCompression(o.Compression)}
	// Writers stay connected across phases; watchers are new per phase.
	writers := make([][]*watchWriter, len(o.Tokens))
	defer func() {
		for _, ws := range writers {
			for _, c := range ws {
				c.rc.Close()
			}
		}
	}()
	for ti, tok := range o.Tokens {
		for i := 0; i < w.Writers; i++ {
			ww := &watchWriter{name: []byte(o.Phext)}
			rc, err := client.DialRaw(ctx, o.Addr, tok, stampedDial(opts, &ww.conn)...)
			if err != nil {
				return nil, fmt.Errorf("bench: watch: dial writer: %w", err)
			}
			ww.rc = rc
			writers[ti] = append(writers[ti], ww)
		}
	}
	res := &WatchResult{Tenants: len(o.Tokens), WritersPerTenant: w.Writers, WatchersPerTenant: w.Watchers}
	seq := make([][]int64, len(o.Tokens)) // per tenant and writer: last seq written
	for ti := range seq {
		seq[ti] = make([]int64, w.Writers)
	}
	// Unmeasured: each writer writes once, so that the first phase does
	// not also open (create) the 500 phexts; it measured their creation
	// (write and delivery p99 of tens of ms) beside the feed.
	if err := watchWarm(ctx, o, writers, seq); err != nil {
		return nil, err
	}
	var err error
	for r := 0; r < w.Rounds && err == nil; r++ {
		for _, n := range []int{w.Watchers, 0} {
			if w.Pause > 0 && len(res.Phases) > 0 {
				// Let the server detach the feeds of the phase before
				// (its --watch-linger), so "without" means no feed.
				select {
				case <-ctx.Done():
					return res, ctx.Err()
				case <-time.After(w.Pause):
				}
			}
			var ph WatchPhase
			ph, err = watchPhase(ctx, o, writers, seq, n, d, w.Rate, opts)
			res.Phases = append(res.Phases, ph)
			if err != nil {
				break
			}
		}
	}
	var with, without, p50, p99, arr99, evs []float64
	for _, ph := range res.Phases {
		if ph.Watchers > 0 {
			with = append(with, ph.WritesPerSec)
			p50 = append(p50, ph.Latency.P50)
			p99 = append(p99, ph.Latency.P99)
			arr99 = append(arr99, ph.Arrival.P99)
			evs = append(evs, ph.EventsPerSec)
		} else {
			without = append(without, ph.WritesPerSec)
		}
	}
	res.WithWritesPerSec, res.WithoutWritesPerSec = median(with), median(without)
	if res.WithoutWritesPerSec > 0 {
		res.WriterRatio = res.WithWritesPerSec / res.WithoutWritesPerSec
	}
	res.P50us, res.P99us, res.EventsPerSec = median(p50), median(p99), median(evs)
	res.ArrivalP99us = median(arr99)
	return res, err
}

// watchWarm writes the next seq of every writer once, all writers at once.
func watchWarm(ctx context.Context, o *Options, writers [][]*watchWriter, seq [][]int64) error {
	var wg sync.WaitGroup
	var werr atomic.Pointer[error]
	for ti := range writers {
		for wi, c := range writers[ti] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := seq[ti][wi] + 1
				coord := phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, uint16(1 + wi)}
				if err := c.update(coord, watchText(nil, ti, wi, s, watchNow())); err != nil {
					werr.CompareAndSwap(nil, &err)
					return
				}
				seq[ti][wi] = s
			}()
		}
	}
	wg.Wait()
	if e := werr.Load(); e != nil {
		return fmt.Errorf("bench: watch: warm-up write: %w", *e)
	}
	return nil
}

// watchWriter is a writer connection. Each UPDATE is sent and its answer
// read on the writer's own goroutine (client.RawConn): client.Conn hands
// every answer from its reader goroutine to the caller's, a wake-up per
// write on the cores being measured.
type watchWriter struct {
	rc   *client.RawConn
	conn *stampConn // rc's connection: the answers' arrival times
	name []byte
	resp protocol.Response
}

// writeTimeout bounds one UPDATE's round trip.
const writeTimeout = 30 * time.Second

// update writes text to scroll c of the bench phext and waits for the
// answer.
func (w *watchWriter) update(c phext.Coordinate, text []byte) error {
	if err := w.rc.SetDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	if _, err := w.rc.Send(protocol.OpUpdate, w.name, c, text); err != nil {
		return err
	}
	if err := w.rc.Flush(); err != nil {
		return err
	}
	if err := w.rc.Recv(&w.resp); err != nil {
		return err
	}
	if w.resp.Status != protocol.StatusOK {
		return fmt.Errorf("UPDATE answered %v: %.200s", w.resp.Status, w.resp.Body)
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// watcherState is one watcher's verification state (its goroutine only).
type watcherState struct {
	mu      sync.Mutex // the checker reads while the watcher's goroutine writes
	tenant  int
	lastSeq []int64 // per writer of its tenant
	lastPos uint64
	events  int64
	resyncs int64
	lat     latRecorder // send to delivery
	arr     latRecorder // send to arrival (stampConn)
	conn    *stampConn
	err     error
}

// latRecorder records one goroutine's latencies (µs) of a phase into a
// histogram shared by the phase: a fixed batch of samples, merged under
// the histogram's lock when full and at the end. Memory stays bounded by
// the batch whatever the duration or event rate (flat per-watcher slices
// grew with both), and the one histogram of the phase is touched in
// batches, not per sample (per-watcher hdr histograms, 1,500 of ~170 KiB,
// cost a tenth of the load generator's CPU in page faults and cache
// misses).
type latRecorder struct {
	h   *sharedHist
	n   int
	buf [256]int32
}

// sharedHist is a phase's histogram and its lock.
type sharedHist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newSharedHist() *sharedHist { return &sharedHist{h: newHist()} }

func (l *latRecorder) add(us int64) {
	l.buf[l.n] = int32(min(max(us, histMin), math.MaxInt32))
	l.n++
	if l.n == len(l.buf) {
		l.flush()
	}
}

// flush merges the batch into the shared histogram.
func (l *latRecorder) flush() {
	if l.n == 0 || l.h == nil {
		l.n = 0
		return
	}
	l.h.mu.Lock()
	for _, us := range l.buf[:l.n] {
		_ = l.h.h.RecordValue(int64(us))
	}
	l.h.mu.Unlock()
	l.n = 0
}

// stampedDial is opts with a dialer of stamped connections (stampConn)
// that leaves the connection in *conn.
func stampedDial(opts []client.Option, conn **stampConn) []client.Option {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialStamped(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		*conn = c
		return c, nil
	}
	return append(opts[:len(opts):len(opts)], func(o *client.Options) { o.Dialer = dial })
}

// watcherConnOptions are the watchers' client options on top of the
// bench's: a small read buffer (an event frame is ~130 bytes; 1,000
// watcher connections with the default 64 KiB buffers hold 64 MiB).
func watcherConnOptions(opts []client.Option) []client.Option {
	return append(opts[:len(opts):len(opts)], func(o *client.Options) { o.ReadBufferSize = 4 << 10 })
}

// dialWatcher connects a watcher and subscribes it to phext name with
// texts (WATCH, subscription 1). The watchers read their frames with
// client.RawConn on one goroutine each, decoding events in place:
// client.Conn's Watch hands each event from its reader goroutine through a
// channel to the consumer's (two goroutine wake-ups and an Event with
// strings per event), on the same 2 cores as the server being measured;
// and (before) 1,000 channels of 4,096 Events held ~800 MiB whose GC took
// seconds of those cores.
//
// Its connection keeps the kernel's receive time of what it reads
// (stampConn), so each event is also timed at its arrival.
func dialWatcher(ctx context.Context, addr, token, name string, opts []client.Option, st *watcherState) (*client.RawConn, error) {
	rc, err := client.DialRaw(ctx, addr, token, stampedDial(opts, &st.conn)...)
	if err != nil {
		return nil, err
	}
	id, err := rc.Send(protocol.OpWatch, []byte(name), phext.Origin, protocol.AppendWatchPayload(nil, 1, 0, protocol.WatchText, 0))
	if err == nil {
		err = rc.Flush()
	}
	var resp protocol.Response
	for err == nil {
		if err = rc.Recv(&resp); err != nil {
			break
		}
		if protocol.IsEvent(&resp) {
			err = st.event(resp.Body)
			continue
		}
		if resp.ID != id || resp.Status != protocol.StatusOK {
			err = fmt.Errorf("WATCH answered id %d %v: %s", resp.ID, resp.Status, resp.Body)
		}
		break
	}
	if err != nil {
		rc.Close()
		return nil, err
	}
	return rc, nil
}

// follow reads st's watcher's events until its connection is closed.
func (st *watcherState) follow(rc *client.RawConn) {
	var resp protocol.Response
	for rc.Recv(&resp) == nil {
		if !protocol.IsEvent(&resp) {
			continue
		}
		if err := st.event(resp.Body); err != nil {
			st.mu.Lock()
			if st.err == nil {
				st.err = err
			}
			st.mu.Unlock()
			return
		}
	}
}

// event decodes one event frame's body and observes it.
func (st *watcherState) event(body []byte) error {
	var ev protocol.Event
	if err := protocol.DecodeEvent(body, &ev); err != nil {
		return fmt.Errorf("%w: event: %w", ErrVerify, err)
	}
	var arrived int64
	if st.conn != nil {
		arrived = st.conn.Stamp()
	}
	st.observe(ev.Kind == protocol.EventResync, ev.Pos, ev.Text, arrived)
	return nil
}

func watchPhase(ctx context.Context, o *Options, writers [][]*watchWriter, seq [][]int64, nWatch int,
	d time.Duration, rate float64, opts []client.Option) (WatchPhase, error) {
	ph := WatchPhase{Watchers: nWatch * len(o.Tokens)}
	var conns []*client.RawConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var states []*watcherState
	lh := newSharedHist() // send-to-delivery
	ah := newSharedHist() // send-to-arrival
	wopts := watcherConnOptions(opts)
	for ti, tok := range o.Tokens {
		for i := 0; i < nWatch; i++ {
			st := &watcherState{tenant: ti, lastSeq: append([]int64(nil), seq[ti]...)}
			st.lat.h, st.arr.h = lh, ah
			c, err := dialWatcher(ctx, o.Addr, tok, o.Phext, wopts, st)
			if err != nil {
				return ph, fmt.Errorf("bench: watch: watcher: %w", err)
			}
			conns = append(conns, c)
			states = append(states, st)
		}
	}
	var wwg sync.WaitGroup
	for i := range conns {
		wwg.Add(1)
		go func(rc *client.RawConn, st *watcherState) {
			defer wwg.Done()
			st.follow(rc)
		}(conns[i], states[i])
	}

	var cpu0 float64
	if o.ServerPID > 0 {
		if p, err := ReadProc(o.ServerPID); err == nil {
			cpu0 = p.CPU.Seconds()
		}
	}
	self0, gc0 := selfCPU(), gcCycles()
	pctx, cancel := context.WithTimeout(ctx, d)
	var writes atomic.Int64
	var werr atomic.Pointer[error]
	wh := newSharedHist()  // writes
	wah := newSharedHist() // writes, to the answer's arrival
	start := time.Now()
	var interval time.Duration // per writer, when paced
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(len(writers)*len(writers[0])) / rate)
	}
	var wg sync.WaitGroup
	for ti := range writers {
		for wi, c := range writers[ti] {
			wg.Add(1)
			go func(ti, wi int, c *watchWriter) {
				defer wg.Done()
				lat, arr := latRecorder{h: wh}, latRecorder{h: wah}
				pace := time.NewTimer(time.Hour)
				pace.Stop()
				defer pace.Stop()
				coord := phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, uint16(1 + wi)}
				buf := make([]byte, 0, 64)
				// Paced writers start spread over one interval.
				next := start.Add(time.Duration(uint64(ti*len(writers[ti])+wi) * uint64(interval) / uint64(max(len(writers)*len(writers[ti]), 1))))
				for pctx.Err() == nil {
					if interval > 0 {
						if wait := time.Until(next); wait > 0 {
							pace.Reset(wait)
							select {
							case <-pctx.Done():
								continue
							case <-pace.C:
							}
						}
						next = next.Add(interval)
						if now := time.Now(); next.Before(now) {
							next = now // behind (a slow reply): no burst to catch up
						}
					}
					s := seq[ti][wi] + 1
					t0 := time.Now()
					sent := int64(t0.Sub(watchEpoch))
					buf = watchText(buf[:0], ti, wi, s, sent)
					if err := c.update(coord, buf); err != nil {
						werr.CompareAndSwap(nil, &err)
						return
					}
					done := time.Now()
					lat.add(done.Sub(t0).Microseconds())
					if a := c.conn.Stamp(); a > 0 {
						arr.add((monoStamp(done, a) - sent) / 1000)
					}
					seq[ti][wi] = s
					writes.Add(1)
				}
				lat.flush()
				arr.flush()
			}(ti, wi, c)
		}
	}
	wg.Wait()
	cancel()
	elapsed := time.Since(start)
	if e := werr.Load(); e != nil {
		return ph, fmt.Errorf("bench: watch: write: %w", *e)
	}
	if o.ServerPID > 0 {
		if p, err := ReadProc(o.ServerPID); err == nil {
			ph.ServerCPU = p.CPU.Seconds() - cpu0
		}
	}
	ph.BenchCPU, ph.BenchGCs = selfCPU()-self0, gcCycles()-gc0
	ph.Seconds = elapsed.Seconds()
	ph.Writes = writes.Load()
	ph.WritesPerSec = float64(ph.Writes) / ph.Seconds
	ph.WriteLat = latencyOf(wh.h)
	if stampsSupported {
		ph.WriteArrival = latencyOf(wah.h)
	}

	// Every watcher must see every write of its tenant: wait (bounded)
	// until each has the last seq of each writer, then end the feeds.
	deadline := time.Now().Add(30 * time.Second)
	var verr error
	for _, st := range states {
		for !st.caughtUp(seq[st.tenant]) {
			if time.Now().After(deadline) {
				verr = fmt.Errorf("%w: a watcher of tenant %d saw writes up to %v of %v", ErrVerify, st.tenant, st.snapshot(), seq[st.tenant])
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if verr != nil {
			break
		}
	}
	for _, c := range conns {
		c.Close()
	}
	wwg.Wait()
	for _, st := range states {
		ph.Events += st.events
		ph.Resyncs += st.resyncs
		st.lat.flush()
		st.arr.flush()
		if st.err != nil && verr == nil {
			verr = st.err
		}
	}
	ph.EventsPerSec = float64(ph.Events) / ph.Seconds
	ph.Latency = latencyOf(lh.h)
	if stampsSupported {
		ph.Arrival = latencyOf(ah.h)
	}
	if verr == nil && ph.Resyncs > 0 {
		verr = fmt.Errorf("%w: %d resync events (watchers fell behind)", ErrVerify, ph.Resyncs)
	}
	ph.VerifiedOK = verr == nil
	return ph, verr
}

// The watch latencies are differences of readings of the bench's own
// clock, nanoseconds since watchEpoch on the monotonic clock, never of
// the wall clock, which steps (NTP, an operator's date) and would put the
// step into every latency measured across it. The kernel's receive stamps
// (stampConn.Stamp) are wall-clock times: each is moved onto the bench's
// clock by its age, a short wall-clock difference (from the stamp to a
// reading taken together with a monotonic one, monoStamp). Readings
// start at a minute, so that none is negative (the text has digits only).
var watchEpoch = time.Now().Add(-time.Minute)

// watchNow reads the bench's clock.
func watchNow() int64 { return int64(time.Since(watchEpoch)) }

// monoStamp is the reading of the bench's clock at which the kernel
// stamped data at wall (unix ns), seen at now (a time.Now reading, which
// holds both clocks).
func monoStamp(now time.Time, wall int64) int64 {
	return int64(now.Sub(watchEpoch)) - (now.UnixNano() - wall)
}

// watchText is the text of a writer's UPDATE: tenant, writer, sequence
// number and the bench's clock (watchNow) when it was sent.
func watchText(dst []byte, tenant, writer int, seq, nanos int64) []byte {
	dst = strconv.AppendInt(dst, int64(tenant), 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, int64(writer), 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, ':')
	return strconv.AppendInt(dst, nanos, 10)
}

// observe checks one event and records its latencies; arrived is the
// kernel's receive time of its frame (0: not known).
func (st *watcherState) observe(resync bool, pos uint64, text []byte, arrived int64) {
	nowT := time.Now()
	now := int64(nowT.Sub(watchEpoch))
	st.mu.Lock()
	defer st.mu.Unlock()
	if resync {
		st.resyncs++
		return
	}
	if st.err != nil {
		return
	}
	if pos <= st.lastPos {
		st.err = fmt.Errorf("%w: position %d after %d", ErrVerify, pos, st.lastPos)
		return
	}
	st.lastPos = pos
	ti, wi, s, sent, ok := parseWatchText(text)
	if !ok {
		st.err = fmt.Errorf("%w: event text %q is not the bench's", ErrVerify, text)
		return
	}
	if ti != st.tenant {
		st.err = fmt.Errorf("%w: a watcher of tenant %d got an event of tenant %d", ErrVerify, st.tenant, ti)
		return
	}
	if wi < 0 || wi >= len(st.lastSeq) || s != st.lastSeq[wi]+1 {
		got := int64(-1)
		if wi >= 0 && wi < len(st.lastSeq) {
			got = st.lastSeq[wi]
		}
		st.err = fmt.Errorf("%w: tenant %d writer %d: seq %d after %d (a change missed or out of order)", ErrVerify, ti, wi, s, got)
	} else {
		st.lastSeq[wi] = s
	}
	st.events++
	st.lat.add((now - sent) / 1000)
	if arrived > 0 {
		st.arr.add((monoStamp(nowT, arrived) - sent) / 1000)
	}
}

// parseWatchText is watchText's inverse, without allocating (it runs for
// every event the watchers receive, on the machine being measured).
func parseWatchText(b []byte) (tenant, writer int, seq, nanos int64, ok bool) {
	var f [4]int64
	for i := range f {
		j := bytes.IndexByte(b, ':')
		if i == 3 {
			j = len(b)
		}
		if j <= 0 {
			return 0, 0, 0, 0, false
		}
		for _, c := range b[:j] {
			if c < '0' || c > '9' || f[i] > (math.MaxInt64-9)/10 {
				return 0, 0, 0, 0, false
			}
			f[i] = f[i]*10 + int64(c-'0')
		}
		if i < 3 {
			b = b[j+1:]
		}
	}
	return int(f[0]), int(f[1]), f[2], f[3], true
}

func (st *watcherState) caughtUp(want []int64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err != nil {
		return true // reported after the feeds end
	}
	for i, s := range want {
		if st.lastSeq[i] < s {
			return false
		}
	}
	return true
}

func (st *watcherState) snapshot() []int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]int64(nil), st.lastSeq...)
}

// WriteWatchTable prints the watch scenario's phases and summary.
func WriteWatchTable(w io.Writer, r *WatchResult) {
	if r == nil {
		return
	}
	fmt.Fprintf(w, "watch: %d tenants, %d writer(s) and %d watcher(s) per tenant\n", r.Tenants, r.WritersPerTenant, r.WatchersPerTenant)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\twatchers\twrites/s\twrite p50 µs\twrite p99 µs\t(arrival) µs\tevents/s\tdelivery p50 µs\tdelivery p99 µs\t(arrival) µs\tresyncs\tserver CPU s\tbench CPU s\tbench GCs\tverified\t")
	for i, ph := range r.Phases {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%.1f\t%.1f\t%d\t%v\t\n", i+1, ph.Watchers, ph.WritesPerSec,
			ph.WriteLat.P50, ph.WriteLat.P99, ph.WriteArrival.P99, ph.EventsPerSec, ph.Latency.P50, ph.Latency.P99, ph.Arrival.P99, ph.Resyncs,
			ph.ServerCPU, ph.BenchCPU, ph.BenchGCs, ph.VerifiedOK)
	}
	tw.Flush()
	fmt.Fprintf(w, "medians: writes/s with watchers %.0f, without %.0f (ratio %.3f); events/s %.0f; send-to-delivery p50 %.0f µs, p99 %.0f µs\n",
		r.WithWritesPerSec, r.WithoutWritesPerSec, r.WriterRatio, r.EventsPerSec, r.P50us, r.P99us)
	if r.ArrivalP99us > 0 {
		// The part of the delivery tail the server and the kernel own: the
		// rest is the load generator waiting for a core to read its socket.
		fmt.Fprintf(w, "send-to-arrival p99 %.0f µs ((arrival): to the kernel's receive time in the bench's socket, before the bench reads it)\n", r.ArrivalP99us)
	}
}

// selfCPU is the load generator's own CPU seconds so far (0 if unknown).
func selfCPU() float64 {
	p, err := ReadProc(os.Getpid())
	if err != nil {
		return 0
	}
	return p.CPU.Seconds()
}

// gcCycles is the load generator's GC cycles so far.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
