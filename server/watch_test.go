package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// wev is a decoded event with its slices copied.
type wev struct {
	protocol.Event
	name, sum, text string
}

// watchClient wraps a rawConn that may receive events between replies.
type watchClient struct {
	*rawConn
	events []wev // events read while waiting for a reply, not yet taken
}

func (e *testEnv) watcher(tenant string) *watchClient {
	return &watchClient{rawConn: e.dial(tenant)}
}

// frame reads one frame; events are decoded and returned with isEvent.
func (w *watchClient) frame() (protocol.Response, *wev) {
	w.t.Helper()
	r, err := w.read()
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	if !protocol.IsEvent(&r) {
		return r, nil
	}
	var ev protocol.Event
	if err := protocol.DecodeEvent(r.Body, &ev); err != nil {
		w.t.Fatalf("event: %v", err)
	}
	return r, &wev{Event: ev, name: string(ev.Phext), sum: string(ev.Sum), text: string(ev.Text)}
}

// do sends a request and reads until its reply, keeping events.
func (w *watchClient) do(op protocol.Op, name string, c phext.Coordinate, payload []byte) protocol.Response {
	w.t.Helper()
	id := w.send(op, name, c, payload)
	for {
		r, ev := w.frame()
		if ev != nil {
			w.events = append(w.events, *ev)
			continue
		}
		if r.ID != id {
			w.t.Fatalf("%v: reply id %d, want %d", op, r.ID, id)
		}
		return r
	}
}

// watch subscribes and returns the position of the reply.
func (w *watchClient) watch(name, prefix string, sub uint32, flags uint8, from uint64) uint64 {
	w.t.Helper()
	p, d, err := phext.ParsePrefix(prefix)
	if err != nil {
		w.t.Fatal(err)
	}
	c, depth := phext.Origin, uint8(d)
	copy(c[:d], p[:d])
	r := w.do(protocol.OpWatch, name, c, protocol.AppendWatchPayload(nil, sub, depth, flags, from))
	if r.Status != protocol.StatusOK || len(r.Body) != 8 {
		w.t.Fatalf("WATCH: status %v: %s", r.Status, r.Body)
	}
	return uint64(r.Body[0])<<56 | uint64(r.Body[1])<<48 | uint64(r.Body[2])<<40 | uint64(r.Body[3])<<32 |
		uint64(r.Body[4])<<24 | uint64(r.Body[5])<<16 | uint64(r.Body[6])<<8 | uint64(r.Body[7])
}

// next returns the next event (kept ones first).
func (w *watchClient) next() wev {
	w.t.Helper()
	if len(w.events) > 0 {
		ev := w.events[0]
		w.events = w.events[1:]
		return ev
	}
	r, ev := w.frame()
	if ev == nil {
		w.t.Fatalf("got a reply (id %d, status %v) where an event was due", r.ID, r.Status)
	}
	return *ev
}

func coordN(i int) phext.Coordinate {
	return phext.Coordinate{1, 1, 1, 1, 1, 1, 1, uint16(1 + i%3), uint16(1 + i%7)}
}

