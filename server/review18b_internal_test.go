package server

import (
	"fmt"
	"strings"
	"testing"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// sizeSink accepts every event and counts the bytes it would queue.
type sizeSink struct{ events, bytes int }

func (k *sizeSink) deliver(sub *watchSub, ev *feedEvent) bool {
	_, text := ev.textFor(sub)
	k.events++
	k.bytes += protocol.ChangeEventSize(len(ev.phext), 32, len(text))
	return true
}
func (k *sizeSink) resync(*watchSub, uint64, uint8, bool) {}
func (k *sizeSink) add(*watchSub) error                   { return nil }
func (k *sizeSink) ended(*watchSub)                       {}
func (k *sizeSink) catchingUp(int32)                      {}
func (k *sizeSink) kick()                                 {}

// TestRefillOfLogBacklogTakesRoom (review18b): a refill queues about the
// room its caller gives it also from changes read back from the commit
// log. Those came without a cost, so a refill queued them until the
// sink's queue refused: a whole WatchQueueBytes per flush whatever the
// socket still held (refillWatches gives half of it minus the unsent
// bytes), so a watcher that reads, but whose socket is momentarily full,
// passed WatchQueueBytes unsent and was dropped with a slow resync — the
// repeated resyncs the backlog was made to end.
func TestRefillOfLogBacklogTakesRoom(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec,
		opts: Options{WatchQueueBytes: 8 << 10, WatchRetainEvents: 16, WatchRetainBytes: 1 << 20}})
	wr := e.dial("alpha")
	w := e.watcher("alpha")
	from := w.watch("", "", 1, 0, 0)
	text := strings.Repeat("x", 90)
	const n = 300
	for i := 0; i < n; i++ {
		wr.ok(protocol.OpUpdate, "", coordN(i), []byte(fmt.Sprintf("%03d%s", i, text)))
	}
	h := e.srv.hubFor(e.srv.table.Load().byName["alpha"])
	name, err := h.store.FeedName(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !h.needsLog(from) {
		t.Fatal("the resume does not need the log")
	}
	back := h.readBack(name, from)
	if back == nil || len(back.events) != n {
		t.Fatalf("read back %+v", back)
	}
	k := &sizeSink{}
	sub := &watchSub{phext: name, text: true, sink: k}
	for i := range back.events {
		sub.backlog = append(sub.backlog, pendingEvent{ev: &back.events[i]})
	}
	const room = 4 << 10
	h.mu.Lock()
	h.refill(sub, room)
	h.mu.Unlock()
	if k.bytes > room+512 || k.events == n {
		t.Fatalf("a refill with %d bytes of room queued %d events, %d bytes", room, k.events, k.bytes)
	}
	if len(sub.backlog) != n-k.events {
		t.Fatalf("backlog %d after %d of %d queued", len(sub.backlog), k.events, n)
	}
}

// capSink takes events up to max bytes, then refuses (a full queue).
type capSink struct {
	sizeSink
	max int
}

func (k *capSink) deliver(sub *watchSub, ev *feedEvent) bool {
	_, text := ev.textFor(sub)
	if k.bytes+protocol.ChangeEventSize(len(ev.phext), 32, len(text)) > k.max {
		return false
	}
	return k.sizeSink.deliver(sub, ev)
}

// TestBacklogOfRetainedEventsCharged (review18b): the retained changes a
// resume replays into a backlog (its queue full) stay there until the
// watcher reads; once the ring evicted them they were charged to nobody,
// so subscriptions that do not read, each resumed from the start of a
// ring churned in between, held up to WatchRetainBytes each (1 MiB, up to
// 1,024 subscriptions per tenant) outside the tenant's budget. They are
// charged while they wait, as the live changes behind them are.
func TestBacklogOfRetainedEventsCharged(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec,
		opts: Options{WatchQueueBytes: 8 << 10, WatchRetainEvents: 4096, WatchRetainBytes: 256 << 10}})
	wr := e.dial("alpha")
	w := e.watcher("alpha")
	from := w.watch("", "", 1, 0, 0)
	text := strings.Repeat("r", 200)
	for i := 0; i < 300; i++ {
		wr.ok(protocol.OpUpdate, "", coordN(i), []byte(text))
	}
	ten := e.srv.table.Load().byName["alpha"]
	h := e.srv.hubFor(ten)
	name, err := h.store.FeedName(nil)
	if err != nil {
		t.Fatal(err)
	}
	k := &capSink{max: 8 << 10}
	sub := &watchSub{id: 9, phext: name, text: true, sink: k}
	if _, err := h.subscribe(sub, &protocol.Watch{Flags: protocol.WatchFrom | protocol.WatchText, From: from}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	var pinned int64
	for _, p := range sub.backlog {
		pinned += p.ev.cost
	}
	h.mu.Unlock()
	if pinned < 64<<10 {
		t.Fatalf("backlog of %d bytes: the test wants a replay larger than the queue", pinned)
	}
	for i := 0; i < 3000; i++ { // another phext: the ring evicts the backlog's changes
		wr.ok(protocol.OpUpdate, "other", coordN(i%100), []byte(text))
	}
	h.mu.Lock()
	outside := ten.mem.used.Load() - h.charged
	h.mu.Unlock()
	if outside < pinned {
		t.Fatalf("a backlog holds %d bytes of evicted changes; the budget holds %d besides the ring", pinned, outside)
	}
	before := ten.mem.used.Load()
	h.remove(sub)
	if freed := before - ten.mem.used.Load(); freed < pinned {
		t.Fatalf("ending the subscription freed %d bytes, want at least its backlog's %d", freed, pinned)
	}
}
