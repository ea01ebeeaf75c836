package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/phext/sq/bench"
	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// benchExe, when set, is the sq binary `sq bench` starts as the server
// (tests set it; normally the running executable is used).
var benchExe string

// benchPhext is the phext sq bench writes on a running server (--addr).
const benchPhext = "sq-bench"

// benchReport is `sq bench --json`'s output: one scenario's outcome.
type benchReport struct {
	Scenario string `json:"scenario"`
	Machine  struct {
		NumCPU   int    `json:"nproc"`
		MemBytes int64  `json:"mem_bytes"`
		GoOS     string `json:"goos"`
		GoArch   string `json:"goarch"`
		// LoadAvg is /proc/loadavg at the start: other work on the
		// machine skews every number.
		LoadAvg string `json:"loadavg,omitempty"`
	} `json:"machine"`
	Command      string              `json:"command"`
	Result       *bench.Result       `json:"result,omitempty"`
	Growth       []bench.GrowthPoint `json:"growth,omitempty"`
	Idle         *bench.IdleResult   `json:"idle,omitempty"`
	Watch        *bench.WatchResult  `json:"watch,omitempty"`
	Reloads      int                 `json:"reloads,omitempty"`
	ReloadErrors []string            `json:"reload_errors,omitempty"`
	ServerExit   string              `json:"server_exit,omitempty"`
	Failed       bool                `json:"failed"`
	Error        string              `json:"error,omitempty"`
}

type benchFlags struct {
	scenario, addr, config, protocol, mix, size   string
	durability, hostArgs, progress, growth, token string
	phext                                         string
	overwrite                                     bool
	tenants, conns, pipeline, scrolls, phexts     int
	idleConns, serverPID                          int
	watchWriters, watchers, watchRounds           int
	watchRate                                     float64
	duration, warmup, idlePing, reloadEvery       time.Duration
	ops                                           int64
	seed                                          uint64
	noVerify, noPreload, compression, jsonOut     bool
	keep                                          bool
	cpuProfile                                    string
}

func benchFlagSet(out io.Writer, f *benchFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	var names []string
	for _, s := range bench.Scenarios {
		names = append(names, s.Name)
	}
	fs.StringVar(&f.scenario, "scenario", "mixed", "workload preset: "+strings.Join(names, ", "))
	fs.IntVar(&f.tenants, "tenants", 0, "tenants to generate (default per scenario: 500; large-scrolls 20, big-phext 1)")
	fs.IntVar(&f.conns, "conns", 0, "connections (default one per tenant)")
	fs.IntVar(&f.pipeline, "pipeline", 1, "requests in flight per connection")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "measured time (per step for big-phext, per phase for idle)")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each measurement")
	fs.Int64Var(&f.ops, "ops", 0, "end the measurement after this many operations instead of --duration")
	fs.StringVar(&f.mix, "mix", "", "operation weights, e.g. select=80,update=15,insert=4,delete=1 (default per scenario)")
	fs.StringVar(&f.size, "size", "", "scroll text size or range, e.g. 1KiB or 512B-4KiB (default per scenario)")
	fs.IntVar(&f.scrolls, "scrolls", 0, "scrolls per tenant the load spreads over (default per scenario, 20)")
	fs.IntVar(&f.phexts, "phexts", 1, "phexts per tenant the scrolls spread over")
	fs.StringVar(&f.addr, "addr", "", "use the server already running at this address instead of starting one")
	fs.StringVar(&f.config, "config", "", "with --addr: the server's tenants.json, whose tokens the bench uses")
	fs.StringVar(&f.token, "token", "", "with --addr: one tenant token for all connections (--tenants then only sets the default --conns)")
	fs.IntVar(&f.serverPID, "server-pid", 0, "with --addr: the server's pid, to report its CPU and RSS")
	fs.StringVar(&f.phext, "phext", "", "the phext the load writes (default: "+benchPhext+" with --addr, so a tenant's own data is never touched; the default phext of the bench's own server otherwise)")
	fs.BoolVar(&f.overwrite, "overwrite", false, "with --addr: run even if the tenants' bench phexts already hold scrolls (the bench replaces them)")
	fs.StringVar(&f.protocol, "protocol", "sq", "sq, or resp to load a Redis server with the same generator")
	fs.BoolVar(&f.noVerify, "no-verify", false, "do not check answers against the model (for the echo server)")
	fs.BoolVar(&f.noPreload, "no-preload", false, "start from empty scrolls instead of writing each once first")
	fs.BoolVar(&f.compression, "compression", false, "offer zstd/s2 compression in HELLO")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the workload's random choices")
	fs.StringVar(&f.durability, "durability", "everysec", "the started server's --durability")
	fs.StringVar(&f.hostArgs, "host-args", "", "extra flags for the started `sq host`, space separated")
	fs.IntVar(&f.idleConns, "idle-conns", 10000, "idle scenario: idle connections to open")
	fs.DurationVar(&f.idlePing, "idle-ping", 5*time.Second, "idle scenario: each idle connection PINGs this often (0: never)")
	fs.DurationVar(&f.reloadEvery, "reload-every", time.Second, "reload scenario: config reload interval")
	fs.IntVar(&f.watchWriters, "watch-writers", 1, "watch scenario: writer connections per tenant")
	fs.IntVar(&f.watchers, "watchers", 2, "watch scenario: watcher connections per tenant")
	fs.IntVar(&f.watchRounds, "watch-rounds", 2, "watch scenario: pairs of phases (with watchers, without)")
	fs.Float64Var(&f.watchRate, "watch-rate", 0, "watch scenario: total writes per second, paced (0: every writer as fast as it can, a closed loop)")
	fs.StringVar(&f.growth, "growth", "1KB,10KB,100KB,1MB,10MB,100MB", "big-phext scenario: phext sizes to measure at")
	fs.StringVar(&f.progress, "progress", "auto", "auto (bar on a terminal, else lines), bar, lines or off")
	fs.BoolVar(&f.jsonOut, "json", false, "print the report as JSON on stdout")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write the load generator's CPU profile to this file")
	fs.BoolVar(&f.keep, "keep", false, "keep the temporary directory (config, data, server log)")
	return fs
}

