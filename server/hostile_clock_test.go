package server_test

import (
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// TestPacedHelloAnsweredWhenClockSteps: a HELLO waiting for its tenant's
// schedule, or a refusal at the connection limit waiting for its BUSY, is
// answered when its timer fires even when a reading of the clock taken
// then says it is not due yet (here the server's clock is set an hour
// back while they wait). When the answer compared a clock reading with
// the due time, a wall clock stepped back left both unanswered, and the
// HELLO timeout spares a waiting connection, so nothing else closed it.
func TestPacedHelloAnsweredWhenClockSteps(t *testing.T) {
	h := startHostile(t, hostileOpts{opts: server.Options{HelloRate: 1, HelloBurst: 1, MaxConnsPerTenant: 2}})
	h.dial(t, "bob")
	// bob's second HELLO waits for his schedule (a second), his third for
	// its BUSY (a second), mallory's second for her schedule.
	bob2 := helloAsync(h.srv.Addr(), h.tokens["bob"])
	sqtest.CheckFor(t, 5*time.Second, "bob's second HELLO paced", func() bool { return h.srv.Stats().HelloPaced == 1 })
	refused := helloAsync(h.srv.Addr(), h.tokens["bob"])
	h.dial(t, "mallory")
	paced := helloAsync(h.srv.Addr(), h.tokens["mallory"])
	sqtest.CheckFor(t, 5*time.Second, "both waiting", func() bool {
		st := h.srv.Stats()
		return st.HelloPaced == 2 && st.RefusalsWaiting == 1
	})
	defer server.SetClockSkew(-time.Hour)()
	for _, w := range []struct {
		what string
		ch   <-chan helloResult
		want protocol.Status
	}{{"the paced HELLO", paced, protocol.StatusOK}, {"bob's paced HELLO", bob2, protocol.StatusOK},
		{"the waiting refusal", refused, protocol.StatusBusy}} {
		select {
		case r := <-w.ch:
			if r.err != nil || r.status != w.want {
				t.Errorf("%s: %v %v %q, want %v", w.what, r.err, r.status, r.body, w.want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: no answer 5 s after the clock stepped back", w.what)
		}
	}
}