// TestWatchOrderPrefixIsolation: a subscription sees every change of its
// phext in commit order with the scroll's new length, checksum and text; a
// prefix subscription only those under the prefix; nothing of another
// phext or another tenant; ordinary requests keep working on the watching
// connection.
func TestWatchOrderPrefixIsolation(t *testing.T) {
	for _, dur := range []store.Durability{store.DurabilityAlways, store.DurabilityEverySec} {
		t.Run(fmt.Sprint("durability ", dur), func(t *testing.T) {
			e := startEnv(t, envOptions{durability: dur})
			w := e.watcher("alpha")
			head := w.watch("n", "", 1, protocol.WatchText, 0)
			w.watch("n", "1.1.1/1.1.1/1.2", 2, 0, 0)
			beta := e.watcher("beta")
			beta.watch("n", "", 1, 0, 0)

			wr := e.dial("alpha")
			want := map[phext.Coordinate]string{}
			const n = 60
			for i := 0; i < n; i++ {
				c := coordN(i)
				op := protocol.OpInsert
				if i%5 == 4 {
					op = protocol.OpUpdate
				}
				text := fmt.Sprintf("w%d;", i)
				wr.ok(op, "n", c, []byte(text))
				wr.ok(protocol.OpInsert, "other", c, []byte("x")) // another phext
				if op == protocol.OpUpdate {
					want[c] = text
				} else {
					want[c] += text
				}
				if i == n/2 {
					// Ordinary requests on the watching connection.
					if got := w.do(protocol.OpSelect, "n", c, nil); got.Status != protocol.StatusOK || string(got.Body) != want[c] {
						t.Fatalf("SELECT on a watching connection: %v %q", got.Status, got.Body)
					}
				}
			}
			e.dial("beta").ok(protocol.OpInsert, "n", phext.Origin, []byte("beta-marker"))

			// Replay the expected state change by change.
			state := map[phext.Coordinate]string{}
			last := head
			seen2 := 0
			for i := 0; i < n; i++ {
				c := coordN(i)
				text := fmt.Sprintf("w%d;", i)
				op := uint8(store.ChangeInsert)
				if i%5 == 4 {
					op = uint8(store.ChangeUpdate)
					state[c] = text
				} else {
					state[c] += text
				}
				var ev wev
				for {
					ev = w.next()
					if ev.Sub == 1 {
						break
					}
					// Prefix subscription 2: only 1.1.1/1.1.1/1.2.x.
					if ev.Sub != 2 || ev.Coord[7] != 2 || ev.Coord[6] != 1 {
						t.Fatalf("prefix subscription got %+v", ev)
					}
					if ev.TextAt != protocol.TextNone {
						t.Fatalf("text sent without the text flag: %+v", ev)
					}
					seen2++
				}
				if ev.Kind != protocol.EventChange || ev.name != "n" || ev.Coord != c || ev.Op != op ||
					ev.Len != uint64(len(state[c])) || ev.text != state[c] || ev.sum != phext.Checksum([]byte(state[c])) {
					t.Fatalf("event %d: got %+v text %q, want op %d at %v text %q", i, ev.Event, ev.text, op, c, state[c])
				}
				if ev.Pos <= last {
					t.Fatalf("event %d: position %d not above %d", i, ev.Pos, last)
				}
				last = ev.Pos
			}
			// The rest of subscription 2's events.
			want2 := 0
			for i := 0; i < n; i++ {
				if coordN(i)[7] == 2 {
					want2++
				}
			}
			for seen2 < want2 {
				ev := w.next()
				if ev.Sub != 2 || ev.Coord[7] != 2 {
					t.Fatalf("after the last change: %+v", ev)
				}
				seen2++
			}
			// Nothing else is queued for alpha's watcher: a PING's reply
			// comes next.
			if r := w.do(protocol.OpPing, "", phext.Origin, nil); r.Status != protocol.StatusOK || len(w.events) != 0 {
				t.Fatalf("extra events: %+v", w.events)
			}
			if histCount(&e.srv.stats.watchLat) == 0 {
				t.Fatal("no delivery latency recorded")
			}
			// beta's watcher saw nothing of alpha: its first event is beta's.
			if ev := beta.next(); ev.Kind != protocol.EventChange || ev.Coord != phext.Origin || ev.Len != uint64(len("beta-marker")) {
				t.Fatalf("beta watcher: %+v", ev)
			}
		})
	}
}

