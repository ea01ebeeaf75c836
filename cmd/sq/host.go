package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/schedslice"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/server/httpapi"
	"github.com/phext/sq/store"
)

type hostConfig struct {
	listen, config, data, durability string
	logDir                           string
	logKeep                          int64
	httpAddr, cpuProfile             string
	logLevel, logFormat              string
	maxFrame, maxConns, maxPerTenant int
	httpMaxConns                     int
	helloRate                        float64
	helloBurst                       int
	badFrameRate                     float64
	refusalRate                      float64
	refusalBurst                     int
	maxInFlight, maxOpen, loops      int
	helloTimeout, idleTimeout        time.Duration
	frameTimeout, shutdownTimeout    time.Duration
	drainDelay                       time.Duration
	schedSlice                       time.Duration
	noCompression, allowWorldRead    bool
	tenantDetailMetrics              bool
	maxClientMemory                  int64
	maxClientMemoryPerTenant         int64
	maxSlowFrameMemory               int64
	framePool                        int64
	maxFrameMemoryPerTenant          int64
	noLoopWrites                     bool
	trustLoopback                    bool
	// The change feed (server.Options.MaxWatches…, Watch…).
	maxWatchesPerConn, maxWatchesPerTenant int
	watchQueue, watchRetainEvents          int
	watchRetainBytes                       int64
	watchLinger                            time.Duration
}

var hostCfg hostConfig

