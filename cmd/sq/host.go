package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

type hostConfig struct {
	listen, config, data, durability string
	httpAddr, cpuProfile             string
	logLevel, logFormat              string
	maxFrame, maxConns, maxPerTenant int
	maxInFlight, maxOpen, loops      int
	helloTimeout, idleTimeout        time.Duration
	frameTimeout, shutdownTimeout    time.Duration
	noCompression, allowWorldRead    bool
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
	fs.StringVar(&c.durability, "durability", "everysec", "fsync policy: always | everysec | no (per tenant overridable in the config)")
	fs.IntVar(&c.maxFrame, "max-frame", protocol.DefaultMaxFrame, "largest frame accepted, in bytes")
	fs.IntVar(&c.maxConns, "max-conns", 20000, "open connections allowed overall")
	fs.IntVar(&c.maxPerTenant, "max-conns-per-tenant", 2000, "authenticated connections allowed per tenant")
	fs.IntVar(&c.maxInFlight, "max-inflight", 256, "requests in flight per connection before the server stops reading it")
	fs.IntVar(&c.maxOpen, "max-open-phexts", 0, "phext files kept open (mapped, one fd each) at once over all tenants (0 = a quarter of the open-file limit, 256..16384)")
	fs.IntVar(&c.loops, "event-loops", 0, "gnet event loops (0 = one per CPU)")
	fs.DurationVar(&c.helloTimeout, "hello-timeout", 10*time.Second, "close connections that do not authenticate in time")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 10*time.Minute, "close idle authenticated connections (negative: never)")
	fs.DurationVar(&c.frameTimeout, "frame-timeout", 30*time.Second, "close connections whose frame trickles in slower than this")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "deadline for draining on SIGTERM/SIGINT")
	fs.BoolVar(&c.noCompression, "no-compression", false, "offer no wire compression")
	fs.BoolVar(&c.allowWorldRead, "allow-world-readable-config", false, "start even if the config (which holds tokens) is readable by every user (development only)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) to this file until the server stops")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug | info | warn | error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text | json")
	return fs
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

func runHost(args []string, stdout, stderr io.Writer) int {
	fs := hostFlags(stderr)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sq host: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	c := hostCfg
	log, err := newLogger(stderr, c.logLevel, c.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "sq host:", err)
		return 2
	}
	dur, err := store.ParseDurability(c.durability)
	if err != nil {
		fmt.Fprintln(stderr, "sq host: --durability:", err)
		return 2
	}

	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "sq host: --cpuprofile:", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "sq host: --cpuprofile:", err)
			return 1
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	cfgPath := c.config
	if cfgPath == "" {
		path, token, err := server.EnsureDefaultConfig(c.data)
		if err != nil {
			fmt.Fprintln(stderr, "sq host: embedded default config:", err)
			return 1
		}
		cfgPath = path
		fmt.Fprintf(stdout, "sq: no --config given; using the embedded default %s\n", path)
		if token != "" {
			fmt.Fprintf(stdout, "sq: dev tenant token: %s\n", token)
			fmt.Fprintf(stdout, "sq: try: SQ_TOKEN=%s sq insert 1.1.1/1.1.1/1.1.1 hello\n", token)
		}
	}
	if err := checkConfigPerms(cfgPath, c.allowWorldRead); err != nil {
		fmt.Fprintln(stderr, "sq host:", err)
		return 1
	}
	start := time.Now()
	cfg, err := server.LoadConfig(cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "sq host:", err)
		return 1
	}
	if c.maxOpen <= 0 {
		c.maxOpen = autoMaxOpen()
	}
	st, err := store.Open(&store.Options{Durability: dur, MaxOpenPhexts: c.maxOpen, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "sq host: store:", err)
		return 1
	}
	srv, err := server.Start(st, cfg, &server.Options{
		Listen:            c.listen,
		EventLoops:        c.loops,
		MaxFrame:          c.maxFrame,
		MaxConns:          c.maxConns,
		MaxConnsPerTenant: c.maxPerTenant,
		MaxInFlight:       c.maxInFlight,
		HelloTimeout:      c.helloTimeout,
		IdleTimeout:       c.idleTimeout,
		FrameTimeout:      c.frameTimeout,
		NoCompression:     c.noCompression,
		Logger:            log,
		LoadConfig:        func() (*server.Config, error) { return server.LoadConfig(cfgPath) },
	})
	if err != nil {
		st.Close()
		fmt.Fprintln(stderr, "sq host:", err)
		return 1
	}
	log.Info("sq started", "config", cfgPath, "tenants", len(cfg.Tenants), "durability", dur.String(),
		"max_open_phexts", c.maxOpen,
		"startup", time.Since(start).Round(time.Microsecond).String())
	var hs *http.Server
	if c.httpAddr != "" {
		var ln net.Listener
		hs, ln, err = srv.StartHTTP(c.httpAddr, &server.HTTPOptions{ConfigPath: cfgPath})
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
			srv.Shutdown(ctx)
			cancel()
			st.Close()
			fmt.Fprintln(stderr, "sq host: --http:", err)
			return 1
		}
		fmt.Fprintf(stdout, "sq: REST API on http://%s\n", ln.Addr())
	}
	fmt.Fprintf(stdout, "sq: listening on %s\n", srv.Addr())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			if msg, err := srv.ReloadFromSource(); err != nil {
				log.Error("SIGHUP reload failed; the old config stays", "err", err)
			} else {
				log.Info(msg)
			}
			continue
		}
		log.Info("draining", "signal", sig.String(), "deadline", c.shutdownTimeout.String())
		ctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
		var herr error
		if hs != nil {
			// REST requests finish before the store closes.
			herr = hs.Shutdown(ctx)
		}
		serr := srv.Shutdown(ctx)
		if serr == nil {
			serr = herr
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

func errString(err error) string {
	if err == nil {
		return ""
	}
	return strings.TrimSpace(err.Error())
}

// checkConfigPerms refuses a config file that every user can read: it holds
// the tenants' tokens.
func checkConfigPerms(path string, allow bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o004 != 0 && !allow {
		return fmt.Errorf("%s is world-readable (mode %v) and holds API tokens: chmod o-r it, or pass --allow-world-readable-config for development", path, fi.Mode().Perm())
	}
	return nil
}

// autoMaxOpen sizes the open-phext cap from the open-file limit (Go raises
// the soft limit to the hard one at start): a quarter of it, leaving the
// rest for connections, within 256..16384. With the common default of 1024
// that is 256; past it the least recently used phexts are closed.
func autoMaxOpen() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 256
	}
	return int(min(max(rl.Cur/4, 256), 16384))
}