const benchUsage = `usage: sq bench [flags]
       sq bench compare --sq FILE [--redis FILE] [--echo FILE]

Load-tests SQ with many tenants and checks every answer. Without --addr it
provisions its own world: a temporary directory, a config with --tenants
generated tenants and an "sq host" child process on a free 127.0.0.1 port,
so the load generator does not share the server's heap. Every connection
keeps a model of what its tenant holds and checks each SELECT against it;
any mismatch, cross-tenant byte, wrong count or error status is printed
and makes the exit status 1.

"sq bench compare" reads --json reports and prints SQ's ratios to Redis
and to the echo server (bench/compare.sh runs the whole comparison).

flags:`

func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "compare" {
		return runBenchCompare(args[1:], stdout, stderr)
	}
	var f benchFlags
	fs := benchFlagSet(stderr, &f)
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fs.SetOutput(stdout) // asked for: help is the output
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), benchUsage)
		fs.PrintDefaults()
		fmt.Fprintln(fs.Output(), "\nscenarios:")
		for _, s := range bench.Scenarios {
			fmt.Fprintf(fs.Output(), "  %-14s %s\n", s.Name, s.Summary)
		}
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sq bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	sc, ok := bench.ScenarioByName(f.scenario)
	if !ok {
		fmt.Fprintf(stderr, "sq bench: unknown --scenario %q (sq help bench)\n", f.scenario)
		return 2
	}
	o, err := benchOptions(&f, sc, set)
	if err != nil {
		fmt.Fprintln(stderr, "sq bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &benchRun{f: &f, sc: sc, o: o, stdout: stdout, stderr: stderr}
	b.rep.Scenario = sc.Name
	b.rep.Machine.NumCPU = runtime.NumCPU()
	b.rep.Machine.MemBytes = bench.MemTotal()
	b.rep.Machine.GoOS, b.rep.Machine.GoArch = runtime.GOOS, runtime.GOARCH
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(la)); len(f) >= 3 {
			b.rep.Machine.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	b.rep.Command = "sq bench " + strings.Join(args, " ")
	return b.run(ctx)
}

// benchOptions turns flags and the scenario's defaults into Options.
func benchOptions(f *benchFlags, sc bench.Scenario, set map[string]bool) (*bench.Options, error) {
	o := &bench.Options{
		Protocol: f.protocol, Conns: f.conns, Pipeline: f.pipeline, Warmup: f.warmup,
		Duration: f.duration, Ops: f.ops, Mix: sc.Mix, Size: sc.Size, Scrolls: sc.Scrolls,
		Phexts: f.phexts, NoVerify: f.noVerify, NoPreload: f.noPreload,
		Compression: f.compression, Seed: f.seed, Tenants: sc.Tenants, Phext: f.phext,
	}
	if f.addr != "" && !set["phext"] {
		// A running server holds somebody's data: write beside it.
		o.Phext = benchPhext
	}
	if o.Phext != "" && !phext.ValidName([]byte(o.Phext)) {
		return nil, fmt.Errorf("--phext %q is not a valid phext name", o.Phext)
	}
	if set["ops"] && !set["duration"] {
		o.Duration = 0
	}
	if set["tenants"] {
		if f.tenants < 1 {
			return nil, fmt.Errorf("--tenants must be ≥ 1")
		}
		o.Tenants = f.tenants
	}
	if f.mix != "" {
		m, err := bench.ParseMix(f.mix)
		if err != nil {
			return nil, err
		}
		o.Mix = m
	}
	if f.size != "" {
		s, err := bench.ParseSize(f.size)
		if err != nil {
			return nil, err
		}
		o.Size = s
	}
	if set["scrolls"] {
		if f.scrolls < 1 {
			return nil, fmt.Errorf("--scrolls must be ≥ 1")
		}
		o.Scrolls = f.scrolls
	}
	if f.pipeline < 1 {
		return nil, fmt.Errorf("--pipeline must be ≥ 1")
	}
	if f.conns < 0 || f.phexts < 1 || f.duration < 0 || f.warmup < 0 || f.ops < 0 {
		return nil, fmt.Errorf("--conns, --phexts, --duration, --warmup and --ops must not be negative (--phexts ≥ 1)")
	}
	if f.protocol != bench.ProtoSQ && f.protocol != bench.ProtoRESP {
		return nil, fmt.Errorf("--protocol %q: sq or resp", f.protocol)
	}
	if f.protocol == bench.ProtoRESP && f.addr == "" {
		return nil, fmt.Errorf("--protocol resp needs --addr (a running Redis)")
	}
	if f.addr == "" && (f.config != "" || f.token != "") {
		return nil, fmt.Errorf("--config and --token describe a running server: give --addr too")
	}
	switch f.progress {
	case "auto", "bar", "lines", "off":
	default:
		return nil, fmt.Errorf("--progress %q: auto, bar, lines or off", f.progress)
	}
	if sc.Name == "big-phext" && o.Tenants != 1 && !set["tenants"] {
		o.Tenants = 1
	}
	return o, nil
}

type benchRun struct {
	f              *benchFlags
	sc             bench.Scenario
	o              *bench.Options
	stdout, stderr io.Writer
	rep            benchReport
	tenants        []bench.Tenant
	configPath     string
	dir            string
	host           *bench.Host
	hostLog        *os.File
	prog           *progress
}

func (b *benchRun) logf(format string, a ...any) {
	if b.f.progress != "off" {
		b.prog.clear()
		fmt.Fprintf(b.stderr, "sq bench: "+format+"\n", a...)
	}
}

func (b *benchRun) run(ctx context.Context) int {
	f, o := b.f, b.o
	b.prog = newProgress(b.stderr, f.progress)
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			fmt.Fprintln(b.stderr, "sq bench:", err)
			return 2
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintln(b.stderr, "sq bench:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	raiseFDLimit(b, o)
	if f.addr == "" {
		if code := b.provision(ctx); code != 0 {
			return code
		}
		defer b.teardown()
	} else {
		o.Addr = f.addr
		o.ServerPID = f.serverPID
		switch {
		case f.protocol == bench.ProtoRESP:
		case f.token != "":
			// One tenant; the connections (default: as many as the
			// scenario has tenants) share its scrolls out.
			b.tenants = []bench.Tenant{{Token: f.token, Name: "given"}}
			if o.Conns == 0 {
				o.Conns = o.Tenants
			}
			o.Tenants = 1
		case f.config != "":
			ts, err := bench.ReadConfigTokens(f.config)
			if err != nil {
				fmt.Fprintln(b.stderr, "sq bench:", err)
				return 2
			}
			if len(ts) > o.Tenants {
				ts = ts[:o.Tenants]
			}
			b.tenants = ts
			b.configPath = f.config
		default:
			fmt.Fprintln(b.stderr, "sq bench: --addr needs --config or --token for the tenants' tokens")
			return 2
		}
	}
	for _, t := range b.tenants {
		o.Tokens = append(o.Tokens, t.Token)
	}
	if f.addr != "" && f.protocol == bench.ProtoSQ && !f.overwrite {
		if err := b.refuseExistingData(ctx); err != nil {
			fmt.Fprintln(b.stderr, "sq bench:", err)
			return 2
		}
	}
	o.Progress = b.prog.update
	err := b.scenario(ctx)
	b.prog.clear()
	if b.host != nil {
		if serr := b.host.Stop(30 * time.Second); serr != nil {
			b.rep.ServerExit = serr.Error()
			if err == nil {
				err = fmt.Errorf("server exit: %v", serr)
			}
		}
	}
	if err != nil {
		b.rep.Error = err.Error()
		b.rep.Failed = true
	}
	if f.jsonOut {
		enc := json.NewEncoder(b.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(&b.rep)
	} else {
		b.printReport()
	}
	if err != nil {
		fmt.Fprintln(b.stderr, "sq bench:", err)
		if b.host != nil && !errors.Is(err, bench.ErrVerify) {
			if logs := b.host.Logs(); logs != "" {
				fmt.Fprintln(b.stderr, "sq bench: last server log lines:\n"+lastLines(logs, 15))
			}
		}
		return 1
	}
	return 0
}

// refuseExistingData checks, on a running server, that no tenant's bench
// phext holds scrolls: the load rewrites and deletes scrolls there, so it
// runs only on empty (or absent) phexts unless --overwrite says otherwise.
func (b *benchRun) refuseExistingData(ctx context.Context) error {
	names := bench.PhextNames(b.o.Phext, b.o.Phexts)
	seen := map[string]bool{}
	for i, tok := range b.o.Tokens {
		if seen[tok] {
			continue
		}
		seen[tok] = true
		c, err := client.Dial(ctx, b.o.Addr, tok)
		if err != nil {
			return fmt.Errorf("checking tenant %d for existing data: %w", i+1, err)
		}
		have, err := c.List(ctx)
		if err == nil {
			for _, n := range names {
				if !slices.Contains(have, string(n)) {
					continue
				}
				var toc []byte
				if toc, err = c.TOC(ctx, string(n)); err != nil || len(bytes.TrimSpace(toc)) == 0 {
					continue
				}
				c.Close()
				shown := string(n)
				if shown == "" {
					shown = "the default phext"
				}
				return fmt.Errorf("tenant %s already has scrolls in %s, which the bench would overwrite: "+
					"choose another --phext (default %s) or pass --overwrite", c.Hello().TenantName, shown, benchPhext)
			}
		}
		c.Close()
		if err != nil {
			return fmt.Errorf("checking tenant %d for existing data: %w", i+1, err)
		}
	}
	return nil
}

// provision makes the temporary world and starts the child server.
func (b *benchRun) provision(ctx context.Context) int {
	f, o := b.f, b.o
	dir, err := os.MkdirTemp("", "sq-bench-*")
	if err != nil {
		fmt.Fprintln(b.stderr, "sq bench:", err)
		return 1
	}
	b.dir = dir
	ts, err := bench.NewTenants(filepath.Join(dir, "tenants"), o.Tenants)
	if err == nil {
		b.configPath = filepath.Join(dir, "tenants.json")
		err = bench.WriteConfig(b.configPath, ts)
	}
	if err != nil {
		fmt.Fprintln(b.stderr, "sq bench:", err)
		b.teardown()
		return 1
	}
	b.tenants = ts
	exe, err := benchExe, error(nil)
	if exe == "" {
		exe, err = os.Executable()
	}
	if err != nil {
		fmt.Fprintln(b.stderr, "sq bench: cannot find the sq binary to start the server:", err)
		b.teardown()
		return 1
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		fmt.Fprintln(b.stderr, "sq bench:", err)
		b.teardown()
		return 1
	}
	// --http= turns the REST listener off: its fixed default port would
	// collide with a dev server or a second bench.
	args := []string{"--durability", f.durability, "--http="}
	if b.sc.Name == "watch" {
		// Feeds detach 1 s after their last watcher, so the phases
		// without watchers run without feeds (RunWatch pauses between).
		args = append(args, "--watch-linger", "1s")
	}
	if b.sc.Name == "reload" {
		// The reload loop asks for RELOAD on a tenant connection: our own
		// child on 127.0.0.1 trusts loopback (no admin token in the
		// generated config).
		args = append(args, "--trust-loopback")
	}
	if strings.TrimSpace(f.hostArgs) != "" {
		args = append(args, strings.Fields(f.hostArgs)...)
	}
	b.logf("starting %s host with %d tenants in %s", exe, len(ts), dir)
	h, err := bench.StartHost(ctx, exe, b.configPath, args, logf, 2*time.Minute)
	if err != nil {
		logf.Close()
		fmt.Fprintln(b.stderr, "sq bench:", err)
		b.teardown()
		return 1
	}
	b.host = h
	b.hostLog = logf
	o.Addr = h.Addr
	o.ServerPID = h.PID()
	b.logf("server pid %d listening on %s", h.PID(), h.Addr)
	return 0
}

func (b *benchRun) teardown() {
	if b.host != nil && !b.host.Exited() {
		b.host.Stop(30 * time.Second)
	}
	if b.hostLog != nil {
		b.hostLog.Close()
	}
	if b.dir == "" {
		return
	}
	if b.f.keep {
		fmt.Fprintf(b.stderr, "sq bench: kept %s (tenants.json, tenants/, server.log)\n", b.dir)
		return
	}
	os.RemoveAll(b.dir)
}

// scenario runs the chosen scenario and fills b.rep.
func (b *benchRun) scenario(ctx context.Context) error {
	o := b.o
	switch b.sc.Name {
	case "big-phext":
		steps, err := parseSteps(b.f.growth)
		if err != nil {
			return err
		}
		o.Conns = 1
		pts, err := bench.RunBigPhext(ctx, o, steps, 1<<20)
		b.rep.Growth = pts
		return err
	case "idle":
		var rss func() (int64, error)
		if o.ServerPID > 0 {
			pid := o.ServerPID
			rss = func() (int64, error) { p, err := bench.ReadProc(pid); return p.RSS, err }
		}
		res, err := bench.RunIdle(ctx, o, b.f.idleConns, b.f.idlePing, rss, func(s string) { b.logf("%s", s) })
		b.rep.Idle = res
		return err
	case "watch":
		pause := time.Duration(0)
		if b.host != nil {
			pause = 2500 * time.Millisecond // our child runs with --watch-linger 1s
		}
		res, err := bench.RunWatch(ctx, o, bench.WatchOptions{Writers: b.f.watchWriters, Watchers: b.f.watchers,
			Rounds: b.f.watchRounds, Pause: pause, Rate: b.f.watchRate})
		b.rep.Watch = res
		return err
	case "reload":
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		path := ""
		if b.host != nil {
			path = b.configPath // our own file: safe to rewrite
		}
		go func() {
			defer close(done)
			b.rep.Reloads, b.rep.ReloadErrors = bench.ReloadLoop(rctx, o.Addr, path, b.tenants,
				filepath.Join(b.dir, "tenants"), b.f.reloadEvery)
		}()
		res, err := bench.Run(ctx, o)
		cancel()
		<-done
		if res != nil {
			res.Scenario = b.sc.Name
		}
		b.rep.Result = res
		if err == nil && len(b.rep.ReloadErrors) > 0 {
			err = fmt.Errorf("%w: %d reload errors", bench.ErrVerify, len(b.rep.ReloadErrors))
		}
		if err == nil && b.rep.Reloads == 0 {
			err = fmt.Errorf("%w: no reload happened during the run", bench.ErrVerify)
		}
		return err
	}
	res, err := bench.Run(ctx, o)
	if res != nil {
		res.Scenario = b.sc.Name
	}
	b.rep.Result = res
	return err
}

func (b *benchRun) printReport() {
	w := b.stdout
	fmt.Fprintf(w, "machine: %d CPUs, %s memory, %s/%s, load average at start %s\n", b.rep.Machine.NumCPU,
		bench.FormatBytes(b.rep.Machine.MemBytes), b.rep.Machine.GoOS, b.rep.Machine.GoArch, b.rep.Machine.LoadAvg)
	if b.rep.Result != nil {
		b.rep.Result.WriteTable(w)
	}
	if b.rep.Growth != nil {
		bench.WriteGrowthTable(w, b.rep.Growth)
	}
	if b.rep.Watch != nil {
		bench.WriteWatchTable(w, b.rep.Watch)
	}
	if b.rep.Idle != nil {
		if b.rep.Idle.With != nil {
			b.rep.Idle.With.Scenario = "idle: with idle connections"
			b.rep.Idle.With.WriteTable(w)
		}
		if b.rep.Idle.Without != nil {
			b.rep.Idle.Without.Scenario = "idle: after closing them"
			b.rep.Idle.Without.WriteTable(w)
		}
		bench.WriteIdleTable(w, b.rep.Idle)
	}
	if b.sc.Name == "reload" {
		fmt.Fprintf(w, "reloads: %d, reload errors: %d\n", b.rep.Reloads, len(b.rep.ReloadErrors))
		for _, e := range b.rep.ReloadErrors {
			fmt.Fprintln(w, "  "+e)
		}
	}
}

func parseSteps(s string) ([]int64, error) {
	var out []int64
	for _, p := range strings.Split(s, ",") {
		n, err := bench.ParseByteSize(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("--growth: %w", err)
		}
		out = append(out, n)
	}
	return out, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// raiseFDLimit lifts RLIMIT_NOFILE to the hard limit (the child server
// inherits it) and warns when that is below what the run needs.
func raiseFDLimit(b *benchRun, o *bench.Options) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	need := uint64(max(o.Conns, o.Tenants)) + 64
	if b.sc.Name == "idle" {
		need += uint64(b.f.idleConns)
	}
	if lim.Cur < need {
		fmt.Fprintf(b.stderr, "sq bench: warning: open-file limit %d is below the ~%d this run needs (bench and server each); raise the hard limit (ulimit -Hn)\n", lim.Cur, need)
	}
}

// progress shows live ops/s: a bar on a terminal, plain lines otherwise.
type progress struct {
	w     io.Writer
	mode  string
	bar   *progressbar.ProgressBar
	phase string
}

func newProgress(w io.Writer, mode string) *progress {
	if mode == "auto" {
		mode = "lines"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bar"
		}
	}
	return &progress{w: w, mode: mode}
}

func (p *progress) update(s bench.Progress) {
	switch p.mode {
	case "off":
		return
	case "lines":
		total := ""
		if s.Total > 0 {
			total = "/" + s.Total.Round(time.Second).String()
		}
		fmt.Fprintf(p.w, "sq bench: %-7s %6s%s %10d ops %9s ops/s %d problems\n", s.Phase,
			s.Elapsed.Round(time.Second), total, s.Ops, bench.FormatRate(s.Rate), s.Problems)
		return
	}
	if p.bar == nil || p.phase != s.Phase {
		p.clear()
		max := int64(-1)
		if s.Total > 0 {
			max = s.Total.Milliseconds()
		}
		p.bar = progressbar.NewOptions64(max, progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetWidth(30), progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(true), progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(200*time.Millisecond))
		p.phase = s.Phase
	}
	p.bar.Describe(fmt.Sprintf("%-7s %9s ops/s %d problems", s.Phase, bench.FormatRate(s.Rate), s.Problems))
	if s.Total > 0 {
		p.bar.Set64(min(s.Elapsed.Milliseconds(), s.Total.Milliseconds()))
	} else {
		p.bar.Add64(1)
	}
}

func (p *progress) clear() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// runBenchCompare prints SQ's ratios to Redis and to the echo server from
// `sq bench --json` reports.
func runBenchCompare(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sqF := fs.String("sq", "", "SQ's report (sq bench --json)")
	redisF := fs.String("redis", "", "Redis's report (sq bench --protocol resp --json)")
	echoF := fs.String("echo", "", "the echo server's report (sq bench --no-verify --json)")
	label := fs.String("label", "", "a title for the comparison")
	jsonOut := fs.Bool("json", false, "print the ratios as JSON")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *sqF == "" {
		fmt.Fprintln(stderr, "sq bench compare: --sq is required")
		return 2
	}
	load := func(path string) (*bench.Result, error) {
		if path == "" {
			return nil, nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var rep benchReport
		if err := json.Unmarshal(data, &rep); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if rep.Result == nil {
			return nil, fmt.Errorf("%s: no result (error: %s)", path, rep.Error)
		}
		return rep.Result, nil
	}
	sq, err := load(*sqF)
	if err != nil {
		fmt.Fprintln(stderr, "sq bench compare:", err)
		return 1
	}
	redis, err := load(*redisF)
	if err != nil {
		fmt.Fprintln(stderr, "sq bench compare:", err)
		return 1
	}
	echo, err := load(*echoF)
	if err != nil {
		fmt.Fprintln(stderr, "sq bench compare:", err)
		return 1
	}
	type ratio struct {
		Label        string  `json:"label"`
		SQOps        float64 `json:"sq_ops_per_sec"`
		SQP99        float64 `json:"sq_p99_us"`
		RedisOps     float64 `json:"redis_ops_per_sec,omitempty"`
		RedisP99     float64 `json:"redis_p99_us,omitempty"`
		EchoOps      float64 `json:"echo_ops_per_sec,omitempty"`
		EchoP99      float64 `json:"echo_p99_us,omitempty"`
		SQOverRedis  float64 `json:"sq_over_redis,omitempty"`
		SQOverEcho   float64 `json:"sq_over_echo,omitempty"`
		P99OverRedis float64 `json:"sq_p99_over_redis_p99,omitempty"`
	}
	r := ratio{Label: *label, SQOps: sq.OpsPerSec, SQP99: sq.All.P99}
	if redis != nil {
		r.RedisOps, r.RedisP99 = redis.OpsPerSec, redis.All.P99
		if redis.OpsPerSec > 0 {
			r.SQOverRedis = sq.OpsPerSec / redis.OpsPerSec
		}
		if redis.All.P99 > 0 {
			r.P99OverRedis = sq.All.P99 / redis.All.P99
		}
	}
	if echo != nil {
		r.EchoOps, r.EchoP99 = echo.OpsPerSec, echo.All.P99
		if echo.OpsPerSec > 0 {
			r.SQOverEcho = sq.OpsPerSec / echo.OpsPerSec
		}
	}
	if *jsonOut {
		json.NewEncoder(stdout).Encode(r)
		return 0
	}
	title := r.Label
	if title == "" {
		title = fmt.Sprintf("%d conns, pipeline %d, %s, mix %s", sq.Conns, sq.Pipeline, sq.Size, sq.Mix)
	}
	fmt.Fprintf(stdout, "== %s\n", title)
	fmt.Fprintf(stdout, "  SQ     %10s ops/s  p99 %s  (%s)\n", bench.FormatRate(sq.OpsPerSec), bench.FormatMicros(sq.All.P99), verdictOf(sq))
	if redis != nil {
		fmt.Fprintf(stdout, "  Redis  %10s ops/s  p99 %s  (%s)\n", bench.FormatRate(redis.OpsPerSec), bench.FormatMicros(redis.All.P99), verdictOf(redis))
	}
	if echo != nil {
		fmt.Fprintf(stdout, "  echo   %10s ops/s  p99 %s\n", bench.FormatRate(echo.OpsPerSec), bench.FormatMicros(echo.All.P99))
	}
	if redis != nil {
		fmt.Fprintf(stdout, "  SQ ÷ Redis ops/s = %.2f   SQ p99 ÷ Redis p99 = %.2f\n", r.SQOverRedis, r.P99OverRedis)
	}
	if echo != nil {
		fmt.Fprintf(stdout, "  SQ ÷ echo ops/s  = %.2f\n", r.SQOverEcho)
	}
	return 0
}

func verdictOf(r *bench.Result) string {
	if r.Failed() {
		return "FAILED verification"
	}
	if !r.Verified {
		return "not verified"
	}
	return "verified"
}
