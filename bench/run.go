package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/phext/sq/phext"
)

// Options describes one load run. Zero fields take the defaults named.
type Options struct {
	// Addr is the server's host:port.
	Addr string
	// Protocol is ProtoSQ (default) or ProtoRESP.
	Protocol string
	// Tokens are the tenants' API tokens, one per tenant (SQ). With RESP
	// only their number matters; when Tokens is empty Tenants is used.
	Tokens []string
	// Tenants is the tenant count for RESP when Tokens is empty.
	Tenants int
	// Conns is the number of connections (default: one per tenant).
	// Connection i works for tenant i % tenants.
	Conns int
	// Pipeline is the number of requests each connection keeps in flight
	// (default 1).
	Pipeline int
	// Warmup runs the workload unmeasured before the measurement.
	Warmup time.Duration
	// Duration is the measured time (default 10 s unless Ops is set).
	Duration time.Duration
	// Ops, when > 0, ends the measurement after that many operations
	// (Duration then only bounds it when also set).
	Ops int64
	// Mix weights the operations (default DefaultMix).
	Mix Mix
	// Size is the size of each written text (default 1 KiB).
	Size SizeRange
	// Scrolls is the number of scrolls each tenant's connections work on
	// together (default 20), shared out so that no two connections touch
	// the same scroll; every connection gets at least one.
	Scrolls int
	// Phexts spreads a tenant's scrolls over this many phexts (default 1:
	// only Phext; others are named Phext-2, Phext-3, …, or bench-2,
	// bench-3, … when Phext is the default phext).
	Phexts int
	// Phext names the phext the load writes ("" = the tenant's default
	// phext). sq bench against a running server uses "sq-bench", so the
	// tenant's own data is never touched.
	Phext string
	// MaxScroll caps how long INSERT may grow a scroll before the
	// generator sends UPDATE instead (default max(16 KiB, 4 × Size.Max)).
	MaxScroll int
	// NoVerify turns off checking answers against the model (for the echo
	// server, which stores nothing). Error statuses still count.
	NoVerify bool
	// NoPreload starts from empty scrolls (each connection deletes its
	// scrolls first) instead of writing every scroll once before the
	// warm-up.
	NoPreload bool
	// Compression offers zstd/s2 in HELLO (SQ only; default off so the
	// numbers measure the server, not the codec).
	Compression bool
	// Seed makes the run's choices reproducible (default 1).
	Seed uint64
	// ReadBuffer is each connection's read and write buffer size (default
	// 64 KiB).
	ReadBuffer int
	// ServerPID, when > 0, is the server process whose CPU time and RSS
	// are read from /proc around the measurement.
	ServerPID int
	// Progress, when set, is called about every ProgressEvery (default 1 s)
	// from a separate goroutine.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// DialTimeout bounds each connection's dial and HELLO (default 30 s).
	DialTimeout time.Duration
	// HangTimeout is how long Run waits for in-flight answers after the
	// end before it closes the connections and reports them hung
	// (default 30 s).
	HangTimeout time.Duration

	dial dialFunc // for tests: replaces the protocol's dialer
}

// Progress is a live view of a running measurement.
type Progress struct {
	// Phase is "dial", "prepare", "warmup", "run" or "drain".
	Phase string
	// Elapsed is the time since the phase started; Total is its planned
	// length (0 when unknown).
	Elapsed, Total time.Duration
	// Ops is the operations completed in the phase; Rate is ops/s over the
	// last interval.
	Ops  int64
	Rate float64
	// Problems counts mismatches, error statuses and broken connections so
	// far.
	Problems int64
}