func hostFlags(out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	fs.SetOutput(out)
	c := &hostCfg
	fs.StringVar(&c.listen, "listen", "127.0.0.1:1337", "TCP address of the binary protocol")
	fs.StringVar(&c.httpAddr, "http", "127.0.0.1:1338", "address of the SQ-compatible REST API, /metrics and /admin (\"\" = off)")
	fs.StringVar(&c.config, "config", "", "tenants.json in the Rust SQ v0.5.5 format (default: the embedded dev config under --data)")
	fs.StringVar(&c.data, "data", "sq-data", "root of the embedded default config and its dev tenant (used without --config)")
	fs.Int64Var(&c.logKeep, "log-keep", store.DefaultLogKeep, "bytes of commit-log files no longer needed that are kept for change-feed watchers resuming from older positions, also across a restart (0: none; see PROTOCOL.md §2.10)")
	fs.StringVar(&c.logDir, "log-dir", "", "directory of the commit log shared by all tenants (default: sq-log beside --config, or log under --data with the embedded dev config); one server at a time")
	fs.StringVar(&c.durability, "durability", "everysec", "fsync policy: always | everysec | no (per tenant overridable in the config)")
	fs.IntVar(&c.maxFrame, "max-frame", protocol.DefaultMaxFrame, "largest frame accepted, in bytes")
	fs.Int64Var(&c.maxClientMemory, "max-client-memory", 1<<30, "memory budget for client requests summed over all connections, in bytes (at least 3 × --max-frame; -1: no budget, only to measure its cost); requests past it are answered BUSY (see below)")
	fs.Int64Var(&c.maxClientMemoryPerTenant, "max-client-memory-per-tenant", 0, "most of --max-client-memory one tenant's requests may hold at once, in bytes (0 = a quarter of it; at least 3 × --max-frame)")
	fs.Int64Var(&c.maxSlowFrameMemory, "max-slow-frame-memory", 0, "most of --max-client-memory that stalled large frames (arriving for over 1 s, slower than their size per 10 s) may hold in all, in bytes (0 = half of it); stalled senders past it are closed")
	fs.Int64Var(&c.maxFrameMemoryPerTenant, "max-frame-memory-per-tenant", 0, "most of --max-client-memory-per-tenant one tenant's frames above 64 KiB may hold at once, from their header until answered, in bytes (0 = half of it; at least one --max-frame); frames past it are answered BUSY at their header")
	fs.Int64Var(&c.framePool, "frame-pool", 0, "most of --max-client-memory that answered frames of 1 MiB and more may keep, idle, for the next frame of the same size, in bytes (0 = --max-client-memory-per-tenant; -1: none); idle bytes give way to any request and are unmapped after 10 s unused")
	fs.IntVar(&c.maxConns, "max-conns", 20000, "open connections allowed overall")
	fs.IntVar(&c.maxPerTenant, "max-conns-per-tenant", 2000, "authenticated connections allowed per tenant")
	fs.IntVar(&c.httpMaxConns, "http-max-conns", httpapi.DefaultMaxConns, "open connections allowed on the REST port (--http), keep-alives and change-feed streams included; past it a new connection is answered 503 with Retry-After and closed (-1: no bound)")
	fs.Float64Var(&c.helloRate, "hello-rate", 250, "new connections per second per tenant past --hello-burst: further HELLOs wait their turn (no CPU, counted as open), BUSY past a 5 s wait (0: no pacing)")
	fs.IntVar(&c.helloBurst, "hello-burst", 1000, "new connections a tenant may open at once before --hello-rate paces them (at least 1)")
	fs.Float64Var(&c.badFrameRate, "bad-frame-rate", 100, "malformed frames (answered BAD_FRAME or TOO_LARGE) allowed per second per tenant; past it the connection that sent one is closed with BUSY and the tenant's next new connection waits at least 1 s (0: no limit)")
	fs.Float64Var(&c.refusalRate, "refusal-rate", 50, "requests per second per tenant that may be refused at a limit (TOO_LARGE or QUOTA; REST 413, 507) past --refusal-burst, a binary frame weighing one more per MiB of it (and a large frame's BUSY one per MiB); past it each such answer waits 1 s (no CPU; a large frame's until the budget has room for its weight, at most --frame-timeout/2), or closes its connection when too many wait (0: no limit)")
	fs.IntVar(&c.refusalBurst, "refusal-burst", 200, "limit refusals a tenant may get at once before --refusal-rate holds their answers (at least 1)")
	fs.IntVar(&c.maxInFlight, "max-inflight", 256, "requests in flight per connection before the server stops reading it")
	fs.IntVar(&c.maxOpen, "max-open-phexts", 0, "phext files kept open (mapped, one fd each) at once over all tenants (0 = a quarter of the open-file limit, 256..16384)")
	fs.IntVar(&c.loops, "event-loops", 0, "gnet event loops (0 = one per CPU it may use, cgroup CPU limit included)")
	fs.DurationVar(&c.helloTimeout, "hello-timeout", 10*time.Second, "close connections that do not authenticate in time")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 10*time.Minute, "close idle authenticated connections (negative: never)")
	fs.DurationVar(&c.frameTimeout, "frame-timeout", 30*time.Second, "close connections whose frame trickles in slower than this")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "deadline for draining on SIGTERM/SIGINT")
	fs.DurationVar(&c.drainDelay, "drain-delay", 0, "on SIGTERM, first answer GET /readyz with 503 for this long while still serving, so load balancers stop sending new connections (a second signal skips the wait)")
	fs.DurationVar(&c.schedSlice, "sched-slice", schedslice.Default, "scheduler slice every thread of the server asks Linux for (6.12 and later), so an event loop woken by a request preempts a thread running its slice out instead of waiting up to the kernel's own (1.4 ms on 2 CPUs); negative: ask for none (threads keep the slice they inherit, the kernel's by default)")
	fs.BoolVar(&c.noCompression, "no-compression", false, "offer no wire compression")
	fs.BoolVar(&c.noLoopWrites, "no-loop-writes", false, "answer every INSERT/UPDATE/DELETE on a worker goroutine instead of the event loop (for A/B measurements)")
	fs.BoolVar(&c.trustLoopback, "trust-loopback", false, "let any peer on a loopback address RELOAD (also with a tenant token), POST /api/v2/reload and read /metrics without the admin token (default: on with the embedded dev config, off with --config). Never with a TLS terminator or proxy on the same host: every client is loopback then")
	fs.BoolVar(&c.allowWorldRead, "allow-world-readable-config", false, "start even if the config (which holds tokens) is readable by every user (development only)")
	fs.BoolVar(&c.tenantDetailMetrics, "metrics-tenant-detail", false, "add per-tenant request-duration histograms and data-dir file sizes to /metrics (26 series per operation a tenant uses)")
	fs.IntVar(&c.maxWatchesPerConn, "max-watches-per-conn", 16, "change-feed subscriptions (WATCH) per connection")
	fs.IntVar(&c.maxWatchesPerTenant, "max-watches-per-tenant", 1024, "change-feed subscriptions per tenant, over its connections and REST streams")
	fs.IntVar(&c.watchQueue, "watch-queue", 1<<20, "event bytes that may wait for one watcher; past it the watcher gets a resync and its subscriptions end")
	fs.IntVar(&c.watchRetainEvents, "watch-retain-events", 4096, "recent changes kept per watched tenant for resuming watchers")
	fs.Int64Var(&c.watchRetainBytes, "watch-retain-bytes", 1<<20, "bytes of recent changes (names, texts) kept per watched tenant")
	fs.DurationVar(&c.watchLinger, "watch-linger", 2*time.Minute, "how long a tenant's feed and retention outlive its last watcher")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) to this file until the server stops")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug | info | warn | error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text | json")
	return fs
}

