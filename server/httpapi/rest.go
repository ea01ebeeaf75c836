package httpapi

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// Options configure the HTTP API served by Handler, Start and StartOn.
// The zero value of each field means its default.
type Options struct {
	// ConfigPath is the tenant configuration file that the admin API
	// edits to enable or disable a tenant (atomically, then reloaded).
	// Empty: those two calls answer 503 and the tenant list shows the
	// enabled tenants only.
	ConfigPath string
	// MaxBody bounds a request body in bytes (default: the server's
	// MaxFrame, the same limit as the binary protocol).
	MaxBody int
	// MaxInFlight bounds REST requests served at once; past it a request
	// gets 503 (default 512, SQ's connection cap).
	MaxInFlight int
	// MaxConns bounds the open connections of the listener Start and
	// StartOn serve (keep-alives, change-feed streams and answers waiting
	// included); past it a new connection is answered 503 with
	// Retry-After at once and closed (front.go). Default (and 0):
	// DefaultMaxConns; negative: no bound.
	MaxConns int
	// PublicMetrics serves GET /metrics to anyone. By default a scraper
	// needs the metrics or the admin token (or a loopback address when the
	// server trusts loopback).
	PublicMetrics bool
}

// DefaultMaxConns is Options.MaxConns' default: eight times the requests
// served at once (MaxInFlight's 512), for idle keep-alives and
// change-feed streams, while the memory of that many connections (a
// goroutine and net/http's buffers, ~16 KiB each when idle) stays near
// 64 MiB.
const DefaultMaxConns = 4096

// Handler returns the HTTP API over the engine e: SQ's REST routes under
// /api/v2/, GET /metrics, the health probes and the admin API under
// /admin/ (see docs/COMPATIBILITY.md). It runs requests against the same
// store and tenant table as the binary protocol and may be called more
// than once; each handler keeps its own HTTP counters.
func Handler(e Engine, o Options) http.Handler {
	so := e.Options()
	if o.MaxBody <= 0 {
		o.MaxBody = so.MaxFrame
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 512
	}
	return &httpAPI{s: e, o: o, so: so, log: so.Logger, stop: make(chan struct{})}
}

// Start listens on addr (host:port; port 0 picks a free port, see the
// returned listener's Addr) and serves Handler(e, o) on it in a new
// goroutine. A nil o means defaults. Stop it with the returned server's
// Shutdown before the engine's Shutdown, so that no REST request is still
// running when the store closes.
func Start(e Engine, addr string, o *Options) (*http.Server, net.Listener, error) {
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	hs, ln := StartOn(e, tl, o)
	return hs, ln, nil
}

// StartOn is Start on a listener the caller opened (sq host binds --http
// before the binary port, so that a bad address fails before anything
// serves). The returned listener wraps tl (front.go); closing the server
// closes it.
func StartOn(e Engine, tl net.Listener, o *Options) (*http.Server, net.Listener) {
	var opts Options
	if o != nil {
		opts = *o
	}
	so := e.Options()
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	ln := &frontListener{Listener: tl, binaryAddr: e.Addr(), maxConns: int64(max(opts.MaxConns, 0))}
	api := Handler(e, opts).(*httpAPI)
	api.ln = ln
	hs := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		// The slowloris guard of the binary protocol, applied to the
		// whole request (SQ: 30 s read timeout).
		ReadTimeout:    so.FrameTimeout,
		WriteTimeout:   2 * so.FrameTimeout,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 1 << 20,
		ErrorLog:       slog.NewLogLogger(so.Logger.Handler(), slog.LevelWarn),
		ConnContext:    withConn,
	}
	// Shutdown waits for handlers to finish: end the SSE streams.
	hs.RegisterOnShutdown(api.stopStreams)
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			so.Logger.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	so.Logger.Info("sq http listening", "addr", ln.Addr().String())
	return hs, ln
}

