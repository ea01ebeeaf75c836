package server_test

// A flood of requests refused at a limit (issue 13, M3: GET of a phext
// past the max frame, binary and REST): past its budget of limit
// refusals (Options.RefusalRate) a tenant's refused requests are
// answered late, the connection waiting without costing CPU, on both
// front ends and out of one budget; past the bounds of waiting answers
// they are answered at once and their connection closed. Another tenant
// is served at once throughout. Part of the live reliability suite; the
// harness is hostile_test.go, the rule server/refusal.go.

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// testHold is refusalHold in these tests. Whether an answer was held is
// read from the server's counter (a slow box can take that long to answer
// anyway); that a held one waited, from the clock.
const testHold = 300 * time.Millisecond

// held is how many answers the server has held so far.
func held(h *hostile) uint64 { return h.srv.Stats().RefusalsHeld }

// refusalOpts: a 1 MiB max frame, and a budget of burst refusals whose
// rate (one per 5 s) refills nothing within a test.
func refusalOpts(burst int) server.Options {
	return server.Options{MaxFrame: 1 << 20, RefusalRate: 0.2, RefusalBurst: burst}
}

// fillBig gives tenant c the phext "big", whose GET (1.2 MB) is past the
// 1 MiB max frame: TOO_LARGE, REST 413.
func fillBig(t testing.TB, c *pconn) {
	t.Helper()
	part := bytes.Repeat([]byte("x"), 600<<10)
	c.must(t, protocol.StatusOK, protocol.OpUpdate, "big", c9(1, 1, 1, 1, 1, 1, 1, 1, 1), part)
	c.must(t, protocol.StatusOK, protocol.OpUpdate, "big", c9(1, 1, 1, 1, 1, 1, 1, 1, 2), part)
}

// timedGet is one binary GET of "big" on c: TOO_LARGE, and how long it took.
func timedGet(t testing.TB, c *pconn) time.Duration {
	t.Helper()
	t0 := time.Now()
	c.must(t, protocol.StatusTooLarge, protocol.OpGet, "big", phext.Origin, nil)
	return time.Since(t0)
}

