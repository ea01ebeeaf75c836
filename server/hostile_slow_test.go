package server_test

// Slow clients: no HELLO, a slowloris HELLO, a trickled frame.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// TestSlowClients: connections that never send HELLO, a HELLO sent one byte
// at a time (slowloris), and a request frame trickled after HELLO are all
// closed by the server's timeouts with the right reason, while a good
// client is served meanwhile.
func TestSlowClients(t *testing.T) {
	h := startHostile(t, hostileOpts{opts: server.Options{
		HelloTimeout: 400 * time.Millisecond, FrameTimeout: 400 * time.Millisecond}})
	const silent = 100
	var ncs []*pconn
	for i := 0; i < silent; i++ {
		c, err := dialP(h.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.nc.Close()
		ncs = append(ncs, c)
	}
	// One byte a second of HELLO (here: one byte per 150 ms, the timeout
	// being 400 ms) and one byte per 150 ms of a request after HELLO.
	slowHello, err := dialP(h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slowHello.nc.Close()
	slowFrame := h.dial(t, "mallory")
	helloBytes := protocol.AppendHello(nil, 1, []byte(h.tokens["mallory"]), 0)
	reqBytes := protocol.AppendRequest(nil, protocol.OpInsert, 9, []byte("slow"), c9(1), bytes.Repeat([]byte("z"), 100))
	trickle := func(c *pconn, b []byte) (sent int) {
		for _, x := range b {
			if _, err := c.nc.Write([]byte{x}); err != nil {
				return sent
			}
			sent++
			time.Sleep(150 * time.Millisecond)
			if sent > 20 {
				return sent
			}
		}
		return sent
	}
	var wg sync.WaitGroup
	var s1, s2 int
	wg.Add(2)
	go func() { defer wg.Done(); s1 = trickle(slowHello, helloBytes) }()
	go func() { defer wg.Done(); s2 = trickle(slowFrame, reqBytes) }()
	good := h.dial(t, "alice")
	var lat latencies
	goodClient(t, good, c9(1), time.Second, &lat, 0)
	wg.Wait()
	for i, c := range ncs {
		if !c.closedWithin(2 * time.Second) {
			t.Fatalf("silent connection %d still open", i)
		}
	}
	if !slowHello.closedWithin(2*time.Second) || !slowFrame.closedWithin(2*time.Second) {
		t.Fatal("a slowloris connection is still open")
	}
	st := h.srv.Stats()
	t.Logf("closed: %v; slowloris sent %d and %d bytes before being cut; good client p99 %v", st.Closed, s1, s2, lat.p(0.99))
	if st.Closed["hello_timeout"] < silent+1 || st.Closed["slow_frame"] < 1 {
		t.Errorf("close reasons %v: want ≥ %d hello_timeout and ≥ 1 slow_frame", st.Closed, silent+1)
	}
	// Nothing of the trickled request was written.
	c := h.dial(t, "mallory")
	if got := c.must(t, protocol.StatusOK, protocol.OpSelect, "slow", c9(1), nil); len(got) != 0 {
		t.Errorf("a partial frame was executed: %q", got)
	}
}