// TestWatchResume: a watcher that reconnects with the last position it saw
// gets exactly the changes it missed, in order, then live ones; one whose
// changes are gone (retention overflowed, a position of an earlier run, a
// position from the future) gets one resync event first, never a gap.
func TestWatchResume(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec, opts: Options{WatchRetainEvents: 16}})
	wr := e.dial("alpha")
	w := e.watcher("alpha")
	head := w.watch("", "", 7, protocol.WatchText, 0)
	wr.ok(protocol.OpInsert, "", phext.Origin, []byte("a"))
	ev := w.next()
	if ev.Pos <= head || ev.text != "a" {
		t.Fatalf("first event %+v", ev)
	}
	last := ev.Pos
	w.nc.Close()

	// Missed while disconnected: 10 changes (retention holds 16).
	for i := 0; i < 10; i++ {
		wr.ok(protocol.OpInsert, "", coordN(i), []byte{'b' + byte(i)})
	}
	w2 := e.watcher("alpha")
	w2.watch("", "", 9, protocol.WatchText|protocol.WatchFrom, last)
	for i := 0; i < 10; i++ {
		ev := w2.next()
		if ev.Kind != protocol.EventChange || ev.Sub != 9 || ev.Coord != coordN(i) || ev.Pos <= last {
			t.Fatalf("resumed event %d: %+v (last %d)", i, ev, last)
		}
		last = ev.Pos
	}
	wr.ok(protocol.OpUpdate, "", phext.Origin, []byte("live"))
	if ev := w2.next(); ev.text != "live" || ev.Pos <= last {
		t.Fatalf("live after resume: %+v", ev)
	}
	if r := w2.do(protocol.OpPing, "", phext.Origin, nil); r.Status != protocol.StatusOK || len(w2.events) != 0 {
		t.Fatalf("duplicates after resume: %+v", w2.events)
	}
	lastSeen := ev.Pos
	w2.nc.Close()

	// More changes than the retention holds: the ones it evicted are read
	// back from the commit log, exactly (it answered a resync before).
	for i := 0; i < 40; i++ {
		wr.ok(protocol.OpInsert, "", phext.Origin, []byte("g"))
	}
	t.Run("evicted, read back from the log", func(t *testing.T) {
		// Every change after the first one ("a" at the origin): the ten
		// inserts, the update, the forty inserts.
		type change struct {
			op   uint8
			c    phext.Coordinate
			text string
		}
		var want []change
		model := map[phext.Coordinate]string{phext.Origin: "a"}
		for i := 0; i < 10; i++ {
			model[coordN(i)] += string(rune('b' + i))
			want = append(want, change{protocol.ChangeInsert, coordN(i), model[coordN(i)]})
		}
		want = append(want, change{protocol.ChangeUpdate, phext.Origin, "live"})
		text := "live"
		for i := 0; i < 40; i++ {
			text += "g"
			want = append(want, change{protocol.ChangeInsert, phext.Origin, text})
		}
		w := e.watcher("alpha")
		now := w.watch("", "", 4, protocol.WatchFrom|protocol.WatchText, lastSeen)
		last := lastSeen
		for i, c := range want {
			ev := w.next()
			if ev.Kind != protocol.EventChange || ev.Op != c.op || ev.Pos <= last || ev.Pos > now || ev.Coord != c.c ||
				ev.text != c.text || ev.sum != phext.Checksum([]byte(c.text)) || ev.Len != uint64(len(c.text)) {
				t.Fatalf("resumed event %d: %+v %q (last %d, now %d), want %+v", i, ev.Event, ev.text, last, now, c)
			}
			last = ev.Pos
		}
		wr.ok(protocol.OpInsert, "", phext.Origin, []byte("h"))
		if ev := w.next(); ev.Kind != protocol.EventChange || ev.Pos <= now || ev.text != text+"h" {
			t.Fatalf("live after the log: %+v %q", ev.Event, ev.text)
		}
		if r := w.do(protocol.OpPing, "", phext.Origin, nil); r.Status != protocol.StatusOK || len(w.events) != 0 {
			t.Fatalf("duplicates after resume: %+v", w.events)
		}
		w.nc.Close()
	})
	for _, tc := range []struct {
		name string
		from uint64
	}{
		{name: "before the log (an earlier run)", from: 1},
		{name: "future", from: 1 << 62},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.watcher("alpha")
			now := w.watch("", "", 3, protocol.WatchFrom, tc.from)
			ev := w.next()
			if ev.Kind != protocol.EventResync || ev.Reason != protocol.ResyncGap || ev.Ended || ev.Sub != 3 || ev.Pos != now {
				t.Fatalf("want one resync (gap) at %d, got %+v", now, ev)
			}
			// The subscription goes on live after the resync.
			wr.ok(protocol.OpInsert, "", phext.Origin, []byte("z"))
			if ev := w.next(); ev.Kind != protocol.EventChange || ev.Pos <= now {
				t.Fatalf("after resync: %+v", ev)
			}
			w.nc.Close()
		})
	}

	// After a restart (a new server and store), a position of the earlier
	// run is answered with a resync.
	t.Run("after a restart", func(t *testing.T) {
		e.stop()
		e2 := startEnv(t, envOptions{durability: store.DurabilityEverySec})
		w := e2.watcher("alpha")
		now := w.watch("", "", 3, protocol.WatchFrom, lastSeen)
		if now <= lastSeen {
			t.Fatalf("position now %d not above %d of the earlier run", now, lastSeen)
		}
		if ev := w.next(); ev.Kind != protocol.EventResync || ev.Reason != protocol.ResyncGap || ev.Pos != now {
			t.Fatalf("want one resync (gap), got %+v", ev)
		}
	})
}

// TestWatchSlowWatcherDropped: a watcher that never reads gets, once its
// queue is full, one resync event and its subscription ends; the writer
// completes every write meanwhile and a reading watcher of the same tenant
// gets every change.
func TestWatchSlowWatcherDropped(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec})
	slow := e.watcher("alpha")
	slow.watch("", "", 1, protocol.WatchText, 0)
	good := e.watcher("alpha")
	good.watch("", "", 2, 0, 0)

	// 24 MB of events: more than the kernel's socket buffers and the
	// 1 MiB queue take for a watcher that does not read.
	const writes = 3000
	text := []byte(strings.Repeat("s", 8<<10))
	var wg sync.WaitGroup
	var goodErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		var last uint64
		for i := 0; i < writes; i++ {
			r, ev := good.frame()
			if ev == nil || ev.Kind != protocol.EventChange || ev.Pos <= last {
				goodErr = fmt.Errorf("reading watcher, event %d: %+v %+v", i, r, ev)
				return
			}
			last = ev.Pos
		}
	}()
	wr := e.dial("alpha")
	for i := 0; i < writes; i++ {
		wr.ok(protocol.OpUpdate, "", phext.Origin, text)
	}
	wg.Wait()
	if goodErr != nil {
		t.Fatal(goodErr)
	}
	sqtest.CheckForErr(t, 10e9, func() error {
		if e.srv.stats.watchDropped.Load() == 0 {
			return fmt.Errorf("slow watcher not dropped")
		}
		return nil
	})
	// The slow watcher now reads: change events, then exactly one resync
	// (slow, ended), then nothing more for subscription 1.
	n := 0
	for {
		ev := slow.next()
		if ev.Kind == protocol.EventResync {
			if ev.Reason != protocol.ResyncSlow || !ev.Ended || ev.Sub != 1 {
				t.Fatalf("resync %+v", ev)
			}
			break
		}
		n++
	}
	if n >= writes {
		t.Fatalf("slow watcher got all %d events and a resync", n)
	}
	wr.ok(protocol.OpUpdate, "", phext.Origin, []byte("after"))
	if r := slow.do(protocol.OpPing, "", phext.Origin, nil); r.Status != protocol.StatusOK || len(slow.events) != 0 {
		t.Fatalf("events after the drop: %+v", slow.events)
	}
	if got := e.srv.stats.watches.Load(); got != 1 {
		t.Fatalf("%d subscriptions left, want the reading watcher's", got)
	}
}

