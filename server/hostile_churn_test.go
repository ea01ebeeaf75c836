package server_test

// Connection churn and malformed frames of one tenant (issue 13, the
// compressed size bomb M1): its new connections are paced, its malformed
// frames past a budget close their connection and delay its next
// connection, while other tenants are served at once.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

type helloResult struct {
	status protocol.Status
	body   []byte
	err    error
	at     time.Time
}

// helloAsync dials and says HELLO as token in the background.
func helloAsync(addr, token string) <-chan helloResult {
	ch := make(chan helloResult, 1)
	go func() {
		c, err := dialP(addr)
		if err != nil {
			ch <- helloResult{err: err, at: time.Now()}
			return
		}
		defer c.nc.Close()
		st, body, err := c.hello(token)
		ch <- helloResult{status: st, body: body, err: err, at: time.Now()}
	}()
	return ch
}

// TestHelloPacedPerTenant: past its burst, a tenant's next HELLO waits for
// the tenant's schedule (HelloRate 1/s: a second after the first), while
// another tenant's HELLO is answered at once. Without pacing the third
// HELLO is answered at once.
func TestHelloPacedPerTenant(t *testing.T) {
	h := startHostile(t, hostileOpts{opts: server.Options{HelloRate: 1, HelloBurst: 2}})
	t0 := time.Now() // before the first HELLO is booked
	h.dial(t, "mallory")
	h.dial(t, "mallory")
	third := helloAsync(h.srv.Addr(), h.tokens["mallory"])
	sqtest.CheckFor(t, 5*time.Second, "the third HELLO paced", func() bool { return h.srv.Stats().HelloPaced == 1 })
	h.dial(t, "alice").must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	// The schedule's third slot is one interval (1 s) after the first.
	pacedAfterAlice(t, third, t0, "mallory's third HELLO")
}

// pacedAfterAlice checks that the paced HELLO r has not been answered yet
// (another tenant was served meanwhile), then that it is answered OK at
// least a second after t0.
func pacedAfterAlice(t *testing.T, hello <-chan helloResult, t0 time.Time, what string) {
	t.Helper()
	select {
	case r := <-hello:
		t.Fatalf("%s answered (%v %v) before alice's, %v after t0", what, r.status, r.err, r.at.Sub(t0))
	default:
	}
	r := <-hello
	if r.err != nil || r.status != protocol.StatusOK {
		t.Fatalf("%s: %v %v %s", what, r.err, r.status, r.body)
	}
	if d := r.at.Sub(t0); d < 990*time.Millisecond {
		t.Errorf("%s answered %v after t0, want ≥ 1 s", what, d)
	}
}

