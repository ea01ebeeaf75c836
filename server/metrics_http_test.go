package server

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/phext/sq/protocol"
)

// scrape fetches /metrics and returns series name → value, checking that
// every line is a valid sample.
func scrape(t *testing.T, e *restEnv) map[string]float64 {
	t.Helper()
	a := e.call("GET", "/metrics", "")
	if a.code != 200 {
		t.Fatalf("metrics: %d %q", a.code, a.body)
	}
	if ct := a.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("content type %q", ct)
	}
	return parseExposition(t, a.body)
}

// seriesRE is a metric name with optional labels in the text format: label
// values escape only backslash, double quote and newline.
var seriesRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(\\[\\"n]|[^"\\\n])*"(, ?[a-zA-Z_][a-zA-Z0-9_]*="(\\[\\"n]|[^"\\\n])*")*\})?$`)

func parseExposition(t *testing.T, body string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			t.Fatalf("bad line %q", line)
		}
		name, val := line[:sp], line[sp+1:]
		if !seriesRE.MatchString(name) {
			t.Fatalf("line %q: not a valid series name", line)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if _, dup := out[name]; dup {
			t.Fatalf("series %s twice", name)
		}
		out[name] = v
	}
	return out
}

func TestMetricsExposition(t *testing.T) {
	e := startREST(t, envOptions{}, HTTPOptions{})
	const c = "1.1.1/1.1.1/1.1.1"
	for i := 0; i < 3; i++ {
		e.want(e.as("alpha", "POST", "/api/v2/insert?p=m&c="+c, "12345"), 200, "Inserted 5 bytes")
	}
	e.as("alpha", "POST", "/api/v2/insert?p=m&c="+c, "bad\x17")
	bin := e.dial("alpha")
	bin.ok(protocol.OpSelect, "m", mustCoord(t, c), nil)

	m := scrape(t, e)
	want := map[string]float64{
		`sq_requests_total{tenant="alpha",op="INSERT"}`:                                4,
		`sq_request_errors_total{tenant="alpha",op="INSERT",status="BAD_SCROLL"}`:      1,
		`sq_requests_total{tenant="alpha",op="SELECT"}`:                                1,
		`sq_request_duration_seconds_count{tenant="alpha",op="INSERT"}`:                4,
		`sq_request_duration_seconds_bucket{tenant="alpha",op="INSERT",le="+Inf"}`:     4,
		`sq_http_requests_total{route="insert",code="200"}`:                            3,
		`sq_http_requests_total{route="insert",code="400"}`:                            1,
		`sq_tenant_bytes{tenant="alpha"}`:                                              15,
		`sq_tenant_connections{tenant="alpha"}`:                                        1,
		`sq_tenant_quota_bytes{tenant="beta"}`:                                         0,
		`sq_connections`:                                                               1,
		`sq_tenants`:                                                                   2,
		`sq_build_info{version="` + Version + `"}`:                                     1,
		`sq_connections_closed_total{reason="slow_consumer"}`:                          0,
		`sq_reloads_total{result="ok"}`:                                                0,
		`sq_request_duration_seconds_bucket{tenant="alpha",op="SELECT",le="4.194304"}`: 1,
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("missing %s", k)
			continue
		}
		if got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if m[`sq_tenant_wal_bytes{tenant="alpha"}`]+m[`sq_tenant_snapshot_bytes{tenant="alpha"}`] < 15 {
		t.Errorf("alpha's files hold less than its 15 bytes: wal %v snapshot %v",
			m[`sq_tenant_wal_bytes{tenant="alpha"}`], m[`sq_tenant_snapshot_bytes{tenant="alpha"}`])
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	// Env durability is always: the inserts were fsynced.
	if m["sq_fsyncs_total"] < 3 || m["sq_open_phexts"] < 1 {
		t.Errorf("store stats: fsyncs %v, open phexts %v", m["sq_fsyncs_total"], m["sq_open_phexts"])
	}
	if _, ok := m[`sq_compactions_total{result="ok"}`]; !ok {
		t.Error("no compaction counter")
	}
	// Buckets are cumulative.
	prev := -1.0
	for i := 0; i < latencyBucket; i++ {
		v := m[`sq_request_duration_seconds_bucket{tenant="alpha",op="INSERT",le="`+latencyBounds[i]+`"}`]
		if v < prev {
			t.Fatalf("bucket %d: %v < %v", i, v, prev)
		}
		prev = v
	}
	e.call("POST", "/api/v2/reload", "")
	if m := scrape(t, e); m[`sq_reloads_total{result="ok"}`] != 1 {
		t.Fatalf("reloads %v", m[`sq_reloads_total{result="ok"}`])
	}
}

func TestMetricsLabelEscaping(t *testing.T) {
	e := startHTTPOnly(t, envOptions{tenants: []string{`we"ird\name`, "multi\nline"}}, HTTPOptions{})
	e.as(`we"ird\name`, "GET", "/api/v2/version", "")
	m := scrape(t, e) // validates every line
	if m[`sq_requests_total{tenant="we\"ird\\name",op="VERSION"}`] != 1 {
		t.Fatalf("escaped series missing: %v", m)
	}
	if _, ok := m[`sq_tenant_connections{tenant="multi\nline"}`]; !ok {
		t.Fatal("newline tenant missing")
	}
}

func TestMetricsAccess(t *testing.T) {
	remote := func(h http.Handler, hdr ...string) int {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = "198.51.100.4:999"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	e := startHTTPOnly(t, envOptions{}, HTTPOptions{})
	e.rewriteConfig(func(c *Config) { c.AdminToken = "metrics-admin-token" })
	tests := []struct {
		name   string
		public bool
		hdr    []string
		code   int
	}{
		{name: "remote without token", code: 401},
		{name: "remote with tenant token", hdr: []string{"Authorization", "Bearer " + e.tokenOf("alpha")}, code: 401},
		{name: "remote with admin token", hdr: []string{"Authorization", "Bearer metrics-admin-token"}, code: 200},
		{name: "public", public: true, code: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := e.srv.HTTPHandlerWith(HTTPOptions{PublicMetrics: tc.public})
			if got := remote(h, tc.hdr...); got != tc.code {
				t.Fatalf("code %d, want %d", got, tc.code)
			}
		})
	}
	t.Run("loopback", func(t *testing.T) { scrape(t, e) })
	t.Run("POST refused", func(t *testing.T) {
		if a := e.call("POST", "/metrics", "x"); a.code != 405 {
			t.Fatalf("code %d", a.code)
		}
	})
}

func TestDirSizes(t *testing.T) {
	dir := t.TempDir()
	for name, n := range map[string]int{"a.phext": 10, "a.phext.wal": 7, ".phext": 3, ".phext.wal": 2, "x.json": 100, "b.phext.tmp": 50} {
		if err := writeFile(filepath.Join(dir, name), strings.Repeat("x", n)); err != nil {
			t.Fatal(err)
		}
	}
	snap, wal, ok := dirSizes(dir)
	if !ok || snap != 13 || wal != 9 {
		t.Fatalf("snap %d wal %d ok %v", snap, wal, ok)
	}
	if _, _, ok := dirSizes(filepath.Join(dir, "missing")); ok {
		t.Fatal("missing dir reported")
	}
}

func BenchmarkMetricsScrape(b *testing.B) {
	e := benchEnv(b, 50)
	h := e.srv.HTTPHandler().(*httpAPI)
	buf := getBuf()
	defer putBuf(buf)
	h.writeMetrics(buf)
	b.SetBytes(int64(len(buf.B)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf.Reset()
		h.writeMetrics(buf)
	}
}