// serverOptions maps the flags to the server's options (Logger and
// LoadConfig are the caller's). A flag's 0 reaches the server as 0, which
// it reads as its default, the flag's own; the rates' 0 turns their limit
// off (rateOption).
func (c *hostConfig) serverOptions() server.Options {
	return server.Options{
		Listen:                   c.listen,
		EventLoops:               c.loops,
		MaxFrame:                 c.maxFrame,
		MaxConns:                 c.maxConns,
		MaxConnsPerTenant:        c.maxPerTenant,
		HelloRate:                rateOption(c.helloRate),
		HelloBurst:               c.helloBurst,
		BadFrameRate:             rateOption(c.badFrameRate),
		RefusalRate:              rateOption(c.refusalRate),
		RefusalBurst:             c.refusalBurst,
		MaxInFlight:              c.maxInFlight,
		MaxClientMemory:          c.maxClientMemory,
		MaxClientMemoryPerTenant: c.maxClientMemoryPerTenant,
		MaxSlowFrameMemory:       c.maxSlowFrameMemory,
		FramePool:                c.framePool,
		MaxFrameMemoryPerTenant:  c.maxFrameMemoryPerTenant,
		HelloTimeout:             c.helloTimeout,
		IdleTimeout:              c.idleTimeout,
		FrameTimeout:             c.frameTimeout,
		NoCompression:            c.noCompression,
		TenantDetailMetrics:      c.tenantDetailMetrics,
		NoLoopWrites:             c.noLoopWrites,
		TrustLoopback:            c.trustLoopback,
		MaxWatchesPerConn:        c.maxWatchesPerConn,
		MaxWatchesPerTenant:      c.maxWatchesPerTenant,
		WatchQueueBytes:          c.watchQueue,
		WatchRetainEvents:        c.watchRetainEvents,
		WatchRetainBytes:         c.watchRetainBytes,
		WatchLinger:              c.watchLinger,
	}
}

// defaultShutdownTimeout is --shutdown-timeout's default, and what its 0
// means.
const defaultShutdownTimeout = 30 * time.Second

// drainDeadline is how long a SIGTERM's drain may take: --shutdown-timeout,
// its default for 0 (no deadline at all would be an immediate one).
func (c *hostConfig) drainDeadline() time.Duration {
	if c.shutdownTimeout <= 0 {
		return defaultShutdownTimeout
	}
	return c.shutdownTimeout
}

// rateOption maps --hello-rate, --bad-frame-rate and --refusal-rate to
// server.Options.HelloRate, BadFrameRate and RefusalRate, whose zero means the
// default: 0 on the command line turns the limit off.
func rateOption(r float64) float64 {
	if r <= 0 {
		return -1
	}
	return r
}

// checkBursts refuses a burst below 1. A rate flag's 0 turns its limit
// off (rateOption); a burst of 0 would be a budget that admits nothing,
// which no one means, and server.Options reads 0 as its default (1000,
// 200), which is not what was asked either. So it is an error at start
// that says how to turn the limit off.
func checkBursts(c *hostConfig) (string, error) {
	for _, b := range []struct {
		flag, rate string
		v          int
	}{{"--hello-burst", "--hello-rate", c.helloBurst}, {"--refusal-burst", "--refusal-rate", c.refusalBurst}} {
		if b.v < 1 {
			return b.flag, fmt.Errorf("%d: must be at least 1 (%s 0 turns the limit off)", b.v, b.rate)
		}
	}
	return "", nil
}

