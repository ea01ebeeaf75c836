package main

// Operator-experience tests (issue 16): restart after SIGTERM, logs,
// health, config permissions.

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
)

// TestRestartAfterSIGTERMUnderLoad: a server stopped with SIGTERM while
// clients write closes their connections itself, which leaves server-side
// TIME_WAIT sockets on the listen port; a restart on the same address must
// still bind at once (SO_REUSEADDR), not fail for a minute with "address
// already in use".
func TestRestartAfterSIGTERMUnderLoad(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	cfgPath, tokens := killTenants(t, dir, 4)
	h := startHost(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--durability", "no")
	addr := h.addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var acked sync.WaitGroup
	const conns = 32
	acked.Add(conns)
	for i := 0; i < conns; i++ {
		c, err := client.Dial(ctx, addr, tokens[i%len(tokens)])
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			first := true
			for {
				_, err := c.Insert(ctx, "", phext.Origin, []byte("x"))
				if first {
					acked.Done()
					first = false
				}
				// Busy clients keep trying through SHUTTING_DOWN
				// answers, so the server closes the connection first.
				if err != nil && c.Broken() {
					return
				}
			}
		}()
	}
	acked.Wait() // every connection is busy
	// Idle connections are closed by the server too.
	for i := 0; i < conns; i++ {
		c, err := client.Dial(ctx, addr, tokens[i%len(tokens)])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	<-h.exited
	if code := h.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d on SIGTERM:\n%s", code, h.stderr.String())
	}
	wg.Wait()
	start := time.Now()
	h2 := startHost(t, "--config", cfgPath, "--listen", addr, "--durability", "no")
	defer func() {
		h2.cmd.Process.Signal(syscall.SIGTERM)
		<-h2.exited
	}()
	d := time.Since(start)
	if d > 3*time.Second {
		t.Fatalf("restart on %s took %v, want under 3 s", addr, d)
	}
	t.Logf("restart on %s listened %v after the old process exited", addr, d.Round(time.Millisecond))
	c, err := client.Dial(ctx, addr, tokens[0])
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestHostBindErrorNamesAddress: a port another process listens on is
// refused with an error that says which address.
func TestHostBindErrorNamesAddress(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	cfgPath, _ := killTenants(t, dir, 1)
	var out, errb strings.Builder
	code := runHost([]string{"--config", cfgPath, "--listen", ln.Addr().String(), "--http="}, &out, &errb)
	if code == 0 {
		t.Fatal("started on a port in use")
	}
	if !strings.Contains(errb.String(), ln.Addr().String()) || !strings.Contains(errb.String(), "in use") {
		t.Fatalf("error does not name the address: %q", errb.String())
	}
}

// jsonLines parses every line of out as a JSON object and returns their
// "msg" fields; a line that is not JSON fails the test.
func jsonLines(t *testing.T, what, out string) []string {
	t.Helper()
	var msgs []string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("%s: a line is not JSON: %q", what, line)
			continue
		}
		msg, _ := m["msg"].(string)
		msgs = append(msgs, msg)
	}
	return msgs
}