func (o *Options) withDefaults() (Options, error) {
	c := *o
	if c.Protocol == "" {
		c.Protocol = ProtoSQ
	}
	if c.Protocol != ProtoSQ && c.Protocol != ProtoRESP {
		return c, fmt.Errorf("%w: protocol %q (sq or resp)", ErrUsage, c.Protocol)
	}
	if c.Addr == "" {
		return c, fmt.Errorf("%w: no address", ErrUsage)
	}
	if len(c.Tokens) > 0 {
		c.Tenants = len(c.Tokens)
	} else if c.Protocol == ProtoSQ && c.dial == nil {
		return c, fmt.Errorf("%w: no tenant tokens", ErrUsage)
	}
	if c.Tenants <= 0 {
		return c, fmt.Errorf("%w: tenants must be > 0", ErrUsage)
	}
	if c.Conns == 0 {
		c.Conns = c.Tenants
	}
	if c.Conns < 0 {
		return c, fmt.Errorf("%w: conns %d < 0", ErrUsage, c.Conns)
	}
	if (c.Conns+c.Tenants-1)/c.Tenants > 999 {
		return c, fmt.Errorf("%w: more than 999 connections per tenant", ErrUsage)
	}
	if c.Pipeline == 0 {
		c.Pipeline = 1
	}
	if c.Pipeline < 0 || c.Pipeline > 4096 {
		return c, fmt.Errorf("%w: pipeline %d not in 1..4096", ErrUsage, c.Pipeline)
	}
	if c.Duration == 0 && c.Ops == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Duration < 0 || c.Warmup < 0 || c.Ops < 0 {
		return c, fmt.Errorf("%w: negative duration, warm-up or ops", ErrUsage)
	}
	if c.Mix.total() == 0 {
		c.Mix = DefaultMix
	}
	for _, w := range c.Mix {
		if w < 0 {
			return c, fmt.Errorf("%w: negative weight in mix", ErrUsage)
		}
	}
	if c.Size.Max == 0 {
		c.Size = SizeRange{1024, 1024}
	}
	if c.Size.Min < 1 || c.Size.Max < c.Size.Min {
		return c, fmt.Errorf("%w: size %d-%d", ErrUsage, c.Size.Min, c.Size.Max)
	}
	if c.Scrolls == 0 {
		c.Scrolls = 20
	}
	if c.Scrolls < 0 || c.Scrolls > 999*999*999 {
		return c, fmt.Errorf("%w: scrolls %d", ErrUsage, c.Scrolls)
	}
	if c.Phexts == 0 {
		c.Phexts = 1
	}
	if c.Phexts < 0 || c.Phexts > 10000 {
		return c, fmt.Errorf("%w: phexts %d not in 1..10000", ErrUsage, c.Phexts)
	}
	if c.MaxScroll == 0 {
		c.MaxScroll = max(16<<10, 4*c.Size.Max)
	}
	if c.MaxScroll < c.Size.Max {
		c.MaxScroll = c.Size.Max
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 30 * time.Second
	}
	if c.HangTimeout <= 0 {
		c.HangTimeout = 30 * time.Second
	}
	return c, nil
}

// scroll is one scroll a connection owns, with its model.
type scroll struct {
	t    target
	segs []segment
	size int
}

// flight is one request in flight.
type flight struct {
	op     OpKind
	sc     int32
	id     uint32
	seg    segment
	prev   int // model size when sent (DELETE's expected count)
	start  time.Duration
	prep   bool
	record bool
}

const batchSize = 256

// conn is one load connection, owned by its goroutine.
type conn struct {
	r         *runner
	w         wire
	tenant    int
	scrolls   []scroll
	rng       rng
	ring      []flight
	head, n   int
	prepIdx   int
	unflushed int    // requests sent into the buffer since the last flush
	ans       answer // the answer being handled (a field: no escape)
	dead      bool   // the connection broke; the goroutine ends
	text      []byte

	done    atomic.Int64 // operations completed in the current phase
	count   [numOps]int64
	errs    [numOps]int64
	bytesR  int64
	bytesW  int64
	batch   [batchSize]int64 // latency µs << 3 | op
	nbatch  int
	shard   *shard
	errBySt map[string]int64
}

type shard struct {
	mu sync.Mutex
	h  [numOps]*hdrhistogram.Histogram
}

// Histogram bounds: 1 µs to 10 minutes, 3 significant digits.
const (
	histMin = 1
	histMax = 600_000_000
	histSig = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSig) }

// runner is the state of one Run shared by its connections.
type runner struct {
	o     Options
	pool  pool
	table *[1024]OpKind
	base  time.Time
	resp  bool

	phase atomic.Int32 // phasePrepare, phaseWarmup, phaseRun, phaseStop
	// prepEnd is closed when the phase leaves phasePrepare: connections
	// that prepared their scrolls wait on it (10,000 of them polling every
	// millisecond were 10 M timer wake-ups a second while the others
	// prepared).
	prepEnd     chan struct{}
	prepEndOnce sync.Once
	recording   atomic.Bool
	budget      atomic.Int64 // operations left to issue when Ops > 0

	problems     atomic.Int64
	mismatches   atomic.Int64
	crossTenant  atomic.Int64
	countErrs    atomic.Int64
	brokenConns  atomic.Int64
	probMu       sync.Mutex
	problemLines []string

	shards []*shard
	conns  []*conn
}