// checkRates refuses a rate flag that is not a number: the flag package
// takes "NaN", which passes both "0 turns the limit off" (rateOption) and
// the server's "≤ 0 is the default" and then sizes a budget that never
// refills (budgetInterval reads NaN as its longest interval): a tenant
// would get its burst once, then every HELLO, malformed frame or limit
// refusal past it held or refused for good.
func checkRates(c *hostConfig) (string, error) {
	for _, r := range []struct {
		flag string
		v    float64
	}{{"--hello-rate", c.helloRate}, {"--bad-frame-rate", c.badFrameRate}, {"--refusal-rate", c.refusalRate}} {
		if math.IsNaN(r.v) {
			return r.flag, fmt.Errorf("%v: must be a number (0 turns the limit off)", r.v)
		}
	}
	return "", nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

// hostOutput is where `sq host` says things besides its log: with the text
// format plain "sq: ..." lines on stdout (scripts wait for "sq: listening
// on ADDR"), with --log-format json one JSON object per line, so that every
// line the process writes is JSON.
type hostOutput struct {
	stdout, stderr io.Writer
	json           *slog.Logger // stdout as JSON; nil in text mode
	log            *slog.Logger // stderr; nil until the flags are parsed
}

// note prints text (text mode) or logs msg with attrs to stdout (json).
func (o *hostOutput) note(text, msg string, attrs ...any) {
	if o.json != nil {
		o.json.Info(msg, attrs...)
		return
	}
	fmt.Fprintln(o.stdout, "sq: "+text)
}

// fail reports a start-up or shutdown error and returns the exit status.
func (o *hostOutput) fail(code int, what string, err error) int {
	if o.json != nil && o.log != nil {
		msg := "sq host: start failed"
		if what != "" {
			msg = "sq host: " + what
		}
		o.log.Error(msg, "err", errString(err))
		return code
	}
	if what != "" {
		what += ": "
	}
	fmt.Fprintf(o.stderr, "sq host: %s%v\n", what, err)
	return code
}

// rustPortHint answers the Rust SQ form `sq host <port> ...`.
func rustPortHint(port string) string {
	return fmt.Sprintf("a bare port is the Rust SQ form (`sq host %[1]s`, which served the REST API there); here each port is a flag:\n"+
		"  --http 127.0.0.1:%[1]s    SQ's REST API (what the Rust SQ served on %[1]s)\n"+
		"  --listen 127.0.0.1:PORT  the binary protocol (default 127.0.0.1:1337)\n"+
		"e.g. sq host --http 127.0.0.1:%[1]s --listen 127.0.0.1:1339 --config tenants.json", port)
}

func runHost(args []string, stdout, stderr io.Writer) int {
	fs := hostFlags(stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if len(pos) > 0 {
		if p, err := strconv.Atoi(pos[0]); err == nil && p > 0 && p < 65536 {
			fmt.Fprintln(stderr, "sq host:", rustPortHint(pos[0]))
		} else {
			fmt.Fprintf(stderr, "sq host: unexpected argument %q (sq help host lists the flags)\n", pos[0])
		}
		return 2
	}
	c := hostCfg
	trustSet := false
	fs.Visit(func(f *flag.Flag) { trustSet = trustSet || f.Name == "trust-loopback" })
	if c.config == "" && !trustSet {
		c.trustLoopback = true // the dev default: sq reload with the dev token works
	}
	out := &hostOutput{stdout: stdout, stderr: stderr}
	log, err := newLogger(stderr, c.logLevel, c.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "sq host:", err)
		return 2
	}
	out.log = log
	if c.logFormat == "json" {
		out.json, _ = newLogger(stdout, "info", "json")
	}
	dur, err := store.ParseDurability(c.durability)
	if err != nil {
		return out.fail(2, "--durability", err)
	}
	if flag, err := checkBursts(&c); err != nil {
		return out.fail(2, flag, err)
	}
	if flag, err := checkRates(&c); err != nil {
		return out.fail(2, flag, err)
	}

	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return out.fail(1, "--cpuprofile", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return out.fail(1, "--cpuprofile", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	// The REST address is bound first: a bad or busy --http fails here,
	// before the store opens and before the binary port accepts anyone.
	var httpLn net.Listener
	if c.httpAddr != "" {
		if httpLn, err = net.Listen("tcp", c.httpAddr); err != nil {
			return out.fail(1, "--http "+c.httpAddr, err)
		}
		defer func() {
			if httpLn != nil {
				httpLn.Close()
			}
		}()
	}
	cfgPath := c.config
	if cfgPath == "" {
		path, token, err := config.EnsureDefault(c.data)
		if err != nil {
			return out.fail(1, "embedded default config", err)
		}
		cfgPath = path
		warnDevDefault(out, c.data, path)
		if token != "" {
			out.note("dev tenant token: "+token, "dev tenant token", "token", token)
			out.note("try: SQ_TOKEN="+token+" sq insert 1.1.1/1.1.1/1.1.1 hello", "try",
				"command", "SQ_TOKEN="+token+" sq insert 1.1.1/1.1.1/1.1.1 hello")
		}
	}
	// One rule at start and at every reload (SIGHUP, RELOAD, /api/v2/reload).
	allowWorld := c.allowWorldRead
	loadConfig := func() (*config.Config, error) { return config.LoadServing(cfgPath, allowWorld) }
	start := time.Now()
	cfg, err := loadConfig()
	if err != nil {
		return out.fail(1, "", err)
	}
	enabled := 0
	for _, e := range cfg.Tenants {
		if e.IsEnabled() {
			enabled++
		}
	}
	fds := planFDs(c.maxOpen, enabled)
	c.maxOpen = fds.maxOpen
	setMemoryLimit(c.maxClientMemory, c.maxFrame)
	logDir := c.logDir
	if logDir == "" {
		logDir = defaultLogDir(c.config, c.data)
	}
	if err := checkLegacyLogDir(c.config, logDir); err != nil {
		return out.fail(1, "store", err)
	}
	loops := c.loops
	if loops <= 0 {
		loops = server.CPUs() // the server's default
	}
	// A P for every gnet poller besides one per CPU (server.Procs: an
	// idle loop in epoll_wait keeps its P); a $GOMAXPROCS the runtime
	// took wins.
	if !envGOMAXPROCS() {
		runtime.GOMAXPROCS(server.Procs(loops))
	}
	// A short scheduler slice for every thread, before the store and the
	// loops start theirs (they inherit it; internal/schedslice).
	if c.schedSlice >= 0 {
		d := cmp.Or(c.schedSlice, schedslice.Default)
		if n, err := schedslice.Set(d); err != nil {
			log.Warn("scheduler slice not set on every thread", "slice", d, "threads", n, "err", err)
		} else {
			log.Info("scheduler slice set", "slice", d, "threads", n, "kernel_honours_it", schedslice.Supported())
		}
	}
	// One commit log per event loop: the loops' write rounds never wait
	// for each other.
	st, err := store.Open(&store.Options{Durability: dur, MaxOpenPhexts: c.maxOpen, Logger: log, LogDir: logDir,
		LogKeepBytes: c.logKeep, LoopLogs: loops})
	if err != nil {
		return out.fail(1, "store", err)
	}
	so := c.serverOptions()
	so.Logger, so.LoadConfig = log, loadConfig
	srv, err := server.Start(st, cfg, &so)
	if err != nil {
		st.Close()
		return out.fail(1, "", err)
	}
	// Signals are ours before "listening" is printed: a script that sends
	// SIGHUP or SIGTERM as soon as it reads that line must not kill the
	// process with the default action.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	if c.trustLoopback {
		warnTrustLoopback(out, c.config == "" && !trustSet)
	}
	fds.report(log, enabled)
	log.Info("sq started", "config", cfgPath, "tenants", len(cfg.Tenants), "durability", dur.String(),
		"trust_loopback", c.trustLoopback,
		"max_open_phexts", c.maxOpen, "open_files_limit", fds.soft,
		"log_dir", logDir, "gomaxprocs", runtime.GOMAXPROCS(0),
		"startup", time.Since(start).Round(time.Microsecond).String())
	var hs *http.Server
	if httpLn != nil {
		var ln net.Listener
		hs, ln = httpapi.StartOn(srv, httpLn, &httpapi.Options{ConfigPath: cfgPath, MaxConns: c.httpMaxConns})
		httpLn = nil // the HTTP server owns it now
		out.note("REST API on http://"+ln.Addr().String(), "REST API", "addr", ln.Addr().String())
	}
	out.note("listening on "+srv.Addr(), "listening", "addr", srv.Addr())

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			// Reload logs its outcome itself, once.
			srv.ReloadFromSource()
			continue
		}
		if c.drainDelay > 0 {
			srv.SetNotReady()
			log.Info("not ready; draining after the delay", "signal", sig.String(), "drain_delay", c.drainDelay.String())
			select {
			case <-time.After(c.drainDelay):
			case <-sigs:
			}
		}
		log.Info("draining", "signal", sig.String(), "deadline", c.drainDeadline().String())
		ctx, cancel := context.WithTimeout(context.Background(), c.drainDeadline())
		// The binary side drains first while the HTTP side still answers
		// /readyz with 503 (and REST requests with SHUTTING_DOWN's 503);
		// then the REST requests finish before the store closes.
		serr := srv.Shutdown(ctx)
		if hs != nil {
			if herr := hs.Shutdown(ctx); serr == nil {
				serr = herr
			}
		}
		cancel()
		cerr := st.Close()
		if serr != nil || cerr != nil {
			log.Error("shutdown", "server", errString(serr), "store", errString(cerr))
			return 1
		}
		log.Info("stopped cleanly")
		return 0
	}
	return 0
}

