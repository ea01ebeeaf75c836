package server

import (
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// AppendMetrics writes the server's counters in the Prometheus text format
// for GET /metrics (served by server/httpapi; docs/COMPATIBILITY.md lists
// the families). The request hot paths only bump the atomics they always
// bump (tenantStats, serverStats, the HTTP API's counters); every value
// here is read at scrape time.

// expo writes the Prometheus text exposition format (version 0.0.4) to a
// byte slice: every family once, as "# HELP", "# TYPE" and then all its
// samples together, as the format requires and `promtool check metrics`
// verifies. (VictoriaMetrics/metrics, used before, writes samples without
// family metadata; its ExposeMetadata option repeats an empty HELP per
// sample.)
type expo struct{ b []byte }

// family starts a family. typ is "counter", "gauge" or "histogram".
func (e *expo) family(name, typ, help string) {
	e.b = append(e.b, "# HELP "...)
	e.b = append(e.b, name...)
	e.b = append(e.b, ' ')
	e.b = append(e.b, help...)
	e.b = append(e.b, "\n# TYPE "...)
	e.b = append(e.b, name...)
	e.b = append(e.b, ' ')
	e.b = append(e.b, typ...)
	e.b = append(e.b, '\n')
}

// series writes a sample's name and labels (kv: name, value, …), escaping
// label values as the format wants (backslash, double quote, newline).
func (e *expo) series(name string, kv ...string) {
	e.b = append(e.b, name...)
	if len(kv) == 0 {
		return
	}
	e.b = append(e.b, '{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = append(e.b, kv[i]...)
		e.b = append(e.b, '=', '"')
		v := kv[i+1]
		for j := 0; j < len(v); j++ {
			switch c := v[j]; c {
			case '\\':
				e.b = append(e.b, '\\', '\\')
			case '"':
				e.b = append(e.b, '\\', '"')
			case '\n':
				e.b = append(e.b, '\\', 'n')
			default:
				e.b = append(e.b, c)
			}
		}
		e.b = append(e.b, '"')
	}
	e.b = append(e.b, '}')
}

// uint writes one sample with an integer value.
func (e *expo) uint(v uint64, name string, kv ...string) {
	e.series(name, kv...)
	e.b = append(e.b, ' ')
	e.b = strconv.AppendUint(e.b, v, 10)
	e.b = append(e.b, '\n')
}

// float writes one sample with a float value.
func (e *expo) float(v float64, name string, kv ...string) {
	e.series(name, kv...)
	e.b = append(e.b, ' ')
	e.b = strconv.AppendFloat(e.b, v, 'g', -1, 64)
	e.b = append(e.b, '\n')
}

// one writes a family of a single unlabelled sample.
func (e *expo) one(name, typ, help string, v uint64) {
	e.family(name, typ, help)
	e.uint(v, name)
}

// hist writes the samples of one histogram (kv: its labels other than le).
// Buckets are read one by one while requests go on, so _count is the
// cumulative sum of what was read, keeping the series consistent.
func (e *expo) hist(h *latHist, name string, kv ...string) {
	var lbl [8]string
	n := copy(lbl[:6], kv)
	lbl[n] = "le"
	var cum uint64
	for b := range h.b {
		cum += h.b[b].Load()
		lbl[n+1] = latencyBounds[b]
		e.uint(cum, name+"_bucket", lbl[:n+2]...)
	}
	e.float(float64(h.sum.Load())/1e6, name+"_sum", kv...)
	e.uint(cum, name+"_count", kv...)
}

// latencyBounds are the upper bounds in seconds of the log2 latency
// buckets of latHist: bucket i counts requests under 2^i µs; the last one
// is +Inf.
var latencyBounds = func() (b [latencyBucket]string) {
	for i := 0; i < latencyBucket-1; i++ {
		b[i] = strconv.FormatFloat(math.Ldexp(1, i)/1e6, 'g', -1, 64)
	}
	b[latencyBucket-1] = "+Inf"
	return b
}()

// scrapeTenant is what one scrape reads of one tenant, once.
type scrapeTenant struct {
	tn      *tenant
	u       store.Usage
	uok     bool
	snap    int64
	wal     int64
	sizesOK bool
}

// HTTPMetrics are the HTTP API's own counters, which the exposition shows
// among the server's (families sq_http_requests_in_flight and
// sq_http_requests_total).
type HTTPMetrics struct {
	// InFlight is the number of REST requests being served.
	InFlight int64
	// Conns is the number of open REST connections, ConnsRefused the
	// count of those refused past the REST connection bound.
	Conns        int64
	ConnsRefused uint64
	// Requests are the answered requests by route and status code (Code
	// "other" for codes without a counter of their own), zeros left out.
	Requests []HTTPCount
}

// HTTPCount is one series of sq_http_requests_total.
type HTTPCount struct {
	Route, Code string
	N           uint64
}

// AppendMetrics appends every family of the exposition to dst: the
// server's, http's and the process's. Safe from any goroutine.
func (s *Server) AppendMetrics(dst []byte, http HTTPMetrics) []byte {
	e := expo{b: dst}
	s.appendMetrics(&e, &http)
	return e.b
}

func (s *Server) appendMetrics(e *expo, http *HTTPMetrics) {
	e.family("sq_build_info", "gauge", "Always 1; the version label is the server's.")
	e.uint(1, "sq_build_info", "version", Version)
	e.one("sq_connections", "gauge", "Open binary-protocol connections.", uint64(max(s.stats.conns.Load(), 0)))
	e.one("sq_connections_accepted_total", "counter", "Binary-protocol connections accepted.", s.stats.accepted.Load())
	mem := s.Memory()
	e.one("sq_client_memory_bytes", "gauge", "Bytes of the client memory budget reserved now (--max-client-memory).", uint64(max(mem.Used, 0)))
	e.one("sq_client_memory_peak_bytes", "gauge", "Most bytes of the client memory budget ever reserved at once.", uint64(mem.Peak))
	e.one("sq_client_memory_limit_bytes", "gauge", "The client memory budget.", uint64(mem.Limit))
	e.one("sq_inbound_buffer_peak_bytes", "gauge", "Most bytes one connection's inbound buffer held unread after a read (large frames are moved out of it as they arrive).", uint64(max(mem.InboundPeak, 0)))
	e.one("sq_client_memory_collections_total", "counter", "Garbage collections started because client buffers dropped since the last one, plus those reserved, reached the budget.", mem.Collections)
	e.one("sq_frame_idle_bytes", "gauge", "Bytes of answered large frames' memory kept for the next frame of the same size (--frame-pool; part of sq_client_memory_bytes).", uint64(max(mem.FrameBytesIdle, 0)))
	e.one("sq_frames_reused_total", "counter", "Large frames received into memory kept from an earlier frame instead of fresh memory.", mem.FramesReused)
	e.one("sq_client_memory_refused_total", "counter", "Requests refused (BUSY / 503) because the client memory budget, or the tenant's share of it, was in use.", mem.Refused)
	e.one("sq_auth_failures_total", "counter", "Failed authentications (binary HELLO and REST tokens).", s.stats.authFailures.Load())
	e.one("sq_hello_paced_total", "counter", "HELLOs whose answer waited for their tenant's schedule of new connections (--hello-rate).", s.stats.helloPaced.Load())
	e.one("sq_hello_refusals_waiting", "gauge", "Refused HELLOs whose answer waits: BUSY at their tenant's connection limit (--max-conns-per-tenant), a second; a failed HELLO or REST token past its address's budget of failures, up to 5 s.", uint64(max(s.refusing.Load()+s.authWaiting.Load(), 0)))
	e.one("sq_refusals_held_total", "counter", "Limit refusals (TOO_LARGE, QUOTA; REST 413, 507) whose answer waited past their tenant's budget (--refusal-rate).", s.stats.refusalsHeld.Load())
	e.one("sq_refusals_closed_total", "counter", "Limit refusals past their tenant's budget answered at once with their connection closed: no more answers could wait.", s.stats.refusalsClosed.Load())
	e.family("sq_connections_closed_total", "counter", "Connections the server closed, by reason.")
	for i := range s.stats.closed {
		e.uint(s.stats.closed[i].Load(), "sq_connections_closed_total", "reason", closeReason(i).String())
	}
	draining := uint64(0)
	if s.draining.Load() {
		draining = 1
	}
	e.one("sq_draining", "gauge", "1 while the server drains for shutdown.", draining)
	ss := s.store.Stats()
	e.one("sq_fsyncs_total", "counter", "Successful fsyncs of the commit log, snapshots and directories.", ss.Fsyncs)
	e.family("sq_compactions_total", "counter", "Snapshot rewrites, by result.")
	e.uint(ss.Compactions, "sq_compactions_total", "result", "ok")
	e.uint(ss.CompactionFailures, "sq_compactions_total", "result", "failed")
	e.one("sq_rewrites_total", "counter", "Phexts checkpointed from memory after an fsync of the commit log failed.", ss.Rewrites)
	e.one("sq_loop_writes_total", "counter", "Writes answered on the event loop (no worker hop).", s.stats.loopWrites.Load())
	e.one("sq_loop_log_writes_total", "counter", "Commit log writes made by event loops (one per round that applied writes).", s.stats.loopLogWrites.Load())
	e.one("sq_watch_subscriptions", "gauge", "Change-feed subscriptions now (WATCH and REST streams).", uint64(max(s.stats.watches.Load(), 0)))
	e.one("sq_watch_events_total", "counter", "Change events queued to binary-protocol watchers.", s.stats.watchEvents.Load())
	e.one("sq_watch_dropped_total", "counter", "Subscriptions ended with a resync because the watcher fell behind.", s.stats.watchDropped.Load())
	e.one("sq_watch_resyncs_total", "counter", "WATCHes from a position whose changes were gone, answered with a resync.", s.stats.watchResyncs.Load())
	e.one("sq_watch_log_resumes_total", "counter", "WATCHes from a position older than the feed's memory, replayed from the commit log.", s.stats.watchLogResumes.Load())
	e.one("sq_watch_backlogs_total", "counter", "Resumes whose replay did not fit the watcher's queue and went on as it drained (instead of a resync).", s.stats.watchBacklogs.Load())
	e.one("sq_open_phexts", "gauge", "Phexts open (mapped) now over all tenants.", uint64(ss.OpenPhexts))
	e.family("sq_reloads_total", "counter", "Configuration reloads (SIGHUP, RELOAD, REST, admin), by result.")
	e.uint(s.stats.reloadsOK.Load(), "sq_reloads_total", "result", "ok")
	e.uint(s.stats.reloadsFailed.Load(), "sq_reloads_total", "result", "failed")

	e.one("sq_http_requests_in_flight", "gauge", "REST requests being served.", uint64(max(http.InFlight, 0)))
	e.one("sq_http_connections", "gauge", "Open REST connections.", uint64(max(http.Conns, 0)))
	e.one("sq_http_connections_refused_total", "counter", "REST connections refused (503) past --http-max-conns.", http.ConnsRefused)
	e.family("sq_http_requests_total", "counter", "REST requests answered, by route and status code.")
	for _, c := range http.Requests {
		e.uint(c.N, "sq_http_requests_total", "route", c.Route, "code", c.Code)
	}
	e.family("sq_request_duration_seconds", "histogram",
		"Time from decoding a request to its reply, binary and REST, over all tenants, by operation.")
	for i := range s.stats.opLat {
		if hl := &s.stats.opLat[i]; histCount(hl) > 0 {
			e.hist(hl, "sq_request_duration_seconds", "op", opSlotName(i))
		}
	}

	e.family("sq_watch_delivery_seconds", "histogram",
		"Time a change event waited in the server: from its commit (publish) to the watcher's event loop handing it to the socket; per write of a watcher's queue, the oldest event's wait.")
	e.hist(&s.stats.watchLat, "sq_watch_delivery_seconds")

	tab := s.table.Load()
	ts := make([]scrapeTenant, 0, len(tab.byName))
	for _, tn := range tab.byName {
		st := scrapeTenant{tn: tn}
		st.u, st.uok = usageOf(tn)
		if s.opts.TenantDetailMetrics {
			st.snap, st.wal, st.sizesOK = dirSizes(tn.entry().DataDir)
			st.wal += st.u.LogBytes
		}
		ts = append(ts, st)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].tn.name < ts[j].tn.name })
	e.one("sq_tenants", "gauge", "Enabled tenants.", uint64(len(ts)))
	e.family("sq_tenant_connections", "gauge", "Open binary-protocol connections of the tenant.")
	for _, t := range ts {
		e.uint(uint64(max(t.tn.conns.Load(), 0)), "sq_tenant_connections", "tenant", t.tn.name)
	}
	e.family("sq_tenant_quota_bytes", "gauge", "The tenant's quota in bytes (0 = unlimited).")
	for _, t := range ts {
		e.uint(uint64(max(t.tn.entry().QuotaBytes(), 0)), "sq_tenant_quota_bytes", "tenant", t.tn.name)
	}
	usage := func(name, help string, v func(u *store.Usage) int64) {
		e.family(name, "gauge", help)
		for i := range ts {
			if ts[i].uok {
				e.uint(uint64(max(v(&ts[i].u), 0)), name, "tenant", ts[i].tn.name)
			}
		}
	}
	usage("sq_tenant_bytes", "What the quota counts: scroll bytes plus 64 a scroll (file sizes for phexts not opened since start).",
		func(u *store.Usage) int64 { return u.Bytes })
	usage("sq_tenant_scrolls", "Scrolls in the tenant's phexts that are open now.",
		func(u *store.Usage) int64 { return u.Scrolls })
	usage("sq_tenant_phexts", "Phexts (snapshot files) of the tenant.",
		func(u *store.Usage) int64 { return int64(u.Phexts) })
	perOp := func(name, help string, v func(o *OpStats) uint64) {
		e.family(name, "counter", help)
		for _, t := range ts {
			for i := range t.tn.stats.ops {
				if o := t.tn.stats.op(i); o != nil {
					e.uint(v(o), name, "tenant", t.tn.name, "op", opSlotName(i))
				}
			}
		}
	}
	perOp("sq_requests_total", "Requests of the tenant (binary and REST), by operation.",
		func(o *OpStats) uint64 { return o.Requests.Load() })
	perOp("sq_request_bytes_in_total", "Request bytes received for the tenant, by operation.",
		func(o *OpStats) uint64 { return o.BytesIn.Load() })
	perOp("sq_request_bytes_out_total", "Reply bytes sent to the tenant, by operation.",
		func(o *OpStats) uint64 { return o.BytesOut.Load() })
	e.family("sq_request_errors_total", "counter", "Requests of the tenant answered with an error status, by operation and status.")
	for _, t := range ts {
		for i := range t.tn.stats.ops {
			o := t.tn.stats.op(i)
			if o == nil {
				continue
			}
			for code := range o.Status {
				if code == int(protocol.StatusOK) {
					continue
				}
				if v := o.Status[code].Load(); v > 0 {
					e.uint(v, "sq_request_errors_total", "tenant", t.tn.name, "op", opSlotName(i),
						"status", protocol.Status(code).String())
				}
			}
		}
	}
	if s.opts.TenantDetailMetrics {
		e.family("sq_tenant_request_duration_seconds", "histogram",
			"Time from decoding a request to its reply, per tenant and operation (--metrics-tenant-detail).")
		for _, t := range ts {
			if t.tn.stats.lat == nil {
				continue
			}
			for i := range t.tn.stats.lat {
				if hl := &t.tn.stats.lat[i]; histCount(hl) > 0 {
					e.hist(hl, "sq_tenant_request_duration_seconds", "tenant", t.tn.name, "op", opSlotName(i))
				}
			}
		}
		e.family("sq_tenant_snapshot_bytes", "gauge", "Size of the tenant's snapshot files, read at scrape time (--metrics-tenant-detail).")
		for _, t := range ts {
			if t.sizesOK {
				e.uint(uint64(t.snap), "sq_tenant_snapshot_bytes", "tenant", t.tn.name)
			}
		}
		e.family("sq_tenant_wal_bytes", "gauge", "Bytes of the tenant's records in the shared commit log that no checkpoint covers yet, plus per-phext WAL files of an earlier version not yet replayed (--metrics-tenant-detail).")
		for _, t := range ts {
			if t.sizesOK {
				e.uint(uint64(t.wal), "sq_tenant_wal_bytes", "tenant", t.tn.name)
			}
		}
	}
	appendProcessMetrics(e)
}

// histCount returns how many requests h counted.
func histCount(h *latHist) uint64 {
	var n uint64
	for b := range h.b {
		n += h.b[b].Load()
	}
	return n
}

// usageOf returns the tenant's store usage.
func usageOf(tn *tenant) (store.Usage, bool) {
	u, err := tn.store.Usage()
	return u, err == nil
}

// dirSizes sums the sizes of a data dir's snapshots (*.phext) and
// per-phext WALs of an earlier version (*.phext.wal), read from the file
// system at scrape time.
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
