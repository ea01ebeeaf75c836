package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/phext/sq/config"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// drainGrace bounds how long Shutdown waits for connections to go quiet
// once no request is running against the store.
const drainGrace = 2 * time.Second

// Version is the server version reported by VERSION and HELLO.
const Version = "0.6.0"

// Options configure a Server. The zero value of each field means its
// default; a nil *Options means all defaults.
type Options struct {
	// Listen is the TCP address of the binary protocol (default
	// 127.0.0.1:1337; port 0 picks a free port, see Server.Addr).
	Listen string
	// EventLoops is the number of gnet event loops (default: one per CPU Go
	// counted at start, cgroup CPU limit included: CPUs).
	EventLoops int
	// MaxFrame bounds the length of one frame (default 64 MiB).
	MaxFrame int
	// MaxConns bounds open connections overall (default 20000).
	MaxConns int
	// MaxConnsPerTenant bounds authenticated connections of one tenant
	// (default 2000).
	MaxConnsPerTenant int
	// MaxInFlight bounds requests read but not yet answered on one
	// connection; past it the server stops reading that connection until
	// replies go out (default 256).
	MaxInFlight int
	// MaxOutbound bounds reply bytes queued for a connection that does not
	// read them; past it the connection is closed as a slow consumer
	// (default 2 × MaxFrame).
	MaxOutbound int
	// HelloTimeout closes a connection that has not authenticated in time
	// (default 10 s).
	HelloTimeout time.Duration
	// IdleTimeout closes an authenticated connection with no traffic and
	// nothing in flight (default 10 min; negative disables).
	IdleTimeout time.Duration
	// FrameTimeout closes a connection whose started frame has not fully
	// arrived in time: the slowloris guard (default 30 s).
	FrameTimeout time.Duration
	// AuthFailBudget is how many failed HELLOs one IP address gets per
	// minute at full speed; past it each failure is answered after a delay
	// (default 10).
	AuthFailBudget int
	// HelloRate and HelloBurst pace each tenant's new connections
	// (pace.go): a tenant's HELLOs past a burst of HelloBurst are answered
	// at HelloRate per second, each waiting its turn (a connection that
	// waits costs no CPU and counts as open); one that would wait over
	// min(5 s, HelloTimeout/2) is answered BUSY after that wait. Defaults
	// 250 per second and a burst of 1000, so a tenant may open its 2000
	// connections (MaxConnsPerTenant) at once, the last ones within 4 s; a
	// negative HelloRate disables pacing; a HelloBurst ≤ 0 is the default
	// (sq host refuses --hello-burst 0 at start). Extreme values saturate
	// (pace.go, budgetDepth). The admin token is never paced.
	HelloRate  float64
	HelloBurst int
	// BadFrameRate is how many malformed frames (answered BAD_FRAME or
	// TOO_LARGE) one tenant may send per second (a second's worth at
	// once); past it the connection that sent one is answered, then
	// closed with BUSY, and the tenant's next HELLO waits at least a
	// second (pace.go; with HelloRate negative there is no schedule to
	// delay, only the close). Default 100; negative: no limit.
	BadFrameRate float64
	// RefusalRate is how many requests of one tenant may be refused at a
	// limit (answered TOO_LARGE or QUOTA, REST 413 or 507) per second,
	// RefusalBurst of them at once; past it each such answer waits a
	// second on a timer (refusal.go), and past the bounds of waiting
	// answers it goes out at once and closes its connection. Defaults 50
	// a second and a burst of 200 (RefusalBurst ≤ 0: the default; sq host
	// refuses --refusal-burst 0 at start); a negative RefusalRate: no
	// limit. The admin token is never counted.
	RefusalRate  float64
	RefusalBurst int
	// Codecs are the compression codecs offered (protocol accept bits;
	// default zstd and s2). Set NoCompression to offer none.
	Codecs        uint8
	NoCompression bool
	// NoLoopReads sends every request to a worker, even the cheap reads
	// the event loop would answer itself (for measurements).
	NoLoopReads bool
	// NoLoopWrites sends every INSERT, UPDATE and DELETE to a worker (the
	// write path before issue 14), for A/B measurements.
	NoLoopWrites bool
	// TenantDetailMetrics adds to /metrics, per tenant, request-duration
	// histograms of each operation and the on-disk sizes of its snapshots
	// and WALs (read from the data dir at every scrape). Off by default:
	// a histogram is 26 series per operation a tenant uses (520,000 for
	// 10,000 tenants using two); the server-wide histogram of each
	// operation is always there.
	TenantDetailMetrics bool
	// MaxClientMemory bounds the memory clients make the server hold,
	// summed over all connections and REST requests: frames above 64 KiB
	// from their header on, decompressed bodies, GET/TOC/DELTA replies
	// and REST bodies (see budget.go). A request that does not fit is
	// answered BUSY, not queued (default 1 GiB, at least 3 × MaxFrame;
	// negative: no budget, no per-tenant share, no slow-frame cap, which
	// is only for measuring what the accounting costs).
	// A large frame is charged its size: it is received into one
	// exact-size buffer, never held in gnet's inbound buffer.
	MaxClientMemory int64
	// MaxClientMemoryPerTenant is the most of MaxClientMemory one tenant's
	// connections and REST requests may hold at once (default a quarter
	// of it; at least 3 × MaxFrame, at most MaxClientMemory), so one
	// tenant cannot make every other tenant's large requests BUSY. The
	// admin's connections are bounded by MaxClientMemory only.
	MaxClientMemoryPerTenant int64
	// MaxWatchesPerConn bounds the change-feed subscriptions (WATCH) of
	// one connection (default 16); MaxWatchesPerTenant those of one tenant
	// over all its connections and REST streams (default 1024). Each
	// subscription charges 4 KiB of the tenant's memory budget.
	MaxWatchesPerConn   int
	MaxWatchesPerTenant int
	// WatchQueueBytes bounds the event bytes waiting for one watcher (its
	// queue, and its socket's unsent bytes); past it the watcher gets a
	// resync event and its subscriptions end (default 1 MiB).
	WatchQueueBytes int
	// WatchRetainEvents and WatchRetainBytes bound each watched tenant's
	// retention of recent changes, from which a reconnecting watcher
	// resumes (defaults 4096 events, 1 MiB counting names and texts);
	// retained bytes are charged to the tenant's memory budget.
	WatchRetainEvents int
	WatchRetainBytes  int64
	// WatchLinger is how long a tenant's feed and retention outlive its
	// last subscription, so that a watcher reconnecting within it resumes
	// without a resync (default 2 min).
	WatchLinger time.Duration
	// MaxSlowFrameMemory is the most of MaxClientMemory that stalled large
	// frames may hold, summed over all connections (default half of it;
	// at least MaxFrame); a frame is stalled once it has been arriving for
	// a second, slower than its size per 10 s (slowFrames). A header
	// reserves its frame's size until the frame arrives or FrameTimeout
	// passes, so without it senders that stall after a header (one
	// connection each, several tenants) could hold the whole budget for
	// FrameTimeout; past it the sweep closes stalled senders (reason
	// slow_frame) until they fit, and the rest of the budget stays for
	// requests that arrive at speed.
	MaxSlowFrameMemory int64
	// FramePool is the most of MaxClientMemory that answered large
	// frames' memory may hold while it waits, unused, for the next large
	// frame of the same mapped length (framepool.go; default
	// MaxClientMemoryPerTenant, at most MaxClientMemory; negative: none,
	// every frame's memory is unmapped once it is answered). Idle memory
	// counts in the budget and gives way to any reservation that needs
	// it; unused for 10 s it is unmapped. Receiving into resident memory
	// saves the event loop the page faults of fresh memory, which on a VM
	// can stall it for milliseconds per large frame.
	FramePool int64
	// MaxFrameMemoryPerTenant is the most of a tenant's share
	// (MaxClientMemoryPerTenant) its large frames (above 64 KiB) may hold
	// at once, from their header until they are answered (default half
	// the share; at least one max frame, charged as such, so a max-size
	// frame of a tenant alone always fits; at most the share). A frame
	// past it is answered BUSY at its header and its body dropped. The
	// admin's connections are bounded by MaxClientMemory only.
	MaxFrameMemoryPerTenant int64
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// LoadConfig re-reads the tenant configuration for reloads (SIGHUP,
	// the RELOAD operation). Nil disables reloads.
	LoadConfig func() (*config.Config, error)
	// TrustLoopback lets any peer on a loopback address do what the admin
	// token allows except the /admin API: RELOAD on a connection of any
	// token, POST /api/v2/reload and GET /metrics without a token. Off by
	// default: behind a TLS terminator or proxy on the same host (stunnel,
	// HAProxy, nginx) every client is loopback. For development only.
	TrustLoopback bool
}