const (
	phasePrepare int32 = iota
	phaseWarmup
	phaseRun
	phaseStop
)

const maxProblemLines = 20

func (r *runner) problem(kind *atomic.Int64, format string, args ...any) {
	if kind != nil {
		kind.Add(1)
	}
	if r.problems.Add(1) > maxProblemLines {
		return
	}
	r.probMu.Lock()
	r.problemLines = append(r.problemLines, fmt.Sprintf(format, args...))
	r.probMu.Unlock()
}

// Run drives the workload o against o.Addr and returns its Result. It
// returns an error wrapping ErrVerify together with a complete Result when
// the run saw mismatches, cross-tenant bytes, error statuses or broken
// connections, and other errors (with a nil Result) when it could not run.
func Run(ctx context.Context, o *Options) (*Result, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &runner{o: opts, table: opts.Mix.table(), base: time.Now(), resp: opts.Protocol == ProtoRESP,
		prepEnd: make(chan struct{})}
	r.pool = newPool(max(4<<20, 4*opts.Size.Max)+opts.Size.Max, opts.Seed)
	nsh := min(16, 2*runtime.GOMAXPROCS(0))
	for i := 0; i < nsh; i++ {
		s := &shard{}
		for k := range s.h {
			s.h[k] = newHist()
		}
		r.shards = append(r.shards, s)
	}
	dial := opts.dial
	if dial == nil {
		if r.resp {
			dial = dialRESP(opts.ReadBuffer)
		} else {
			dial = dialSQ(opts.Compression, opts.ReadBuffer)
		}
	}
	if err := r.dialAll(ctx, dial); err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range r.conns {
			c.w.close()
		}
	}()
	return r.run(ctx)
}

// dialAll opens every connection, at most 64 dials at a time, and lays
// out each one's scrolls.
func (r *runner) dialAll(ctx context.Context, dial dialFunc) error {
	o := &r.o
	r.conns = make([]*conn, o.Conns)
	perTenant := make([]int, o.Tenants)
	for i := 0; i < o.Conns; i++ {
		perTenant[i%o.Tenants]++
	}
	names := PhextNames(o.Phext, o.Phexts)
	for i := range r.conns {
		t, slot := i%o.Tenants, i/o.Tenants
		c := &conn{r: r, tenant: t, rng: newRNG(o.Seed*1_000_003 + uint64(i)), shard: r.shards[i%len(r.shards)]}
		c.ring = make([]flight, o.Pipeline)
		// Scroll k of the tenant belongs to connection slot k % perTenant.
		for k := slot; k < o.Scrolls || len(c.scrolls) == 0; k += perTenant[t] {
			c.scrolls = append(c.scrolls, scroll{t: target{
				name:  names[k%o.Phexts],
				coord: scrollCoord(k),
				key:   []byte("b:" + strconv.Itoa(t) + ":" + strconv.Itoa(k)),
			}})
		}
		r.conns[i] = c
	}
	dctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i, c := range r.conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tok := ""
			if len(o.Tokens) > 0 {
				tok = o.Tokens[c.tenant]
			}
			w, err := dial(dctx, o.Addr, tok)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("bench: connection %d (tenant %d): %w", i, c.tenant, err)
				}
				cancel()
				return
			}
			c.w = w
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for _, c := range r.conns {
			if c.w != nil {
				c.w.close()
			}
		}
		return firstErr
	}
	return nil
}

// PhextNames returns the names of the n phexts a run with Options.Phext
// = first writes ("" is the default phext).
func PhextNames(first string, n int) [][]byte {
	names := make([][]byte, max(n, 1))
	names[0] = []byte(first)
	prefix := first
	if prefix == "" {
		prefix = "bench"
	}
	for p := 1; p < n; p++ {
		names[p] = []byte(prefix + "-" + strconv.Itoa(p+1))
	}
	return names
}

// scrollCoord spreads scroll index k over the last three levels:
// k = 0 is 1.1.1/1.1.1/1.1.1, then scroll, section and chapter count up.
func scrollCoord(k int) phext.Coordinate {
	c := phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 1}
	c[8] = uint16(1 + k%999)
	c[7] = uint16(1 + (k/999)%999)
	c[6] = uint16(1 + (k/(999*999))%999)
	return c
}