// restGet is one REST GET of "big" as token: the code, whether the server
// closes the connection after it, and how long it took.
func restGet(t testing.TB, addr, token string) (int, bool, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v2/get?p=big", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	t0 := time.Now()
	resp, err := (&http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Error(err)
		return 0, false, 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Close, time.Since(t0)
}

// restAnswer is the code of a REST GET (restGet) and when it came.
type restAnswer struct {
	code int
	at   time.Time
}

// restGetAsync is restGet on its own goroutine.
func restGetAsync(t testing.TB, addr, token string) <-chan restAnswer {
	ch := make(chan restAnswer, 1)
	go func() {
		code, _, _ := restGet(t, addr, token)
		ch <- restAnswer{code, time.Now()}
	}()
	return ch
}

// TestRefusalsHeldPastBudget: a tenant's limit refusals within its burst
// (4) are answered at once; past it its next binary GET and its REST GET
// (one budget for both) get their usual TOO_LARGE / 413 after the hold,
// on connections that stay open, while another tenant's refusals, within
// its own budget, and its requests are answered at once meanwhile.
// Without the budget every refusal is answered at once.
func TestRefusalsHeldPastBudget(t *testing.T) {
	t.Cleanup(server.SetRefusalHold(testHold)) // after the server stops
	h := startHostile(t, hostileOpts{opts: refusalOpts(4), http: true})
	m, bob := h.dial(t, "mallory"), h.dial(t, "bob")
	fillBig(t, m)
	fillBig(t, bob)
	for range 4 {
		timedGet(t, m)
	}
	if n := held(h); n != 0 {
		t.Fatalf("%d answers held within the burst", n)
	}
	// Past the budget: mallory's GET waits; bob's GET (a refusal within
	// his budget) and SELECT are answered meanwhile, at once.
	t0 := time.Now()
	if err := m.send(protocol.OpGet, "big", phext.Origin, nil); err != nil {
		t.Fatal(err)
	}
	sqtest.CheckFor(t, 5*time.Second, "mallory's answer held", func() bool { return h.srv.Stats().HeldNow == 1 })
	timedGet(t, bob)
	bob.must(t, protocol.StatusOK, protocol.OpSelect, "big", c9(1, 1, 1, 1, 1, 1, 1, 1, 1), nil)
	if code, _, _ := restGet(t, h.httpAddr, h.tokens["bob"]); code != http.StatusRequestEntityTooLarge {
		t.Errorf("bob's REST GET: %d, want 413", code)
	}
	if n := held(h); n != 1 {
		t.Errorf("%d answers held after bob's refusals, want mallory's 1 only", n)
	}
	r, err := m.recv(10 * time.Second)
	if err != nil || r.Status != protocol.StatusTooLarge {
		t.Fatalf("held GET: %v %v %q, want TOO_LARGE", err, r.Status, r.Body)
	}
	if d := time.Since(t0); d < testHold-10*time.Millisecond {
		t.Errorf("held GET answered after %v, want ≥ %v", d, testHold)
	}
	// REST draws on the same budget: held too, with its usual answer.
	code, closed, d := restGet(t, h.httpAddr, h.tokens["mallory"])
	if code != http.StatusRequestEntityTooLarge || closed || d < testHold-10*time.Millisecond {
		t.Errorf("mallory's REST GET past the budget: %d close=%v after %v, want 413 kept open after ≥ %v", code, closed, d, testHold)
	}
	// The binary connection stays open and serves.
	m.must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	st := h.srv.Stats()
	if st.RefusalsHeld != 2 || st.RefusalsClosed != 0 || st.HeldNow != 0 {
		t.Errorf("stats: held %d closed %d now %d, want 2 0 0", st.RefusalsHeld, st.RefusalsClosed, st.HeldNow)
	}
}

// TestRefusalsQuotaLoopWrites: QUOTA refusals count too, also those the
// event loop answers (durability everysec: writes are answered on the
// loop): past the burst the worker answers them, held, and nothing is
// written. Without the loop's check they would all be answered at once.
func TestRefusalsQuotaLoopWrites(t *testing.T) {
	t.Cleanup(server.SetRefusalHold(testHold)) // after the server stops
	h := startHostile(t, hostileOpts{opts: refusalOpts(3), durability: store.DurabilityEverySec,
		quotaMB: map[string]float64{"mallory": 0.01}})
	m := h.dial(t, "mallory")
	at := c9(1, 1, 1, 1, 1, 1, 1, 1, 1)
	m.must(t, protocol.StatusOK, protocol.OpInsert, "q", at, []byte("a"))
	m.must(t, protocol.StatusOK, protocol.OpInsert, "q", at, []byte("b")) // the phext is open: loop writes from here
	big := bytes.Repeat([]byte("y"), 20<<10)
	for range 3 {
		m.must(t, protocol.StatusQuota, protocol.OpInsert, "q", at, big)
	}
	if n := held(h); n != 0 {
		t.Fatalf("%d answers held within the burst", n)
	}
	t0 := time.Now()
	m.must(t, protocol.StatusQuota, protocol.OpInsert, "q", at, big)
	if d := time.Since(t0); d < testHold-10*time.Millisecond || held(h) != 1 {
		t.Errorf("QUOTA past the budget answered after %v (%d held), want ≥ %v, held", d, held(h), testHold)
	}
	if got := m.must(t, protocol.StatusOK, protocol.OpSelect, "q", at, nil); string(got) != "ab" {
		t.Errorf("scroll %q after the refused inserts, want \"ab\"", got)
	}
}

// TestRefusalsHeldBounded: only maxTenantHeld (here 2) of a tenant's
// answers wait at once. Past that a binary refusal is answered at once,
// then a BUSY naming --refusal-rate and a close (reason refusals), and
// the tenant's next HELLO is paced while another tenant's is not; a REST
// refusal is answered at once with Connection: close. The held ones are
// answered after their hold.
func TestRefusalsHeldBounded(t *testing.T) {
	t.Cleanup(server.SetRefusalHold(2 * time.Second)) // after the server stops
	t.Cleanup(server.SetMaxTenantHeld(2))             // after the server stops
	h := startHostile(t, hostileOpts{opts: refusalOpts(1), http: true})
	m1, m2, m3 := h.dial(t, "mallory"), h.dial(t, "mallory"), h.dial(t, "mallory")
	fillBig(t, m1)
	timedGet(t, m1) // the burst
	t0 := time.Now()
	for _, c := range []*pconn{m1, m2} {
		if err := c.send(protocol.OpGet, "big", phext.Origin, nil); err != nil {
			t.Fatal(err)
		}
	}
	sqtest.CheckFor(t, 5*time.Second, "two answers held", func() bool { return h.srv.Stats().HeldNow == 2 })
	// REST: no slot left, answered at once, closing.
	if code, closed, _ := restGet(t, h.httpAddr, h.tokens["mallory"]); code != http.StatusRequestEntityTooLarge || !closed {
		t.Errorf("REST past the held bound: %d close=%v, want 413 with Connection: close", code, closed)
	}
	// Binary: the answer, a BUSY saying why, the close.
	timedGet(t, m3)
	r, err := m3.recv(5 * time.Second)
	if err != nil || r.Status != protocol.StatusBusy || !strings.Contains(string(r.Body), "--refusal-rate") {
		t.Fatalf("after the refusal: %v %v %q, want BUSY naming --refusal-rate", err, r.Status, r.Body)
	}
	if !m3.closedWithin(5 * time.Second) {
		t.Error("connection not closed after the BUSY")
	}
	next := helloAsync(h.srv.Addr(), h.tokens["mallory"])
	sqtest.CheckFor(t, 5*time.Second, "mallory's next HELLO paced", func() bool { return h.srv.Stats().HelloPaced == 1 })
	h.dial(t, "alice").must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	for _, c := range []*pconn{m1, m2} {
		r, err := c.recv(10 * time.Second)
		if err != nil || r.Status != protocol.StatusTooLarge {
			t.Fatalf("held GET: %v %v %q", err, r.Status, r.Body)
		}
	}
	if d := time.Since(t0); d < 2*time.Second-10*time.Millisecond {
		t.Errorf("held answers after %v, want ≥ 2 s", d)
	}
	if r := <-next; r.err != nil || r.status != protocol.StatusOK {
		t.Errorf("mallory's paced HELLO: %v %v %s", r.err, r.status, r.body)
	}
	st := h.srv.Stats()
	if st.Closed["refusals"] != 1 || st.RefusalsClosed != 2 || st.RefusalsHeld != 2 {
		t.Errorf("stats: close reason refusals %d, closed %d, held %d; want 1, 2, 2", st.Closed["refusals"], st.RefusalsClosed, st.RefusalsHeld)
	}
}

// TestRefusalsHeldServerBound: the server holds at most MaxConns/8 answers
// (here 2) over all tenants: with mallory's two waiting, bob's refusal past
// his own budget is answered at once and closes, though bob holds none.
func TestRefusalsHeldServerBound(t *testing.T) {
	t.Cleanup(server.SetRefusalHold(2 * time.Second)) // after the server stops
	o := refusalOpts(1)
	o.MaxConns = 16
	h := startHostile(t, hostileOpts{opts: o})
	m1, m2, bob := h.dial(t, "mallory"), h.dial(t, "mallory"), h.dial(t, "bob")
	fillBig(t, m1)
	fillBig(t, bob)
	timedGet(t, m1)
	timedGet(t, bob)
	for _, c := range []*pconn{m1, m2} {
		if err := c.send(protocol.OpGet, "big", phext.Origin, nil); err != nil {
			t.Fatal(err)
		}
	}
	sqtest.CheckFor(t, 5*time.Second, "two answers held", func() bool { return h.srv.Stats().HeldNow == 2 })
	timedGet(t, bob)
	if r, err := bob.recv(5 * time.Second); err != nil || r.Status != protocol.StatusBusy {
		t.Fatalf("bob after the refusal: %v %v %q, want BUSY", err, r.Status, r.Body)
	}
	for _, c := range []*pconn{m1, m2} {
		if r, err := c.recv(10 * time.Second); err != nil || r.Status != protocol.StatusTooLarge {
			t.Fatalf("held GET: %v %v %q", err, r.Status, r.Body)
		}
	}
}

// TestRefusalBudgetAcrossReload: the budget survives a reload that keeps
// the tenant, one of another tenant's quota and one rotating its token (an
// exhausted budget is not refilled by an operator's reload), while a
// tenant removed and added again starts with a fresh one.
func TestRefusalBudgetAcrossReload(t *testing.T) {
	t.Cleanup(server.SetRefusalHold(testHold)) // after the server stops
	h := startHostile(t, hostileOpts{opts: refusalOpts(1), quotaMB: map[string]float64{"alice": 5}})
	m := h.dial(t, "mallory")
	fillBig(t, m)
	timedGet(t, m)
	if d := timedGet(t, m); d < testHold-10*time.Millisecond {
		t.Fatalf("past the budget answered after %v", d)
	}
	reload := func() {
		t.Helper()
		if err := config.WriteFile(h.cfgPath, h.cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := h.srv.ReloadFromSource(); err != nil {
			t.Fatal(err)
		}
	}
	// A reload that changes another tenant and keeps mallory.
	e := h.cfg.Tenants[h.tokens["alice"]]
	e.QuotaMB = 6
	h.cfg.Tenants[h.tokens["alice"]] = e
	reload()
	if d := timedGet(t, m); d < testHold-10*time.Millisecond {
		t.Errorf("after a reload keeping mallory: answered after %v, want still held", d)
	}
	// A token rotation: a new *tenant over the same store tenant, which
	// takes over the budget; her open connection keeps the old token's.
	me := h.cfg.Tenants[h.tokens["mallory"]]
	rotated, err := config.GenerateToken(99)
	if err != nil {
		t.Fatal(err)
	}
	delete(h.cfg.Tenants, h.tokens["mallory"])
	h.cfg.Tenants[rotated] = me
	h.tokens["mallory"] = rotated
	reload()
	m = h.dial(t, "mallory")
	if d := timedGet(t, m); d < testHold-10*time.Millisecond {
		t.Errorf("after a token rotation: answered after %v, want still held", d)
	}
	// Removed, then added again: a fresh budget.
	delete(h.cfg.Tenants, h.tokens["mallory"])
	reload()
	h.cfg.Tenants[h.tokens["mallory"]] = me
	reload()
	m = h.dial(t, "mallory")
	before := held(h)
	timedGet(t, m)
	if n := held(h) - before; n != 0 {
		t.Errorf("mallory added again: her refusal held, want answered at once (a fresh budget)")
	}
}

// twoHeld starts a server (REST on) whose tenants get one limit refusal
// at once, then held for hold, and has mallory spend it; then mallory's
// binary GET and its REST GET of a phext past the max frame both wait.
// It returns the server, mallory's binary connection (its TOO_LARGE to
// come) and the REST answer to come.
func twoHeld(t *testing.T, hold time.Duration) (*hostile, *pconn, <-chan restAnswer) {
	t.Helper()
	t.Cleanup(server.SetRefusalHold(hold)) // after the server stops
	h := startHostile(t, hostileOpts{opts: refusalOpts(1), http: true})
	m := h.dial(t, "mallory")
	fillBig(t, m)
	timedGet(t, m)
	if err := m.send(protocol.OpGet, "big", phext.Origin, nil); err != nil {
		t.Fatal(err)
	}
	rest := restGetAsync(t, h.httpAddr, h.tokens["mallory"])
	sqtest.CheckFor(t, 5*time.Second, "two answers held", func() bool { return h.srv.Stats().HeldNow == 2 })
	return h, m, rest
}

// TestShutdownEndsHeldRefusals: a shutdown does not wait out held
// answers: the binary one and the REST one (a 10 s hold) are sent as soon
// as the server and the HTTP server begin to shut down.
func TestShutdownEndsHeldRefusals(t *testing.T) {
	h, m, rest := twoHeld(t, 10*time.Second)
	t0 := time.Now()
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	defer func() { <-stopped }()
	r, err := m.recv(5 * time.Second)
	if err != nil || r.Status != protocol.StatusTooLarge {
		t.Fatalf("held binary answer at shutdown: %v %v %q, want TOO_LARGE", err, r.Status, r.Body)
	}
	if d := time.Since(t0); d > 1500*time.Millisecond {
		t.Errorf("held binary answer sent %v after shutdown began", d)
	}
	a := <-rest
	if a.code != http.StatusRequestEntityTooLarge || a.at.Sub(t0) > 1500*time.Millisecond {
		t.Errorf("held REST answer at shutdown: %d, %v after it began; want 413 at once", a.code, a.at.Sub(t0))
	}
}
