package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency is a latency distribution in microseconds.
type Latency struct {
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		P50:  float64(h.ValueAtQuantile(50)),
		P90:  float64(h.ValueAtQuantile(90)),
		P99:  float64(h.ValueAtQuantile(99)),
		P999: float64(h.ValueAtQuantile(99.9)),
		Max:  float64(h.Max()),
		Mean: h.Mean(),
	}
}

// OpStats is one operation's share of a Result: Count, OpsPerSec and
// Latency cover the measured operations (answered OK or not); Errors counts
// error statuses over the whole run, prepare and warm-up included, since
// correctness counts everywhere.
type OpStats struct {
	Op        string  `json:"op"`
	Count     int64   `json:"count"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Errors    int64   `json:"errors"`
	Latency   Latency `json:"latency"`
}

// ServerStats is the server process's cost over the measurement.
type ServerStats struct {
	PID int `json:"pid"`
	// CPUSeconds is user+system CPU time used during the measurement;
	// CPUPercent the same per wall second (200 = two cores busy).
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPercent float64 `json:"cpu_percent"`
	// RSSBefore and RSS are the resident set at the start and the end of
	// the measurement, PeakRSS the largest sampled in between, HWM the
	// kernel's peak over the process's life (VmHWM); bytes.
	RSSBefore int64 `json:"rss_before_bytes"`
	RSS       int64 `json:"rss_bytes"`
	PeakRSS   int64 `json:"peak_rss_bytes"`
	HWM       int64 `json:"vm_hwm_bytes"`
	// RSSPerTenant is RSS divided by the number of tenants.
	RSSPerTenant int64 `json:"rss_per_tenant_bytes"`
}

// Result is what one Run measured.
type Result struct {
	Scenario string `json:"scenario,omitempty"`
	Protocol string `json:"protocol"`
	Addr     string `json:"addr"`
	Tenants  int    `json:"tenants"`
	Conns    int    `json:"conns"`
	Pipeline int    `json:"pipeline"`
	Mix      string `json:"mix"`
	Size     string `json:"size"`
	Scrolls  int    `json:"scrolls_per_tenant"`
	Phexts   int    `json:"phexts_per_tenant"`
	// Phext is the (first) phext the load wrote; "" is the default phext.
	Phext    string  `json:"phext"`
	Verified bool    `json:"verified"`
	Seconds  float64 `json:"seconds"`

	Ops       int64     `json:"ops"`
	OpsPerSec float64   `json:"ops_per_sec"`
	All       Latency   `json:"latency"`
	PerOp     []OpStats `json:"per_op"`

	BytesRead        int64   `json:"bytes_read"`
	BytesWritten     int64   `json:"bytes_written"`
	ReadBytesPerSec  float64 `json:"read_bytes_per_sec"`
	WriteBytesPerSec float64 `json:"write_bytes_per_sec"`

	// Errors counts error statuses by "OP STATUS" (e.g. "update BUSY").
	Errors map[string]int64 `json:"errors"`
	// Mismatches counts SELECT answers that differ from the model;
	// CrossTenant those among them that hold another tenant's tag;
	// CountErrors write answers whose count disagrees with the model;
	// BrokenConns connections that failed.
	Mismatches  int64 `json:"mismatches"`
	CrossTenant int64 `json:"cross_tenant"`
	CountErrors int64 `json:"count_errors"`
	BrokenConns int64 `json:"broken_conns"`
	// Problems holds the first problem descriptions.
	Problems []string `json:"problems,omitempty"`

	Server *ServerStats `json:"server,omitempty"`
	// GenCPUSeconds is the CPU time the load generator (this process)
	// used during the measurement, GenCPUPercent per wall second: on a
	// shared machine its cost per operation limits what can be measured.
	GenCPUSeconds float64 `json:"generator_cpu_seconds"`
	GenCPUPercent float64 `json:"generator_cpu_percent"`

	hists [numOps]*hdrhistogram.Histogram
}

func (r *runner) result(elapsed time.Duration) *Result {
	o := &r.o
	res := &Result{
		Protocol: o.Protocol, Addr: o.Addr, Tenants: o.Tenants, Conns: o.Conns,
		Pipeline: o.Pipeline, Mix: o.Mix.String(), Size: o.Size.String(),
		Scrolls: o.Scrolls, Phexts: o.Phexts, Phext: o.Phext, Verified: !o.NoVerify,
		Seconds: elapsed.Seconds(), Errors: map[string]int64{},
	}
	for k := range res.hists {
		res.hists[k] = newHist()
		for _, s := range r.shards {
			s.mu.Lock()
			res.hists[k].Merge(s.h[k])
			s.mu.Unlock()
		}
	}
	var count, errs [numOps]int64
	for _, c := range r.conns {
		for k := range count {
			count[k] += c.count[k]
			errs[k] += c.errs[k]
		}
		res.BytesRead += c.bytesR
		res.BytesWritten += c.bytesW
		for k, v := range c.errBySt {
			res.Errors[k] += v
		}
	}
	all := newHist()
	for k := OpKind(0); k < numOps; k++ {
		if o.Mix[k] == 0 && count[k] == 0 && errs[k] == 0 {
			continue
		}
		all.Merge(res.hists[k])
		st := OpStats{Op: k.String(), Count: count[k], Errors: errs[k], Latency: latencyOf(res.hists[k])}
		if elapsed > 0 {
			st.OpsPerSec = float64(count[k]) / elapsed.Seconds()
		}
		res.Ops += count[k]
		res.PerOp = append(res.PerOp, st)
	}
	res.All = latencyOf(all)
	if elapsed > 0 {
		res.OpsPerSec = float64(res.Ops) / elapsed.Seconds()
		// Bytes are the scroll texts of measured operations (SELECT
		// answers read, INSERT/UPDATE texts written), not frame overhead.
		res.ReadBytesPerSec = float64(res.BytesRead) / elapsed.Seconds()
		res.WriteBytesPerSec = float64(res.BytesWritten) / elapsed.Seconds()
	}
	res.Mismatches = r.mismatches.Load()
	res.CrossTenant = r.crossTenant.Load()
	res.CountErrors = r.countErrs.Load()
	res.BrokenConns = r.brokenConns.Load()
	r.probMu.Lock()
	res.Problems = append([]string(nil), r.problemLines...)
	r.probMu.Unlock()
	if n := r.problems.Load(); n > int64(len(res.Problems)) {
		res.Problems = append(res.Problems, fmt.Sprintf("… and %d more", n-int64(len(res.Problems))))
	}
	return res
}

// ErrorCount is the total of error statuses.
func (r *Result) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// Failed reports whether the run saw anything wrong: a mismatch, a
// cross-tenant byte, a wrong count, an error status or a broken
// connection.
func (r *Result) Failed() bool {
	return r.Mismatches+r.CrossTenant+r.CountErrors+r.BrokenConns+r.ErrorCount() > 0
}

func (r *Result) failureSummary() string {
	return fmt.Sprintf("%d mismatches, %d cross-tenant, %d wrong counts, %d error statuses, %d broken connections",
		r.Mismatches, r.CrossTenant, r.CountErrors, r.ErrorCount(), r.BrokenConns)
}

// Histogram returns the merged latency histogram of op (microseconds), or
// nil when the op did not run. Callers must not modify it.
func (r *Result) Histogram(op OpKind) *hdrhistogram.Histogram {
	if op >= numOps {
		return nil
	}
	return r.hists[op]
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// FormatMicros formats a latency in µs with a readable unit.
func FormatMicros(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2fs", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2fms", us/1e3)
	}
	return fmt.Sprintf("%.0fµs", us)
}

// FormatRate formats ops/s or bytes/s compactly (12.3k, 4.56M).
func FormatRate(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// WriteTable writes r as a readable report.
func (r *Result) WriteTable(w io.Writer) {
	title := r.Scenario
	if title == "" {
		title = "run"
	}
	phext := "the default phext"
	if r.Phext != "" {
		phext = "phext " + r.Phext
	}
	if r.Phexts > 1 {
		phext += fmt.Sprintf(" and %d more", r.Phexts-1)
	}
	fmt.Fprintf(w, "%s: %s at %s, %d tenants, %d conns, pipeline %d, mix %s, size %s, %d scrolls/tenant in %s\n",
		title, r.Protocol, r.Addr, r.Tenants, r.Conns, r.Pipeline, r.Mix, r.Size, r.Scrolls, phext)
	fmt.Fprintf(w, "measured %v: %d ops, %s ops/s; read %s/s, written %s/s\n",
		time.Duration(r.Seconds*float64(time.Second)).Round(time.Millisecond), r.Ops, FormatRate(r.OpsPerSec), FormatBytesRate(r.ReadBytesPerSec), FormatBytesRate(r.WriteBytesPerSec))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tops\tops/s\terrors\tp50\tp90\tp99\tp99.9\tmax\t")
	row := func(name string, count int64, rate float64, errs int64, l Latency) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", name, count, FormatRate(rate), errs,
			FormatMicros(l.P50), FormatMicros(l.P90), FormatMicros(l.P99), FormatMicros(l.P999), FormatMicros(l.Max))
	}
	var errs int64
	for _, s := range r.PerOp {
		row(s.Op, s.Count, s.OpsPerSec, s.Errors, s.Latency)
		errs += s.Errors
	}
	row("all", r.Ops, r.OpsPerSec, errs, r.All)
	tw.Flush()
	if s := r.Server; s != nil {
		fmt.Fprintf(w, "server pid %d: cpu %.2fs (%.0f%% of one core, %s/op), rss %s (start %s, peak %s, VmHWM %s), rss/tenant %s\n",
			s.PID, s.CPUSeconds, s.CPUPercent, perOp(s.CPUSeconds, r.Ops), FormatBytes(s.RSS), FormatBytes(s.RSSBefore),
			FormatBytes(s.PeakRSS), FormatBytes(s.HWM), FormatBytes(s.RSSPerTenant))
	}
	if r.GenCPUSeconds > 0 {
		fmt.Fprintf(w, "load generator: cpu %.2fs (%.0f%% of one core, %s/op)\n", r.GenCPUSeconds, r.GenCPUPercent, perOp(r.GenCPUSeconds, r.Ops))
	}
	if len(r.Errors) > 0 {
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, r.Errors[k]))
		}
		fmt.Fprintf(w, "error statuses: %s\n", strings.Join(parts, " "))
	}
	verdict := "verified: every answer matched the model"
	if !r.Verified {
		verdict = "not verified (--no-verify)"
	}
	if r.Failed() {
		verdict = "FAILED: " + r.failureSummary()
	}
	fmt.Fprintln(w, verdict)
	for _, p := range r.Problems {
		fmt.Fprintln(w, "  "+p)
	}
}

// FormatBytesRate formats bytes per second.
func FormatBytesRate(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.2fGiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.2fMiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1fKiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0fB", v)
}

// perOp formats CPU seconds per operation in µs.
func perOp(sec float64, ops int64) string {
	if ops == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", sec*1e6/float64(ops))
}
