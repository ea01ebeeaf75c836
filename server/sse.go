package server

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
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

// sseSink is one SSE stream's queue: events are encoded on the publishing
// goroutine (under the hub's mu) and written by the handler's goroutine.
type sseSink struct {
	mem *memBudget
	max int

	mu      sync.Mutex
	buf     []byte
	charged int64
	sub     *watchSub
	over    bool          // the subscription ended
	wake    chan struct{} // capacity 1
}

func (k *sseSink) notify() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

func (k *sseSink) deliver(sub *watchSub, ev *feedEvent) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.over {
		return true
	}
	start := len(k.buf)
	k.buf = appendSSEChange(k.buf, sub, ev)
	n := len(k.buf) - start
	if len(k.buf) > k.max || !k.mem.tryReserve(int64(n)) {
		k.buf = k.buf[:start]
		return false
	}
	k.charged += int64(n)
	k.notify()
	return true
}

func (k *sseSink) resync(sub *watchSub, pos uint64, reason uint8, ended bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.buf = appendSSEResync(k.buf, pos, reason, ended)
	k.notify()
}

func (k *sseSink) add(sub *watchSub) error {
	k.mu.Lock()
	k.sub = sub
	k.mu.Unlock()
	return nil
}

func (k *sseSink) ended(sub *watchSub) {
	// Called with the hub's mu held, possibly under store locks: only
	// mark, the handler returns once it has written what is queued.
	k.mu.Lock()
	k.over = true
	k.mu.Unlock()
	k.notify()
}

// take returns what is queued and whether the stream is over.
func (k *sseSink) take(spare []byte) (buf []byte, charged int64, over bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	buf, charged, over = k.buf, k.charged, k.over
	k.buf, k.charged = spare[:0], 0
	return buf, charged, over
}

func appendSSEChange(dst []byte, sub *watchSub, ev *feedEvent) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, ev.pos, 10)
	dst = append(dst, "\nevent: change\ndata: {\"pos\":"...)
	dst = strconv.AppendUint(dst, ev.pos, 10)
	dst = append(dst, ",\"op\":\""...)
	dst = append(dst, protocol.ChangeOpName(uint8(ev.op))...)
	dst = append(dst, "\",\"phext\":"...)
	dst = appendJSONString(dst, []byte(ev.phext))
	dst = append(dst, ",\"coord\":\""...)
	dst = ev.coord.AppendText(dst)
	dst = append(dst, "\",\"len\":"...)
	dst = strconv.AppendInt(dst, ev.n, 10)
	if ev.hasSum {
		dst = append(dst, ",\"checksum\":\""...)
		dst = append(dst, ev.sum[:]...)
		dst = append(dst, '"')
	}
	if sub.text {
		switch {
		case ev.omitted:
			dst = append(dst, ",\"text_omitted\":true"...)
		case ev.op != store.ChangeDelete && ev.op != store.ChangePut && ev.op != store.ChangeCompact:
			dst = append(dst, ",\"text\":"...)
			dst = appendJSONString(dst, ev.text)
		}
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
func (h *httpAPI) serveWatch(w http.ResponseWriter, r *http.Request, t *tenant, name []byte, start time.Time) {
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
	k := &sseSink{mem: t.mem, max: h.s.opts.WatchQueueBytes, wake: make(chan struct{}, 1)}
	sub := &watchSub{phext: string(name), prefix: prefix, depth: depth,
		text: q.Get("text") == "1" || q.Get("text") == "true", sink: k}
	var head uint64
	var hub *feedHub
	for {
		hub = h.s.hubFor(t)
		if head, err = hub.subscribe(sub, &wq); err != errShuttingDownFeed || h.s.draining.Load() {
			break
		}
	}
	if err != nil {
		status, _ := statusOf(err)
		code := httpCode(status)
		h.record(t, routeWatch, code, status, 0, 0, start)
		if code == http.StatusServiceUnavailable {
			w.Header()["Retry-After"] = retryAfter
		}
		replyText(w, code, err.Error())
		return
	}
	defer func() {
		// Once out of the hub nothing is queued any more: give back what
		// is still queued (a client that went away mid-stream).
		hub.remove(sub)
		_, charged, _ := k.take(nil)
		t.mem.release(charged)
	}()
	h.record(t, routeWatch, http.StatusOK, protocol.StatusOK, 0, 0, start)
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd["Access-Control-Allow-Origin"] = corsOrigin
	hd["Content-Type"] = []string{"text/event-stream"}
	hd["Cache-Control"] = noStore
	hd["X-Accel-Buffering"] = []string{"no"}
	hd["X-Sq-Position"] = []string{strconv.FormatUint(head, 10)}
	w.WriteHeader(http.StatusOK)
	var spare []byte
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
		case <-k.wake:
		}
		buf, charged, over := k.take(spare)
		ok := len(buf) == 0 || write(buf)
		t.mem.release(charged)
		if cap(buf) <= maxSpare {
			spare = buf
		}
		if !ok || over {
			return
		}
	}
}