// readBody appends a request body of at most maxBody bytes to b (maxBody+1
// bytes read means too large) without growing past what the handler reserved:
// a declared length gets one buffer of exactly that length plus the byte
// that proves the end, and a chunked body grows by doubling up to
// maxBody+1.
// (ByteBuffer.ReadFrom doubled a full buffer before it saw EOF, so a
// body of 2^k bytes was read into 2^(k+1): issue 13, open issue 11.)
func readBody(b []byte, r io.Reader, declared int64, maxBody int) ([]byte, error) {
	limit := maxBody + 1
	if declared >= 0 && declared < int64(limit) {
		limit = int(declared) + 1
		if cap(b) < limit {
			b = make([]byte, 0, limit)
		}
	}
	for {
		if len(b) == cap(b) {
			if len(b) >= limit {
				return b, nil
			}
			nb := make([]byte, len(b), min(limit, max(2*cap(b), 64<<10)))
			copy(nb, b)
			b = nb
		}
		n, err := r.Read(b[len(b):min(cap(b), limit)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) >= limit {
			return b, nil
		}
	}
}

// route names one HTTP endpoint, for counters.
type route uint8

const (
	routeUnknown route = iota
	routeOptions
	routeVersion
	routeLoad
	routeSelect
	routeInsert
	routeUpdate
	routeDelete
	routeStatus
	routeChecksum
	routeTOC
	routeGet
	routeDelta
	routeJSONExport
	routeWhere
	routeReload
	routeMetrics
	routeAdmin
	routeHealth
	routeWatch
	numRoutes
)

var routeNames = [numRoutes]string{"unknown", "options", "version", "load",
	"select", "insert", "update", "delete", "status", "checksum", "toc", "get",
	"delta", "json-export", "where", "reload", "metrics", "admin", "health", "watch"}

// routeOps maps a data route to the operation whose per-tenant counters it
// updates (the same counters as the binary protocol).
var routeOps = [numRoutes]protocol.Op{
	routeVersion: protocol.OpVersion, routeLoad: protocol.OpStatus,
	routeSelect: protocol.OpSelect, routeInsert: protocol.OpInsert,
	routeUpdate: protocol.OpUpdate, routeDelete: protocol.OpDelete,
	routeStatus: protocol.OpStatus, routeChecksum: protocol.OpChecksum,
	routeTOC: protocol.OpTOC, routeGet: protocol.OpGet, routeDelta: protocol.OpDelta,
	routeJSONExport: protocol.OpGet, routeWhere: protocol.OpWhere,
	routeWatch: protocol.OpWatch,
}

// httpCodes are the status codes with their own counter; others share the
// last slot.
var httpCodes = [...]int{200, 204, 400, 401, 403, 404, 413, 500, 503, 507, 0}

func codeSlot(code int) int {
	for i, c := range httpCodes[:len(httpCodes)-1] {
		if c == code {
			return i
		}
	}
	return len(httpCodes) - 1
}

// httpAPI is the handler behind Handler. Its fields are immutable after
// creation except the atomics and what adminMu guards.
type httpAPI struct {
	s   Engine
	o   Options
	so  server.Options // the engine's, read once
	log *slog.Logger

	// adminMu serializes admin edits of the config file. Lock order: it is
	// taken before the server's reload lock (inside a reload), never while
	// holding it (server/LOCKS.md).
	adminMu sync.Mutex

	inflight atomic.Int64
	codes    [numRoutes][len(httpCodes)]atomic.Uint64
	ln       *frontListener // StartOn's (its connection counts); nil for Handler alone

	stop     chan struct{} // closed when the HTTP server shuts down (ends SSE streams)
	stopOnce sync.Once
}

// stopStreams ends every change-feed stream (http.Server.RegisterOnShutdown).
func (h *httpAPI) stopStreams() { h.stopOnce.Do(func() { close(h.stop) }) }

// sqRoute maps a method and path to an SQ route. post reports whether the
// scroll comes from the body when one is sent. Like SQ, a known path with
// another method is not a route (404).
func sqRoute(method, path string) (rt route, post bool) {
	get, pst := method == http.MethodGet, method == http.MethodPost
	switch path {
	case "/api/v2/version":
		rt = pick(get, routeVersion)
	case "/api/v2/load":
		rt = pick(get, routeLoad)
	case "/api/v2/select":
		rt = pick(get, routeSelect)
	case "/api/v2/insert":
		rt = pick(get || pst, routeInsert)
	case "/api/v2/update":
		rt = pick(get || pst, routeUpdate)
	case "/api/v2/delete":
		// Real clients send DELETE; SQ itself only routes GET.
		rt = pick(get || method == http.MethodDelete, routeDelete)
	case "/api/v2/status":
		rt = pick(get, routeStatus)
	case "/api/v2/checksum":
		rt = pick(get, routeChecksum)
	case "/api/v2/toc":
		rt = pick(get, routeTOC)
	case "/api/v2/get":
		rt = pick(get, routeGet)
	case "/api/v2/delta":
		rt = pick(get || pst, routeDelta)
	case "/api/v2/json-export":
		rt = pick(get, routeJSONExport)
	case "/api/v2/where":
		rt = pick(pst, routeWhere)
	case "/api/v2/reload":
		rt = pick(pst, routeReload)
	case "/api/v2/watch":
		rt = pick(get, routeWatch)
	}
	return rt, pst
}

func pick(ok bool, rt route) route {
	if ok {
		return rt
	}
	return routeUnknown
}

// ServeHTTP routes a request. Every /api/v2/ answer carries SQ's CORS
// header; OPTIONS anywhere is a preflight answered without auth, as in SQ.
func (h *httpAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if r.Method == http.MethodOptions {
		hd := w.Header()
		hd["Access-Control-Allow-Origin"] = corsOrigin
		hd["Access-Control-Allow-Methods"] = corsMethods
		hd["Access-Control-Allow-Headers"] = corsHeaders
		hd["Access-Control-Max-Age"] = corsMaxAge
		w.WriteHeader(http.StatusNoContent)
		h.count(routeOptions, http.StatusNoContent)
		return
	}
	switch {
	case path == "/healthz" || path == "/readyz":
		h.serveHealth(w, r, path == "/readyz")
	case path == "/metrics":
		h.serveMetrics(w, r)
	case path == "/admin" || strings.HasPrefix(path, "/admin/"):
		h.serveAdmin(w, r)
	default:
		h.serveSQ(w, r)
	}
}

// serveHealth answers the load balancers' probes, without auth and without
// naming anything: GET /healthz is liveness (200 while the process serves
// HTTP), GET /readyz is readiness (200 while new connections are welcome,
// 503 once the server was marked not ready or began draining).
func (h *httpAPI) serveHealth(w http.ResponseWriter, r *http.Request, readiness bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.count(routeHealth, http.StatusMethodNotAllowed)
		replyText(w, http.StatusMethodNotAllowed, "use GET\n")
		return
	}
	code, msg := http.StatusOK, "ok\n"
	if readiness && !h.s.ReadyForTraffic() {
		code, msg = http.StatusServiceUnavailable, "draining\n"
	}
	w.Header()["Cache-Control"] = noStore
	h.count(routeHealth, code)
	replyText(w, code, msg)
}