// queueBytes is how many request bytes one connection may have queued
// before the loop stops reading it.
func (o *Options) queueBytes() int { return max(o.MaxFrame, 1<<20) }

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Listen == "" {
		r.Listen = "127.0.0.1:1337"
	}
	if r.EventLoops <= 0 {
		r.EventLoops = CPUs()
	}
	if r.MaxFrame <= 0 {
		r.MaxFrame = protocol.DefaultMaxFrame
	}
	if r.MaxConns <= 0 {
		r.MaxConns = 20000
	}
	if r.MaxConnsPerTenant <= 0 {
		r.MaxConnsPerTenant = 2000
	}
	if r.MaxInFlight <= 0 {
		r.MaxInFlight = 256
	}
	if r.MaxOutbound <= 0 {
		r.MaxOutbound = 2 * r.MaxFrame
	}
	if r.HelloTimeout <= 0 {
		r.HelloTimeout = 10 * time.Second
	}
	if r.IdleTimeout == 0 {
		r.IdleTimeout = 10 * time.Minute
	}
	if r.FrameTimeout <= 0 {
		r.FrameTimeout = 30 * time.Second
	}
	if r.AuthFailBudget <= 0 {
		r.AuthFailBudget = 10
	}
	if r.HelloRate == 0 {
		r.HelloRate = 250
	}
	if r.BadFrameRate == 0 {
		r.BadFrameRate = 100
	}
	if r.HelloBurst <= 0 {
		r.HelloBurst = 1000
	}
	if r.RefusalRate == 0 {
		r.RefusalRate = 50
	}
	if r.RefusalBurst <= 0 {
		r.RefusalBurst = 200
	}
	if r.Codecs == 0 {
		r.Codecs = protocol.AcceptZstd | protocol.AcceptS2
	}
	if r.NoCompression {
		r.Codecs = 0
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if r.MaxWatchesPerConn <= 0 {
		r.MaxWatchesPerConn = 16
	}
	if r.MaxWatchesPerTenant <= 0 {
		r.MaxWatchesPerTenant = 1024
	}
	if r.WatchQueueBytes <= 0 {
		r.WatchQueueBytes = 1 << 20
	}
	if r.WatchRetainEvents <= 0 {
		r.WatchRetainEvents = 4096
	}
	if r.WatchRetainBytes <= 0 {
		r.WatchRetainBytes = 1 << 20
	}
	if r.WatchLinger <= 0 {
		r.WatchLinger = 2 * time.Minute
	}
	if r.MaxClientMemory < 0 {
		// No budget at all: for measuring what the accounting costs.
		r.MaxClientMemory, r.MaxClientMemoryPerTenant, r.MaxSlowFrameMemory = -1, -1, -1
		r.FramePool, r.MaxFrameMemoryPerTenant = -1, -1
		return r
	}
	if r.MaxClientMemory == 0 {
		r.MaxClientMemory = 1 << 30
	}
	// One max frame and its reply must fit, or such a request could never
	// be served.
	r.MaxClientMemory = max(r.MaxClientMemory, 3*int64(r.MaxFrame))
	if r.MaxClientMemoryPerTenant <= 0 {
		r.MaxClientMemoryPerTenant = r.MaxClientMemory / 4
	}
	r.MaxClientMemoryPerTenant = min(max(r.MaxClientMemoryPerTenant, 3*int64(r.MaxFrame)), r.MaxClientMemory)
	if r.MaxSlowFrameMemory <= 0 {
		r.MaxSlowFrameMemory = r.MaxClientMemory / 2
	}
	// At least what the largest frame costs (a length of MaxFrame plus the
	// 4 bytes of the length, in whole pages: bigFrameCost), so that one
	// slow max-size frame alone is received.
	r.MaxSlowFrameMemory = min(max(r.MaxSlowFrameMemory, bigFrameCost(4+r.MaxFrame)), r.MaxClientMemory)
	if r.MaxFrameMemoryPerTenant <= 0 {
		r.MaxFrameMemoryPerTenant = r.MaxClientMemoryPerTenant / 2
	}
	// The least is what the largest frame costs (as MaxSlowFrameMemory's).
	r.MaxFrameMemoryPerTenant = min(max(r.MaxFrameMemoryPerTenant, bigFrameCost(4+r.MaxFrame)), r.MaxClientMemoryPerTenant)
	if r.FramePool == 0 {
		r.FramePool = r.MaxClientMemoryPerTenant
	}
	r.FramePool = min(r.FramePool, r.MaxClientMemory)
	return r
}

