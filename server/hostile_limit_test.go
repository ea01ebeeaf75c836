package server_test

// Refused dials at a tenant's connection limit (issue 13, attack 6 of the
// figures): the BUSY of a HELLO past MaxConnsPerTenant waits a second, so
// a tenant holding its connections cannot churn refused dials at full
// speed, and only a bounded number of such refusals wait per tenant and
// server-wide, so they cannot take --max-conns from other tenants.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// sendHello dials and writes a HELLO as token without reading the answer.
func sendHello(t *testing.T, addr, token string) *pconn {
	t.Helper()
	c, err := dialP(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.nc.Close() })
	c.id++
	if _, err := c.nc.Write(protocol.AppendHello(nil, c.id, []byte(token), 0)); err != nil {
		t.Fatal(err)
	}
	return c
}

// busyAt reads c's HELLO answer, which must be BUSY naming the
// connection limit, followed by a close, and returns when it came.
func busyAt(t *testing.T, c *pconn, what string) time.Time {
	t.Helper()
	r, err := c.recv(10 * time.Second)
	at := time.Now()
	if err != nil || r.Status != protocol.StatusBusy || !strings.Contains(string(r.Body), "too many connections") {
		t.Fatalf("%s: %v %v %q, want BUSY too many connections", what, err, r.Status, r.Body)
	}
	if !c.closedWithin(5 * time.Second) {
		t.Errorf("%s: not closed after the BUSY", what)
	}
	return at
}

// TestRefusalAtLimitWaits: at its connection limit (MaxConnsPerTenant 2) a
// tenant's next HELLO is answered BUSY no sooner than a second later,
// while another tenant is served at once meanwhile. Without the wait the
// BUSY comes at once.
func TestRefusalAtLimitWaits(t *testing.T) {
	h := startHostile(t, hostileOpts{opts: server.Options{MaxConnsPerTenant: 2}})
	h.dial(t, "mallory")
	h.dial(t, "mallory")
	t0 := time.Now()
	third := sendHello(t, h.srv.Addr(), h.tokens["mallory"])
	sqtest.CheckFor(t, 5*time.Second, "the third HELLO's refusal waiting", func() bool { return h.srv.Stats().RefusalsWaiting == 1 })
	h.dial(t, "alice").must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	if d := busyAt(t, third, "mallory's third HELLO").Sub(t0); d < 990*time.Millisecond {
		t.Errorf("BUSY %v after the HELLO, want ≥ 1 s", d)
	}
	sqtest.CheckFor(t, 5*time.Second, "the refusal's slot given back", func() bool { return h.srv.Stats().RefusalsWaiting == 0 })
}

// TestRefusalsAtLimitBounded: at most maxTenantRefusals (3 here) of a
// tenant's refusals wait, and MaxConns/8 (5) of the server's; past either
// bound the BUSY comes at once. A client that closes while its refusal
// waits gives its slot back. Another tenant is served throughout. Without
// the bounds the fourth of mallory's refusals waits too.
func TestRefusalsAtLimitBounded(t *testing.T) {
	t.Cleanup(server.SetMaxTenantRefusals(3))
	h := startHostile(t, hostileOpts{opts: server.Options{MaxConnsPerTenant: 1, MaxConns: 40}})
	addr := h.srv.Addr()
	waiting := func(n int64) {
		t.Helper()
		sqtest.CheckFor(t, 5*time.Second, "refusals waiting", func() bool { return h.srv.Stats().RefusalsWaiting == n })
	}
	// atOnce: a refusal past the bounds is answered before the waiting
	// ones are due (a second after they came).
	atOnce := func(token, what string) {
		t.Helper()
		t0 := time.Now()
		c := sendHello(t, addr, token)
		if d := busyAt(t, c, what).Sub(t0); d > 800*time.Millisecond {
			t.Errorf("%s: BUSY after %v, want at once", what, d)
		}
	}
	h.dial(t, "mallory")
	h.dial(t, "bob")
	var m []*pconn
	for i := range 3 {
		m = append(m, sendHello(t, addr, h.tokens["mallory"]))
		waiting(int64(i + 1))
	}
	atOnce(h.tokens["mallory"], "mallory's refusal past her 3")
	waiting(3)
	b := []*pconn{sendHello(t, addr, h.tokens["bob"])}
	waiting(4)
	b = append(b, sendHello(t, addr, h.tokens["bob"]))
	waiting(5)
	atOnce(h.tokens["bob"], "bob's refusal past the server's 5")
	h.dial(t, "alice").must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	// mallory gives up one waiting dial: its slot comes free for bob.
	m[0].nc.Close()
	waiting(4)
	b = append(b, sendHello(t, addr, h.tokens["bob"]))
	waiting(5)
	for i, c := range append(m[1:], b...) {
		busyAt(t, c, "waiting refusal "+string(rune('a'+i)))
	}
	waiting(0)
}