// TestWatchLimits: subscriptions per connection and per tenant, duplicate
// ids, the reserved id, bad bodies, UNWATCH; every refusal leaves the
// connection usable.
func TestWatchLimits(t *testing.T) {
	e := startEnv(t, envOptions{opts: Options{MaxWatchesPerConn: 2, MaxWatchesPerTenant: 3}})
	w := e.watcher("alpha")
	w.watch("a", "", 1, 0, 0)
	wantStatus := func(r protocol.Response, status protocol.Status) {
		t.Helper()
		if r.Status != status {
			t.Fatalf("status %v (%s), want %v", r.Status, r.Body, status)
		}
	}
	wantStatus(w.do(protocol.OpWatch, "a", phext.Origin, protocol.AppendWatchPayload(nil, 1, 0, 0, 0)), protocol.StatusBadFrame)
	w.watch("b", "", 2, 0, 0)
	wantStatus(w.do(protocol.OpWatch, "c", phext.Origin, protocol.AppendWatchPayload(nil, 3, 0, 0, 0)), protocol.StatusBusy)
	w2 := e.watcher("alpha")
	w2.watch("c", "", 1, 0, 0)
	wantStatus(w2.do(protocol.OpWatch, "d", phext.Origin, protocol.AppendWatchPayload(nil, 2, 0, 0, 0)), protocol.StatusBusy)
	// Another tenant has its own count.
	e.watcher("beta").watch("", "", 1, 0, 0)

	wantStatus(w.do(protocol.OpWatch, "a", phext.Origin, []byte{1, 2, 3}), protocol.StatusBadFrame)
	wantStatus(w.do(protocol.OpWatch, "bad name!", phext.Origin, protocol.AppendWatchPayload(nil, 5, 0, 0, 0)), protocol.StatusBadName)
	wantStatus(w.do(protocol.OpWatch, "a", phext.Coordinate{1000, 1, 1, 1, 1, 1, 1, 1, 1}, protocol.AppendWatchPayload(nil, 5, 1, 0, 0)), protocol.StatusBadCoord)
	wantStatus(w.do(protocol.OpUnwatch, "", phext.Origin, protocol.AppendUnwatchPayload(nil, 9)), protocol.StatusBadFrame)

	// The reserved id.
	w.write(protocol.AppendRequest(nil, protocol.OpWatch, protocol.EventID, nil, phext.Origin, protocol.AppendWatchPayload(nil, 5, 0, 0, 0)))
	if r, ev := w.frame(); ev != nil || r.Status != protocol.StatusBadFrame {
		t.Fatalf("WATCH with id 0xFFFFFFFF: %+v %+v", r, ev)
	}

	// UNWATCH frees a slot; the ended subscription gets no more events.
	wantStatus(w.do(protocol.OpUnwatch, "", phext.Origin, protocol.AppendUnwatchPayload(nil, 1)), protocol.StatusOK)
	e.dial("alpha").ok(protocol.OpInsert, "a", phext.Origin, []byte("x"))
	w.watch("c", "", 3, 0, 0)
	e.dial("alpha").ok(protocol.OpInsert, "c", phext.Origin, []byte("y"))
	if ev := w.next(); ev.Sub != 3 || ev.name != "c" {
		t.Fatalf("after UNWATCH: %+v", ev)
	}
	// Closing a watcher frees its tenant slots.
	w2.nc.Close()
	sqtest.CheckForErr(t, 5e9, func() error {
		if got := e.srv.stats.watches.Load(); got != 3 {
			return fmt.Errorf("%d subscriptions, want 3", got)
		}
		return nil
	})
	w.nc.Close()
	w3 := e.watcher("alpha")
	sqtest.CheckForErr(t, 5e9, func() error {
		if r := w3.do(protocol.OpWatch, "e", phext.Origin, protocol.AppendWatchPayload(nil, 1, 0, 0, 0)); r.Status != protocol.StatusOK {
			return fmt.Errorf("WATCH after closes: %v %s", r.Status, r.Body)
		}
		return nil
	})
}