// Server is the SQ binary-protocol server: a gnet engine over a store.
// Create it with New, run it with Serve (or Start), stop it with Shutdown.
// The caller owns the store and closes it after Serve returns.
type Server struct {
	opts  Options
	store *store.Store
	log   *slog.Logger

	table    atomic.Pointer[tenantTable]
	reloadMu sync.Mutex // serializes reloads; never taken on an event loop

	eng      gnet.Engine
	addr     string
	ready    chan struct{}
	done     chan struct{}
	runErr   error
	draining atomic.Bool
	unready  atomic.Bool // SetNotReady: /readyz fails, requests are still served

	stats serverStats
	auth  authLimiter
	mem   memBudget // client memory (budget.go)
	// frames holds answered large frames' mappings for reuse (framepool.go)
	frames framePool
	heavy  heavyGate // server-wide turns for heavy requests (heavy.go)
	// heavyHook, when set (tests), runs at the start of every heavy
	// request's turn.
	heavyHook atomic.Pointer[func(*tenant)]

	// refusing counts HELLOs refused at their tenant's connection limit
	// that wait for their answer (pace.go, refuseLate).
	refusing atomic.Int64
	// authWaiting counts failed authentications (HELLO, REST token) whose
	// answer is delayed (authlimit.go).
	authWaiting atomic.Int64
	// authTimers counts the timers of delayed failed-HELLO answers armed
	// and neither stopped nor done handing their answer to the loop
	// (authAnswer); authFiredHook, when set (tests), runs when one fires.
	authTimers    atomic.Int64
	authFiredHook atomic.Pointer[func()]
	// watchFlushHook, when set (tests), runs on an event loop at the start
	// of every watch flush (loopFeed.Run).
	watchFlushHook atomic.Pointer[func()]
	// heldRefusals counts answers past their tenant's refusal budget
	// waiting to be sent (refusal.go); drainCh is closed when Shutdown
	// begins, which ends their waits.
	heldRefusals atomic.Int64
	drainCh      chan struct{}
	drainOnce    sync.Once

	connsMu sync.Mutex // guards conns; held only for map updates and copies
	conns   map[*connState]struct{}

	hubsMu sync.Mutex // guards hubs (watch.go); never held across I/O
	hubs   map[*store.Tenant]*feedHub
	// loopFeeds: gnet.EventLoop → *loopFeed, each loop's watcher flush
	// list (watch.go).
	loopFeeds sync.Map
	// loopIdx: gnet.EventLoop → int, each loop's number (loopIndex), which
	// picks the store's loop log its rounds write.
	loopIdx   sync.Map
	loopCount atomic.Int64

	// workers counts running per-connection workers. (Not a WaitGroup:
	// workers start while Shutdown waits, which WaitGroup forbids.)
	workers      atomic.Int64
	asyncPending atomic.Int64 // AsyncWrites issued and not yet called back
	executing    atomic.Int64 // requests between the draining check and their store call's end
}

