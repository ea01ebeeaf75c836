package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/client"
)

// buildSQ builds this command once for the bench smoke tests, which start
// it as the server child.
func buildSQ(t *testing.T) string {
	t.Helper()
	// go test puts its own toolchain first on PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain to build the server binary")
	}
	out := filepath.Join(t.TempDir(), "sq")
	cmd := exec.Command(gobin, "build", "-o", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func runBenchJSON(t *testing.T, args ...string) (benchReport, int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runBench(append(args, "--json", "--progress", "off"), &stdout, &stderr)
	var rep benchReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("exit %d, output is not a JSON report: %v\nstdout: %s\nstderr: %s", code, err, stdout.String(), stderr.String())
	}
	return rep, code, stderr.String()
}

// The smoke run of `sq bench`: a few tenants for a few seconds against a
// real `sq host` child, per scenario family, verified end to end.
func TestBenchSmoke(t *testing.T) {
	benchExe = buildSQ(t)
	defer func() { benchExe = "" }()
	start := time.Now()
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, rep benchReport)
	}{
		{name: "mixed-pipelined", args: []string{"--tenants", "4", "--duration", "1500ms", "--warmup", "300ms", "--pipeline", "4", "--phexts", "2"},
			check: func(t *testing.T, rep benchReport) {
				r := rep.Result
				if r == nil || r.Ops == 0 || r.Tenants != 4 || r.Conns != 4 || !r.Verified || r.Failed() {
					t.Fatalf("result: %+v", r)
				}
				if s := r.Server; s == nil || s.RSS <= 0 || s.CPUSeconds < 0 || s.PID <= 0 {
					t.Fatalf("server stats: %+v", r.Server)
				}
				if rep.Machine.NumCPU < 1 {
					t.Fatalf("machine: %+v", rep.Machine)
				}
			}},
		{name: "watch", args: []string{"--scenario", "watch", "--tenants", "3", "--duration", "600ms", "--watch-rounds", "1"},
			check: func(t *testing.T, rep benchReport) {
				r := rep.Watch
				if r == nil || len(r.Phases) != 2 || r.Tenants != 3 {
					t.Fatalf("watch: %+v", r)
				}
				with, without := r.Phases[0], r.Phases[1]
				// Every watcher (2 per tenant) saw every write of its tenant.
				if !with.VerifiedOK || with.Writes == 0 || with.Events != 2*with.Writes || with.Latency.P99 <= 0 ||
					!without.VerifiedOK || without.Watchers != 0 || without.Events != 0 || without.Writes == 0 || r.WriterRatio <= 0 {
					t.Fatalf("phases: %+v", r.Phases)
				}
				// Linux: the events and the answers were also timed at their
				// arrival in the bench's sockets (SO_TIMESTAMPNS).
				if runtime.GOOS == "linux" && (with.Arrival.P99 <= 0 || with.WriteArrival.P99 <= 0 || r.ArrivalP99us <= 0) {
					t.Fatalf("arrival times missing: events %+v, answers %+v, median p99 %v", with.Arrival, with.WriteArrival, r.ArrivalP99us)
				}
			}},
		{name: "reload", args: []string{"--scenario", "reload", "--tenants", "3", "--duration", "2s", "--warmup", "0s", "--reload-every", "400ms"},
			check: func(t *testing.T, rep benchReport) {
				if rep.Reloads == 0 || len(rep.ReloadErrors) > 0 || rep.Result == nil || rep.Result.Failed() {
					t.Fatalf("reloads %d, errors %v, result %+v", rep.Reloads, rep.ReloadErrors, rep.Result)
				}
			}},
		{name: "big-phext", args: []string{"--scenario", "big-phext", "--growth", "1KB,300KB", "--duration", "400ms", "--warmup", "0s"},
			check: func(t *testing.T, rep benchReport) {
				if len(rep.Growth) != 2 || rep.Growth[1].Bytes < 300_000 || rep.Growth[1].Writes.P50 <= 0 {
					t.Fatalf("growth: %+v", rep.Growth)
				}
			}},
		{name: "idle", args: []string{"--scenario", "idle", "--tenants", "3", "--idle-conns", "40", "--idle-ping", "100ms", "--duration", "500ms", "--warmup", "0s"},
			check: func(t *testing.T, rep benchReport) {
				i := rep.Idle
				if i == nil || i.With == nil || i.Without == nil || i.RSSAfter <= 0 || i.PingErrors != 0 {
					t.Fatalf("idle: %+v", i)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, code, stderr := runBenchJSON(t, tc.args...)
			if code != 0 || rep.Failed {
				t.Fatalf("exit %d, failed %v, error %q\nstderr: %s", code, rep.Failed, rep.Error, stderr)
			}
			tc.check(t, rep)
		})
	}
	t.Logf("smoke runs took %v", time.Since(start))
}

func TestBenchUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{name: "unknown-scenario", args: []string{"--scenario", "nope"}},
		{name: "bad-mix", args: []string{"--mix", "select=x"}},
		{name: "bad-size", args: []string{"--size", "huge"}},
		{name: "resp-without-addr", args: []string{"--protocol", "resp"}},
		{name: "config-without-addr", args: []string{"--config", "x.json"}},
		{name: "zero-pipeline", args: []string{"--pipeline", "0"}},
		{name: "extra-arg", args: []string{"extra"}},
		{name: "bad-progress", args: []string{"--progress", "fancy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runBench(tc.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, stderr.String())
			}
			if stderr.Len() == 0 {
				t.Fatal("no message on stderr")
			}
		})
	}
}

func TestBenchCompare(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, ops, p99 float64) string {
		rep := map[string]any{"scenario": "mixed", "result": map[string]any{
			"ops_per_sec": ops, "conns": 500, "pipeline": 1, "size": "1KiB", "mix": "select=80",
			"verified": true, "latency": map[string]any{"p99_us": p99}}}
		b, _ := json.Marshal(rep)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sq, redis, echo := write("sq.json", 60000, 900), write("redis.json", 50000, 1000), write("echo.json", 75000, 500)
	var stdout, stderr bytes.Buffer
	if code := runBench([]string{"compare", "--sq", sq, "--redis", redis, "--echo", echo}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"SQ ÷ Redis ops/s = 1.20", "SQ p99 ÷ Redis p99 = 0.90", "SQ ÷ echo ops/s  = 0.80"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	stdout.Reset()
	if code := runBench([]string{"compare", "--sq", filepath.Join(dir, "missing.json")}, &stdout, &stderr); code != 1 {
		t.Fatalf("missing file: exit %d", code)
	}
}

// TestBenchAgainstLiveServerLeavesDataAlone: `sq bench --addr … --token T`
// writes only to its own phext (sq-bench, named in the report), so the
// tenant's scrolls are untouched; pointed at a phext that holds scrolls it
// refuses (exit 2, nothing written) unless --overwrite says so.
func TestBenchAgainstLiveServerLeavesDataAlone(t *testing.T) {
	ts := startTestServer(t, "alice")
	tok := ts.tokens["alice"]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, ts.addr, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The user's data at the coordinates the bench uses (scroll k of the
	// load is 1.1.1/1.1.1/1.1.k).
	for k := 1; k <= 3; k++ {
		if _, err := c.Update(ctx, "", mustCoord(t, "1.1.1/1.1.1/1.1."+strconv.Itoa(k)), []byte("user data "+strconv.Itoa(k))); err != nil {
			t.Fatal(err)
		}
	}
	before, err := c.Checksum(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"--addr", ts.addr, "--token", tok, "--tenants", "2", "--duration", "500ms", "--warmup", "0", "--scrolls", "3"}

	rep, code, stderr := runBenchJSON(t, base...)
	if code != 0 || rep.Result == nil {
		t.Fatalf("bench against a live server: exit %d: %s", code, stderr)
	}
	if rep.Result.Phext != benchPhext || rep.Result.Ops == 0 {
		t.Fatalf("report: phext %q, %d ops; want %q and some ops", rep.Result.Phext, rep.Result.Ops, benchPhext)
	}
	if after, err := c.Checksum(ctx, ""); err != nil || after != before {
		t.Fatalf("the tenant's default phext changed under the bench: %s -> %s (%v)", before, after, err)
	}
	toc, err := c.TOC(ctx, benchPhext)
	if err != nil || len(toc) == 0 {
		t.Fatalf("the bench wrote nothing to %s: %q %v", benchPhext, toc, err)
	}

	// Aimed at the default phext, which holds scrolls: refused.
	var out, errb bytes.Buffer
	if code := runBench(append(base, "--phext", "", "--progress", "off"), &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "--overwrite") {
		t.Fatalf("bench on the default phext with data: exit %d, stderr %q", code, errb.String())
	}
	// Its own phext now holds the last run's scrolls: a second run needs
	// --overwrite too, and runs with it.
	out.Reset()
	errb.Reset()
	if code := runBench(append(base, "--progress", "off"), &out, &errb); code != 2 {
		t.Fatalf("second bench onto a non-empty %s: exit %d, want 2: %s", benchPhext, code, errb.String())
	}
	if _, code, stderr := runBenchJSON(t, append(base, "--overwrite")...); code != 0 {
		t.Fatalf("bench --overwrite: exit %d: %s", code, stderr)
	}
	if after, err := c.Checksum(ctx, ""); err != nil || after != before {
		t.Fatalf("the tenant's default phext changed: %s -> %s (%v)", before, after, err)
	}
}
