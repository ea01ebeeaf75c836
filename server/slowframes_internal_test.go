package server

import (
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// closeConn is a gnet.Conn that records Close.
type closeConn struct {
	gnet.Conn
	closed bool
}

func (c *closeConn) Close() error { c.closed = true; return nil }

// TestSlowFramesPaceBySize: a large frame is stalled when it arrives slower
// than its size per slowFramePace. From hugeFrame on, a frame is charged
// (arriving) its mapping rounded up to whole huge pages, up to 2 MiB more
// than it has bytes to arrive, so a pace measured against the charge
// counted a frame sent at the rule's pace as stalled: a 4 MiB + 100 B
// frame is charged 6 MiB, and at 5 s with 55 % of it in (on pace for 10 s)
// the sweep closed its sender past MaxSlowFrameMemory. The memory it holds
// is still the charge; the pace is the frame's own bytes.
func TestSlowFramesPaceBySize(t *testing.T) {
	const size = hugeFrame + 100
	if frameMapLen(size) <= size {
		t.Fatalf("frameMapLen(%d) = %d: not rounded up", size, frameMapLen(size))
	}
	now := time.Now().UnixNano()
	el := 5 * time.Second
	for _, tc := range []struct {
		name    string
		got     int64
		stalled bool
	}{
		{"on pace", size * 55 / 100, false},
		{"behind pace", size * 45 / 100, true},
	} {
		s := &Server{opts: Options{MaxSlowFrameMemory: 0}}
		conn := &closeConn{}
		cs := &connState{s: s, c: conn}
		cs.arrivingA.Store(bigFrameCost(size))
		cs.bigSize.Store(size)
		cs.bigGot.Store(tc.got)
		cs.partialSince.Store(now - int64(el))
		s.slowFrames([]*connState{cs}, now)
		if conn.closed != tc.stalled {
			t.Errorf("%s (%d of %d bytes after %v): closed %v, want %v", tc.name, tc.got, size, el, conn.closed, tc.stalled)
		}
	}
}