// New validates cfg, opens every enabled tenant in db (creating data dirs)
// and returns a server ready to Serve. A tenant that cannot be opened is
// refused with an error naming it.
func New(db *store.Store, cfg *config.Config, opts *Options) (*Server, error) {
	o := opts.withDefaults()
	s := &Server{
		opts:  o,
		store: db,
		log:   o.Logger,
		ready: make(chan struct{}),
		done:  make(chan struct{}),
		conns: make(map[*connState]struct{}),

		drainCh: make(chan struct{}),
		hubs:    make(map[*store.Tenant]*feedHub),
	}
	s.auth.init(o.AuthFailBudget)
	s.mem.limit = o.MaxClientMemory
	s.mem.headroom = int64(o.MaxFrame)
	s.frames = framePool{s: s, max: o.FramePool}
	s.mem.spare = &s.frames
	s.heavy = newHeavyGate(heavySlots())
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, _, err := s.buildTable(cfg, nil)
	if err != nil {
		return nil, err
	}
	s.table.Store(p.t)
	// One line whatever the number of tenants; per-tenant lines are at
	// debug level.
	s.log.Info(fmt.Sprintf("%d tenants, %d data dirs created", len(p.t.byName), p.t.dirsCreated),
		"tenants", len(p.t.byName), "data_dirs_created", p.t.dirsCreated)
	return s, nil
}