// warnTrustLoopback says loudly that loopback peers get admin rights.
func warnTrustLoopback(out *hostOutput, devDefault bool) {
	why := "--trust-loopback"
	if devDefault {
		why = "the embedded dev config (--trust-loopback=false turns it off)"
	}
	msg := "trusting loopback (" + why + "): any process on this host, and every client of a proxy or TLS terminator on it, " +
		"has the admin token's rights (except /admin) without a token; production configs set admin_token and leave this off"
	if out.json != nil {
		out.log.Warn(msg, "trust_loopback", true)
		return
	}
	fmt.Fprintln(out.stderr, "sq host: WARNING: "+msg)
}

// warnDevDefault says loudly that the server runs on the embedded dev
// config, more loudly when the working directory holds other things (an
// operator who forgot --config in a deployment directory).
func warnDevDefault(out *hostOutput, dataDir, path string) {
	out.note("no --config given; using the embedded default "+path, "no --config given; using the embedded default", "config", path)
	ents, err := os.ReadDir(".")
	if err != nil {
		return
	}
	base := filepath.Base(filepath.Clean(dataDir))
	others := 0
	for _, e := range ents {
		if e.Name() != base {
			others++
		}
	}
	if others == 0 {
		return
	}
	msg := "serving the embedded DEV default config (one dev tenant under " + dataDir +
		"), not a production config: pass --config /etc/sq/tenants.json (sq tenants gen makes one)"
	if out.json != nil {
		out.log.Warn(msg, "config", path)
		return
	}
	fmt.Fprintln(out.stderr, "sq host: WARNING: "+msg)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return strings.TrimSpace(err.Error())
}

