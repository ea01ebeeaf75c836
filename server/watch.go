package server

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// The change feed (issue 18; docs/PROTOCOL.md §2.10).
//
// Each watched tenant has a feedHub: the store.Feed of its store tenant,
// a bounded retention ring of its recent changes (for resume) and its
// subscriptions. The store calls Publish with the phext's locks held, on
// whichever goroutine committed the change (an event loop for a write
// answered on the loop, a worker otherwise), so Publish does memory work
// only: it records the change, encodes one event per matching
// subscription into that subscriber's bounded queue (a sink) and lists
// the subscriber's connection for its event loop's next flush (loopFeed:
// one task per loop and wake-up writes every listed queue).
// Nothing in it waits for a socket or another loop, so a slow watcher
// never slows a writer: when its queue is full, it gets one resync event
// and its subscription ends.
//
// Positions: a change's position comes from the store (store.Change.Pos).
// A subscription that resumes from position P gets exactly the changes
// above P: from the ring when every change above P was retained (P ≥
// floor), else read back from the commit log up to a cut ≥ floor and the
// ring above it (store.Tenant.ReadChanges); when neither can vouch for
// them, one resync event: never a silent gap. A replay larger than the
// subscriber's queue waits in the subscription's backlog, with the live
// changes published meanwhile behind it, and is queued as the queue drains
// (refill), so a resume from far back makes progress. floor starts at the
// position SetFeed drew when the hub was attached (changes before it were
// never published) and rises as the ring evicts.
//
// Memory: the ring (events, names, texts) and each connection's queued
// event bytes are charged to the tenant's share of the client memory
// budget (budget.go); each subscription charges watchSubCost. What does
// not fit: the ring evicts (raising floor), a queue overflows (resync and
// drop), a WATCH is answered BUSY.

// watchSubCost is what one subscription charges the memory budget for its
// bookkeeping (the struct, its map entries, its share of a queue buffer).
const watchSubCost = 4 << 10

// eventCost is what one retained event is charged beyond its name and
// text (the struct and ring slot).
const eventCost = 128

// feedEvent is one retained change. Its text is the hub's own copy (nil
// when the change has none, or when it is above protocol.MaxEventText:
// omitted).
type feedEvent struct {
	pos     uint64
	op      store.ChangeOp
	phext   string
	coord   phext.Coordinate
	n       int64
	sum     [32]byte
	hasSum  bool
	text    []byte
	omitted bool
	cost    int64
}

// sink receives the events of its subscriptions. Both methods run with
// feedHub.mu held (possibly on an event loop, with store locks held):
// memory work only, never a wait.
type sink interface {
	// deliver queues ev for sub; false means the sink's queue is full: the
	// hub ends sub with a resync.
	deliver(sub *watchSub, ev *feedEvent) bool
	// resync queues a resync event (always accepted: it is small and
	// ends the growth when ended is set).
	resync(sub *watchSub, pos uint64, reason uint8, ended bool)
	// add registers sub with its subscriber before the hub takes it:
	// refused for a duplicate id or the subscriber's own limit.
	add(sub *watchSub) error
	// ended tells the sink that sub is no longer in the hub.
	ended(sub *watchSub)
	// catchingUp counts the sink's subscriptions with a backlog (delta
	// +1 when one starts, -1 when it is queued or the subscription ends).
	catchingUp(delta int32)
	// kick makes the sink's writer call feedHub.refill soon (a backlog
	// waits and its queue may have room).
	kick()
}

// watchSub is one subscription.
type watchSub struct {
	id     uint32
	phext  string
	prefix phext.Coordinate
	depth  uint8
	text   bool
	sink   sink
	last   uint64 // highest position queued to it (hub.mu)

	// backlog holds, in order, the changes a resume replays that did not
	// fit the sink's queue and the live changes published since: they are
	// queued as the queue drains (refill), so a resume larger than the
	// queue makes progress instead of overflowing (hub.mu).
	backlog []pendingEvent
	// liveBytes is what the live changes in backlog are charged; past
	// WatchQueueBytes the subscriber is too slow (resync, dropped), as
	// with a full queue. heldBack is the read back's reservation
	// (watchBackBytes) its changes in backlog keep. ringBytes is what the
	// retained changes it replayed into backlog are charged (the ring may
	// evict them while they wait).
	liveBytes int64
	heldBack  int64
	ringBytes int64
}