// Serve runs the event loops until Shutdown; it returns the engine's error.
func (s *Server) Serve() error {
	err := gnet.Run(&loopHandler{Server: s}, "tcp://"+s.opts.Listen,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.opts.EventLoops),
		gnet.WithReusePort(false),
		// A restart right after a shutdown must bind although the
		// connections the old process closed sit in TIME_WAIT on this port
		// (net.Listen sets SO_REUSEADDR too; it never allows two listeners).
		gnet.WithReuseAddr(true),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.log}),
	)
	if err != nil {
		err = fmt.Errorf("server: listen %s: %w", s.opts.Listen, err)
	}
	s.runErr = err
	// Every connection is closed: the idle frame mappings go, and the
	// pool takes none from workers still finishing.
	s.unmapFrames(s.frames.expire(0, true))
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
	close(s.done)
	return err
}

// Start runs Serve in a goroutine and returns once the server listens (or
// failed to).
func Start(db *store.Store, cfg *config.Config, opts *Options) (*Server, error) {
	s, err := New(db, cfg, opts)
	if err != nil {
		return nil, err
	}
	go s.Serve()
	<-s.ready
	if s.addr == "" {
		<-s.done
		if s.runErr == nil {
			s.runErr = errors.New("server: engine stopped before listening")
		}
		return nil, s.runErr
	}
	return s, nil
}

// Ready is closed once the server listens (or Serve failed).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address the server listens on, host:port, once Ready.
func (s *Server) Addr() string { return s.addr }

// loopHandler is the Server's gnet.EventHandler. The callbacks are its
// methods rather than the Server's so that nothing outside this package can
// call them (an OnTraffic from the wrong goroutine would corrupt a
// connection). It embeds the Server, so their bodies read its fields as
// s.opts, s.stats and so on; gnet calls OnBoot before the loops start,
// OnOpen, OnTraffic and OnClose on a connection's event loop, and OnTick
// on its ticker goroutine (see LOCKS.md).
type loopHandler struct {
	gnet.BuiltinEventEngine
	*Server
}