// fdReserve is the descriptors sq host keeps for itself beyond
// connections and open phexts: listeners, the config, the first request
// of a tenant reading its data dir, compactions' temporary files.
const fdReserve = 512

// fdPlan is sq host's open-file budget.
type fdPlan struct {
	soft, hard uint64 // RLIMIT_NOFILE after raising the soft limit
	raisedFrom uint64 // the soft limit before, if this process raised it
	maxOpen    int    // the open-phext cap in effect
	// need is one descriptor per enabled tenant (its connection), the
	// open phexts' (with the LRU's overshoot of a sixteenth) and
	// fdReserve.
	need uint64
}

// planFDs raises the soft open-file limit to the hard one (Go's runtime
// does so at start already; this makes it explicit whatever started the
// process) and sizes the open-phext cap: maxOpen if given, else
// autoMaxOpen.
func planFDs(maxOpen, tenants int) fdPlan {
	var p fdPlan
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		rl = syscall.Rlimit{Cur: 1024, Max: 1024}
	}
	if rl.Cur < rl.Max {
		was := rl.Cur
		up := syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			rl, p.raisedFrom = up, was
		}
	}
	p.soft, p.hard = rl.Cur, rl.Max
	p.maxOpen = maxOpen
	if p.maxOpen <= 0 {
		p.maxOpen = autoMaxOpen(p.soft)
	}
	p.need = uint64(tenants) + uint64(p.maxOpen)*17/16*store.FDsPerOpenPhext + fdReserve
	return p
}