// TestChangeOpsMatchWire: the server sends store.ChangeOp values as the
// wire's op byte.
func TestChangeOpsMatchWire(t *testing.T) {
	pairs := map[store.ChangeOp]uint8{store.ChangeInsert: protocol.ChangeInsert, store.ChangeUpdate: protocol.ChangeUpdate,
		store.ChangeDelete: protocol.ChangeDelete, store.ChangePut: protocol.ChangePut, store.ChangeCompact: protocol.ChangeCompact}
	for s, w := range pairs {
		if uint8(s) != w {
			t.Errorf("store op %d is wire op %d", s, w)
		}
	}
	if store.MaxDocText != protocol.MaxEventText {
		t.Errorf("store.MaxDocText %d, protocol.MaxEventText %d", store.MaxDocText, protocol.MaxEventText)
	}
}

// TestWatchShutdown: a server shutting down ends subscriptions with a
// resync (gone) before closing.
func TestWatchShutdown(t *testing.T) {
	e := startEnv(t, envOptions{})
	w := e.watcher("alpha")
	w.watch("", "", 4, 0, 0)
	e.stop()
	ev := w.next()
	if ev.Kind != protocol.EventResync || ev.Reason != protocol.ResyncGone || !ev.Ended {
		t.Fatalf("%+v", ev)
	}
}

// TestWatchMemoryBudget: subscriptions are charged to the tenant's share
// of the memory budget: past it WATCH is BUSY (another tenant is not
// affected), and closing the connection gives the memory back.
func TestWatchMemoryBudget(t *testing.T) {
	e := startEnv(t, envOptions{opts: Options{MaxFrame: 64 << 10, MaxClientMemory: 1 << 20,
		MaxClientMemoryPerTenant: 192 << 10, MaxWatchesPerConn: 1000, MaxWatchesPerTenant: 1000}})
	w := e.watcher("alpha")
	n := 0
	for ; n < 1000; n++ {
		r := w.do(protocol.OpWatch, "", phext.Origin, protocol.AppendWatchPayload(nil, uint32(n+1), 0, 0, 0))
		if r.Status == protocol.StatusBusy {
			break
		}
		if r.Status != protocol.StatusOK {
			t.Fatalf("WATCH %d: %v %s", n, r.Status, r.Body)
		}
	}
	// 192 KiB / 4 KiB per subscription.
	if n == 0 || n > 48 {
		t.Fatalf("%d subscriptions fit a 192 KiB share", n)
	}
	e.watcher("beta").watch("", "", 1, 0, 0)
	w.nc.Close()
	sqtest.CheckForErr(t, 5e9, func() error {
		w2 := e.watcher("alpha")
		defer w2.nc.Close()
		if r := w2.do(protocol.OpWatch, "", phext.Origin, protocol.AppendWatchPayload(nil, 1, 0, 0, 0)); r.Status != protocol.StatusOK {
			return fmt.Errorf("WATCH after the close: %v %s", r.Status, r.Body)
		}
		return nil
	})
}

// TestFeedDeliverAllocs: publishing a change to two watcher connections
// and the loop's flush that writes it allocate nothing in the steady state
// (the retained event comes from the hub's slab, its text from the arena,
// the queues and the flush list are reused; the slab and arena cost one
// allocation per 64 events or 32 KiB).
func TestFeedDeliverAllocs(t *testing.T) {
	f := newFeedFixture(2)
	round := func() {
		f.publish()
		f.flush()
	}
	for range 2 * f.s.opts.WatchRetainEvents { // the ring full, buffers grown
		round()
	}
	// AllocsPerRun rounds down: this says fewer than one per change.
	if a := testing.AllocsPerRun(640, round); a != 0 {
		t.Errorf("%v allocations per delivered change, want 0", a)
	}
	one := protocol.AppendChangeEvent(nil, 1, 1, 2, []byte("p"), phext.Origin, uint64(len(f.c.Text)), f.c.Sum[:], protocol.TextHere, f.c.Text)
	if want := int(f.c.Pos) * len(one); f.conns[0].written != want {
		t.Errorf("written %d bytes, want %d", f.conns[0].written, want)
	}
}

// TestWatchPutCarriesDocument: a put event carries, like a scroll change,
// a checksum (the phext's, as CHECKSUM answers) and, when asked, the text
// (the serialized phext, as GET answers); it carried neither.
func TestWatchPutCarriesDocument(t *testing.T) {
	e := startEnv(t, envOptions{})
	w := e.watcher("alpha")
	w.watch("n", "1.1.1/1.1.1/1.2", 1, protocol.WatchText, 0) // a put matches every prefix
	w.watch("n", "", 2, 0, 0)
	wr := e.dial("alpha")
	wr.ok(protocol.OpPut, "n", phext.Origin, []byte("first\x17second\x18third"))
	get := string(wr.ok(protocol.OpGet, "n", phext.Origin, nil))
	sum := string(wr.ok(protocol.OpChecksum, "n", phext.Origin, nil))
	for range 2 {
		ev := w.next()
		if ev.Kind != protocol.EventChange || ev.Op != protocol.ChangePut || ev.name != "n" || ev.Coord != phext.Origin ||
			ev.Len != uint64(len("firstsecondthird")) || ev.sum != sum {
			t.Fatalf("put event %+v (checksum %q), want checksum %q", ev.Event, ev.sum, sum)
		}
		switch ev.Sub {
		case 1:
			if ev.TextAt != protocol.TextHere || ev.text != get {
				t.Errorf("put event text %d %q, want the document %q", ev.TextAt, ev.text, get)
			}
		case 2:
			if ev.TextAt != protocol.TextNone {
				t.Errorf("text %d for a subscription without the text flag", ev.TextAt)
			}
		}
	}
}