func countMsg(msgs []string, msg string) int {
	n := 0
	for _, m := range msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// TestHostJSONLogsAndReloadsOnce: with --log-format json every line the
// process writes (stdout notices, its log, gnet's debug lines) is JSON;
// each reload (SIGHUP, the RELOAD operation) is logged exactly once; and a
// reload applies the same world-readable rule as the start.
func TestHostJSONLogsAndReloadsOnce(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	cfgPath, tokens := killTenants(t, dir, 2)
	// --trust-loopback: the RELOAD below comes on a tenant connection.
	h := startHost(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--log-format", "json",
		"--log-level", "debug", "--http", "127.0.0.1:0", "--trust-loopback")
	defer h.kill()
	msgs := func() []string { return jsonLines(t, "stderr", h.stderr.String()) }
	reloaded := func(n int) func() bool {
		return func() bool { return countMsg(msgs(), "tenant config reloaded") >= n }
	}

	h.cmd.Process.Signal(syscall.SIGHUP)
	sqtest.CheckFor(t, 10*time.Second, "the SIGHUP reload", reloaded(1))

	// The same rule as at start: a world-readable config is refused.
	must0(t, os.Chmod(cfgPath, 0o644))
	h.cmd.Process.Signal(syscall.SIGHUP)
	sqtest.CheckFor(t, 10*time.Second, "the refused reload", func() bool {
		return countMsg(msgs(), "reload refused; keeping the old config") >= 1
	})
	if !strings.Contains(h.stderr.String(), "world-readable") {
		t.Errorf("refusal does not say why:\n%s", h.stderr.String())
	}
	must0(t, os.Chmod(cfgPath, 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, h.addr, tokens[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	sqtest.CheckFor(t, 10*time.Second, "the RELOAD reload", reloaded(2))

	h.cmd.Process.Signal(syscall.SIGTERM)
	<-h.exited
	if code := h.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, h.stderr.String())
	}
	all := msgs()
	if n := countMsg(all, "tenant config reloaded"); n != 2 {
		t.Errorf("2 good reloads logged %d times:\n%s", n, h.stderr.String())
	}
	if n := countMsg(all, "reload refused; keeping the old config"); n != 1 {
		t.Errorf("1 refused reload logged %d times:\n%s", n, h.stderr.String())
	}
	reloadLines := 0
	for _, m := range all {
		if strings.Contains(strings.ToLower(m), "reload") {
			reloadLines++
		}
	}
	if reloadLines != 3 {
		t.Errorf("3 reloads gave %d log lines about reloading:\n%s", reloadLines, h.stderr.String())
	}
	gnetLines := 0
	for _, m := range all {
		if strings.HasPrefix(m, "gnet: ") {
			gnetLines++
		}
	}
	if gnetLines == 0 {
		t.Errorf("no gnet log line at debug level (want them as JSON):\n%s", h.stderr.String())
	}
	out := jsonLines(t, "stdout", h.stdout.String())
	if countMsg(out, "listening") != 1 || countMsg(out, "REST API") != 1 {
		t.Errorf("stdout notices: %q", out)
	}
}

// readmeRecipe returns the command lines of README.md's production recipe
// (the sh block after the production-recipe marker).
func readmeRecipe(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- production-recipe:")
	if !ok {
		t.Fatal("README.md has no production-recipe block")
	}
	_, rest, _ = strings.Cut(rest, "```sh\n")
	block, _, _ := strings.Cut(rest, "```")
	var lines [][]string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		lines = append(lines, strings.Fields(l))
	}
	return lines
}

// TestReadmeProductionRecipe runs README.md's production recipe as written
// (paths moved into a temp dir, the server on free ports) under the common
// umask 022: the generated config must be one that sq host serves. The
// shell-redirect form `sq tenants gen ... > tenants.json` works too.
func TestReadmeProductionRecipe(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	root := t.TempDir()
	must0(t, os.MkdirAll(filepath.Join(root, "etc/sq"), 0o750))
	relocate := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			if strings.HasPrefix(a, "/var/lib/sq") || strings.HasPrefix(a, "/etc/sq") {
				a = filepath.Join(root, a)
			}
			out[i] = a
		}
		return out
	}
	lines := readmeRecipe(t)
	if len(lines) != 2 || lines[0][0] != "sq" || lines[1][0] != "sq" || lines[1][1] != "host" {
		t.Fatalf("recipe is not `sq tenants gen ...` then `sq host ...`: %q", lines)
	}
	var out, errb bytes.Buffer
	if code := run(relocate(lines[0][1:]), &out, &errb); code != 0 {
		t.Fatalf("%q: exit %d: %s", lines[0], code, errb.String())
	}
	cfgPath := filepath.Join(root, "etc/sq/tenants.json")
	cfg, err := config.Load(cfgPath)
	must0(t, err)
	if len(cfg.Tenants) != 500 {
		t.Fatalf("%d tenants, want 500", len(cfg.Tenants))
	}
	var tok string
	for k := range cfg.Tenants {
		tok = k
		break
	}
	h := startHost(t, append(relocate(lines[1][2:]), "--listen", "127.0.0.1:0", "--http=")...)
	defer h.kill()
	c, err := client.Dial(context.Background(), h.addr, tok)
	must0(t, err)
	c.Close()

	// The redirect form: the shell creates the file 0644; gen makes it 0600.
	redirected := filepath.Join(root, "redirected.json")
	f, err := os.OpenFile(redirected, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o666)
	must0(t, err)
	code := run([]string{"tenants", "gen", "--count", "3", "--dir", filepath.Join(root, "r")}, f, &errb)
	f.Close()
	if code != 0 {
		t.Fatalf("gen > file: exit %d: %s", code, errb.String())
	}
	if _, err := config.LoadServing(redirected, false); err != nil {
		t.Fatalf("sq host would refuse `sq tenants gen > file`: %v", err)
	}
}