// OnBoot records the engine and the bound address.
func (s *loopHandler) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	s.addr = s.opts.Listen
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				s.addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
			case *unix.SockaddrInet6:
				s.addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
			}
		}
		unix.Close(fd)
	}
	s.log.Info("sq listening", "addr", s.addr, "event_loops", s.opts.EventLoops,
		"tenants", len(s.table.Load().byName), "max_frame", s.opts.MaxFrame, "version", Version)
	close(s.ready)
	return gnet.None
}

// SetNotReady makes GET /readyz answer 503 from now on while everything
// else keeps working, so that load balancers stop sending new connections
// before Shutdown drains (sq host --drain-delay). Safe from any goroutine.
func (s *Server) SetNotReady() { s.unready.Store(true) }

// ReadyForTraffic reports whether the server welcomes new connections:
// listening, not marked by SetNotReady and not draining. GET /readyz
// answers it.
func (s *Server) ReadyForTraffic() bool {
	select {
	case <-s.ready:
	default:
		return false
	}
	return s.addr != "" && !s.unready.Load() && !s.draining.Load()
}

// Shutdown drains the server: new connections and requests are refused with
// SHUTTING_DOWN, requests already read are answered, replies are flushed,
// then the engine stops. The caller then closes the store, which flushes
// and fsyncs every WAL.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.drainOnce.Do(func() { close(s.drainCh) }) // held refusals are answered now
	s.answerAuthNow()                           // and delayed failed HELLOs
	// Requests already running against the store finish (new ones get
	// SHUTTING_DOWN without touching it).
	for s.executing.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("server: shutdown: requests still running: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	// Watchers are told (resync, subscription ended) and the store's
	// feeds detached: the store outlives the server.
	s.closeHubs()
	// Their replies reach the sockets before the loops close them, and so
	// do delayed failed-HELLO answers that fell due as Shutdown began
	// (authTimers: answerAuthNow could no longer stop them). A client
	// that keeps sending keeps getting SHUTTING_DOWN answers, so this waits
	// for a quiet moment only up to drainGrace.
	grace := time.Now().Add(drainGrace)
	for (s.workers.Load() > 0 || s.asyncPending.Load() > 0 || s.authTimers.Load() > 0) && time.Now().Before(grace) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("server: shutdown: replies still in flight: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case <-s.ready:
	default:
		return nil
	}
	if s.addr == "" {
		return s.runErr
	}
	if err := s.eng.Stop(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// Stats is a snapshot of server-wide counters.
type Stats struct {
	Conns        int64
	Accepted     uint64
	AuthFailures uint64
	// HelloPaced counts HELLOs whose answer waited for their tenant's
	// schedule of new connections (Options.HelloRate).
	HelloPaced uint64
	// RefusalsWaiting is how many refused HELLOs wait for their answer
	// now: BUSY at their tenant's connection limit (pace.go), or a failed
	// HELLO or REST token delayed past its address's budget (authlimit.go).
	RefusalsWaiting int64
	// RefusalsHeld counts limit refusals (TOO_LARGE, QUOTA) whose answer
	// waited past their tenant's budget (Options.RefusalRate),
	// RefusalsClosed those answered at once with their connection closed
	// because no more answers could wait; HeldNow is how many wait now.
	RefusalsHeld, RefusalsClosed uint64
	HeldNow                      int64
	Closed                       map[string]uint64
}

// Stats returns the server-wide counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Conns:           s.stats.conns.Load(),
		Accepted:        s.stats.accepted.Load(),
		AuthFailures:    s.stats.authFailures.Load(),
		HelloPaced:      s.stats.helloPaced.Load(),
		RefusalsWaiting: s.refusing.Load() + s.authWaiting.Load(),
		RefusalsHeld:    s.stats.refusalsHeld.Load(),
		RefusalsClosed:  s.stats.refusalsClosed.Load(),
		HeldNow:         s.heldRefusals.Load(),
		Closed:          make(map[string]uint64, numCloseReasons),
	}
	for i := range s.stats.closed {
		st.Closed[closeReason(i).String()] = s.stats.closed[i].Load()
	}
	return st
}