// Header values are shared read-only slices: assigning them does not
// allocate.
var (
	corsOrigin  = []string{"*"}
	corsMethods = []string{"GET, POST, DELETE, OPTIONS"}
	corsHeaders = []string{"Authorization, Content-Type, X-SQ-API-Key"}
	corsMaxAge  = []string{"86400"}
	textPlain   = []string{"text/plain; charset=utf-8"}
	appJSON     = []string{"application/json"}
	noSniff     = []string{"nosniff"}
	noStore     = []string{"no-store"}
)

func (h *httpAPI) count(rt route, code int) {
	h.codes[rt][codeSlot(code)].Add(1)
}

// reply writes a complete text answer with SQ's CORS header.
func reply(w http.ResponseWriter, code int, ctype []string, body []byte) {
	hd := w.Header()
	hd["Access-Control-Allow-Origin"] = corsOrigin
	hd["Content-Type"] = ctype
	hd["X-Content-Type-Options"] = noSniff
	hd["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	w.Write(body)
}

func replyText(w http.ResponseWriter, code int, msg string) {
	reply(w, code, textPlain, []byte(msg))
}

// Texts of SQ's error answers, kept byte for byte.
const (
	msgBadRequest   = "Bad Request"
	msgUnauthorized = "Unauthorized"
	msgBadPath      = "Forbidden: Invalid phext path"
	msgNotFound     = "Not Found"
	msgBusy         = "Service Unavailable: connection limit reached"
	// msgReloadForbidden replaces SQ's "Forbidden: Reload endpoint only
	// accessible from localhost": loopback is trusted only on request.
	msgReloadForbidden = "Forbidden: reload needs the admin token (Authorization: Bearer <admin_token>)"
	// msgShuttingDown answers a request that met a closing tenant or a
	// draining server (503 with Retry-After).
	msgShuttingDown = "Service Unavailable: tenant is being reloaded or the server is stopping; retry"
)

// serveSQ serves SQ's REST API. The checks run in SQ's order: method,
// reload, auth (401), phext name (403), route (404); the in-flight limit
// (503) applies after auth.
func (h *httpAPI) serveSQ(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodDelete:
	default:
		h.count(routeUnknown, http.StatusBadRequest)
		replyText(w, http.StatusBadRequest, msgBadRequest)
		return
	}
	rt, post := sqRoute(r.Method, r.URL.Path)
	if rt == routeReload {
		h.serveReload(w, r)
		return
	}
	if h.s.Draining() {
		h.count(rt, http.StatusServiceUnavailable)
		w.Header()["Retry-After"] = retryAfter
		replyText(w, http.StatusServiceUnavailable, msgShuttingDown)
		return
	}
	// Auth before taking an in-flight slot: a delayed bad-token answer
	// must not hold a slot that real requests need.
	t, ok, tried := h.tenantOf(r)
	if !ok {
		if tried {
			h.authFailed(r)
		}
		h.count(rt, http.StatusUnauthorized)
		replyText(w, http.StatusUnauthorized, msgUnauthorized)
		return
	}
	if rt == routeWatch {
		// A stream lives long: it holds no in-flight slot; the feed's
		// subscription limits and memory budget bound it instead.
		var nameBuf [phext.MaxNameLen + 1]byte
		name, _ := sqParam(nameBuf[:0], r.URL.RawQuery, "p")
		if !phext.ValidName(name) {
			h.record(t, rt, http.StatusForbidden, protocol.StatusBadName, 0, 0, start)
			replyText(w, http.StatusForbidden, msgBadPath)
			return
		}
		h.serveWatch(w, r, t, name, start)
		return
	}
	code, status, msg := h.serveTenant(w, r, t, rt, post, start)
	if code == 0 {
		return // answered
	}
	hd := w.Header()
	// A refusal at a limit counts against the tenant's budget, one rule
	// with the binary protocol's (server/refusal.go): past it the answer
	// waits, costing no CPU, or goes out at once on a connection that
	// then closes. Everything the request held (its in-flight slot,
	// memory, buffers) is given back before the wait.
	if f := h.s.Refuse(t, status); f.Hold > 0 {
		// Until the hold ends, the engine's Shutdown begins (one signal
		// for both front ends), the client leaves or this HTTP server
		// shuts down (Shutdown waits for handlers).
		left, end := clientLeft(r)
		f.Wait(left, h.stop)
		end()
	} else if f.Close {
		hd["Connection"] = connClose
	}
	if code == http.StatusServiceUnavailable {
		hd["Retry-After"] = retryAfter
	}
	replyText(w, code, msg)
}

