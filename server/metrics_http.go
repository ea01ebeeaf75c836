package server

import (
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/phext/sq/protocol"
)

// GET /metrics exposes the server in the Prometheus text format, written
// with github.com/VictoriaMetrics/metrics (see docs/COMPATIBILITY.md for the
// reason and the list of series). The request hot paths only bump the
// atomics they always bump (tenantStats, serverStats, httpAPI.codes); every
// value here is read at scrape time.

// serveMetrics answers GET /metrics: from loopback, with the admin token,
// or from anywhere when PublicMetrics is set.
func (h *httpAPI) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.count(routeMetrics, http.StatusMethodNotAllowed)
		replyText(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	if !h.o.PublicMetrics && !isLoopback(r) && !h.isAdmin(r) {
		h.count(routeMetrics, http.StatusUnauthorized)
		replyText(w, http.StatusUnauthorized, msgUnauthorized)
		return
	}
	buf := getBuf()
	defer putBuf(buf)
	h.writeMetrics(buf)
	h.count(routeMetrics, http.StatusOK)
	hd := w.Header()
	hd["Content-Type"] = []string{"text/plain; version=0.0.4; charset=utf-8"}
	hd["Content-Length"] = []string{strconv.Itoa(len(buf.B))}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(buf.B)
	}
}

// labels builds a metric name with labels, escaping values as the text
// format wants (backslash, double quote, newline).
type labels struct{ b strings.Builder }

func metricName(name string, kv ...string) string {
	if len(kv) == 0 {
		return name
	}
	var l labels
	l.b.Grow(len(name) + 16*len(kv))
	l.b.WriteString(name)
	l.b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			l.b.WriteByte(',')
		}
		l.b.WriteString(kv[i])
		l.b.WriteString(`="`)
		for j := 0; j < len(kv[i+1]); j++ {
			switch c := kv[i+1][j]; c {
			case '\\':
				l.b.WriteString(`\\`)
			case '"':
				l.b.WriteString(`\"`)
			case '\n':
				l.b.WriteString(`\n`)
			default:
				l.b.WriteByte(c)
			}
		}
		l.b.WriteByte('"')
	}
	l.b.WriteByte('}')
	return l.b.String()
}

// latencyBounds are the upper bounds in seconds of the log2 latency
// buckets of OpStats: bucket i counts requests under 2^i µs; the last one
// is +Inf.
var latencyBounds = func() (b [latencyBucket]string) {
	for i := 0; i < latencyBucket-1; i++ {
		b[i] = strconv.FormatFloat(math.Ldexp(1, i)/1e6, 'g', -1, 64)
	}
	b[latencyBucket-1] = "+Inf"
	return b
}()

// writeMetrics writes every series to w.
func (h *httpAPI) writeMetrics(w io.Writer) {
	s := h.s
	metrics.WriteGaugeUint64(w, metricName("sq_build_info", "version", Version), 1)
	metrics.WriteGaugeUint64(w, "sq_connections", uint64(max(s.stats.conns.Load(), 0)))
	metrics.WriteCounterUint64(w, "sq_connections_accepted_total", s.stats.accepted.Load())
	metrics.WriteCounterUint64(w, "sq_auth_failures_total", s.stats.authFailures.Load())
	for i := range s.stats.closed {
		metrics.WriteCounterUint64(w, metricName("sq_connections_closed_total", "reason", closeReason(i).String()),
			s.stats.closed[i].Load())
	}
	draining := uint64(0)
	if s.draining.Load() {
		draining = 1
	}
	metrics.WriteGaugeUint64(w, "sq_draining", draining)
	ss := s.st.Stats()
	metrics.WriteCounterUint64(w, "sq_fsyncs_total", ss.Fsyncs)
	metrics.WriteCounterUint64(w, metricName("sq_compactions_total", "result", "ok"), ss.Compactions)
	metrics.WriteCounterUint64(w, metricName("sq_compactions_total", "result", "failed"), ss.CompactionFailures)
	metrics.WriteCounterUint64(w, "sq_rewrites_total", ss.Rewrites)
	metrics.WriteCounterUint64(w, "sq_loop_writes_total", s.stats.loopWrites.Load())
	metrics.WriteGaugeUint64(w, "sq_open_phexts", uint64(ss.OpenPhexts))
	metrics.WriteCounterUint64(w, metricName("sq_reloads_total", "result", "ok"), s.stats.reloadsOK.Load())
	metrics.WriteCounterUint64(w, metricName("sq_reloads_total", "result", "failed"), s.stats.reloadsFailed.Load())

	metrics.WriteGaugeUint64(w, "sq_http_requests_in_flight", uint64(max(h.inflight.Load(), 0)))
	for rt := range h.codes {
		for c := range h.codes[rt] {
			if v := h.codes[rt][c].Load(); v > 0 {
				code := "other"
				if httpCodes[c] != 0 {
					code = strconv.Itoa(httpCodes[c])
				}
				metrics.WriteCounterUint64(w, metricName("sq_http_requests_total",
					"route", routeNames[rt], "code", code), v)
			}
		}
	}

	tab := s.table.Load()
	names := make([]string, 0, len(tab.byName))
	for name := range tab.byName {
		names = append(names, name)
	}
	sort.Strings(names)
	metrics.WriteGaugeUint64(w, "sq_tenants", uint64(len(names)))
	for _, name := range names {
		tn := tab.byName[name]
		h.writeTenant(w, tn)
	}
	metrics.WriteProcessMetrics(w)
}