// TestShutdownWhileRefusalsWait: a shutdown while refusals at the
// connection limit wait returns promptly; the waiting clients are answered
// (SHUTTING_DOWN or BUSY) or closed.
func TestShutdownWhileRefusalsWait(t *testing.T) {
	h := startHostile(t, hostileOpts{opts: server.Options{MaxConnsPerTenant: 1}})
	h.dial(t, "mallory")
	var cs []*pconn
	for range 3 {
		cs = append(cs, sendHello(t, h.srv.Addr(), h.tokens["mallory"]))
	}
	sqtest.CheckFor(t, 5*time.Second, "refusals waiting", func() bool { return h.srv.Stats().RefusalsWaiting == 3 })
	t0 := time.Now()
	h.stop() // fails the test if Shutdown errs
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	for i, c := range cs {
		if r, err := c.recv(5 * time.Second); err == nil && r.Status != protocol.StatusShuttingDown && r.Status != protocol.StatusBusy {
			t.Errorf("waiting refusal %d answered %v %q", i, r.Status, r.Body)
		}
		if !c.closedWithin(5 * time.Second) {
			t.Errorf("waiting refusal %d not closed", i)
		}
	}
}

// TestRefusalAtLimitInputBounded: a connection whose refusal waits and
// sends more than 64 KiB meanwhile is answered BUSY "too much sent before
// the HELLO answer" before its second is up and closed, its slot given
// back (what it sends is bounded and charged like a paced HELLO's).
func TestRefusalAtLimitInputBounded(t *testing.T) {
	h := startHostile(t, hostileOpts{opts: server.Options{MaxConnsPerTenant: 1}})
	h.dial(t, "mallory")
	c := sendHello(t, h.srv.Addr(), h.tokens["mallory"])
	sqtest.CheckFor(t, 5*time.Second, "the refusal waiting", func() bool { return h.srv.Stats().RefusalsWaiting == 1 })
	t0 := time.Now()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write(make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	r, err := c.recv(5 * time.Second)
	if err != nil || r.Status != protocol.StatusBusy || !strings.Contains(string(r.Body), "too much sent") {
		t.Fatalf("flood while the refusal waits: %v %v %q, want BUSY too much sent", err, r.Status, r.Body)
	}
	if d := time.Since(t0); d > 900*time.Millisecond {
		t.Errorf("answered after %v, want before the refusal was due", d)
	}
	if !c.closedWithin(5 * time.Second) {
		t.Error("flooding connection not closed")
	}
	sqtest.CheckFor(t, 5*time.Second, "the slot given back", func() bool { return h.srv.Stats().RefusalsWaiting == 0 })
}

// TestAuthRefusalsAllWait: past its address's budget of failures (1
// here), every failed HELLO's AUTH waits (a step more for each failure:
// 2 s here, at most 5 s), however many wait: here 8 from one address,
// more than the MaxConns/8 = 5 slots of waiting refusals they used to
// take, past which a failure was answered at once (one tokenless client
// filling the slots switched the guessing delay off for everyone). A
// valid token from the same address is answered at once meanwhile, and a
// refusal at a tenant's connection limit still finds its own slots. A
// waiting failure that is answered, or whose client gives up, leaves the
// count.
func TestAuthRefusalsAllWait(t *testing.T) {
	t.Cleanup(server.SetAuthDelayStep(2 * time.Second))
	h := startHostile(t, hostileOpts{opts: server.Options{AuthFailBudget: 1, MaxConns: 40, MaxConnsPerTenant: 1}})
	addr := h.srv.Addr()
	const bad = "sq_not_a_token_of_anyone_here"
	waiting := func(n int64) {
		t.Helper()
		sqtest.CheckFor(t, 5*time.Second, "refusals waiting", func() bool { return h.srv.Stats().RefusalsWaiting == n })
	}
	authAt := func(c *pconn, what string) time.Time {
		t.Helper()
		r, err := c.recv(10 * time.Second)
		at := time.Now()
		if err != nil || r.Status != protocol.StatusAuth {
			t.Fatalf("%s: %v %v %q, want AUTH", what, err, r.Status, r.Body)
		}
		if !c.closedWithin(5 * time.Second) {
			t.Errorf("%s: not closed after the AUTH", what)
		}
		return at
	}
	t0 := time.Now()
	if d := authAt(sendHello(t, addr, bad), "the failure within the address's budget").Sub(t0); d > time.Second {
		t.Errorf("the failure within the budget: AUTH after %v, want at once", d)
	}
	var w []*pconn
	t0 = time.Now()
	for i := range 8 {
		w = append(w, sendHello(t, addr, bad))
		waiting(int64(i + 1))
	}
	// Alice from the same address: at once. Her second connection is past
	// her limit (1): its BUSY waits in a slot of its own.
	alice := h.dial(t, "alice")
	alice.must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	limited := sendHello(t, addr, h.tokens["alice"])
	waiting(9)
	// None is answered before its delay (the old code answered the 6th to
	// 8th at once).
	for i, c := range w {
		c.nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		var b [1]byte
		if n, _ := c.nc.Read(b[:]); n > 0 && time.Since(t0) < 1900*time.Millisecond {
			t.Fatalf("waiting failure %d answered after %v, want ≥ 2 s", i, time.Since(t0))
		}
	}
	if d := authAt(w[0], "the first waiting failure").Sub(t0); d < 1900*time.Millisecond {
		t.Errorf("the first waiting failure answered after %v, want its 2 s", d)
	}
	if r, err := limited.recv(5 * time.Second); err != nil || r.Status != protocol.StatusBusy {
		t.Errorf("alice past her limit: %v %v %q, want BUSY", err, r.Status, r.Body)
	}
	waiting(7)
	for _, c := range w[1:] {
		c.nc.Close()
	}
	waiting(0)
}