// TestHelloPacedRefusedPastMaxWait: a HELLO whose turn lies past the
// longest wait (HelloTimeout/2 = 300 ms here) is answered BUSY with a
// message naming the flag, after that wait, and closed.
func TestHelloPacedRefusedPastMaxWait(t *testing.T) {
	h := startHostile(t, hostileOpts{opts: server.Options{HelloRate: 1, HelloBurst: 1, HelloTimeout: 600 * time.Millisecond}})
	h.dial(t, "mallory")
	t0 := time.Now()
	c, err := dialP(h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	st, body, err := c.hello(h.tokens["mallory"])
	if err != nil || st != protocol.StatusBusy || !strings.Contains(string(body), "--hello-rate") {
		t.Fatalf("HELLO past the longest wait: %v %v %q, want BUSY naming --hello-rate", err, st, body)
	}
	if d := time.Since(t0); d < 290*time.Millisecond {
		t.Errorf("BUSY after %v, want after the 300 ms wait", d)
	}
	if !c.closedWithin(5 * time.Second) {
		t.Error("connection not closed after the BUSY")
	}
	// Nothing was booked for it: alice is not affected either way.
	h.dial(t, "alice").must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
}

// TestBadFramesCloseAndPace: a tenant past its budget of malformed frames
// (BadFrameRate 10/s) gets the erring frame answered, then a BUSY naming
// the flag and a close, without answers for the rest of what it sent; its
// next HELLO waits at least a second, while another tenant's open
// connection and new HELLO are served at once. Without the budget all 40
// frames are answered BAD_FRAME and the connection stays open.
func TestBadFramesCloseAndPace(t *testing.T) {
	h := startHostile(t, hostileOpts{opts: server.Options{BadFrameRate: 10}})
	alice := h.dial(t, "alice")
	m := h.dial(t, "mallory")
	// 40 SELECT frames with an empty body: each fails to decode.
	var batch []byte
	for i := range 40 {
		batch = binary.BigEndian.AppendUint32(batch, 6)
		batch = append(batch, byte(protocol.OpSelect), 0)
		batch = binary.BigEndian.AppendUint32(batch, uint32(100+i))
	}
	t0 := time.Now() // before the server sees any of them
	if _, err := m.nc.Write(batch); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for {
		r, err := m.recv(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d BAD_FRAME replies: %v, want a BUSY before the close", bad, err)
		}
		if r.Status == protocol.StatusBadFrame && r.ID == uint32(100+bad) {
			bad++
			continue
		}
		if r.Status != protocol.StatusBusy || r.ID != 0 || !strings.Contains(string(r.Body), "--bad-frame-rate") {
			t.Fatalf("reply %d: %v id %d %q, want BAD_FRAME id %d or BUSY id 0 naming --bad-frame-rate", bad, r.Status, r.ID, r.Body, 100+bad)
		}
		break
	}
	if bad < 10 || bad >= 40 {
		t.Errorf("%d BAD_FRAME replies before the BUSY, want the budget's 10 or a few more, not all 40", bad)
	}
	if !m.closedWithin(5 * time.Second) {
		t.Error("mallory's connection not closed after the BUSY")
	}
	next := helloAsync(h.srv.Addr(), h.tokens["mallory"])
	sqtest.CheckFor(t, 5*time.Second, "mallory's next HELLO paced", func() bool { return h.srv.Stats().HelloPaced == 1 })
	alice.must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	h.dial(t, "alice").must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	pacedAfterAlice(t, next, t0, "mallory's HELLO after her malformed frames")
	if n := h.srv.Stats().Closed["bad_frames"]; n != 1 {
		t.Errorf("close reason bad_frames counted %d, want 1", n)
	}
}

// TestPacedHelloCountsAsOpen: a connection whose HELLO waits for its turn
// counts against the tenant's connection limit (MaxConnsPerTenant 2: the
// third HELLO is refused while the second waits), and one that
// sends more than 64 KiB while it waits is answered BUSY and closed before
// its turn.
func TestPacedHelloCountsAsOpen(t *testing.T) {
	h := startHostile(t, hostileOpts{opts: server.Options{HelloRate: 0.5, HelloBurst: 1, MaxConnsPerTenant: 2}})
	h.dial(t, "mallory")
	waiting, err := dialP(h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.nc.Close()
	if _, err := waiting.nc.Write(protocol.AppendHello(nil, 7, []byte(h.tokens["mallory"]), 0)); err != nil {
		t.Fatal(err)
	}
	sqtest.CheckFor(t, 5*time.Second, "the second HELLO paced", func() bool { return h.srv.Stats().HelloPaced == 1 })
	third, err := dialP(h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer third.nc.Close()
	st, body, err := third.hello(h.tokens["mallory"])
	if err != nil || st != protocol.StatusBusy || !strings.Contains(string(body), "too many connections") {
		t.Fatalf("third HELLO while the second waits: %v %v %q, want BUSY too many connections", err, st, body)
	}
	// The waiting one floods before its turn (2 s away).
	t0 := time.Now()
	waiting.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := waiting.nc.Write(make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	r, err := waiting.recv(5 * time.Second)
	if err != nil || r.Status != protocol.StatusBusy || r.ID != 7 {
		t.Fatalf("flood while waiting: %v %v id %d %q, want BUSY id 7", err, r.Status, r.ID, r.Body)
	}
	if d := time.Since(t0); d > 1500*time.Millisecond {
		t.Errorf("answered after %v, want before its turn", d)
	}
	if !waiting.closedWithin(5 * time.Second) {
		t.Error("flooding connection not closed")
	}
}

// TestPacedHelloInputCharged: what a connection sends while its HELLO
// waits for its tenant's schedule (at most 64 KiB each, held in gnet's
// inbound buffer for up to 5 s) is charged to the client memory budget,
// and a waiting connection whose input does not fit it is closed. Found
// in review of af207db: paced connections were never charged, so a
// tenant's 2,000 waiting connections (MaxConnsPerTenant) held 125 MiB out
// of sight of its share, and the server's 20,000 (MaxConns) 1.25 GiB past
// the 1 GiB budget. Here 80 connections send 60 KiB each (4.8 MB) into a
// 3 MiB budget: on the old code the budget stays at 0.
func TestPacedHelloInputCharged(t *testing.T) {
	const maxFrame = 1 << 20
	// HelloRate 0.1/s: every HELLO past the first waits the longest wait
	// (5 s) and is then refused, so none is welcomed while this looks.
	h := startHostile(t, hostileOpts{opts: server.Options{HelloRate: 0.1, HelloBurst: 1,
		MaxFrame: maxFrame, MaxClientMemory: 3 * maxFrame}})
	h.dial(t, "mallory")
	const n, each = 80, 60 << 10
	var ping []byte
	for len(ping) < each-64 {
		ping = protocol.AppendRequest(ping, protocol.OpPing, 7, nil, phext.Origin, nil)
	}
	var ncs []net.Conn
	t.Cleanup(func() {
		for _, nc := range ncs {
			nc.Close()
		}
	})
	for range n {
		nc, err := net.Dial("tcp", h.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		ncs = append(ncs, nc)
		if _, err := nc.Write(append(protocol.AppendHello(nil, 1, []byte(h.tokens["mallory"]), 0), ping...)); err != nil {
			t.Fatal(err)
		}
	}
	sqtest.CheckFor(t, 4*time.Second, "every HELLO paced", func() bool { return h.srv.Stats().HelloPaced == n })
	limit := h.srv.Memory().Limit
	sqtest.CheckFor(t, 4*time.Second, "the waiting connections' input charged up to the budget", func() bool {
		return h.srv.Memory().Used > limit-2*each
	})
	if m := h.srv.Memory(); m.Peak > limit {
		t.Errorf("budget peak %d, limit %d: paced input taken past it", m.Peak, limit)
	}
	if closed := h.srv.Stats().Closed["inbound_limit"]; int64(closed) < (n*each-limit)/each {
		t.Errorf("%d waiting connections closed; %d send %d bytes over the %d budget", closed, n, n*each-limit, limit)
	}
	for _, nc := range ncs {
		nc.Close()
	}
	sqtest.CheckFor(t, 10*time.Second, "the budget given back", func() bool { return h.srv.Memory().Used == 0 })
}