// pendingEvent is a change waiting in a subscription's backlog.
type pendingEvent struct {
	ev   *feedEvent
	live bool // published after the subscription began (charged)
	ring bool // a retained change replayed (charged)
}

// textFor says what text ev carries for sub: none when sub did not ask
// or the change is a delete; omitted above protocol.MaxEventText; else
// the scroll's new text (for put and compact the serialized phext).
func (ev *feedEvent) textFor(sub *watchSub) (textAt uint8, text []byte) {
	switch {
	case !sub.text || ev.op == store.ChangeDelete:
		return protocol.TextNone, nil
	case ev.omitted:
		return protocol.TextOmitted, nil
	}
	return protocol.TextHere, ev.text
}

func (sub *watchSub) matches(ev *feedEvent) bool {
	if ev.phext != sub.phext {
		return false
	}
	if ev.op == store.ChangePut || ev.op == store.ChangeCompact {
		return true // the whole phext changed: every prefix is concerned
	}
	return ev.coord.HasPrefix(sub.prefix, int(sub.depth))
}

// feedHub is one tenant's change feed. All fields are guarded by mu.
type feedHub struct {
	s     *Server
	store *store.Tenant
	mem   *memBudget

	mu        sync.Mutex
	floor     uint64 // resume from P is exact iff P ≥ floor
	ring      []*feedEvent
	first     int // index of the oldest event in ring
	n         int // events held
	bytes     int64
	charged   int64 // reserved from mem for the ring
	subs      map[*watchSub]struct{}
	idleSince time.Time // when the last subscription left (zero while any)
	detached  bool
	// slab and arena hand out retained events and their texts in chunks
	// (newEvent, keep), so that a publish allocates nothing in the steady
	// state; a chunk is freed by the GC once the ring no longer holds any
	// event in it.
	slab  []feedEvent
	arena []byte
}

// Chunk sizes of the hub's slab and arena; texts above arenaMaxText get an
// allocation of their own (a big text would pin a mostly evicted chunk).
const (
	slabEvents   = 64
	arenaChunk   = 32 << 10
	arenaMaxText = 2 << 10
)

// newEvent returns a zeroed event from the slab (mu held).
func (h *feedHub) newEvent() *feedEvent {
	if len(h.slab) == 0 {
		h.slab = make([]feedEvent, slabEvents)
	}
	ev := &h.slab[0]
	h.slab = h.slab[1:]
	return ev
}

// keep returns the hub's own copy of b (mu held): b is a view into the
// store, valid only during Publish.
func (h *feedHub) keep(b []byte) []byte {
	if len(b) > arenaMaxText {
		return append([]byte(nil), b...)
	}
	if cap(h.arena)-len(h.arena) < len(b) {
		h.arena = make([]byte, 0, arenaChunk)
	}
	start := len(h.arena)
	h.arena = append(h.arena, b...)
	return h.arena[start:len(h.arena):len(h.arena)]
}

// hubFor returns the tenant's hub, attaching a new one to the store
// tenant if it has none.
func (s *Server) hubFor(t *tenant) *feedHub {
	s.hubsMu.Lock()
	defer s.hubsMu.Unlock()
	if h := s.hubs[t.store]; h != nil {
		return h
	}
	h := &feedHub{s: s, store: t.store, mem: t.mem, subs: map[*watchSub]struct{}{},
		ring: make([]*feedEvent, min(ringStart, s.opts.WatchRetainEvents))}
	h.mu.Lock()
	h.floor = t.store.SetFeed(h)
	h.mu.Unlock()
	s.hubs[t.store] = h
	return h
}

