package server

import (
	"fmt"
	"testing"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// frameEncoder is a StreamEncoder writing the binary protocol's event
// frames (what a connection's sink queues), for tests of WatchStream.
type frameEncoder struct{}

func (frameEncoder) AppendChange(dst []byte, c *store.Change, withText, omitted bool) []byte {
	textAt, text := protocol.TextNone, []byte(nil)
	switch {
	case withText && omitted:
		textAt = protocol.TextOmitted
	case withText:
		textAt, text = protocol.TextHere, c.Text
	}
	var sum []byte
	if c.HasSum {
		sum = c.Sum[:]
	}
	return protocol.AppendChangeEvent(dst, 1, c.Pos, uint8(c.Op), []byte(c.Phext), c.Coord, uint64(c.Len), sum, textAt, text)
}

func (frameEncoder) AppendResync(dst []byte, pos uint64, reason uint8, ended bool) []byte {
	return protocol.AppendResyncEvent(dst, 1, pos, reason, ended)
}

// TestSSEReleasesBudget: a stream whose client goes away gives back its
// subscription's charge and whatever of its queue was charged: events
// still queued when its handler returns, and those it took but had not
// finished writing, are released after the subscription left the hub.
// (REST's SSE handler runs on WatchStream since the HTTP API moved to
// server/httpapi; the release is WatchStream.Close's.)
func TestSSEReleasesBudget(t *testing.T) {
	e := startEnv(t, envOptions{})
	tn := e.srv.table.Load().byName["alpha"]
	ws, err := e.srv.Watch(Tenant{tn}, []byte("n"), &protocol.Watch{}, true, frameEncoder{})
	if err != nil {
		t.Fatal(err)
	}
	base := tn.mem.used.Load()
	insert := func(n int) {
		for i := 0; i < n; i++ {
			if _, err := tn.store.Insert([]byte("n"), phext.Origin, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(10)
	<-ws.Ready()
	if buf, _ := ws.Take(); len(buf) == 0 {
		t.Fatal("nothing queued after 10 inserts")
	}
	// The handler took a batch and went away before writing it.
	insert(10)
	ws.Close()
	sqtest.CheckForErr(t, 5e9, func() error {
		// The retention ring keeps its charge; the stream's queue and
		// subscription must be back.
		e.srv.hubsMu.Lock()
		h := e.srv.hubs[tn.store]
		e.srv.hubsMu.Unlock()
		h.mu.Lock()
		ring, subs := h.charged, len(h.subs)
		h.mu.Unlock()
		if got := tn.mem.used.Load(); subs != 0 || got != base-watchSubCost+ring {
			return fmt.Errorf("budget %d, want %d (base %d, ring %d), %d subscriptions", got, base-watchSubCost+ring, base, ring, subs)
		}
		return nil
	})
}