// TestWatchLogResumeWhileWriting: watchers resuming from positions the
// feed's memory (8 changes) no longer holds, while a writer keeps writing
// to the phext, get from the commit log and then live exactly the changes
// a watcher subscribed from the start saw after that position (or, when
// the read back cannot vouch for them, one resync first: never a gap or a
// wrong text).
func TestWatchLogResumeWhileWriting(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec, opts: Options{WatchRetainEvents: 8}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func() *client.Conn {
		c, err := client.Dial(ctx, e.srv.Addr(), e.tokens["alpha"])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	opts := client.WatchOptions{Text: true, Buffer: 4096}
	ref, err := dial().Watch(ctx, "n", opts)
	if err != nil {
		t.Fatal(err)
	}
	const writes = 300
	var (
		mu  sync.Mutex
		got []client.Event
	)
	refDone := make(chan struct{})
	go func() {
		defer close(refDone)
		for ev := range ref.C {
			mu.Lock()
			got = append(got, ev)
			n := len(got)
			mu.Unlock()
			if n == writes {
				return
			}
		}
	}()
	werr := make(chan error, 1)
	go func() {
		wc := dial()
		for i := 0; i < writes; i++ {
			var err error
			if i%7 == 6 {
				_, err = wc.Update(ctx, "n", coordN(i%5), []byte(fmt.Sprint("u", i)))
			} else {
				_, err = wc.Insert(ctx, "n", coordN(i%5), []byte(fmt.Sprint(i, ";")))
			}
			if err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	var resumes []*client.Subscription
	var froms []uint64
	for len(resumes) < 8 {
		mu.Lock()
		n := len(got)
		var from uint64
		if n > 20 {
			from = got[n-20].Pos // older than the feed's memory of 8
		}
		mu.Unlock()
		if from == 0 || (len(froms) > 0 && from == froms[len(froms)-1]) {
			time.Sleep(2 * time.Millisecond)
			if n == writes {
				break
			}
			continue
		}
		o := opts
		o.Resume, o.From = true, from
		sub, err := dial().Watch(ctx, "n", o)
		if err != nil {
			t.Fatal(err)
		}
		resumes, froms = append(resumes, sub), append(froms, from)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	<-refDone
	exact := 0
	for k, sub := range resumes {
		var want []client.Event
		for _, ev := range got {
			if ev.Pos > froms[k] {
				want = append(want, ev)
			}
		}
		for i := 0; i < len(want); i++ {
			var ev client.Event
			select {
			case ev = <-sub.C:
			case <-ctx.Done():
				t.Fatalf("resume %d from %d: event %d of %d never came", k, froms[k], i, len(want))
			}
			if i == 0 && ev.Resync {
				if ev.Reason != "gap" {
					t.Fatalf("resume %d: resync %+v", k, ev)
				}
				break // allowed: the read back could not vouch (then live)
			}
			w := want[i]
			if ev.Resync || ev.Pos != w.Pos || ev.Op != w.Op || ev.Coord != w.Coord || string(ev.Text) != string(w.Text) || ev.Checksum != w.Checksum {
				t.Fatalf("resume %d from %d, event %d: got %+v %q, want %+v %q", k, froms[k], i, ev, ev.Text, w, w.Text)
			}
			if i == len(want)-1 {
				exact++
			}
		}
	}
	t.Logf("%d of %d resumes exact, %d from the log", exact, len(resumes), e.srv.stats.watchLogResumes.Load())
	if exact == 0 || e.srv.stats.watchLogResumes.Load() == 0 {
		t.Fatalf("no resume was served from the log (%d exact, %d log resumes)", exact, e.srv.stats.watchLogResumes.Load())
	}
}

// TestWatchResumeAcrossRestart: a watcher that resumes after a clean
// restart from the last position it saw gets exactly the changes it
// missed, before and after the restart, in order, then live ones (the
// store's feed history keeps the generations the restart retired); when
// the history no longer holds them, one resync event and then live ones.
func TestWatchResumeAcrossRestart(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec, logKeep: store.DefaultLogKeep})
	wr := e.dial("alpha")
	w := e.watcher("alpha")
	w.watch("", "", 1, protocol.WatchText, 0)
	wr.ok(protocol.OpInsert, "", phext.Origin, []byte("a"))
	last := w.next().Pos
	w.nc.Close()
	text := "a"
	var want []string
	for i := 0; i < 5; i++ {
		c := []byte{'b' + byte(i)}
		wr.ok(protocol.OpInsert, "", phext.Origin, c)
		text += string(c)
		want = append(want, text)
	}
	wr.nc.Close()
	e.restart(store.DefaultLogKeep)
	wr = e.dial("alpha")
	for i := 0; i < 2; i++ {
		c := []byte{'x' + byte(i)}
		wr.ok(protocol.OpInsert, "", phext.Origin, c)
		text += string(c)
		want = append(want, text)
	}
	w = e.watcher("alpha")
	now := w.watch("", "", 2, protocol.WatchText|protocol.WatchFrom, last)
	for i, txt := range want {
		ev := w.next()
		if ev.Kind != protocol.EventChange || ev.Op != protocol.ChangeInsert || ev.Pos <= last || ev.Pos > now || ev.text != txt {
			t.Fatalf("resumed event %d: %+v %q (last %d, now %d), want %q", i, ev.Event, ev.text, last, now, txt)
		}
		last = ev.Pos
	}
	wr.ok(protocol.OpInsert, "", phext.Origin, []byte("!"))
	if ev := w.next(); ev.Kind != protocol.EventChange || ev.Pos <= now || ev.text != text+"!" {
		t.Fatalf("live after the resume: %+v %q", ev.Event, ev.text)
	}
	if r := w.do(protocol.OpPing, "", phext.Origin, nil); r.Status != protocol.StatusOK || len(w.events) != 0 {
		t.Fatalf("duplicates after resume: %+v", w.events)
	}
	seen := last
	w.nc.Close()
	wr.nc.Close()

	// Restarted without a history: the changes before it are gone.
	e.restart(-1)
	w = e.watcher("alpha")
	now = w.watch("", "", 3, protocol.WatchText|protocol.WatchFrom, seen)
	if ev := w.next(); ev.Kind != protocol.EventResync || ev.Reason != protocol.ResyncGap || ev.Ended || ev.Pos != now {
		t.Fatalf("want one resync (gap) at %d, got %+v", now, ev.Event)
	}
	wr = e.dial("alpha")
	wr.ok(protocol.OpInsert, "", phext.Origin, []byte("?"))
	if ev := w.next(); ev.Kind != protocol.EventChange || ev.Pos <= now || ev.text != text+"!?" {
		t.Fatalf("live after the resync: %+v %q", ev.Event, ev.text)
	}
	if r := w.do(protocol.OpPing, "", phext.Origin, nil); r.Status != protocol.StatusOK || len(w.events) != 0 {
		t.Fatalf("more than one resync: %+v", w.events)
	}
}

// TestWatchResumeLargerThanQueue: a resume whose replay is larger than the
// watcher's queue (from the feed's memory, and read back from the commit
// log) is delivered whole, in order, with the changes published meanwhile
// after it and no resync: the rest waits in the subscription's backlog and
// is queued as the watcher reads (it got a resync, slow and ended, for each
// queue's worth before).
func TestWatchResumeLargerThanQueue(t *testing.T) {
	for _, tc := range []struct {
		name   string
		retain int
	}{{"from memory", 4096}, {"from the log", 16}} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, envOptions{durability: store.DurabilityEverySec,
				opts: Options{WatchQueueBytes: 8 << 10, WatchRetainEvents: tc.retain, WatchRetainBytes: 1 << 20}})
			wr := e.dial("alpha")
			w := e.watcher("alpha")
			from := w.watch("", "", 1, 0, 0)
			w.nc.Close()
			text := strings.Repeat("x", 90)
			const n = 300 // ~40 KiB of events with their texts
			for i := 0; i < n; i++ {
				wr.ok(protocol.OpUpdate, "", coordN(i), []byte(fmt.Sprintf("%03d%s", i, text)))
			}
			w = e.watcher("alpha")
			release := holdFlushesForBacklog(e.srv)
			w.watch("", "", 2, protocol.WatchText|protocol.WatchFrom, from)
			release()
			for i := 0; i < 20; i++ { // live, while the backlog waits
				wr.ok(protocol.OpUpdate, "", coordN(n+i), []byte(fmt.Sprintf("%03d%s", n+i, text)))
			}
			last := from
			for i := 0; i < n+20; i++ {
				ev := w.next()
				if ev.Kind != protocol.EventChange || ev.Pos <= last || !strings.HasPrefix(ev.text, fmt.Sprintf("%03d", i)) {
					t.Fatalf("event %d: %+v %.3q (last %d)", i, ev.Event, ev.text, last)
				}
				last = ev.Pos
			}
			if r := w.do(protocol.OpPing, "", phext.Origin, nil); r.Status != protocol.StatusOK || len(w.events) != 0 {
				t.Fatalf("more events than changes: %+v", w.events)
			}
			wr.ok(protocol.OpUpdate, "", phext.Origin, []byte("live"))
			if ev := w.next(); ev.Kind != protocol.EventChange || ev.Pos <= last || ev.text != "live" {
				t.Fatalf("live after the backlog: %+v %q", ev.Event, ev.text)
			}
			if got := e.srv.stats.watchBacklogs.Load(); got != 1 {
				t.Fatalf("sq_watch_backlogs_total %d, want 1", got)
			}

		})
	}
}

