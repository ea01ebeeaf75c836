package main

// The kill -9 loop of the reliability suite (issue 9). A real `sq host`
// (this test binary re-executed as TestKillLoopHostChild, which runs
// runHost exactly as main does) serves 500 tenants under a write load and
// is killed with SIGKILL at random moments, during compactions and during
// reloads, then restarted. The test process is the verifier: it recorded
// every acknowledged write with the time of its acknowledgement and checks
// all of them after each restart.
//
// always mode: zero acknowledged writes lost, zero unreadable files.
// everysec mode: the largest loss window (kill time − acknowledgement time
// of the oldest lost write) is reported and must stay ≤ 1.5 s; no partial
// record ever.
//
// A kill -9 loses no page-cache data, so everysec loses nothing here; the
// everysec loss window under a power loss is measured by
// store/restart_test.go TestPowerLoss, which drops unsynced bytes.
//
// Short form (make test): 5 kills (3 always, 1 always with fewer open
// phexts than tenants so the store keeps closing and compacting, 1
// everysec). Long form: SQ_RELIABILITY=long, 50 kills each (SQ_KILLS
// overrides).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
)

const killChildEnv = "SQ_KILLLOOP_HOST_ARGS"

// reloadEvery is the SIGHUP period during the load: kills land during
// reloads of the 500-tenant config.
const reloadEvery = 100 * time.Millisecond