// run executes prepare, warm-up and measurement and builds the Result.
func (r *runner) run(ctx context.Context) (*Result, error) {
	o := &r.o
	var wg sync.WaitGroup
	prepDone := make(chan struct{})
	var prepWG sync.WaitGroup
	prepWG.Add(len(r.conns))
	go func() { prepWG.Wait(); close(prepDone) }()
	for _, c := range r.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.loop(&prepWG)
		}()
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()

	// Prepare: every connection writes (or clears) its scrolls once.
	if !r.wait(ctx, prepDone, nil, allDone, "prepare", 0) {
		return r.abort(ctx, allDone)
	}
	// Warm-up.
	r.setPhase(phaseWarmup)
	r.resetDone()
	if o.Warmup > 0 {
		t := time.NewTimer(o.Warmup)
		ok := r.wait(ctx, nil, t.C, allDone, "warmup", o.Warmup)
		t.Stop()
		if !ok {
			return r.abort(ctx, allDone)
		}
	}
	// Measurement.
	if o.Ops > 0 {
		r.budget.Store(o.Ops)
	}
	var before ProcStats
	var sampler *rssSampler
	if o.ServerPID > 0 {
		before, _ = ReadProc(o.ServerPID)
		sampler = startRSSSampler(o.ServerPID, 100*time.Millisecond)
	}
	self, _ := ReadProc(os.Getpid())
	r.resetDone()
	r.recording.Store(true)
	r.setPhase(phaseRun)
	start := time.Now()
	var end <-chan time.Time
	if o.Duration > 0 {
		t := time.NewTimer(o.Duration)
		defer t.Stop()
		end = t.C
	}
	completed := r.wait(ctx, nil, end, allDone, "run", o.Duration)
	r.recording.Store(false)
	elapsed := time.Since(start)
	selfAfter, selfErr := ReadProc(os.Getpid())
	r.setPhase(phaseStop)
	var server *ServerStats
	if o.ServerPID > 0 {
		after, err := ReadProc(o.ServerPID)
		peak := sampler.stop()
		if err == nil {
			server = &ServerStats{
				PID:        o.ServerPID,
				CPUSeconds: (after.CPU - before.CPU).Seconds(),
				RSSBefore:  before.RSS,
				RSS:        after.RSS,
				PeakRSS:    max(peak, after.RSS),
				HWM:        after.HWM,
			}
			server.CPUPercent = 100 * server.CPUSeconds / elapsed.Seconds()
			server.RSSPerTenant = after.RSS / int64(o.Tenants)
		}
	}
	// Drain: let the in-flight answers arrive (they are still verified).
	hang := time.NewTimer(o.HangTimeout)
	defer hang.Stop()
	select {
	case <-allDone:
	case <-hang.C:
		r.problem(&r.brokenConns, "connections still waiting for answers %v after the end; closing them", o.HangTimeout)
		for _, c := range r.conns {
			c.w.close()
		}
		<-allDone
	}
	if !completed && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res := r.result(elapsed)
	res.Server = server
	if selfErr == nil && elapsed > 0 {
		res.GenCPUSeconds = (selfAfter.CPU - self.CPU).Seconds()
		res.GenCPUPercent = 100 * res.GenCPUSeconds / elapsed.Seconds()
	}
	if res.Failed() {
		return res, fmt.Errorf("%w: %s", ErrVerify, res.failureSummary())
	}
	return res, nil
}

// wait blocks until ch is closed or until fires (true), the connections
// all ended (true only in the run phase, where that is how Ops ends) or
// ctx is done (false), reporting progress meanwhile. Nil channels are
// never ready.
func (r *runner) wait(ctx context.Context, ch <-chan struct{}, until <-chan time.Time, allDone <-chan struct{}, phase string, total time.Duration) bool {
	tick := time.NewTicker(r.o.ProgressEvery)
	defer tick.Stop()
	start := time.Now()
	last, lastT := int64(0), start
	for {
		select {
		case <-ch:
			return true
		case <-until:
			return true
		case <-allDone:
			return phase == "run"
		case <-ctx.Done():
			return false
		case now := <-tick.C:
			if r.o.Progress != nil {
				ops := r.sumDone()
				r.o.Progress(Progress{Phase: phase, Elapsed: now.Sub(start), Total: total, Ops: ops,
					Rate: float64(ops-last) / now.Sub(lastT).Seconds(), Problems: r.problems.Load()})
				last, lastT = ops, now
			}
		}
	}
}

