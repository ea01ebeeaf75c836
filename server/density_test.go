package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// densityConfig returns a config of n tenants under root, with tokens that
// need no randomness (GenerateToken reads crypto/rand).
func densityConfig(root string, n int) *config.Config {
	cfg := &config.Config{Tenants: make(map[string]config.TenantEntry, n)}
	for i := range n {
		name := fmt.Sprintf("tenant-%05d", i)
		cfg.Tenants[fmt.Sprintf("pmb-v1-%05d-density-test-token", i)] = config.TenantEntry{Name: name, DataDir: filepath.Join(root, name)}
	}
	return cfg
}

// tmpfsDir is a temporary directory on tmpfs when the host has one: 10,000
// mkdirs and rmdirs on a busy journaled disk take seconds.
func tmpfsDir(tb testing.TB) string {
	tb.Helper()
	d, err := os.MkdirTemp("/dev/shm", "sq-server-test-")
	if err != nil {
		return tb.TempDir()
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestIdleTenantMemory: a configured tenant that has served nothing costs at
// most 2 KiB of heap (server tenant, store tenant, token and name maps,
// counters), measured at 10,000 tenants. Before the store deferred its
// per-tenant work and the counters were allocated per operation at first
// use it was 6.9 KiB.
func TestIdleTenantMemory(t *testing.T) {
	const n = 10000
	root := tmpfsDir(t)
	cfg := densityConfig(root, n)
	db, err := store.Open(&store.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	before := heapAlloc()
	srv, err := New(db, cfg, &Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	after := heapAlloc()
	per := (float64(after) - float64(before)) / n
	t.Logf("%d idle tenants: %.0f B of heap each", n, per)
	if per > 2048 {
		t.Errorf("%.0f B of heap per idle tenant, want ≤ 2048", per)
	}
	runtime.KeepAlive(srv)
	runtime.KeepAlive(cfg)
}

// TestStartSummaryAndReloadCost: starting 10,000 tenants logs one info line
// with the count of data dirs created (per-tenant lines are debug), and a
// reload that changes one tenant calls the store once.
func TestStartSummaryAndReloadCost(t *testing.T) {
	const n = 10000
	root := tmpfsDir(t)
	cfg := densityConfig(root, n)
	// 50 tenants' dirs exist already.
	for _, e := range cfg.Tenants {
		if strings.HasSuffix(e.Name, "00") && len(e.Name) == len("tenant-00000") {
			if err := os.Mkdir(e.DataDir, 0o750); err != nil {
				t.Fatal(err)
			}
		}
	}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	db, err := store.Open(&store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv, err := New(db, cfg, &Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"10000 tenants, 9900 data dirs created"`) {
		t.Fatalf("start logged %d lines, want one summary; first: %q", len(lines), lines[0])
	}

	next := &config.Config{Tenants: make(map[string]config.TenantEntry, n)}
	for tok, e := range cfg.Tenants {
		next.Tenants[tok] = e
	}
	var changed string
	for tok, e := range next.Tenants {
		e.QuotaMB = 5
		next.Tenants[tok] = e
		changed = e.Name
		break
	}
	old := srv.table.Load()
	t0 := time.Now()
	if _, err := srv.Reload(next); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	if !regexp.MustCompile(`msg="tenant config reloaded" .*took=[0-9.]+[mµn]?s`).Match(logBuf.Bytes()) {
		t.Errorf("the reload's log line does not say how long it took: %s", logBuf.String())
	}
	tab := srv.table.Load()
	t.Logf("reload changing 1 of %d tenants: %v, %d store calls", n, took, tab.storeCalls)
	if tab.storeCalls != 1 {
		t.Errorf("a reload changing one tenant made %d store calls, want 1", tab.storeCalls)
	}
	for name, tn := range old.byName {
		if tab.byName[name] != tn {
			t.Fatalf("tenant %s replaced by a reload that changed only its quota or nothing", name)
		}
	}
	if got := tab.byName[changed].store; got == nil {
		t.Fatal("changed tenant lost its store handle")
	}
}

// BenchmarkReloadOneOf10K: a reload of a 10,000-tenant config in which one
// tenant's quota changed (the config is already parsed).
func BenchmarkReloadOneOf10K(b *testing.B) {
	const n = 10000
	root := tmpfsDir(b)
	cfg := densityConfig(root, n)
	db, err := store.Open(&store.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	srv, err := New(db, cfg, &Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	var tok string
	for tok = range cfg.Tenants {
		break
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := cfg.Tenants[tok]
		e.QuotaMB = float64(i%2 + 1)
		cfg.Tenants[tok] = e
		if _, err := srv.Reload(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStart10K: New with 10,000 tenants whose data dirs exist.
func BenchmarkStart10K(b *testing.B) {
	const n = 10000
	root := tmpfsDir(b)
	cfg := densityConfig(root, n)
	for _, e := range cfg.Tenants {
		if err := os.Mkdir(e.DataDir, 0o750); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		db, err := store.Open(&store.Options{Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := New(db, cfg, &Options{Logger: quietLogger()}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
}

// BenchmarkStartPerTenant: the whole start of a 10,000-tenant host as `sq
// host --config` does it (read and decode the file, validate, open the
// store, stat each data dir, build the token table), reported per tenant.
// The data dirs exist (on tmpfs, so the figure is CPU, not disk).
func BenchmarkStartPerTenant(b *testing.B) {
	const n = 10000
	root := tmpfsDir(b)
	cfg := densityConfig(root, n)
	for _, e := range cfg.Tenants {
		if err := os.Mkdir(e.DataDir, 0o750); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(root, "tenants.json")
	if err := config.WriteFile(path, cfg); err != nil {
		b.Fatal(err)
	}
	var ms0, ms1 runtime.MemStats
	var mallocs, bytes uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		runtime.ReadMemStats(&ms0)
		b.StartTimer()
		c, err := config.LoadServing(path, false)
		if err != nil {
			b.Fatal(err)
		}
		db, err := store.Open(&store.Options{Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := New(db, c, &Options{Logger: quietLogger()}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.ReadMemStats(&ms1)
		mallocs += ms1.Mallocs - ms0.Mallocs
		bytes += ms1.TotalAlloc - ms0.TotalAlloc
		db.Close()
	}
	per := float64(b.N * n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/tenant")
	b.ReportMetric(float64(mallocs)/per, "allocs/tenant")
	b.ReportMetric(float64(bytes)/per, "B/tenant")
}

// BenchmarkMetricsScrape10K: one /metrics scrape of a server with 10,000
// tenants that each served one write and one read (the setup),
// reporting the exposition's size.
func BenchmarkMetricsScrape10K(b *testing.B) {
	const n = 10000
	root := tmpfsDir(b)
	cfg := densityConfig(root, n)
	db, err := store.Open(&store.Options{Durability: store.DurabilityNo, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	srv, err := New(db, cfg, &Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	// One write and one read per tenant, counted as the REST API counts
	// them (the HTTP API's own benchmarks live in server/httpapi).
	for _, tn := range srv.Tenants() {
		n, err := tn.Store().Insert(nil, phext.Origin, []byte("hello"))
		if err != nil {
			b.Fatal(err)
		}
		tn.Record(protocol.OpInsert, protocol.StatusOK, 5, n, time.Microsecond)
		out, err := tn.Store().AppendSelect(nil, nil, phext.Origin)
		if err != nil {
			b.Fatal(err)
		}
		tn.Record(protocol.OpSelect, protocol.StatusOK, 0, len(out), time.Microsecond)
	}
	buf := srv.AppendMetrics(nil, HTTPMetrics{})
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf = srv.AppendMetrics(buf[:0], HTTPMetrics{})
	}
	// After the loop: ResetTimer drops metrics reported before it.
	b.ReportMetric(float64(len(buf))/1e6, "MB/scrape")
	b.ReportMetric(float64(bytes.Count(buf, []byte{'\n'})), "lines/scrape")
}