var connClose = []string{"close"}

// serveTenant serves an authenticated request of tenant t on route rt
// (not reload or watch): it writes a successful answer itself and returns
// code 0, or returns the error answer (HTTP code, protocol status, text),
// counted already, for serveSQ to write.
func (h *httpAPI) serveTenant(w http.ResponseWriter, r *http.Request, t server.Tenant, rt route, post bool, start time.Time) (int, protocol.Status, string) {
	if h.inflight.Add(1) > int64(h.o.MaxInFlight) {
		h.inflight.Add(-1)
		h.count(rt, http.StatusServiceUnavailable)
		return http.StatusServiceUnavailable, protocol.StatusBusy, msgBusy
	}
	defer h.inflight.Add(-1)
	q := r.URL.RawQuery
	var nameBuf [phext.MaxNameLen + 1]byte
	name, _ := sqParam(nameBuf[:0], q, "p")
	if !phext.ValidName(name) {
		h.record(t, rt, http.StatusForbidden, protocol.StatusBadName, len(q), 0, start)
		return http.StatusForbidden, protocol.StatusBadName, msgBadPath
	}
	if rt == routeUnknown {
		h.count(rt, http.StatusNotFound)
		return http.StatusNotFound, protocol.StatusUnknownOp, msgNotFound
	}

	var body []byte
	var bodyBuf *bytebufferpool.ByteBuffer
	// What this request reserves of the client memory budget (body,
	// reply), released once the reply is written.
	mem := t.Hold()
	defer mem.Done()
	lim := store.Limit{Max: h.so.MaxFrame - 6, Reserve: mem.Reserve}
	if post && r.Method == http.MethodPost {
		if r.ContentLength > int64(h.o.MaxBody) {
			return h.tooLarge(t, rt, r.ContentLength, start)
		}
		// Reserve the body before reading it: its declared length (and
		// the byte that proves its end, see readBody), or the most it may
		// be when it has none (chunked).
		want := r.ContentLength + 1
		if r.ContentLength < 0 {
			want = int64(h.o.MaxBody) + 1
		}
		if err := mem.Reserve(int(want)); err != nil {
			h.record(t, rt, http.StatusServiceUnavailable, protocol.StatusBusy, len(q), 0, start)
			return http.StatusServiceUnavailable, protocol.StatusBusy, msgOf(err)
		}
		bodyBuf = protocol.GetBuffer()
		defer func() { protocol.PutBuffer(bodyBuf) }()
		var err error
		bodyBuf.B, err = readBody(bodyBuf.B[:0], r.Body, r.ContentLength, h.o.MaxBody)
		if n := len(bodyBuf.B); n > h.o.MaxBody {
			return h.tooLarge(t, rt, int64(n), start)
		}
		if err != nil {
			h.record(t, rt, http.StatusBadRequest, protocol.StatusBadFrame, len(q), 0, start)
			return http.StatusBadRequest, protocol.StatusBadFrame, "Bad Request: reading the body: " + err.Error()
		}
		body = bodyBuf.B
	}

	out := protocol.GetBuffer()
	defer func() { protocol.PutBuffer(out) }()
	// The turn ends before the reply is written: a slow reader must not
	// hold it.
	done := func() {}
	if whole := wholeRoute(rt); whole || len(q)+len(body) > server.HeavyBytes {
		// A copy: name passed through the interface would escape, and
		// move every request's name buffer to the heap (select's
		// allocation budget, TestRESTSelectAllocs).
		done = h.s.HeavyTurn(t, len(q)+len(body), whole, slices.Clone(name))
	}
	code, status, msg := h.exec(rt, t, name, q, body, out, lim)
	done()
	in := len(q) + len(body)
	if code != http.StatusOK {
		h.record(t, rt, code, status, in, len(msg), start)
		return code, status, msg
	}
	ctype := textPlain
	if rt == routeJSONExport {
		ctype = appJSON
	}
	h.record(t, rt, code, status, in, len(out.B), start)
	reply(w, http.StatusOK, ctype, out.B)
	return 0, protocol.StatusOK, ""
}