func (r *runner) sumDone() int64 {
	var n int64
	for _, c := range r.conns {
		n += c.done.Load()
	}
	return n
}

func (r *runner) resetDone() {
	for _, c := range r.conns {
		c.done.Store(0)
	}
}

// setPhase moves to phase ph, waking the connections waiting for the end
// of the prepare phase.
func (r *runner) setPhase(ph int32) {
	r.phase.Store(ph)
	if ph != phasePrepare {
		r.prepEndOnce.Do(func() { close(r.prepEnd) })
	}
}

// abort stops the connections after a cancelled context or early end.
func (r *runner) abort(ctx context.Context, allDone <-chan struct{}) (*Result, error) {
	r.setPhase(phaseStop)
	for _, c := range r.conns {
		c.w.close()
	}
	<-allDone
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res := r.result(0)
	return res, fmt.Errorf("%w: every connection ended before the measurement: %s", ErrVerify, res.failureSummary())
}

// loop is a connection's goroutine: prepare its scrolls, then run the
// mix until the phase is phaseStop, then collect the answers in flight.
func (c *conn) loop(prep *sync.WaitGroup) {
	r := c.r
	prepared := false
	markPrepared := func() {
		if !prepared {
			prepared = true
			prep.Done()
		}
	}
	defer markPrepared()
	defer c.flushBatch()
	for {
		ph := r.phase.Load()
		if !prepared && c.prepIdx >= len(c.scrolls) && c.n == 0 {
			markPrepared()
		}
		// Issue while there is room and something to do.
		for c.n < len(c.ring) {
			if !c.issue(ph, prepared) {
				break
			}
		}
		if c.dead {
			return
		}
		if c.n == 0 {
			if ph == phaseStop {
				return
			}
			if !prepared || ph == phasePrepare {
				// Prepared and waiting for the others.
				markPrepared()
				<-r.prepEnd
				continue
			}
			if r.o.Ops > 0 && r.recording.Load() && r.budget.Load() <= 0 {
				return
			}
			continue
		}
		// Flush when blocking on recv could wait forever (nothing flushed
		// is outstanding), when half the pipeline waits in the buffer, or
		// when no answer is buffered already (so recv would block anyway).
		if c.unflushed > 0 && (c.unflushed == c.n || 2*c.unflushed >= len(c.ring) || c.w.buffered() == 0) {
			if err := c.w.flush(); err != nil {
				c.broken(err)
				return
			}
			c.unflushed = 0
		}
		if err := c.recvOne(); err != nil {
			c.broken(err)
			return
		}
	}
}

func (c *conn) broken(err error) {
	if c.r.phase.Load() == phaseStop && c.n == 0 {
		return
	}
	c.r.problem(&c.r.brokenConns, "tenant %d: connection broken with %d requests in flight: %v", c.tenant, c.n, err)
}

// issue sends the next request if the phase has one; false when not.
func (c *conn) issue(ph int32, prepared bool) bool {
	r := c.r
	var f flight
	switch {
	case ph == phaseStop:
		return false
	case c.prepIdx < len(c.scrolls):
		f.sc, f.prep = int32(c.prepIdx), true
		c.prepIdx++
		if r.o.NoPreload {
			f.op = OpDelete
		} else {
			f.op = OpUpdate
		}
	case ph == phasePrepare || !prepared:
		return false
	default:
		// One read of recording: read twice, the measurement could start
		// in between and count a request that took no budget (--ops N
		// then reported N+1).
		rec := r.recording.Load()
		if r.o.Ops > 0 && rec && r.budget.Add(-1) < 0 {
			return false
		}
		f.op = r.table[c.rng.next()&1023]
		f.sc = int32(c.rng.intn(len(c.scrolls)))
		// Measured: sent and answered while recording.
		f.record = rec
	}
	sc := &c.scrolls[f.sc]
	var text []byte
	if f.op == OpInsert || f.op == OpUpdate {
		n := r.o.Size.Min
		if r.o.Size.Max > n {
			n += c.rng.intn(r.o.Size.Max - n + 1)
		}
		if f.op == OpInsert && sc.size+n > r.o.MaxScroll {
			f.op = OpUpdate
		}
		f.seg = segment{off: uint32(c.rng.intn(len(r.pool) - n + 1)), n: uint32(n)}
		c.text = r.pool.appendSegment(c.text[:0], c.tenant, f.seg)
		text = c.text
	}
	f.prev = sc.size
	f.start = time.Since(r.base)
	id, err := c.w.send(f.op, &sc.t, text)
	if err != nil {
		c.broken(err)
		c.dead = true
		return false
	}
	f.id = id
	c.ring[(c.head+c.n)%len(c.ring)] = f
	c.n++
	c.unflushed++
	if cap(c.text) > 4<<20 {
		c.text = nil
	}
	return true
}