// Publish records a committed change and queues it to every matching
// subscription (store.Feed; see the comment at the top of this file).
// Steady state: no allocation; per matching subscription one encode into
// its connection's queue and, when that connection has no flush pending,
// one entry in its event loop's flush list.
func (h *feedHub) Publish(c *store.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.detached {
		return
	}
	ev := h.newEvent()
	*ev = feedEvent{pos: c.Pos, op: c.Op, phext: c.Phext, coord: c.Coord, n: c.Len,
		sum: c.Sum, hasSum: c.HasSum}
	if c.TextOmitted || len(c.Text) > protocol.MaxEventText {
		ev.omitted = true
	} else if len(c.Text) > 0 {
		ev.text = h.keep(c.Text)
	}
	ev.cost = eventCost + int64(len(ev.phext)+len(ev.text))
	h.retain(ev)
	var drop []*watchSub
	for sub := range h.subs {
		if !sub.matches(ev) {
			continue
		}
		if len(sub.backlog) > 0 {
			// Catching up: after the backlog, in order.
			if !h.backlogLive(sub, ev) {
				drop = append(drop, sub)
			}
			continue
		}
		if !sub.sink.deliver(sub, ev) {
			drop = append(drop, sub)
			continue
		}
		sub.last = max(sub.last, ev.pos)
	}
	for _, sub := range drop {
		h.s.stats.watchDropped.Add(1)
		sub.sink.resync(sub, max(sub.last, h.floor), protocol.ResyncSlow, true)
		h.removeLocked(sub)
	}
}

// retain appends ev to the ring, evicting the oldest events past the
// count or byte limits or what the memory budget refuses (mu held).
func (h *feedHub) retain(ev *feedEvent) {
	maxBytes := h.s.opts.WatchRetainBytes
	if h.n == len(h.ring) && len(h.ring) < h.s.opts.WatchRetainEvents && h.bytes+ev.cost <= maxBytes {
		h.growRing()
	}
	for h.n > 0 && (h.n == len(h.ring) || h.bytes+ev.cost > maxBytes) {
		h.evictOldest()
	}
	for !h.mem.tryReserve(ev.cost) {
		if h.n == 0 {
			// Not even one event fits the budget: it is delivered live but
			// not retained, so a resume from before it must resync.
			h.floor = max(h.floor, ev.pos)
			return
		}
		h.evictOldest()
	}
	h.charged += ev.cost
	h.ring[(h.first+h.n)%len(h.ring)] = ev
	h.n++
	h.bytes += ev.cost
}

// ringStart is a new hub's ring size; it doubles up to WatchRetainEvents
// as changes come (a ring of 4,096 slots per watched tenant from the start
// was 32 KiB each, 16 MB of garbage and new heap for 500 tenants whose
// watchers come and go, and GC assists on the event loops).
const ringStart = 64

// growRing doubles the ring (mu held, the ring full), keeping the order.
func (h *feedHub) growRing() {
	ring := make([]*feedEvent, min(2*len(h.ring), h.s.opts.WatchRetainEvents))
	for i := 0; i < h.n; i++ {
		ring[i] = h.ring[(h.first+i)%len(h.ring)]
	}
	h.ring, h.first = ring, 0
}

func (h *feedHub) evictOldest() {
	old := h.ring[h.first]
	h.ring[h.first] = nil
	h.first = (h.first + 1) % len(h.ring)
	h.n--
	h.bytes -= old.cost
	h.charged -= old.cost
	h.mem.release(old.cost)
	h.floor = max(h.floor, old.pos)
}

// removeLocked takes sub out of the hub (mu held).
func (h *feedHub) removeLocked(sub *watchSub) {
	if _, ok := h.subs[sub]; !ok {
		return
	}
	delete(h.subs, sub)
	h.endBacklog(sub)
	sub.sink.ended(sub)
	h.mem.release(watchSubCost)
	h.s.stats.watches.Add(-1)
	if len(h.subs) == 0 {
		h.idleSince = time.Now()
	}
}

// remove takes sub out of the hub.
func (h *feedHub) remove(sub *watchSub) {
	h.mu.Lock()
	h.removeLocked(sub)
	h.mu.Unlock()
}

// watchError is a WATCH refused for a limit.
var (
	errWatchesPerConn   = &protocol.Error{Status: protocol.StatusBusy, Msg: "too many subscriptions on this connection"}
	errWatchesPerTenant = &protocol.Error{Status: protocol.StatusBusy, Msg: "too many subscriptions for this tenant"}
	errWatchID          = &protocol.Error{Status: protocol.StatusBadFrame, Msg: "request id 0xFFFFFFFF is reserved for events"}
	errWatchDup         = &protocol.Error{Status: protocol.StatusBadFrame, Msg: "subscription id already in use on this connection"}
	errNoWatch          = &protocol.Error{Status: protocol.StatusBadFrame, Msg: "no such subscription on this connection"}
)

