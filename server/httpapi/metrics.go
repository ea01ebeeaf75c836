package httpapi

import (
	"net/http"
	"strconv"

	"github.com/valyala/bytebufferpool"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// serveMetrics answers GET /metrics (the exposition is the engine's,
// server.AppendMetrics, with this handler's HTTP counters): with the
// metrics or the admin token, from loopback when the server trusts it, or
// to anyone when PublicMetrics is set.
func (h *httpAPI) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.count(routeMetrics, http.StatusMethodNotAllowed)
		replyText(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	if !h.o.PublicMetrics && !h.mayReadMetrics(r) {
		h.count(routeMetrics, http.StatusUnauthorized)
		replyText(w, http.StatusUnauthorized, msgUnauthorized)
		return
	}
	buf := protocol.GetBuffer()
	defer protocol.PutBuffer(buf)
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

// writeMetrics appends the whole exposition to buf.
func (h *httpAPI) writeMetrics(buf *bytebufferpool.ByteBuffer) {
	buf.B = h.s.AppendMetrics(buf.B, h.httpMetrics())
}

// httpMetrics reads this handler's counters for the exposition.
func (h *httpAPI) httpMetrics() server.HTTPMetrics {
	m := server.HTTPMetrics{InFlight: h.inflight.Load()}
	if h.ln != nil {
		m.Conns, m.ConnsRefused = h.ln.open.Load(), h.ln.refused.Load()
	}
	for rt := range h.codes {
		for c := range h.codes[rt] {
			if v := h.codes[rt][c].Load(); v > 0 {
				code := "other"
				if httpCodes[c] != 0 {
					code = strconv.Itoa(httpCodes[c])
				}
				m.Requests = append(m.Requests, server.HTTPCount{Route: routeNames[rt], Code: code, N: v})
			}
		}
	}
	return m
}