// recvOne reads the oldest answer, checks it and advances the model.
func (c *conn) recvOne() error {
	// The answer lives in the conn: a local would escape through the
	// interface call and cost an allocation per operation.
	a := &c.ans
	if err := c.w.recv(a); err != nil {
		return err
	}
	r := c.r
	f := &c.ring[c.head]
	c.head = (c.head + 1) % len(c.ring)
	c.n--
	lat := time.Since(r.base) - f.start
	sc := &c.scrolls[f.sc]
	if f.id != 0 && a.id != f.id {
		return fmt.Errorf("answer id %d for request id %d", a.id, f.id)
	}
	if !a.ok {
		c.errs[f.op]++
		if c.errBySt == nil {
			c.errBySt = make(map[string]int64)
		}
		c.errBySt[f.op.String()+" "+a.status]++
		r.problem(nil, "tenant %d %s %s: status %s: %.200s", c.tenant, f.op, coordText(sc), a.status, a.msg)
	} else {
		switch f.op {
		case OpSelect:
			if !r.o.NoVerify && !r.pool.matches(a.body, c.tenant, sc.segs) {
				if t := foreignTag(a.body, c.tenant); t >= 0 {
					r.problem(&r.crossTenant, "tenant %d SELECT %s: answer holds tenant %d's bytes", c.tenant, coordText(sc), t)
				}
				r.problem(&r.mismatches, "tenant %d SELECT %s: got %d bytes, model has %d in %d writes", c.tenant, coordText(sc), len(a.body), sc.size, len(sc.segs))
			}
		case OpUpdate:
			c.checkCount(f, sc, a, int64(f.seg.n), false)
			sc.segs = append(sc.segs[:0], f.seg)
			sc.size = int(f.seg.n)
		case OpInsert:
			want := int64(f.seg.n)
			if r.resp {
				want = int64(sc.size) + int64(f.seg.n) // APPEND answers the new length
			}
			c.checkCount(f, sc, a, want, true)
			sc.segs = append(sc.segs, f.seg)
			sc.size += int(f.seg.n)
		case OpDelete:
			want := int64(sc.size)
			if r.resp && want > 0 {
				want = 1 // DEL answers the number of keys removed
			}
			c.checkCount(f, sc, a, want, true)
			sc.segs = sc.segs[:0]
			sc.size = 0
		}
	}
	if f.record && r.recording.Load() {
		if f.op == OpSelect {
			c.bytesR += int64(len(a.body))
		} else if f.op == OpUpdate || f.op == OpInsert {
			c.bytesW += int64(f.seg.n)
		}
		c.count[f.op]++
		us := int64(lat / time.Microsecond)
		c.batch[c.nbatch] = us<<3 | int64(f.op)
		c.nbatch++
		if c.nbatch == batchSize {
			c.flushBatch()
		}
	}
	c.done.Add(1)
	return nil
}

func (c *conn) checkCount(f *flight, sc *scroll, a *answer, want int64, required bool) {
	r := c.r
	if r.o.NoVerify || (!a.hasCount && !required) {
		return
	}
	if !a.hasCount || a.count != want {
		r.problem(&r.countErrs, "tenant %d %s %s: answer count %d (has=%v), model expects %d", c.tenant, f.op, coordText(sc), a.count, a.hasCount, want)
	}
}

func coordText(sc *scroll) string {
	if len(sc.t.name) > 0 {
		return string(sc.t.name) + "@" + sc.t.coord.String()
	}
	return sc.t.coord.String()
}

// flushBatch moves the connection's latency batch into its shard.
func (c *conn) flushBatch() {
	if c.nbatch == 0 {
		return
	}
	s := c.shard
	s.mu.Lock()
	for _, v := range c.batch[:c.nbatch] {
		us := v >> 3
		if us < histMin {
			us = histMin
		} else if us > histMax {
			us = histMax
		}
		_ = s.h[v&7].RecordValue(us)
	}
	s.mu.Unlock()
	c.nbatch = 0
}