// subscribe adds sub to the hub: resume from w.From when asked and
// possible (the retained changes above it are queued first, in order),
// else a resync event when the client asked to resume but the changes are
// gone; then live changes. It returns the position "now" (the WATCH
// reply): a client that saw every event up to it may resume from it.
func (h *feedHub) subscribe(sub *watchSub, w *protocol.Watch) (uint64, error) {
	// Changes carry the name the store keeps the phext under (folded on a
	// case-insensitive data dir), so the subscription matches by it too.
	name, err := h.store.FeedName([]byte(sub.phext))
	if err != nil {
		return 0, err
	}
	sub.phext = name
	var back *logBack
	var held int64 // reserved for back until its changes are queued
	defer func() { h.mem.release(held) }()
	if w.Flags&protocol.WatchFrom != 0 && h.needsLog(w.From) {
		// Older than the retention: read the changes back from the commit
		// log (I/O, so before the hub is locked). Its memory is charged
		// until they are queued (a backlog keeps it).
		if h.mem.tryReserve(watchBackBytes) {
			held = watchBackBytes
			back = h.readBack(name, w.From)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.detached {
		return 0, errShuttingDownFeed
	}
	if len(h.subs) >= h.s.opts.MaxWatchesPerTenant {
		return 0, errWatchesPerTenant
	}
	if !h.mem.tryReserve(watchSubCost) {
		return 0, errBusyMemory
	}
	if err := sub.sink.add(sub); err != nil {
		h.mem.release(watchSubCost)
		return 0, err
	}
	head := h.store.Position()
	h.subs[sub] = struct{}{}
	h.idleSince = time.Time{}
	h.s.stats.watches.Add(1)
	sub.last = head
	if w.Flags&protocol.WatchFrom == 0 {
		return head, nil
	}
	from := w.From
	if from < h.floor && back != nil && back.cut >= h.floor {
		// The log gave every change up to back.cut, the ring holds every
		// one above h.floor ≤ back.cut: together, all of them.
		sub.last = from
		for i := range back.events {
			h.replay(sub, &back.events[i], false)
		}
		if len(sub.backlog) > 0 {
			sub.heldBack, held = held, 0
		}
		from = max(from, back.cut)
		h.s.stats.watchLogResumes.Add(1)
	}
	if from < h.floor || from > head {
		h.s.stats.watchResyncs.Add(1)
		sub.sink.resync(sub, head, protocol.ResyncGap, false)
		return head, nil
	}
	sub.last = max(sub.last, w.From)
	for i := 0; i < h.n; i++ {
		ev := h.ring[(h.first+i)%len(h.ring)]
		if ev.pos <= from {
			continue
		}
		if !h.replay(sub, ev, true) {
			// The budget refuses to keep it: too slow, as with a full queue.
			h.s.stats.watchDropped.Add(1)
			sub.sink.resync(sub, max(sub.last, from), protocol.ResyncSlow, true)
			h.removeLocked(sub)
			return head, nil
		}
	}
	if len(sub.backlog) == 0 {
		sub.last = max(sub.last, head)
	}
	return head, nil
}

// replay queues a past change ev to the new subscription sub if it
// concerns it, or adds it to sub's backlog when the queue is full (or a
// backlog already waits) (mu held). ring: ev is a retained change, which
// the ring may evict while it waits: the backlog charges it; false when
// the budget refuses.
func (h *feedHub) replay(sub *watchSub, ev *feedEvent, ring bool) bool {
	if !sub.matches(ev) {
		return true
	}
	if len(sub.backlog) == 0 {
		if sub.sink.deliver(sub, ev) {
			sub.last = max(sub.last, ev.pos)
			return true
		}
		sub.sink.catchingUp(1)
		h.s.stats.watchBacklogs.Add(1)
	}
	if ring {
		if !h.mem.tryReserve(ev.cost) {
			return false
		}
		sub.ringBytes += ev.cost
	}
	sub.backlog = append(sub.backlog, pendingEvent{ev: ev, ring: ring})
	return true
}

// backlogLive adds a live change to sub's backlog (hub mu held); false:
// the backlog's live changes passed WatchQueueBytes (or the budget): sub
// is too slow, as with a full queue.
func (h *feedHub) backlogLive(sub *watchSub, ev *feedEvent) bool {
	if sub.liveBytes+ev.cost > int64(h.s.opts.WatchQueueBytes) || !h.mem.tryReserve(ev.cost) {
		return false
	}
	sub.liveBytes += ev.cost
	sub.backlog = append(sub.backlog, pendingEvent{ev: ev, live: true})
	sub.sink.kick()
	return true
}

// refill queues from sub's backlog, in order, what its sink's queue takes,
// up to about room bytes (mu held), and returns the room left. An emptied
// backlog ends: live changes go to the queue again.
func (h *feedHub) refill(sub *watchSub, room int) int {
	n := 0
	for n < len(sub.backlog) && room > 0 {
		p := sub.backlog[n]
		if !sub.sink.deliver(sub, p.ev) {
			break
		}
		sub.last = max(sub.last, p.ev.pos)
		room -= int(p.ev.cost)
		if p.live {
			sub.liveBytes -= p.ev.cost
			h.mem.release(p.ev.cost)
		} else if p.ring {
			sub.ringBytes -= p.ev.cost
			h.mem.release(p.ev.cost)
		}
		n++
	}
	clear(sub.backlog[:n])
	sub.backlog = sub.backlog[n:]
	if len(sub.backlog) == 0 {
		h.endBacklog(sub)
	}
	return room
}

// endBacklog drops what sub's backlog holds and charges (mu held).
func (h *feedHub) endBacklog(sub *watchSub) {
	if sub.backlog == nil {
		return
	}
	h.mem.release(sub.liveBytes + sub.heldBack + sub.ringBytes)
	sub.liveBytes, sub.heldBack, sub.ringBytes, sub.backlog = 0, 0, 0, nil
	sub.sink.catchingUp(-1)
}

// watchBackBytes bounds what one resume reads back from the commit log:
// the phext's records there, charged to the tenant's memory budget while
// it runs. (The changes it gives are queued like any replay, within
// WatchQueueBytes.)
const watchBackBytes = 8 << 20

// logBack is a resume's changes read back from the commit log: every
// change of the phext with a position in (from, cut].
type logBack struct {
	events []feedEvent
	cut    uint64
}

// needsLog reports whether a resume from position from needs changes the
// hub no longer (or never) held.
func (h *feedHub) needsLog(from uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.detached && from < h.floor
}

// readBack reads the changes of phext name above from back from the
// commit log; nil when the log cannot give them all (see
// store.ReadChanges), and the resume gets a resync.
func (h *feedHub) readBack(name string, from uint64) *logBack {
	chs, cut, err := h.store.ReadChanges(name, from, watchBackBytes)
	if err != nil {
		return nil
	}
	back := &logBack{events: make([]feedEvent, len(chs)), cut: cut}
	for i := range chs {
		c := &chs[i]
		ev := &back.events[i]
		*ev = feedEvent{pos: c.Pos, op: c.Op, phext: c.Phext, coord: c.Coord, n: c.Len,
			sum: c.Sum, hasSum: c.HasSum, text: c.Text}
		if c.TextOmitted || len(c.Text) > protocol.MaxEventText {
			ev.omitted, ev.text = true, nil
		}
		// As Publish's: refill takes a backlog's room by it.
		ev.cost = eventCost + int64(len(ev.phext)+len(ev.text))
	}
	return back
}

var errShuttingDownFeed = &protocol.Error{Status: protocol.StatusShuttingDown, Msg: "change feed closing; retry"}

// sweepHubs detaches hubs that have had no subscription for WatchLinger:
// their tenant's writes stop paying for the feed, and their retention is
// freed (a later resume from one of their positions gets a resync).
// Called from OnTick.
func (s *Server) sweepHubs(now time.Time) {
	s.hubsMu.Lock()
	defer s.hubsMu.Unlock()
	for storeTenant, h := range s.hubs {
		h.mu.Lock()
		if len(h.subs) == 0 && !h.idleSince.IsZero() && now.Sub(h.idleSince) > s.opts.WatchLinger {
			h.detachLocked()
			delete(s.hubs, storeTenant)
		}
		h.mu.Unlock()
	}
}

// detachLocked stops the feed and frees the ring (mu held).
func (h *feedHub) detachLocked() {
	h.store.SetFeed(nil)
	h.detached = true
	for h.n > 0 {
		h.evictOldest()
	}
	h.ring = nil
}

// closeHubs detaches every hub (server shutdown: the store outlives it).
func (s *Server) closeHubs() {
	s.hubsMu.Lock()
	defer s.hubsMu.Unlock()
	for storeTenant, h := range s.hubs {
		h.mu.Lock()
		for sub := range h.subs {
			sub.sink.resync(sub, max(sub.last, h.floor), protocol.ResyncGone, true)
			h.removeLocked(sub)
		}
		h.detachLocked()
		h.mu.Unlock()
		delete(s.hubs, storeTenant)
	}
}

// connWatch is a connection's side of the feed: its subscriptions and its
// queue of encoded event frames, written by its own event loop.
//
// hub is set by the worker (WATCH) and read by the loop; subs is guarded by
// the hub's mu (a connection watches one tenant, so one hub); out, spare,
// charged, scheduled, since and loop by wmu (taken after the hub's mu).
type connWatch struct {
	hub  atomic.Pointer[feedHub]
	subs map[uint32]*watchSub
	// backlogs counts subscriptions with a backlog (watchSub.backlog):
	// flushWatch refills them, OnTick kicks a flush while any waits.
	backlogs atomic.Int32

	wmu       sync.Mutex
	out       []byte
	spare     []byte
	charged   int64     // bytes of out reserved from the budget
	scheduled bool      // listed in loop's flush list
	since     int64     // monoNow when the oldest event in out was queued (0: none)
	loop      *loopFeed // the connection's event loop (set before its first WATCH)
}

// loopFeed is one event loop's list of watcher connections with events to
// write. Publishers (any goroutine, under the hub's and a connection's wmu)
// add a connection once per flush and start one task on the loop for the
// whole list; the task writes each connection's queue with one Write. So a
// burst of events costs one wake-up per loop, not one per watcher, and
// nothing per event but the encode into the queue.
type loopFeed struct {
	s  *Server
	el gnet.EventLoop

	mu        sync.Mutex // guards the fields below; taken after a wmu
	dirty     []*connState
	spare     []*connState
	scheduled bool // a Run is queued on el
}

// loopFeedFor returns the flush list of el, creating it on first use.
func (s *Server) loopFeedFor(el gnet.EventLoop) *loopFeed {
	if lf, ok := s.loopFeeds.Load(el); ok {
		return lf.(*loopFeed)
	}
	lf, _ := s.loopFeeds.LoadOrStore(el, &loopFeed{s: s, el: el})
	return lf.(*loopFeed)
}

// add lists cs for the next flush and queues the flush task when none is.
func (lf *loopFeed) add(cs *connState) {
	lf.mu.Lock()
	lf.dirty = append(lf.dirty, cs)
	start := !lf.scheduled
	lf.scheduled = true
	lf.mu.Unlock()
	if !start {
		return
	}
	lf.s.asyncPending.Add(1)
	if err := lf.el.Execute(context.Background(), lf); err != nil {
		// The engine is shutting down: its connections are closed and
		// closeWatches releases what they hold.
		lf.s.asyncPending.Add(-1)
		lf.mu.Lock()
		lf.scheduled = false
		lf.mu.Unlock()
	}
}

// Run is the flush task (gnet.Runnable): it runs on the loop and writes the
// queue of every listed connection.
func (lf *loopFeed) Run(context.Context) error {
	lf.s.asyncPending.Add(-1)
	if hook := lf.s.watchFlushHook.Load(); hook != nil {
		(*hook)()
	}
	lf.mu.Lock()
	list := lf.dirty
	lf.dirty, lf.spare, lf.scheduled = lf.spare, nil, false
	lf.mu.Unlock()
	for i, cs := range list {
		cs.flushWatch()
		list[i] = nil
	}
	lf.mu.Lock()
	if lf.spare == nil && cap(list) <= maxLoopDirty {
		lf.spare = list[:0]
	}
	lf.mu.Unlock()
	return nil
}

// maxLoopDirty: a larger flush list is not kept for the next round.
const maxLoopDirty = 64 << 10

// connSink is the sink of a binary-protocol connection.
type connSink struct{ cs *connState }

func (k connSink) deliver(sub *watchSub, ev *feedEvent) bool {
	cs := k.cs
	if cs.gone.Load() {
		return true // OnClose removes its subscriptions
	}
	textAt, text := ev.textFor(sub)
	var sum []byte
	if ev.hasSum {
		sum = ev.sum[:]
	}
	size := protocol.ChangeEventSize(len(ev.phext), len(sum), len(text))
	w := &cs.watch
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if len(w.out)+size > cs.s.opts.WatchQueueBytes || !cs.mem.tryReserve(int64(size)) {
		return false
	}
	w.charged += int64(size)
	if len(w.out) == 0 {
		w.since = monoNow()
	}
	w.out = protocol.AppendChangeEvent(w.out, sub.id, ev.pos, uint8(ev.op), []byte(ev.phext), ev.coord,
		uint64(ev.n), sum, textAt, text)
	cs.s.stats.watchEvents.Add(1)
	k.scheduleLocked()
	return true
}

func (k connSink) resync(sub *watchSub, pos uint64, reason uint8, ended bool) {
	cs := k.cs
	if cs.gone.Load() {
		return
	}
	w := &cs.watch
	w.wmu.Lock()
	defer w.wmu.Unlock()
	// Not charged, not bounded: one small frame per subscription, and a
	// subscription gets at most one resync once ended.
	w.out = protocol.AppendResyncEvent(w.out, sub.id, pos, reason, ended)
	k.scheduleLocked()
}

func (k connSink) add(sub *watchSub) error {
	w := &k.cs.watch
	if _, dup := w.subs[sub.id]; dup {
		return errWatchDup
	}
	if len(w.subs) >= k.cs.s.opts.MaxWatchesPerConn {
		return errWatchesPerConn
	}
	if w.subs == nil {
		w.subs = map[uint32]*watchSub{}
	}
	w.subs[sub.id] = sub
	k.cs.nwatch.Store(int64(len(w.subs)))
	return nil
}

func (k connSink) catchingUp(delta int32) { k.cs.watch.backlogs.Add(delta) }

func (k connSink) kick() {
	w := &k.cs.watch
	w.wmu.Lock()
	k.scheduleLocked()
	w.wmu.Unlock()
}

func (k connSink) ended(sub *watchSub) {
	delete(k.cs.watch.subs, sub.id)
	k.cs.nwatch.Store(int64(len(k.cs.watch.subs)))
}

// scheduleLocked lists the connection for its loop's next flush (wmu held).
// Events queued before that flush runs join it.
func (k connSink) scheduleLocked() {
	w := &k.cs.watch
	if w.scheduled || w.loop == nil {
		return
	}
	w.scheduled = true
	w.loop.add(k.cs)
}

// flushWatch runs on the connection's event loop (loopFeed.Run): it writes
// the queued events with one Write. A connection whose socket holds more
// than WatchQueueBytes unsent (a watcher that does not read) gets resync
// events instead and its subscriptions end.
func (cs *connState) flushWatch() {
	w := &cs.watch
	// On the loop, gone is false until OnClose ran: c is open.
	open := !cs.gone.Load()
	c := cs.c
	if open && c.OutboundBuffered() > cs.s.opts.WatchQueueBytes {
		cs.dropWatches(protocol.ResyncSlow)
	}
	w.wmu.Lock()
	buf, charged, since := w.out, w.charged, w.since
	w.out, w.spare, w.charged, w.scheduled, w.since = w.spare[:0], nil, 0, false, 0
	w.wmu.Unlock()
	if open && len(buf) > 0 {
		c.Write(buf) // gnet copies what the socket does not take now
		if since != 0 {
			// The server's clock (clock.go): a wall-clock step
			// between queue and write is no latency.
			cs.s.stats.watchLat.add(uint64(max(monoNow()-since, 0) / 1000))
		}
		// What the socket did not take stays in gnet's buffer: charged
		// like unsent replies (and a slow consumer closed) as OnTraffic
		// does at the end of a round.
		cs.chargeBuffers(c)
	}
	cs.mem.release(charged)
	if cap(buf) <= maxSpare {
		w.wmu.Lock()
		if w.spare == nil {
			w.spare = buf[:0]
		}
		w.wmu.Unlock()
	}
	if open && w.backlogs.Load() > 0 {
		cs.refillWatches()
	}
}

// refillWatches queues from the connection's backlogs while its socket
// holds less than half of WatchQueueBytes unsent (on its event loop): each
// refill's events schedule the next flush, which refills again, so a
// watcher that reads takes its backlog at its own pace. When the socket
// is fuller, the next published change or OnTick kicks a flush.
func (cs *connState) refillWatches() {
	room := cs.s.opts.WatchQueueBytes/2 - cs.c.OutboundBuffered()
	h := cs.watch.hub.Load()
	if room <= 0 || h == nil {
		return
	}
	h.mu.Lock()
	for _, sub := range cs.watch.subs {
		if len(sub.backlog) > 0 && room > 0 {
			room = h.refill(sub, room)
		}
	}
	h.mu.Unlock()
}

// dropWatches ends every subscription of the connection with a resync.
func (cs *connState) dropWatches(reason uint8) {
	h := cs.watch.hub.Load()
	if h == nil {
		return
	}
	h.mu.Lock()
	for _, sub := range cs.watch.subs {
		cs.s.stats.watchDropped.Add(1)
		sub.sink.resync(sub, max(sub.last, h.floor), reason, true)
		h.removeLocked(sub)
	}
	h.mu.Unlock()
}

// closeWatches removes the connection's subscriptions (OnClose) and
// releases its queue's budget.
func (cs *connState) closeWatches() {
	if h := cs.watch.hub.Load(); h != nil {
		h.mu.Lock()
		for _, sub := range cs.watch.subs {
			h.removeLocked(sub)
		}
		h.mu.Unlock()
	}
	w := &cs.watch
	w.wmu.Lock()
	cs.mem.release(w.charged)
	w.charged = 0
	w.out, w.spare = nil, nil
	w.wmu.Unlock()
}

// watching reports whether the connection has subscriptions (OnTick's idle
// check: a watcher waits for events, it is not idle).
func (cs *connState) watching() bool { return cs.nwatch.Load() > 0 }

// execWatch runs WATCH on the connection's worker and appends the reply
// body (u64 position now) to out.
func (s *Server) execWatch(cs *connState, req *protocol.Request, out []byte) ([]byte, error) {
	if req.ID == protocol.EventID {
		return out, errWatchID
	}
	w, err := protocol.DecodeWatch(req.Payload, req.Coord)
	if err != nil {
		return out, err
	}
	sub := &watchSub{id: w.Sub, phext: string(req.Name), prefix: w.Prefix, depth: w.Depth,
		text: w.Flags&protocol.WatchText != 0, sink: connSink{cs}}
	if cs.watch.loop == nil {
		// Only this worker sets it; publishers read it under wmu.
		lf := s.loopFeedFor(cs.c.EventLoop())
		cs.watch.wmu.Lock()
		cs.watch.loop = lf
		cs.watch.wmu.Unlock()
	}
	var head uint64
	for {
		h := s.hubFor(cs.tenant)
		// A connection watches one tenant: its subscriptions are all in
		// this hub (an older hub of the tenant was swept only once it had
		// no subscription left).
		cs.watch.hub.Store(h)
		head, err = h.subscribe(sub, &w)
		if err != errShuttingDownFeed || s.draining.Load() {
			break
		}
		// Swept between hubFor and subscribe: take the new one.
	}
	if err != nil {
		return out, err
	}
	return binary.BigEndian.AppendUint64(out, head), nil
}

// execUnwatch ends one subscription.
func (s *Server) execUnwatch(cs *connState, req *protocol.Request) error {
	id, err := protocol.DecodeUnwatch(req.Payload)
	if err != nil {
		return err
	}
	h := cs.watch.hub.Load()
	if h == nil {
		return errNoWatch
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	sub := cs.watch.subs[id]
	if sub == nil {
		return errNoWatch
	}
	h.removeLocked(sub)
	return nil
}