func (h *httpAPI) writeTenant(w io.Writer, tn *tenant) {
	name := tn.name
	metrics.WriteGaugeUint64(w, metricName("sq_tenant_connections", "tenant", name), uint64(max(tn.conns.Load(), 0)))
	metrics.WriteGaugeUint64(w, metricName("sq_tenant_quota_bytes", "tenant", name), uint64(max(tn.entry().QuotaBytes(), 0)))
	if u, err := tn.st.Usage(); err == nil {
		metrics.WriteGaugeUint64(w, metricName("sq_tenant_bytes", "tenant", name), uint64(max(u.Bytes, 0)))
		metrics.WriteGaugeUint64(w, metricName("sq_tenant_scrolls", "tenant", name), uint64(max(u.Scrolls, 0)))
		metrics.WriteGaugeUint64(w, metricName("sq_tenant_phexts", "tenant", name), uint64(max(u.Phexts, 0)))
	}
	snap, wal, ok := dirSizes(tn.entry().DataDir)
	if ok {
		metrics.WriteGaugeUint64(w, metricName("sq_tenant_snapshot_bytes", "tenant", name), uint64(snap))
		metrics.WriteGaugeUint64(w, metricName("sq_tenant_wal_bytes", "tenant", name), uint64(wal))
	}
	for i := range tn.stats.ops {
		o := &tn.stats.ops[i]
		n := o.Requests.Load()
		if n == 0 {
			continue
		}
		op := opSlotName(i)
		metrics.WriteCounterUint64(w, metricName("sq_requests_total", "tenant", name, "op", op), n)
		metrics.WriteCounterUint64(w, metricName("sq_request_bytes_in_total", "tenant", name, "op", op), o.BytesIn.Load())
		metrics.WriteCounterUint64(w, metricName("sq_request_bytes_out_total", "tenant", name, "op", op), o.BytesOut.Load())
		for st := range o.Status {
			if st == int(protocol.StatusOK) {
				continue
			}
			if v := o.Status[st].Load(); v > 0 {
				metrics.WriteCounterUint64(w, metricName("sq_request_errors_total", "tenant", name, "op", op,
					"status", protocol.Status(st).String()), v)
			}
		}
		// Buckets are read one by one while requests go on, so _count is
		// the cumulative sum of what was read, keeping the series
		// consistent with itself.
		var cum uint64
		for b := range o.Latency {
			cum += o.Latency[b].Load()
			metrics.WriteCounterUint64(w, metricName("sq_request_duration_seconds_bucket",
				"tenant", name, "op", op, "le", latencyBounds[b]), cum)
		}
		metrics.WriteCounterFloat64(w, metricName("sq_request_duration_seconds_sum", "tenant", name, "op", op),
			float64(o.LatSum.Load())/1e6)
		metrics.WriteCounterUint64(w, metricName("sq_request_duration_seconds_count", "tenant", name, "op", op), cum)
	}
}

// dirSizes sums the sizes of a data dir's snapshots (*.phext) and WALs
// (*.phext.wal), read from the file system at scrape time because the
// store keeps no such counters.
func dirSizes(dir string) (snap, wal int64, ok bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, false
	}
	for _, e := range ents {
		n := e.Name()
		isWAL := strings.HasSuffix(n, ".phext.wal")
		if !isWAL && !strings.HasSuffix(n, ".phext") {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if isWAL {
			wal += fi.Size()
		} else {
			snap += fi.Size()
		}
	}
	return snap, wal, true
}
