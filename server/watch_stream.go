package server

import (
	"sync"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// A front end that writes change events itself (REST's Server-Sent Events,
// server/httpapi) subscribes with Server.Watch and gets a WatchStream: the
// feed encodes each event with the front end's StreamEncoder into the
// stream's bounded queue on the publishing goroutine (under the hub's mu),
// and the front end's own goroutine takes what is queued and writes it.
// The queue's bytes are charged to the tenant's share of the client
// memory budget until they are written.

// StreamEncoder turns change-feed events into a stream's bytes. Its
// methods run with the hub's mu held, possibly on an event loop under the
// store's phext locks: memory work only, appending to dst.
type StreamEncoder interface {
	// AppendChange appends the event of c. withText: the event carries
	// c.Text (the subscriber asked for texts and the change is not a
	// delete; for put and compact it is the serialized phext); omitted:
	// it was asked for but is above protocol.MaxEventText (c.Text nil).
	AppendChange(dst []byte, c *store.Change, withText, omitted bool) []byte
	// AppendResync appends a resync event (reason: protocol.Resync*;
	// ended: the subscription ends with it).
	AppendResync(dst []byte, pos uint64, reason uint8, ended bool) []byte
}

// WatchStream is one change-feed subscription of a front end. Take,
// Written and Close belong to one goroutine (the stream's handler);
// Ready may be waited on from it.
type WatchStream struct {
	t     *tenant
	hub   *feedHub
	sub   *watchSub
	k     *streamSink
	head  uint64
	spare []byte
	taken int64 // bytes of the last Take still charged until Written
}

// Watch subscribes a front end's stream to phext name of tenant t: w
// carries the prefix and an optional resume position, as a WATCH frame
// does; text asks for the scrolls' texts. Events are encoded with enc into
// a queue of at most Options.WatchQueueBytes; past it the stream gets a
// resync and ends. Errors are the WATCH answers (limits, BUSY for memory,
// SHUTTING_DOWN while draining; see StatusOf).
func (s *Server) Watch(t Tenant, name []byte, w *protocol.Watch, text bool, enc StreamEncoder) (*WatchStream, error) {
	k := &streamSink{mem: t.t.mem, max: s.opts.WatchQueueBytes, enc: enc, wake: make(chan struct{}, 1)}
	sub := &watchSub{phext: string(name), prefix: w.Prefix, depth: w.Depth, text: text, sink: k}
	var head uint64
	var hub *feedHub
	var err error
	for {
		// A hub detached by the sweep between hubFor and subscribe
		// refuses; the next hubFor attaches a new one.
		hub = s.hubFor(t.t)
		if head, err = hub.subscribe(sub, w); err != errShuttingDownFeed || s.draining.Load() {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return &WatchStream{t: t.t, hub: hub, sub: sub, k: k, head: head}, nil
}

// Head is the position "now" at subscription (a client that saw every
// event up to it may resume from it).
func (ws *WatchStream) Head() uint64 { return ws.head }

// Ready receives a value when events are queued or the stream is over.
func (ws *WatchStream) Ready() <-chan struct{} { return ws.k.wake }

// Take returns what is queued and whether the stream is over (its
// subscription ended: write what Take returned, then stop). The bytes stay
// charged to the budget until Written.
func (ws *WatchStream) Take() (buf []byte, over bool) {
	buf, ws.taken, over = ws.k.take(ws.spare)
	ws.spare = nil
	return buf, over
}

// Written releases the budget of buf, the last Take, once it was written
// (or failed to be); buf may be reused for the next one.
func (ws *WatchStream) Written(buf []byte) {
	ws.t.mem.release(ws.taken)
	ws.taken = 0
	if cap(buf) <= maxSpare {
		ws.spare = buf
	}
	// The queue is empty: a backlog (a resume larger than the queue)
	// goes on.
	ws.hub.mu.Lock()
	if len(ws.sub.backlog) > 0 {
		ws.hub.refill(ws.sub, ws.k.max/2)
	}
	ws.hub.mu.Unlock()
}

// Close ends the subscription and releases what is still queued for it.
func (ws *WatchStream) Close() {
	// Once out of the hub nothing is queued any more: give back what is
	// still queued (a client that went away mid-stream).
	ws.hub.remove(ws.sub)
	_, charged, _ := ws.k.take(nil)
	ws.t.mem.release(charged + ws.taken)
	ws.taken = 0
}

// streamSink is a WatchStream's queue: events are encoded on the
// publishing goroutine (under the hub's mu) and taken by the stream's.
type streamSink struct {
	mem *memBudget
	max int
	enc StreamEncoder

	mu      sync.Mutex
	buf     []byte
	change  store.Change // deliver's argument to enc (mu)
	charged int64
	sub     *watchSub
	over    bool          // the subscription ended
	wake    chan struct{} // capacity 1
}

func (k *streamSink) notify() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

func (k *streamSink) deliver(sub *watchSub, ev *feedEvent) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.over {
		return true
	}
	start := len(k.buf)
	textAt, text := ev.textFor(sub)
	// The change goes to the encoder through an interface: a local would
	// escape (an allocation per event); k.change is reused under mu.
	k.change = store.Change{Pos: ev.pos, Phext: ev.phext, Op: ev.op, Coord: ev.coord, Len: ev.n,
		Sum: ev.sum, HasSum: ev.hasSum, Text: text}
	k.buf = k.enc.AppendChange(k.buf, &k.change, textAt == protocol.TextHere, textAt == protocol.TextOmitted)
	k.change.Text = nil // the hub's copy: not kept past the encode
	n := len(k.buf) - start
	if len(k.buf) > k.max || !k.mem.tryReserve(int64(n)) {
		k.buf = k.buf[:start]
		return false
	}
	k.charged += int64(n)
	k.notify()
	return true
}

func (k *streamSink) resync(sub *watchSub, pos uint64, reason uint8, ended bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.buf = k.enc.AppendResync(k.buf, pos, reason, ended)
	k.notify()
}

func (k *streamSink) add(sub *watchSub) error {
	k.mu.Lock()
	k.sub = sub
	k.mu.Unlock()
	return nil
}

func (k *streamSink) catchingUp(int32) {}

// kick wakes the stream's handler: its Written refills the backlog.
func (k *streamSink) kick() { k.notify() }

func (k *streamSink) ended(sub *watchSub) {
	// Called with the hub's mu held, possibly under store locks: only
	// mark, the handler returns once it has written what is queued.
	k.mu.Lock()
	k.over = true
	k.mu.Unlock()
	k.notify()
}

// take returns what is queued and whether the stream is over.
func (k *streamSink) take(spare []byte) (buf []byte, charged int64, over bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	buf, charged, over = k.buf, k.charged, k.over
	k.buf, k.charged = spare[:0], 0
	return buf, charged, over
}