// TestKillLoopHostChild is `sq host` for the kill loop: it runs runHost with
// the arguments in SQ_KILLLOOP_HOST_ARGS (separated by \x1f) and exits with
// its status.
func TestKillLoopHostChild(t *testing.T) {
	args := os.Getenv(killChildEnv)
	if args == "" {
		t.Skip("only run as the kill loop's server child")
	}
	if dir := os.Getenv("SQ_HOST_DIAG"); dir != "" {
		go hostDiag(dir)
	}
	os.Exit(runHost(strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
}

// hostDiag serves SIGUSR1 in a server child when SQ_HOST_DIAG names a
// directory (a diagnostic aid for latency figures): the first signal starts
// an execution trace (DIR/trace-N.out) and a CPU profile (DIR/cpu-N.out), the next stops them and prints the
// server's goroutine run-queue waits (p50/p99/max), its GC cycles and the
// CPU the GC used meanwhile to stderr.
func hostDiag(dir string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	names := []string{"/sched/latencies:seconds", "/gc/cycles/total:gc-cycles",
		"/cpu/classes/gc/total:cpu-seconds", "/cpu/classes/gc/mark/assist:cpu-seconds",
		"/cpu/classes/user:cpu-seconds", "/sched/pauses/total/gc:seconds"}
	read := func() []metrics.Sample {
		s := make([]metrics.Sample, len(names))
		for i, n := range names {
			s[i].Name = n
		}
		metrics.Read(s)
		return s
	}
	// minflt is this process's minor page faults (/proc/self/stat field 10).
	minflt := func() int64 {
		b, _ := os.ReadFile("/proc/self/stat")
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		n, _ := strconv.ParseInt(f[7], 10, 64)
		return n
	}
	var f, pf *os.File
	var before []metrics.Sample
	var flt0 int64
	var delay0 time.Duration
	for n := 0; ; n++ {
		<-sig
		if f == nil {
			f, _ = os.Create(filepath.Join(dir, fmt.Sprintf("trace-%d.out", n/2)))
			pf, _ = os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%d.out", n/2)))
			pprof.StartCPUProfile(pf)
			trace.Start(f)
			before = read()
			flt0 = minflt()
			delay0 = runDelay(os.Getpid())
			continue
		}
		trace.Stop()
		pprof.StopCPUProfile()
		f.Close()
		pf.Close()
		f = nil
		after := read()
		q := func(k int, p float64) float64 {
			a, b := before[k].Value.Float64Histogram(), after[k].Value.Float64Histogram()
			var total, seen uint64
			for i := range b.Counts {
				total += b.Counts[i] - a.Counts[i]
			}
			for i := range b.Counts {
				seen += b.Counts[i] - a.Counts[i]
				if total > 0 && float64(seen) >= p*float64(total) {
					return b.Buckets[i+1] * 1e3
				}
			}
			return 0
		}
		fmt.Fprintf(os.Stderr, "diag: run-queue wait ms p50 %.3f p99 %.3f p999 %.3f max %.3f; gc cycles %d, gc cpu %.3f s (assist %.3f s), gc pauses ms p99 %.3f max %.3f; minor faults %d; threads' kernel run-queue wait %.3f s\n",
			q(0, 0.5), q(0, 0.99), q(0, 0.999), q(0, 1), after[1].Value.Uint64()-before[1].Value.Uint64(),
			after[2].Value.Float64()-before[2].Value.Float64(), after[3].Value.Float64()-before[3].Value.Float64(),
			q(5, 0.99), q(5, 1), minflt()-flt0, (runDelay(os.Getpid()) - delay0).Seconds())
	}
}

// runDelay sums the time the threads of process pid have waited on a
// kernel run queue (/proc/PID/task/*/schedstat, second field): CPU the
// machine did not give them while they were runnable.
func runDelay(pid int) time.Duration {
	ts, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, p := range ts {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
}

func longForm() bool { return os.Getenv("SQ_RELIABILITY") == "long" }

// hostChild is one running `sq host` child.
type hostChild struct {
	cmd    *exec.Cmd
	addr   string
	stdout *lockedBuf
	stderr *lockedBuf
	exited chan struct{}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startHost runs `sq host args...` as a child and waits for its
// "sq: listening on ADDR" line (with --log-format json, its
// {"msg":"listening","addr":ADDR} line).
func startHost(t testing.TB, args ...string) *hostChild {
	t.Helper()
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--http") }) {
		// The REST API's default port is fixed (1338): tests bind none.
		args = append(args, "--http=")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillLoopHostChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+strings.Join(args, "\x1f"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &hostChild{cmd: cmd, stdout: &lockedBuf{}, stderr: &lockedBuf{}, exited: make(chan struct{})}
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			h.stdout.Write(append(sc.Bytes(), '\n'))
			a, ok := strings.CutPrefix(sc.Text(), "sq: listening on ")
			var j struct{ Msg, Addr string }
			if !ok && json.Unmarshal(sc.Bytes(), &j) == nil && j.Msg == "listening" {
				a, ok = j.Addr, true
			}
			if ok && !sent {
				addrc <- a
				sent = true
			}
		}
		if !sent {
			close(addrc)
		}
	}()
	go func() {
		cmd.Wait()
		close(h.exited)
	}()
	select {
	case a, ok := <-addrc:
		if !ok {
			<-h.exited
			t.Fatalf("sq host exited before listening: %v\n%s", cmd.ProcessState, h.stderr.String())
		}
		h.addr = a
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("sq host did not listen within 60 s:\n%s", h.stderr.String())
	}
	return h
}

func (h *hostChild) kill() {
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
}

// killTenants writes a config of n tenants (mode 0600) and returns it with
// the tokens by index.
func killTenants(t testing.TB, dir string, n int) (cfgPath string, tokens []string) {
	cfg := &config.Config{Tenants: map[string]config.TenantEntry{}}
	for i := 0; i < n; i++ {
		tok, err := config.GenerateToken(i)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
		name := fmt.Sprintf("t%03d", i)
		cfg.Tenants[tok] = config.TenantEntry{Name: name, DataDir: filepath.Join(dir, "data", name)}
	}
	cfgPath = filepath.Join(dir, "tenants.json")
	if err := config.WriteFile(cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	return cfgPath, tokens
}

// ackLog is what the verifier knows of one (tenant, round) scroll: the
// acknowledgement time of each token written to it, in order.
type ackLog struct {
	acks []time.Time
}

// roundCoord is the scroll every tenant's writer appends to in round r.
func roundCoord(r int) phext.Coordinate {
	c := phext.Origin
	c[phext.LevelSection] = uint16(r/999 + 1)
	c[phext.LevelScroll] = uint16(r%999 + 1)
	return c
}

func tokenText(i int) string { return strconv.Itoa(i) + ";" }

// parseTokens checks that text is "0;1;2;…;k-1;" and returns k, or -1 when
// it is not (a partial or foreign record).
func parseTokens(text []byte) int {
	k := 0
	for len(text) > 0 {
		want := tokenText(k)
		if !bytes.HasPrefix(text, []byte(want)) {
			return -1
		}
		text = text[len(want):]
		k++
	}
	return k
}

type killStats struct {
	kills, acked, lost, unknownSurvived int
	midCompaction                       int // kills that left a compaction temp file
	maxWindow                           time.Duration
	compactions, reloads                int64
	verifyTime, restartTime             time.Duration
}

// TestKillLoop runs the kill -9 loop in always and everysec modes.
func TestKillLoop(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	if testing.Short() && !longForm() {
		t.Skip("-short")
	}
	modes := []struct {
		name    string
		kills   int
		maxOpen int
	}{
		{name: "always", kills: 3, maxOpen: 1024},
		{name: "always-lru", kills: 1, maxOpen: 256},
		{name: "everysec", kills: 1, maxOpen: 1024},
	}
	for _, m := range modes {
		kills := m.kills
		if longForm() {
			kills = 50
		}
		if v, err := strconv.Atoi(os.Getenv("SQ_KILLS")); err == nil && v > 0 {
			kills = v
		}
		mode, _, _ := strings.Cut(m.name, "-")
		t.Run(m.name, func(t *testing.T) { killLoop(t, mode, kills, 500, m.maxOpen) })
	}
}

// killLoop runs one mode. maxOpen is the server's --max-open-phexts: below
// the tenant count the store keeps closing (and compacting) phexts while it
// is killed.
func killLoop(t *testing.T, mode string, kills, tenants, maxOpen int) {
	dir := t.TempDir()
	cfgPath, tokens := killTenants(t, dir, tenants)
	args := []string{"--config", cfgPath, "--listen", "127.0.0.1:0", "--durability", mode,
		"--log-level", "warn", "--event-loops", "2", "--max-conns-per-tenant", "50", "--max-open-phexts", strconv.Itoa(maxOpen)}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 9))
	logs := make([][]*ackLog, tenants) // [tenant][round]
	for i := range logs {
		logs[i] = make([]*ackLog, kills)
	}
	killAt := make([]time.Time, kills)
	prevK := make([][]int, tenants) // tokens present at the last verification
	for i := range prevK {
		prevK[i] = make([]int, kills)
	}
	// The compaction tenant (t000) keeps a 2 MiB scroll in phext "big" and
	// a counter scroll updated before each compaction.
	bigText := strings.Repeat("0123456789abcdef", 2<<20/16)
	var bigAcked atomic.Int64 // last acknowledged counter value
	var bigSent atomic.Int64  // last counter value sent
	bigAcked.Store(-1)
	bigSent.Store(-1)
	var st killStats
	st.kills = kills
	ctx := context.Background()

	// dialAll connects to every tenant (16 at a time).
	dialAll := func(h *hostChild) []*client.Conn {
		t.Helper()
		conns := make([]*client.Conn, tenants)
		errs := make(chan error, 16)
		var wg sync.WaitGroup
		for v := 0; v < 16; v++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ti := v; ti < tenants; ti += 16 {
					c, err := client.Dial(ctx, h.addr, tokens[ti])
					if err != nil {
						errs <- fmt.Errorf("tenant %d: dial: %w", ti, err)
						return
					}
					conns[ti] = c
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		return conns
	}
	closeAll := func(conns []*client.Conn) {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}

	verify := func(h *hostChild, upto int, conns []*client.Conn) {
		t.Helper()
		t0 := time.Now()
		var mu sync.Mutex
		var failures []string
		fail := func(format string, a ...any) {
			mu.Lock()
			if len(failures) < 20 {
				failures = append(failures, fmt.Sprintf(format, a...))
			}
			mu.Unlock()
		}
		var wg sync.WaitGroup
		const verifiers = 16
		for v := 0; v < verifiers; v++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ti := v; ti < tenants; ti += verifiers {
					c := conns[ti]
					doc, err := c.Get(ctx, "k")
					if err != nil {
						fail("tenant %d: phext k unreadable after restart: %v", ti, err)
						continue
					}
					if _, err := c.Checksum(ctx, "k"); err != nil {
						fail("tenant %d: checksum: %v", ti, err)
					}
					scrolls, err := phext.Explode(doc)
					if err != nil {
						fail("tenant %d: phext k does not scan: %v", ti, err)
					}
					byCoord := map[phext.Coordinate][]byte{}
					for _, s := range scrolls {
						byCoord[s.Coord] = s.Text
					}
					for r := 0; r < upto; r++ {
						lg := logs[ti][r]
						acked := 0
						if lg != nil {
							acked = len(lg.acks)
						}
						k := parseTokens(byCoord[roundCoord(r)])
						if k < 0 {
							fail("tenant %d round %d: partial or foreign record: %q", ti, r, byCoord[roundCoord(r)])
							continue
						}
						mu.Lock()
						if k < prevK[ti][r] {
							failures = append(failures, fmt.Sprintf("tenant %d round %d: %d tokens survived an earlier restart, now %d", ti, r, prevK[ti][r], k))
						}
						first := r == upto-1 // the first check of round r
						prevK[ti][r] = k
						if k > acked+1 {
							failures = append(failures, fmt.Sprintf("tenant %d round %d: %d tokens stored, only %d were sent", ti, r, k, acked+1))
						}
						if k > acked && first {
							st.unknownSurvived++
						}
						if k < acked && first {
							st.lost += acked - k
							if w := killAt[r].Sub(lg.acks[k]); w > st.maxWindow {
								st.maxWindow = w
							}
						}
						if first {
							st.acked += acked
						}
						mu.Unlock()
						if mode == "always" && k < acked {
							fail("tenant %d round %d: %d writes acknowledged, %d survived (always mode)", ti, r, acked, k)
						}
					}
					if ti == 0 && bigAcked.Load() >= 0 {
						big, err := c.Get(ctx, "big")
						if err != nil {
							fail("phext big unreadable after a kill during compaction: %v", err)
						} else if sc, err := phext.Explode(big); err != nil || len(sc) != 2 || string(sc[0].Text) != bigText {
							fail("phext big damaged after a kill during compaction (%d bytes, err %v)", len(big), err)
						} else {
							v, _ := strconv.Atoi(strings.TrimPrefix(string(sc[1].Text), "v"))
							if mode == "always" && (int64(v) < bigAcked.Load() || int64(v) > bigSent.Load()) {
								fail("big counter %d after restart; acknowledged %d, sent %d", v, bigAcked.Load(), bigSent.Load())
							}
						}
					}
				}
			}()
		}
		wg.Wait()
		st.verifyTime += time.Since(t0)
		if len(failures) > 0 {
			t.Fatalf("after %d kills (seed %d):\n%s\nserver log:\n%s", upto, seed, strings.Join(failures, "\n"), tail(h.stderr.String(), 3000))
		}
		if s := h.stderr.String(); strings.Contains(s, "corrupt") {
			t.Fatalf("the server logged corruption:\n%s", tail(s, 3000))
		}
	}

	for r := 0; r < kills; r++ {
		t0 := time.Now()
		h := startHost(t, args...)
		conns := dialAll(h)
		st.restartTime += time.Since(t0)
		verify(h, r, conns)
		if r == 0 {
			c := conns[0]
			if _, err := c.Update(ctx, "big", phext.Origin, []byte(bigText)); err != nil {
				t.Fatal(err)
			}
			// Durable in every mode before the first kill.
			if err := c.Compact(ctx, "big"); err != nil {
				t.Fatal(err)
			}
		}
		// Load: writers over all tenants, one pending write per tenant.
		var stop atomic.Bool
		var roundAcks atomic.Int64 // writes acknowledged in this round
		var wg sync.WaitGroup
		loadStart := time.Now()
		const writers = 50
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []int
				for ti := w; ti < tenants; ti += writers {
					mine = append(mine, ti)
					logs[ti][r] = &ackLog{}
				}
				for i := 0; !stop.Load(); i++ {
					for _, ti := range mine {
						c := conns[ti]
						lg := logs[ti][r]
						n := len(lg.acks)
						if _, err := c.Insert(ctx, "k", roundCoord(r), []byte(tokenText(n))); err != nil {
							return // the server died: this write is unknown
						}
						lg.acks = append(lg.acks, time.Now())
						roundAcks.Add(1)
					}
				}
			}()
		}
		// Compactions of a 2 MiB phext, back to back.
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.Dial(ctx, h.addr, tokens[0])
			if err != nil {
				return
			}
			defer c.Close()
			for !stop.Load() {
				v := bigSent.Add(1)
				if _, err := c.Update(ctx, "big", roundCoord(1), []byte("v"+strconv.FormatInt(v, 10))); err != nil {
					return
				}
				bigAcked.Store(v)
				if err := c.Compact(ctx, "big"); err != nil {
					return
				}
				atomic.AddInt64(&st.compactions, 1)
			}
		}()
		// Reloads (SIGHUP) every reloadEvery.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				h.cmd.Process.Signal(syscall.SIGHUP)
				atomic.AddInt64(&st.reloads, 1)
				time.Sleep(reloadEvery)
			}
		}()
		// The kill lands 200 ms to 1.2 s into a load that is running: on a
		// busy 2-core box the first acknowledgement can take longer than
		// 200 ms, and a kill before it tests nothing.
		sqtest.CheckFor(t, 30*time.Second, "the round's first acknowledged write", func() bool { return roundAcks.Load() > 0 })
		time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
		killAt[r] = time.Now()
		h.kill()
		if _, err := os.Stat(filepath.Join(dir, "data", "t000", "big.phext.tmp")); err == nil {
			st.midCompaction++
		}
		stop.Store(true)
		wg.Wait()
		n := 0
		for ti := range logs {
			if logs[ti][r] != nil {
				n += len(logs[ti][r].acks)
			}
		}
		closeAll(conns)
		t.Logf("round %d: killed after %v of load; %d writes acknowledged", r, killAt[r].Sub(loadStart).Round(time.Millisecond), n)
	}
	// The last kill is checked by one more restart.
	h := startHost(t, args...)
	conns := dialAll(h)
	verify(h, kills, conns)
	closeAll(conns)
	// And a clean stop: SIGTERM drains and exits 0.
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(60 * time.Second):
		h.kill()
		t.Fatal("sq host did not exit on SIGTERM")
	}
	if code := h.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("sq host exited %d on SIGTERM:\n%s", code, tail(h.stderr.String(), 2000))
	}
	t.Logf("%s: %d tenants, %d kills (seed %d): %d writes acknowledged, %d lost, largest loss window %v, %d unacknowledged writes survived; %d compactions of a 2 MiB phext (%d kills left its temp file: killed mid-compaction) and %d SIGHUP reloads under the kills; restart+listen %v avg, verify %v avg",
		t.Name(), tenants, kills, seed, st.acked, st.lost, st.maxWindow.Round(time.Millisecond), st.unknownSurvived,
		st.compactions, st.midCompaction, st.reloads, (st.restartTime / time.Duration(kills+1)).Round(time.Millisecond), (st.verifyTime / time.Duration(kills+1)).Round(time.Millisecond))
	if mode == "always" && st.lost > 0 {
		t.Errorf("always mode lost %d acknowledged writes", st.lost)
	}
	if mode == "everysec" && st.maxWindow > 1500*time.Millisecond {
		t.Errorf("everysec lost writes acknowledged %v before the kill (target ≤ 1.5 s)", st.maxWindow)
	}
	if st.acked == 0 {
		t.Error("no write was acknowledged: the load never ran")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// TestHostRefusesWorldReadableConfig: the config holds tokens, so `sq
// host` refuses one every user can read, with a message saying so; the
// development flag overrides; SIGTERM then drains and exits 0.
func TestHostRefusesWorldReadableConfig(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	cfgPath, tokens := killTenants(t, dir, 2)
	must0(t, os.Chmod(cfgPath, 0o644))
	var out, errb bytes.Buffer
	code := runHost([]string{"--config", cfgPath, "--listen", "127.0.0.1:0"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "world-readable") || !strings.Contains(errb.String(), "--allow-world-readable-config") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	for _, tok := range tokens {
		if strings.Contains(out.String()+errb.String(), tok[11:]) {
			t.Fatal("the refusal printed a token")
		}
	}
	h := startHost(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--allow-world-readable-config")
	c, err := client.Dial(context.Background(), h.addr, tokens[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Insert(context.Background(), "", phext.Origin, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	h.cmd.Process.Signal(syscall.SIGTERM)
	<-h.exited
	if code := h.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d on SIGTERM", code)
	}
	if strings.Contains(h.stderr.String(), tokens[1][11:]) {
		t.Error("a token appears in the server's log")
	}
}

func must0(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCLINameAttacks: the command-line client refuses bad phext names
// (locally or with BAD_NAME from the server) and nothing is written.
func TestCLINameAttacks(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	ts := startTestServer(t)
	env := map[string]string{"SQ_ADDR": ts.addr, "SQ_TOKEN": ts.tokens["tenant-001"]}
	bad := []string{"..", "../x", "/etc/passwd", "a/b", ".hidden", "a\x00b", strings.Repeat("n", 65), "a b"}
	for _, name := range bad {
		for _, cmd := range [][]string{
			{"insert", "1.1.1/1.1.1/1.1.1", "x", "--phext", name},
			{"update", "1.1.1/1.1.1/1.1.1", "x", "--phext", name},
			{"get", "--phext", name},
			{"select", "1.1.1/1.1.1/1.1.1", "--phext", name},
			{"compact", "--phext", name},
		} {
			r := runCLI(env, "", cmd[0], cmd[1:]...)
			if r.code == 0 {
				t.Errorf("sq %s --phext %q succeeded: %q", cmd[0], name, r.stdout)
			}
			if !strings.Contains(strings.ToLower(r.stderr), "name") {
				t.Errorf("sq %s --phext %q: stderr %q does not say the name is bad", cmd[0], name, r.stderr)
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join(ts.dir, "tenant-001"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("files created: %q", names)
	}
}