// holdFlushesForBacklog makes a watch flush that starts once a replay
// has queued an event wait (on its event loop, at most 10 s) until a
// replay has overflowed its watcher's queue into a backlog, for tests of
// a resume larger than the queue. Otherwise the loop may write the queue
// out as fast as the replay fills it (the worker descheduled mid-replay
// on a busy box: a chaos build, 2 runs in 2), and the replay never needs
// the backlog those tests are about. Flushes of events queued before it
// was called are not held. release lets flushes go.
func holdFlushesForBacklog(s *Server) (release func()) {
	done := make(chan struct{})
	queued := s.stats.watchEvents.Load()
	hook := func() {
		deadline := time.Now().Add(10 * time.Second)
		for s.stats.watchEvents.Load() != queued && s.stats.watchBacklogs.Load() == 0 && time.Now().Before(deadline) {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
	s.watchFlushHook.Store(&hook)
	return func() {
		s.watchFlushHook.Store(nil)
		close(done)
	}
}

// TestWatchBacklogSlowWatcherDropped: a watcher that resumes with a
// backlog (the replay larger than its queue) and then does not read is
// bounded like any slow watcher: once the live changes waiting behind its
// backlog pass its queue's size it gets one resync (slow, ended) after the
// changes it got, in order, and the writer is never held up.
func TestWatchBacklogSlowWatcherDropped(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec, opts: Options{WatchQueueBytes: 64 << 10}})
	wr := e.dial("alpha")
	w := e.watcher("alpha")
	from := w.watch("", "", 1, 0, 0)
	w.nc.Close()
	text := []byte(strings.Repeat("s", 8<<10))
	for i := 0; i < 300; i++ { // 2.4 MB: read back from the log, > the 64 KiB queue
		wr.ok(protocol.OpUpdate, "", coordN(i), text)
	}
	slow := e.watcher("alpha")
	release := holdFlushesForBacklog(e.srv)
	slow.watch("", "", 2, protocol.WatchText|protocol.WatchFrom, from)
	release()
	for i := 0; i < 3000; i++ { // 24 MB more: past the kernel's socket buffers
		wr.ok(protocol.OpUpdate, "", phext.Origin, text)
	}
	last, n := from, 0
	for {
		ev := slow.next()
		if ev.Kind == protocol.EventResync {
			if ev.Reason != protocol.ResyncSlow || !ev.Ended || ev.Pos < last {
				t.Fatalf("resync %+v (last %d)", ev.Event, last)
			}
			break
		}
		if ev.Pos <= last {
			t.Fatalf("event %d %+v after %d", n, ev.Event, last)
		}
		last = ev.Pos
		n++
	}
	if n < 300 || n >= 3300 {
		t.Fatalf("%d changes before the resync, want the backlog's 300 and some", n)
	}
	if r := slow.do(protocol.OpPing, "", phext.Origin, nil); r.Status != protocol.StatusOK || len(slow.events) != 0 {
		t.Fatalf("events after the ended resync: %+v", slow.events)
	}
	if got := e.srv.stats.watchBacklogs.Load(); got != 1 {
		t.Fatalf("sq_watch_backlogs_total %d, want 1", got)
	}
}

