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
