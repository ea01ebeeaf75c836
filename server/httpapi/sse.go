package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// GET /api/v2/watch?p=NAME&c=PREFIX[&text=1][&from=POS]: the change feed
// as Server-Sent Events (docs/COMPATIBILITY.md). Each change is one event
// "change" whose id is its position and whose data is one JSON object;
// a browser's EventSource reconnects with Last-Event-ID, which resumes
// after that position exactly as WATCH with `from` does (or sends one
// "resync" event). The stream ends after a resync that ends the
// subscription (a slow reader), and the client reconnects from its id.

// sseHeartbeat is how often an idle stream gets a comment line, so that
// proxies keep it open and a vanished client is noticed.
const sseHeartbeat = 15 * time.Second

// sseWriteTimeout bounds one write of a stream (the server's WriteTimeout
// would end every stream after it).
const sseWriteTimeout = 30 * time.Second

// sseEncoder writes change events as SSE text (server.StreamEncoder).
type sseEncoder struct{}

func (sseEncoder) AppendChange(dst []byte, c *store.Change, withText, omitted bool) []byte {
	return appendSSEChange(dst, c, withText, omitted)
}

func (sseEncoder) AppendResync(dst []byte, pos uint64, reason uint8, ended bool) []byte {
	return appendSSEResync(dst, pos, reason, ended)
}

func appendSSEChange(dst []byte, c *store.Change, withText, omitted bool) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, c.Pos, 10)
	dst = append(dst, "\nevent: change\ndata: {\"pos\":"...)
	dst = strconv.AppendUint(dst, c.Pos, 10)
	dst = append(dst, ",\"op\":\""...)
	dst = append(dst, protocol.ChangeOpName(uint8(c.Op))...)
	dst = append(dst, "\",\"phext\":"...)
	dst = appendJSONString(dst, []byte(c.Phext))
	dst = append(dst, ",\"coord\":\""...)
	dst = c.Coord.AppendText(dst)
	dst = append(dst, "\",\"len\":"...)
	dst = strconv.AppendInt(dst, c.Len, 10)
	if c.HasSum {
		dst = append(dst, ",\"checksum\":\""...)
		dst = append(dst, c.Sum[:]...)
		dst = append(dst, '"')
	}
	switch {
	case omitted:
		dst = append(dst, ",\"text_omitted\":true"...)
	case withText:
		dst = append(dst, ",\"text\":"...)
		dst = appendJSONString(dst, c.Text)
	}
	return append(dst, "}\n\n"...)
}

func appendSSEResync(dst []byte, pos uint64, reason uint8, ended bool) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, pos, 10)
	dst = append(dst, "\nevent: resync\ndata: {\"pos\":"...)
	dst = strconv.AppendUint(dst, pos, 10)
	dst = append(dst, ",\"reason\":\""...)
	switch reason {
	case protocol.ResyncGap:
		dst = append(dst, "gap"...)
	case protocol.ResyncSlow:
		dst = append(dst, "slow"...)
	default:
		dst = append(dst, "gone"...)
	}
	dst = append(dst, "\",\"ended\":"...)
	dst = strconv.AppendBool(dst, ended)
	return append(dst, "}\n\n"...)
}

// serveWatch streams the change feed of phext name of tenant t.
func (h *httpAPI) serveWatch(w http.ResponseWriter, r *http.Request, t server.Tenant, name []byte, start time.Time) {
	q := r.URL.Query()
	prefix, d, err := phext.ParsePrefix(q.Get("c"))
	depth := uint8(d)
	if err != nil {
		h.record(t, routeWatch, http.StatusBadRequest, protocol.StatusBadCoord, 0, 0, start)
		replyText(w, http.StatusBadRequest, "Bad Request: c must be a coordinate prefix of 1 to 9 parts, each 1..999")
		return
	}
	from := q.Get("from")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		from = id
	}
	wq := protocol.Watch{Depth: depth, Prefix: prefix}
	if from != "" {
		p, err := strconv.ParseUint(from, 10, 64)
		if err != nil {
			h.record(t, routeWatch, http.StatusBadRequest, protocol.StatusBadFrame, 0, 0, start)
			replyText(w, http.StatusBadRequest, "Bad Request: from / Last-Event-ID must be a position (a decimal number)")
			return
		}
		wq.Flags, wq.From = protocol.WatchFrom, p
	}
	ws, err := h.s.Watch(t, name, &wq, q.Get("text") == "1" || q.Get("text") == "true", sseEncoder{})
	if err != nil {
		status, _ := server.StatusOf(err)
		code := httpCode(status)
		h.record(t, routeWatch, code, status, 0, 0, start)
		if code == http.StatusServiceUnavailable {
			w.Header()["Retry-After"] = retryAfter
		}
		replyText(w, code, err.Error())
		return
	}
	defer ws.Close()
	h.record(t, routeWatch, http.StatusOK, protocol.StatusOK, 0, 0, start)
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd["Access-Control-Allow-Origin"] = corsOrigin
	hd["Content-Type"] = []string{"text/event-stream"}
	hd["Cache-Control"] = noStore
	hd["X-Accel-Buffering"] = []string{"no"}
	hd["X-Sq-Position"] = []string{strconv.FormatUint(ws.Head(), 10)}
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The retry hint: reconnect after 1 s.
	if !write([]byte("retry: 1000\n\n")) {
		return
	}
	tick := time.NewTicker(sseHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.stop:
			// The HTTP server is shutting down (it would otherwise wait
			// for this stream to end); the client reconnects elsewhere or
			// later from its last id.
			return
		case <-tick.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
			continue
		case <-ws.Ready():
		}
		buf, over := ws.Take()
		ok := len(buf) == 0 || write(buf)
		ws.Written(buf)
		if !ok || over {
			return
		}
	}
}