// report logs a raise of the limit and warns when the limit is short.
func (p fdPlan) report(log *slog.Logger, tenants int) {
	if p.raisedFrom > 0 {
		log.Info("raised the open-file limit to the hard limit", "from", p.raisedFrom, "to", p.soft)
	}
	if p.need > p.soft {
		log.Warn("the open-file limit is below one connection per tenant plus the open phexts' descriptors; connections or requests may fail (EMFILE): raise LimitNOFILE or lower --max-open-phexts (docs/OPERATIONS.md §7)",
			"open_files_limit", p.soft, "need", p.need, "tenants", tenants, "max_open_phexts", p.maxOpen)
	}
}

// autoMaxOpen sizes the open-phext cap from the open-file limit: a quarter
// of it, leaving the rest for connections, within 256..16384 (with the
// common default limit of 1024 that is 256). Not more on a host with more
// tenants: measured at 10,000 tenants writing with a limit of 20,000, a cap
// of 8,929 (what one connection per tenant left when each open phext held
// its WAL) served no more (5,278 ops/s against 5,711 with 5,000, one run
// each on a loaded box), and Close, which writes back every open phext
// that was written, no longer finished within 30 s of SIGTERM; with the
// shared commit log a cap of 10,700 did the same (docs/OPERATIONS.md §7).
func autoMaxOpen(limit uint64) int {
	return int(min(max(limit/4, 256), 16384))
}

// gcBaseAllowance is what sq host allows the Go heap beyond the client
// memory budget when it sets the GC's soft memory limit: the tenant
// table, open phexts' indexes and overlays, buffers.
const gcBaseAllowance = 512 << 20

// setMemoryLimit gives the Go GC a soft memory limit of the client memory
// budget plus gcBaseAllowance (unless GOMEMLIMIT is set): the budget bounds
// what is live, and without a limit the GC would let garbage from large
// requests (each large frame's buffer, dropped once it is answered) reach
// twice the live heap before collecting it.
func setMemoryLimit(budget int64, maxFrame int) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	budget = max(budget, 3*int64(maxFrame))
	debug.SetMemoryLimit(budget + gcBaseAllowance)
}

// defaultLogDir is where the commit log lives without --log-dir: sq-log
// beside the config file, or log under the data root of the embedded dev
// config. The systemd unit passes --log-dir /var/lib/sq/log (the data's
// file system, not /etc's).
func defaultLogDir(config, data string) string {
	if config != "" {
		return filepath.Join(filepath.Dir(config), "sq-log")
	}
	return filepath.Join(data, "log")
}

// checkLegacyLogDir refuses to start when --log-dir names another dir than
// the default with --config (sq-log beside the config file) while that one
// still holds records (e.g. the systemd unit moved the log to
// /var/lib/sq/log): starting on another log dir would not replay them. A
// clean stop leaves only header-only files (32 bytes), which are fine.
func checkLegacyLogDir(config, logDir string) error {
	if config == "" {
		return nil
	}
	old := filepath.Join(filepath.Dir(config), "sq-log")
	if a, b := filepath.Clean(old), filepath.Clean(logDir); a == b {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(old, "sq-*.log"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Size() > 32 {
			return fmt.Errorf("the commit log in %s (the default of an earlier version) holds records that %s would not replay: start with --log-dir %s (or stop the server cleanly with it first)", old, logDir, old)
		}
	}
	return nil
}

// envGOMAXPROCS reports whether the runtime took its GOMAXPROCS from the
// environment: by the runtime's own rule, a decimal int32 above 0. Any
// other value ("0", "auto", " 4") is ignored by the runtime, which then
// chooses the default, so sq raises it like an unset one.
func envGOMAXPROCS() bool {
	n, err := strconv.ParseInt(os.Getenv("GOMAXPROCS"), 10, 32)
	return err == nil && n > 0
}
