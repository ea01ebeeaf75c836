package server_test

import (
	"io"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// TestRefusedBodyStalledClosedAtFrameTimeout: a frame refused before its
// body arrived (here QUOTA while a large PUT arrives; BUSY at the header
// of a frame the memory budget cannot take drops its body the same way,
// cs.skip) is answered at once and its body dropped as it arrives. A
// sender that then stops half way is closed at --frame-timeout like any
// stalled frame (reason slow_frame), and the memory budget is back at its
// baseline. On the code before the fix the frame-timeout clock stopped
// while the body was dropped: the connection stayed open until
// --idle-timeout (here an hour), a slowloris the frame timeout exists to
// end. Written in review of 80058af.
func TestRefusedBodyStalledClosedAtFrameTimeout(t *testing.T) {
	h := startHostile(t, hostileOpts{quotaMB: map[string]float64{"mallory": 1},
		opts: server.Options{FrameTimeout: 300 * time.Millisecond, IdleTimeout: time.Hour}})
	c := h.dial(t, "mallory")
	c.must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	base := h.srv.Memory().Used
	slow0 := h.srv.Stats().Closed["slow_frame"]

	startOverQuotaPut(t, c, "dots", 6<<20)
	// The sender stalls with most of the body unsent: the connection must
	// be closed within a few frame timeouts.
	c.nc.SetReadDeadline(time.Now().Add(4 * time.Second))
	var b [64]byte
	if n, err := c.nc.Read(b[:]); err != io.EOF {
		t.Fatalf("stalled refused body: read %d bytes, %v; want the connection closed (EOF) at the frame timeout", n, err)
	}
	if got := h.srv.Stats().Closed["slow_frame"]; got != slow0+1 {
		t.Fatalf("closed as slow_frame: %d, want %d", got, slow0+1)
	}
	sqtest.CheckFor(t, 5*time.Second, "the memory budget back at its baseline", func() bool {
		m := h.srv.Memory()
		return m.Used-m.FrameBytesIdle <= base
	})
}
