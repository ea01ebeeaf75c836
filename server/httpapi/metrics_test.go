package httpapi

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/phext/sq/config"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// scrape fetches /metrics and returns series name → value, checking that
// every line is a valid sample.
func scrape(t *testing.T, e *restEnv) map[string]float64 {
	t.Helper()
	a := e.call("GET", "/metrics", "", "Authorization", "Bearer "+testMetricsToken)
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
	e := startREST(t, envOptions{}, Options{})
	const c = "1.1.1/1.1.1/1.1.1"
	for i := 0; i < 3; i++ {
		e.want(e.as("alpha", "POST", "/api/v2/insert?p=m&c="+c, "12345"), 200, "Inserted 5 bytes")
	}
	e.as("alpha", "POST", "/api/v2/insert?p=m&c="+c, "bad\x17")
	bin := e.dial("alpha")
	bin.ok(protocol.OpSelect, "m", mustCoord(t, c), nil)

	m := scrape(t, e)
	want := map[string]float64{
		`sq_requests_total{tenant="alpha",op="INSERT"}`:                           4,
		`sq_request_errors_total{tenant="alpha",op="INSERT",status="BAD_SCROLL"}`: 1,
		`sq_requests_total{tenant="alpha",op="SELECT"}`:                           1,
		`sq_request_duration_seconds_count{op="INSERT"}`:                          4,
		`sq_request_duration_seconds_bucket{op="INSERT",le="+Inf"}`:               4,
		`sq_http_requests_total{route="insert",code="200"}`:                       3,
		`sq_http_requests_total{route="insert",code="400"}`:                       1,
		`sq_tenant_bytes{tenant="alpha"}`:                                         15 + store.ScrollCost,
		`sq_tenant_connections{tenant="alpha"}`:                                   1,
		`sq_tenant_quota_bytes{tenant="beta"}`:                                    0,
		`sq_connections`:                                                          1,
		`sq_tenants`:                                                              2,
		`sq_build_info{version="` + server.Version + `"}`:                         1,
		`sq_connections_closed_total{reason="slow_consumer"}`:                     0,
		`sq_reloads_total{result="ok"}`:                                           0,
		`sq_request_duration_seconds_bucket{op="SELECT",le="4.194304"}`:           1,
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
	for k := range m {
		if strings.Contains(k, "_bucket{tenant=") || strings.HasPrefix(k, "sq_tenant_wal_bytes") {
			t.Errorf("per-tenant detail without TenantDetailMetrics: %s", k)
		}
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
	const bucket = `sq_request_duration_seconds_bucket{op="INSERT",le="`
	var les []float64
	for k := range m {
		if le, ok := strings.CutPrefix(k, bucket); ok {
			f, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64)
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			les = append(les, f)
		}
	}
	if len(les) < 2 {
		t.Fatalf("%d INSERT buckets", len(les))
	}
	slices.Sort(les)
	prev := -1.0
	for i, le := range les {
		v := m[bucket+strconv.FormatFloat(le, 'g', -1, 64)+`"}`]
		if v < prev {
			t.Fatalf("bucket %d: %v < %v", i, v, prev)
		}
		prev = v
	}
	e.srv.ReloadFromSource() // the reload route needs the admin token
	if m := scrape(t, e); m[`sq_reloads_total{result="ok"}`] != 1 {
		t.Fatalf("reloads %v", m[`sq_reloads_total{result="ok"}`])
	}
}

// TestMetricsTenantDetail: TenantDetailMetrics adds per-tenant latency
// histograms and file sizes.
func TestMetricsTenantDetail(t *testing.T) {
	e := startHTTPOnly(t, envOptions{opts: server.Options{TenantDetailMetrics: true}}, Options{})
	const c = "1.1.1/1.1.1/1.1.1"
	for i := 0; i < 3; i++ {
		e.want(e.as("alpha", "POST", "/api/v2/insert?p=m&c="+c, "12345"), 200, "Inserted 5 bytes")
	}
	a := e.call("GET", "/metrics", "", "Authorization", "Bearer "+testMetricsToken)
	checkFamilies(t, a.body)
	m := parseExposition(t, a.body)
	if v := m[`sq_tenant_request_duration_seconds_count{tenant="alpha",op="INSERT"}`]; v != 3 {
		t.Errorf("per-tenant INSERT histogram count %v, want 3", v)
	}
	if v := m[`sq_request_duration_seconds_count{op="INSERT"}`]; v != 3 {
		t.Errorf("server-wide INSERT histogram count %v, want 3", v)
	}
	if m[`sq_tenant_wal_bytes{tenant="alpha"}`]+m[`sq_tenant_snapshot_bytes{tenant="alpha"}`] < 15 {
		t.Errorf("alpha's files hold less than its 15 bytes: wal %v snapshot %v",
			m[`sq_tenant_wal_bytes{tenant="alpha"}`], m[`sq_tenant_snapshot_bytes{tenant="alpha"}`])
	}
}

// checkFamilies checks the exposition's metadata: every sample belongs to
// the family most recently declared, each family is declared once with a
// non-empty # HELP followed by # TYPE, histograms have _bucket/_sum/_count
// with cumulative buckets ending in +Inf = _count, and no histogram has a
// tenant label unless it is sq_tenant_request_duration_seconds.
func checkFamilies(t *testing.T, body string) {
	t.Helper()
	types := map[string]string{}
	var cur, help string
	buckets := map[string]float64{} // series without le → last bucket value
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			f := strings.SplitN(line[len("# HELP "):], " ", 2)
			if len(f) < 2 || strings.TrimSpace(f[1]) == "" {
				t.Fatalf("line %d: no help text: %q", n, line)
			}
			if _, dup := types[f[0]]; dup || f[0] == help {
				t.Fatalf("line %d: family %s declared twice", n, f[0])
			}
			help = f[0]
			continue
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line[len("# TYPE "):])
			if len(f) != 2 || f[0] != help {
				t.Fatalf("line %d: TYPE %q not right after its HELP (%s)", n, line, help)
			}
			switch f[1] {
			case "counter", "gauge", "histogram":
			default:
				t.Fatalf("line %d: type %s", n, f[1])
			}
			types[f[0]], cur = f[1], f[0]
			continue
		case line == "" || line[0] == '#':
			t.Fatalf("line %d: unexpected %q", n, line)
		}
		series := line[:strings.LastIndexByte(line, ' ')]
		name := series
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		fam := name
		if types[cur] == "histogram" {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if strings.TrimSuffix(name, suf) == cur {
					fam = cur
				}
			}
		}
		if fam != cur {
			t.Fatalf("line %d: sample %s outside its family (current %s)", n, name, cur)
		}
		if types[cur] == "counter" && !strings.HasSuffix(name, "_total") {
			t.Errorf("line %d: counter %s does not end in _total", n, name)
		}
		if types[cur] != "histogram" {
			continue
		}
		if strings.Contains(series, `tenant="`) && cur != "sq_tenant_request_duration_seconds" {
			t.Errorf("line %d: per-tenant histogram %s", n, series)
		}
		v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		// key names one histogram series: its _bucket name without le.
		key := strings.NewReplacer(`,le="`, `le="`, "_count", "_bucket").Replace(series)
		if i := strings.Index(key, `le="`); i >= 0 {
			key = key[:i] + key[i+4+strings.IndexByte(key[i+4:], '"')+1:]
		}
		switch {
		case strings.HasSuffix(name, "_bucket"):
			if v < buckets[key] {
				t.Errorf("line %d: bucket below the previous one", n)
			}
			buckets[key] = v
		case strings.HasSuffix(name, "_count"):
			if !strings.Contains(series, `le="+Inf"`) && buckets[key] != v {
				t.Errorf("line %d: _count %v != +Inf bucket %v (%s)", n, v, buckets[key], key)
			}
		}
	}
	for _, want := range []string{"sq_request_duration_seconds", "sq_requests_total", "sq_tenant_bytes", "process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := types[want]; !ok {
			t.Errorf("family %s missing", want)
		}
	}
	if types["sq_request_duration_seconds"] != "histogram" {
		t.Errorf("sq_request_duration_seconds is %q, want histogram", types["sq_request_duration_seconds"])
	}
}