// TestHostReadyzDuringDrainDelay: after SIGTERM with --drain-delay, GET
// /readyz answers 503 while /healthz and the binary protocol still work;
// then the server drains and exits 0.
func TestHostReadyzDuringDrainDelay(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	cfgPath, tokens := killTenants(t, dir, 1)
	h := startHost(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--drain-delay", "3s")
	defer h.kill()
	var restAddr string
	for _, l := range strings.Split(h.stdout.String(), "\n") {
		if a, ok := strings.CutPrefix(l, "sq: REST API on http://"); ok {
			restAddr = a
		}
	}
	if restAddr == "" {
		t.Fatalf("no REST API line: %q", h.stdout.String())
	}
	status := func(path string) int {
		resp, err := http.Get("http://" + restAddr + path)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b := status("/healthz"), status("/readyz"); a != 200 || b != 200 {
		t.Fatalf("before SIGTERM: healthz %d, readyz %d", a, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, h.addr, tokens[0])
	must0(t, err)
	defer c.Close()
	h.cmd.Process.Signal(syscall.SIGTERM)
	sqtest.CheckFor(t, 2*time.Second, "readyz 503", func() bool { return status("/readyz") == 503 })
	if s := status("/healthz"); s != 200 {
		t.Errorf("healthz during the drain delay: %d", s)
	}
	if _, err := c.Insert(ctx, "", phext.Origin, []byte("still served")); err != nil {
		t.Errorf("binary request during the drain delay: %v", err)
	}
	<-h.exited
	if code := h.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, h.stderr.String())
	}
}

// TestHostBadHTTPRefusedBeforeBinaryPort: a busy or malformed --http is
// refused before the store opens and the binary port serves anyone.
func TestHostBadHTTPRefusedBeforeBinaryPort(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, bad := range []string{busy.Addr().String(), "127.0.0.1:99999", "no-port"} {
		t.Run(bad, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath, _ := killTenants(t, dir, 1)
			var out, errb strings.Builder
			code := runHost([]string{"--config", cfgPath, "--listen", "127.0.0.1:0", "--http", bad}, &out, &errb)
			all := out.String() + errb.String()
			if code == 0 || !strings.Contains(errb.String(), "--http") || !strings.Contains(errb.String(), bad) {
				t.Fatalf("exit %d, stderr %q", code, errb.String())
			}
			if strings.Contains(all, "sq started") || strings.Contains(all, "listening") {
				t.Fatalf("the binary side started before --http was refused:\n%s", all)
			}
		})
	}
}

// TestHostJSONStartFailure: with --log-format json a refused start is a
// JSON line too, saying why.
func TestHostJSONStartFailure(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	cfgPath, _ := killTenants(t, dir, 1)
	must0(t, os.Chmod(cfgPath, 0o644))
	var out, errb bytes.Buffer
	if code := runHost([]string{"--config", cfgPath, "--listen", "127.0.0.1:0", "--http=", "--log-format", "json"}, &out, &errb); code == 0 {
		t.Fatal("started with a world-readable config")
	}
	msgs := jsonLines(t, "stderr", errb.String())
	if countMsg(msgs, "sq host: start failed") != 1 || !strings.Contains(errb.String(), "world-readable") {
		t.Fatalf("stderr %q", errb.String())
	}
	jsonLines(t, "stdout", out.String())
}

// TestHostBurstZeroRefused: --hello-burst and --refusal-burst below 1 stop
// sq host at start with a message saying how to turn the limit off (the
// rate flag's 0); before, 0 silently meant the default burst (1000, 200).
func TestHostBurstZeroRefused(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	for _, tc := range []struct{ flag, value, rate string }{
		{flag: "--refusal-burst", value: "0", rate: "--refusal-rate 0"},
		{flag: "--hello-burst", value: "0", rate: "--hello-rate 0"},
		{flag: "--refusal-burst", value: "-3", rate: "--refusal-rate 0"},
	} {
		t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
			// No config file: the old code got past the flags and failed
			// on it (exit 1) instead of starting with the default burst.
			cfgPath := filepath.Join(t.TempDir(), "missing.json")
			var out, errb strings.Builder
			code := runHost([]string{"--config", cfgPath, "--listen", "127.0.0.1:0", "--http=", tc.flag, tc.value}, &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tc.flag) || !strings.Contains(errb.String(), tc.rate) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %s and %s", code, errb.String(), tc.flag, tc.rate)
			}
			if all := out.String() + errb.String(); strings.Contains(all, "listening") {
				t.Fatalf("started:\n%s", all)
			}
		})
	}
}

// TestHostRateNaNRefused: a rate flag given as NaN (which the flag package
// parses) stops sq host at start; before, it started with a budget that
// never refills (its interval read as the longest, budgetInterval), so
// each tenant got its burst once and every refusal past it was held for
// good.
func TestHostRateNaNRefused(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	for _, flag := range []string{"--hello-rate", "--bad-frame-rate", "--refusal-rate"} {
		t.Run(flag, func(t *testing.T) {
			// No config file: the old code got past the flags and failed
			// on it (exit 1).
			cfgPath := filepath.Join(t.TempDir(), "missing.json")
			var out, errb strings.Builder
			code := runHost([]string{"--config", cfgPath, "--listen", "127.0.0.1:0", "--http=", flag, "NaN"}, &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), flag) || !strings.Contains(errb.String(), "must be a number") {
				t.Fatalf("exit %d, stderr %q; want 2 naming %s", code, errb.String(), flag)
			}
		})
	}
}