func (h *httpAPI) tooLarge(t server.Tenant, rt route, n int64, start time.Time) (int, protocol.Status, string) {
	h.record(t, rt, http.StatusRequestEntityTooLarge, protocol.StatusTooLarge, 0, 0, start)
	return http.StatusRequestEntityTooLarge, protocol.StatusTooLarge, "body too large: " + strconv.FormatInt(n, 10) +
		" bytes (max " + strconv.Itoa(h.o.MaxBody) + ")"
}

// record updates the tenant's operation counters (shared with the binary
// protocol) and the handler's HTTP counters.
func (h *httpAPI) record(t server.Tenant, rt route, code int, status protocol.Status, in, out int, start time.Time) {
	h.count(rt, code)
	if rt != routeUnknown {
		t.Record(routeOps[rt], status, in, out, time.Since(start))
	}
}

// wholeRoute reports whether rt's work is that of a whole phext
// (Engine.HeavyTurn).
func wholeRoute(rt route) bool {
	switch rt {
	case routeGet, routeTOC, routeChecksum, routeDelta, routeJSONExport, routeLoad:
		return true
	}
	return false
}

// exec runs one SQ command for tenant t and appends the answer to out.B. On
// failure it returns the HTTP code, the matching protocol status and the
// message; out is then unused.
func (h *httpAPI) exec(rt route, t server.Tenant, name []byte, q string, body []byte, out *bytebufferpool.ByteBuffer, lim store.Limit) (int, protocol.Status, string) {
	var err error
	switch rt {
	case routeVersion:
		out.B = append(out.B, server.Version...)
	case routeLoad:
		// The store always serves the current state; load only checks the
		// phext can be read (SQ re-reads the file).
		if out.B, err = t.Store().AppendChecksum(out.B, name); err == nil {
			out.B = appendPhextFile(append(out.B[:0], "Loaded "...), name)
		}
	case routeSelect, routeInsert, routeUpdate, routeDelete:
		// Decode c into out.B (a stack array would escape through the
		// parser); it is parsed before out.B is used for anything else.
		cv, found := sqParam(out.B[:0], q, "c")
		c, cerr := sqCoord(cv, found)
		out.B = out.B[:0]
		if cerr != nil {
			return http.StatusBadRequest, protocol.StatusBadCoord, "Bad Request: " + cerr.Error()
		}
		err = h.execScroll(rt, t, name, c, q, body, out)
	case routeStatus:
		err = h.status(t, name, out)
	case routeChecksum:
		out.B, err = t.Store().AppendChecksum(out.B, name)
	case routeTOC:
		out.B, err = t.Store().AppendTOCLimit(out.B, name, lim)
	case routeGet:
		out.B, err = t.Store().AppendGetLimit(out.B, name, lim)
	case routeDelta:
		req := scrollArg(out, q, body)
		// SQ reads the request lossily; it only selects what to return.
		req = phext.LossyUTF8(req)
		if len(out.B) > 0 {
			// req aliases out.B (the s parameter): copy it out first.
			req = append([]byte(nil), req...)
			out.B = out.B[:0]
		}
		out.B, err = t.Store().AppendDeltaLimit(out.B, name, req, lim)
	case routeJSONExport:
		err = h.jsonExport(t, name, out, lim)
	case routeWhere:
		return h.where(q, body, out)
	default:
		return http.StatusNotFound, protocol.StatusUnknownOp, msgNotFound
	}
	if err != nil {
		return h.errorOf(t, rt, name, err)
	}
	return http.StatusOK, protocol.StatusOK, ""
}

// execScroll runs select, insert, update and delete at c.
func (h *httpAPI) execScroll(rt route, t server.Tenant, name []byte, c phext.Coordinate, q string, body []byte, out *bytebufferpool.ByteBuffer) error {
	var n int
	var err error
	switch rt {
	case routeSelect:
		out.B, err = t.Store().AppendSelect(out.B, name, c)
		return err
	case routeInsert:
		text := scrollArg(out, q, body)
		if n, err = t.Store().Insert(name, c, text); err == nil {
			out.B = appendCountMsg(out.B[:0], "Inserted ", n, " bytes")
		}
	case routeUpdate:
		text := scrollArg(out, q, body)
		if n, err = t.Store().Update(name, c, text); err == nil {
			out.B = appendCountMsg(out.B[:0], "Updated ", n, " bytes")
		}
	case routeDelete:
		if n, err = t.Store().Delete(name, c); err == nil {
			out.B = appendCountMsg(out.B[:0], "Removed ", n, " bytes")
		}
	}
	return err
}