// TestWatchRingGrows: a hub's retention starts small and doubles up to
// WatchRetainEvents as changes come, in order: a resume from before 150
// changes is replayed from it whole (not from the log), and it holds no
// more than WatchRetainEvents.
func TestWatchRingGrows(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec, opts: Options{WatchRetainEvents: 200}})
	wr := e.dial("alpha")
	w := e.watcher("alpha")
	from := w.watch("", "", 1, 0, 0)
	w.nc.Close()
	e.srv.hubsMu.Lock()
	h := e.srv.hubs[e.srv.table.Load().byName["alpha"].store]
	e.srv.hubsMu.Unlock()
	h.mu.Lock()
	if len(h.ring) != ringStart {
		t.Fatalf("a new hub's ring has %d slots, want %d", len(h.ring), ringStart)
	}
	h.mu.Unlock()
	for i := 0; i < 150; i++ {
		wr.ok(protocol.OpUpdate, "", coordN(i), []byte(fmt.Sprintf("%03d", i)))
	}
	w = e.watcher("alpha")
	w.watch("", "", 2, protocol.WatchText|protocol.WatchFrom, from)
	last := from
	for i := 0; i < 150; i++ {
		if ev := w.next(); ev.Pos <= last || ev.text != fmt.Sprintf("%03d", i) {
			t.Fatalf("event %d: %+v %q", i, ev.Event, ev.text)
		} else {
			last = ev.Pos
		}
	}
	if n := e.srv.stats.watchLogResumes.Load(); n != 0 {
		t.Fatalf("%d resumes read the log back, want the ring's", n)
	}
	for i := 0; i < 150; i++ {
		wr.ok(protocol.OpUpdate, "", coordN(i), []byte("x"))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ring) != 200 || h.n != 200 {
		t.Fatalf("ring of %d slots holding %d, want 200 and 200", len(h.ring), h.n)
	}
}