// TestMetricsFamilies: every family has help text and a type; request
// durations are one typed histogram per operation, not per tenant.
func TestMetricsFamilies(t *testing.T) {
	e := startREST(t, envOptions{}, Options{})
	e.want(e.as("alpha", "POST", "/api/v2/insert?p=m&c=1.1.1/1.1.1/1.1.1", "12345"), 200, "Inserted 5 bytes")
	e.as("beta", "GET", "/api/v2/select?p=m&c=1.1.1/1.1.1/1.1.1", "")
	e.as("beta", "POST", "/api/v2/insert?p=m&c=1.1.1/1.1.1/1.1.1", "bad\x17")
	a := e.call("GET", "/metrics", "", "Authorization", "Bearer "+testMetricsToken)
	checkFamilies(t, a.body)
	// promtool is the linter Prometheus users run; it is optional here
	// (apt-get install prometheus), required with SQ_REQUIRE_PROMTOOL=1.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("SQ_REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool not found")
		}
		t.Log("promtool not installed: skipping `promtool check metrics`")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(a.body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestMetricsLabelEscaping(t *testing.T) {
	e := startHTTPOnly(t, envOptions{tenants: []string{`we"ird\name`, "multi\nline"}}, Options{})
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
	e := startHTTPOnly(t, envOptions{}, Options{})
	e.rewriteConfig(func(c *config.Config) { c.AdminToken = "metrics-admin-token" })
	tests := []struct {
		name   string
		public bool
		hdr    []string
		code   int
	}{
		{name: "remote without token", code: 401},
		{name: "remote with tenant token", hdr: []string{"Authorization", "Bearer " + e.tokenOf("alpha")}, code: 401},
		{name: "remote with admin token", hdr: []string{"Authorization", "Bearer metrics-admin-token"}, code: 200},
		{name: "remote with metrics token", hdr: []string{"Authorization", "Bearer " + testMetricsToken}, code: 200},
		{name: "public", public: true, code: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := Handler(e.srv, Options{PublicMetrics: tc.public})
			if got := remote(h, tc.hdr...); got != tc.code {
				t.Fatalf("code %d, want %d", got, tc.code)
			}
		})
	}
	t.Run("loopback needs a token", func(t *testing.T) {
		if a := e.call("GET", "/metrics", ""); a.code != 401 {
			t.Fatalf("loopback without a token: %d", a.code)
		}
		scrape(t, e)
	})
	t.Run("POST refused", func(t *testing.T) {
		if a := e.call("POST", "/metrics", "x"); a.code != 405 {
			t.Fatalf("code %d", a.code)
		}
	})
}

func BenchmarkMetricsScrape(b *testing.B) {
	e := benchEnv(b, 50)
	h := Handler(e.srv, Options{}).(*httpAPI)
	buf := protocol.GetBuffer()
	defer protocol.PutBuffer(buf)
	h.writeMetrics(buf)
	b.SetBytes(int64(len(buf.B)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf.Reset()
		h.writeMetrics(buf)
	}
}