// scrollArg returns the scroll argument as SQ picks it: a non-empty body,
// else the s parameter (decoded into out.B, which the caller then
// overwrites with the answer only after using the text).
func scrollArg(out *bytebufferpool.ByteBuffer, q string, body []byte) []byte {
	if len(body) > 0 {
		return body
	}
	v, _ := sqParam(out.B[:0], q, "s")
	out.B = v
	return v
}

func appendCountMsg(dst []byte, prefix string, n int, suffix string) []byte {
	dst = append(dst, prefix...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, suffix...)
}

// appendPhextFile appends the file name of phext name relative to the
// tenant's data dir, as SQ names it (".phext" for the default phext).
func appendPhextFile(dst, name []byte) []byte {
	dst = append(dst, name...)
	return append(dst, ".phext"...)
}

// status writes SQ's status text for phext name: its file, the connection
// id (always 0 in SQ's multi-tenant mode), serialized size and scrolls.
// The document is measured, not built.
func (h *httpAPI) status(t server.Tenant, name []byte, out *bytebufferpool.ByteBuffer) error {
	size, scrolls, err := t.Store().DocSize(name)
	if err != nil {
		return err
	}
	out.B = append(out.B, "Hosting: "...)
	out.B = appendPhextFile(out.B, name)
	out.B = append(out.B, "\nConnection ID: 0\nPhext Size: "...)
	out.B = strconv.AppendInt(out.B, size, 10)
	out.B = append(out.B, "\nScrolls: "...)
	out.B = strconv.AppendInt(out.B, scrolls, 10)
	return nil
}

// jsonExport writes SQ's json-export layout, sorted by coordinate and with
// proper JSON string escapes (SQ escapes only '"' and newlines, in hash
// order, so its output can be invalid JSON). The export is measured first
// (a walk that builds nothing) and refused past lim before it is built.
func (h *httpAPI) jsonExport(t server.Tenant, name []byte, out *bytebufferpool.ByteBuffer, lim store.Limit) error {
	// The text alone is a lower bound: refuse a large export at once,
	// without walking it.
	text, scrolls, err := t.Store().TextSize(name)
	if err != nil {
		return err
	}
	if lower := text + scrolls*int64(len(`   { "coord": "", "scroll": "" }`)); lim.Max > 0 && lower > int64(lim.Max) {
		return fmt.Errorf("%w: json-export of at least %d bytes is above the limit of %d", store.ErrTooLarge, lower, lim.Max)
	}
	size := int64(len("[\n]\n"))
	first := true
	entry := func(c phext.Coordinate, text []byte) int64 {
		var cbuf [64]byte
		n := int64(len(`   { "coord": "`) + len(c.AppendText(cbuf[:0])) + len(`", "scroll": `) + jsonStringLen(text) + len(" }\n"))
		if !first {
			n++ // the comma
		}
		first = false
		return n
	}
	if err := t.Store().Walk(name, func(c phext.Coordinate, text []byte) error {
		size += entry(c, text)
		return nil
	}); err != nil {
		return err
	}
	if err := lim.Check(size); err != nil {
		return err
	}
	out.B = slices.Grow(out.B, int(size))
	out.B = append(out.B, "[\n"...)
	first = true
	err = t.Store().Walk(name, func(c phext.Coordinate, text []byte) error {
		if !first {
			out.B = append(out.B, ',')
		}
		first = false
		out.B = append(out.B, `   { "coord": "`...)
		out.B = c.AppendText(out.B)
		out.B = append(out.B, `", "scroll": `...)
		out.B = appendJSONString(out.B, text)
		out.B = append(out.B, " }\n"...)
		return nil
	})
	if err != nil {
		return err
	}
	if first {
		// SQ's map of an empty or new phext holds one empty scroll at
		// the origin, and it exports that.
		out.B = append(out.B, `   { "coord": "1.1.1/1.1.1/1.1.1", "scroll": "" }`+"\n"...)
	}
	out.B = append(out.B, "]\n"...)
	return nil
}

// appendJSONString appends s as a JSON string literal. s is valid UTF-8
// (stored scrolls are); only '"', '\\' and control bytes are escaped.
func appendJSONString(dst, s []byte) []byte {
	const hexd = "0123456789abcdef"
	dst = append(dst, '"')
	for _, b := range s {
		switch {
		case b == '"' || b == '\\':
			dst = append(dst, '\\', b)
		case b == '\n':
			dst = append(dst, '\\', 'n')
		case b == '\r':
			dst = append(dst, '\\', 'r')
		case b == '\t':
			dst = append(dst, '\\', 't')
		case b < 0x20 || b == 0x7f:
			dst = append(dst, '\\', 'u', '0', '0', hexd[b>>4], hexd[b&15])
		default:
			dst = append(dst, b)
		}
	}
	return append(dst, '"')
}

// jsonStringLen returns len(appendJSONString(nil, s)).
func jsonStringLen(s []byte) int {
	n := 2
	for _, b := range s {
		switch {
		case b == '"' || b == '\\' || b == '\n' || b == '\r' || b == '\t':
			n += 2
		case b < 0x20 || b == 0x7f:
			n += 6
		default:
			n++
		}
	}
	return n
}

// where answers POST /api/v2/where: SQ's coordinate inference over the body
// (or s), with algo (xor, the default, or checksum) and limit (default 100).
func (h *httpAPI) where(q string, body []byte, out *bytebufferpool.ByteBuffer) (int, protocol.Status, string) {
	var abuf, lbuf [16]byte
	algo, _ := sqParam(abuf[:0], q, "algo")
	algoName := "xor"
	switch string(algo) {
	case "", "xor":
	case "checksum":
		algoName = "checksum"
	default:
		return http.StatusBadRequest, protocol.StatusBadFrame, "Bad Request: algo must be xor or checksum"
	}
	limit := phext.DefaultWhereLimit
	if lv, _ := sqParam(lbuf[:0], q, "limit"); len(lv) > 0 {
		// As SQ's usize parse: one leading '+' is allowed ("%2B5") and
		// any size fits up to 2^63-1 (limit compares with a length).
		digits := string(lv)
		if digits[0] == '+' {
			digits = digits[1:]
		}
		n, err := strconv.ParseUint(digits, 10, 63)
		if err != nil {
			return http.StatusBadRequest, protocol.StatusBadFrame, "Bad Request: limit must be a non-negative integer below 2^63"
		}
		limit = int(n)
	}
	text := scrollArg(out, q, body)
	c, err := phext.Where(text, algoName, limit)
	if err != nil {
		return http.StatusBadRequest, protocol.StatusBadFrame, "Bad Request: " + err.Error()
	}
	out.B = phext.AppendWhereMessage(out.B[:0], c, algoName, limit)
	return http.StatusOK, protocol.StatusOK, ""
}

// errorOf turns a store error into the REST answer: the HTTP code of
// its status (server.StatusOf, then httpCode: the same mapping as the
// binary protocol), the status and SQ's text where SQ has one. Only INTERNAL
// errors are logged.
func (h *httpAPI) errorOf(t server.Tenant, rt route, name []byte, err error) (int, protocol.Status, string) {
	status, expected := server.StatusOf(err)
	code := httpCode(status)
	switch status {
	case protocol.StatusBadName:
		return code, status, msgBadPath
	case protocol.StatusBadCoord:
		return code, status, "Bad Request: coordinate parts must be 1..999, in the form 1.1.1/1.1.1/1.1.1"
	case protocol.StatusBadScroll:
		if errors.Is(err, store.ErrBadScroll) {
			return code, status, badScrollMsg(err)
		}
		return code, status, "Bad Request: " + err.Error()
	case protocol.StatusTooLarge:
		return code, status, "Payload Too Large: " + err.Error()
	case protocol.StatusQuota:
		return code, status, "Insufficient Storage: tenant quota exceeded"
	case protocol.StatusShuttingDown:
		return code, status, msgShuttingDown
	}
	if !expected {
		h.log.Warn("http request failed", "tenant", t.Name(), "route", routeNames[rt], "phext", string(name), "err", err)
		return code, status, "Internal Server Error"
	}
	return code, status, http.StatusText(code) + ": " + err.Error()
}

// badScrollMsg is the 400 text for a refused scroll: the fixed sentence,
// then which byte at which offset when the store said so.
func badScrollMsg(err error) string {
	msg := "Bad Request: scroll text must be valid UTF-8 without phext delimiter bytes (0x01, 0x17-0x1A, 0x1C-0x1F)"
	var se *phext.ScrollError
	if errors.As(err, &se) {
		if se.Delimiter {
			return fmt.Sprintf("%s: byte 0x%02X at offset %d is a delimiter", msg, se.Byte, se.Offset)
		}
		return fmt.Sprintf("%s: byte 0x%02X at offset %d is not valid UTF-8", msg, se.Byte, se.Offset)
	}
	return msg
}

// tenantOf finds the tenant named by the request's token, accepted like
// SQ: "Authorization: Bearer <token>", a bare "Authorization: <token>", or
// "X-SQ-API-Key: <token>". tried reports whether any token was sent.
func (h *httpAPI) tenantOf(r *http.Request) (t server.Tenant, ok, tried bool) {
	for _, v := range r.Header["Authorization"] {
		tried = true
		if t, ok := h.s.TenantByToken(bearer(v)); ok {
			return t, true, true
		}
	}
	for _, v := range r.Header["X-Sq-Api-Key"] {
		tried = true
		if t, ok := h.s.TenantByToken(strings.TrimSpace(v)); ok {
			return t, true, true
		}
	}
	return t, false, tried
}

// bearer strips an optional, case-insensitive "Bearer " prefix.
func bearer(v string) string {
	v = strings.TrimSpace(v)
	if len(v) >= 7 && strings.EqualFold(v[:7], "bearer ") {
		v = strings.TrimSpace(v[7:])
	}
	return v
}

// authFailed counts a bad token and, past the address's budget, delays the
// answer like a failed HELLO (the same per-IP limiter, Engine.AuthRefused):
// every such answer waits, until its delay, the engine's or this server's
// shutdown, or its client leaving (clientLeft).
func (h *httpAPI) authFailed(r *http.Request) {
	left, end := clientLeft(r)
	h.s.AuthRefused(remoteIP(r)).Wait(left, h.stop)
	end()
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func isLoopback(r *http.Request) bool {
	ip := net.ParseIP(remoteIP(r))
	return ip != nil && ip.IsLoopback()
}

// trusted reports whether the request comes from loopback and the server
// trusts loopback (Options.TrustLoopback; off by default).
func (h *httpAPI) trusted(r *http.Request) bool {
	return h.so.TrustLoopback && isLoopback(r)
}

// serveReload answers POST /api/v2/reload: with the admin token, or from
// loopback without a token when the server trusts loopback (SQ's rule,
// which a proxy on the same host turns into "from anywhere"). Unlike SQ it
// reloads before answering and reports a failure.
func (h *httpAPI) serveReload(w http.ResponseWriter, r *http.Request) {
	if !h.isAdmin(r) && !h.trusted(r) {
		if len(r.Header["Authorization"]) > 0 {
			h.authFailed(r)
		}
		h.count(routeReload, http.StatusForbidden)
		replyText(w, http.StatusForbidden, msgReloadForbidden)
		return
	}
	if h.so.LoadConfig == nil && h.o.ConfigPath == "" {
		h.count(routeReload, http.StatusServiceUnavailable)
		replyText(w, http.StatusServiceUnavailable, "Reload not available in this mode")
		return
	}
	h.adminMu.Lock()
	msg, err := h.reload()
	h.adminMu.Unlock()
	if err != nil {
		h.count(routeReload, http.StatusInternalServerError)
		replyText(w, http.StatusInternalServerError, "Config reload failed; the old config stays in place: "+err.Error())
		return
	}
	h.count(routeReload, http.StatusOK)
	replyText(w, http.StatusOK, "Config reload triggered\n"+msg)
}

// reload re-reads the configuration (the server's Options.LoadConfig, else
// ConfigPath) and applies it. The caller holds adminMu.
func (h *httpAPI) reload() (string, error) {
	if h.so.LoadConfig != nil {
		return h.s.ReloadFromSource()
	}
	return h.s.ReloadFile(h.o.ConfigPath)
}

// sqParam returns the value of the last key=value pair of the raw query
// whose key decodes to key, decoded as SQ decodes it: '+' is a space, %XX
// is a byte, an invalid escape stays as it is. Pairs without '=' are
// ignored. The value is appended to dst[:0]; it may be invalid UTF-8 (SQ
// would replace such bytes; callers refuse them where they would be
// stored).
func sqParam(dst []byte, raw, key string) ([]byte, bool) {
	found := false
	var kbuf [32]byte
	for raw != "" {
		var pair string
		if i := strings.IndexByte(raw, '&'); i >= 0 {
			pair, raw = raw[:i], raw[i+1:]
		} else {
			pair, raw = raw, ""
		}
		eq := strings.IndexByte(pair, '=')
		if eq < 0 {
			continue
		}
		k := pair[:eq]
		if strings.ContainsAny(k, "%+") {
			if len(k) > 3*len(kbuf) {
				continue
			}
			if string(urlDecode(kbuf[:0], k)) != key {
				continue
			}
		} else if k != key {
			continue
		}
		dst = urlDecode(dst[:0], pair[eq+1:])
		found = true
	}
	return dst, found
}

// urlDecode appends the decoded form of s to dst.
func urlDecode(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			dst = append(dst, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// sqCoord parses the c parameter. Absent or empty means
// 1.1.1/1.1.1/1.1.1, as in SQ; otherwise it must be nine parts of 1..999
// (any of '.', '/', ';' between them): text SQ would guess at is refused.
func sqCoord(v []byte, found bool) (phext.Coordinate, error) {
	if !found || len(v) == 0 {
		return phext.Origin, nil
	}
	return phext.ToCoordinateLoose(v)
}
