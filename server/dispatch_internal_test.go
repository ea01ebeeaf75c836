package server

import (
	"bytes"
	"testing"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// TestWriteRunDecodesOnce: a run of pipelined writes in which one frame
// does not decode is answered in order, that frame with its decode error
// and the others written (one WriteMany on each side of it), each frame
// decoded once. Before, the run fell back to frame by frame, decoding every
// frame again, and after a heavy frame had taken the tenant's turn: the
// heavy frame then waited for the turn its own run held, and the worker,
// the tenant's heavy turn and a server-wide slot were stuck for good.
func TestWriteRunDecodesOnce(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityNo})
	tn := e.srv.table.Load().byName["alpha"]
	cs := &connState{s: e.srv, tenant: tn, mem: tn.mem}
	cs.dec = protocol.Decoder{MaxFrame: e.srv.opts.MaxFrame, Budget: cs.mem}
	c1, c2 := phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 1}, phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 2}
	big := bytes.Repeat([]byte("b"), heavyBytes+1) // a heavy frame: takes the turn
	frames := [][]byte{
		protocol.AppendRequest(nil, protocol.OpUpdate, 1, []byte("p"), c1, big),
		protocol.AppendRequest(nil, protocol.OpInsert, 2, []byte("../x"), c1, []byte("bad name")),
		protocol.AppendRequest(nil, protocol.OpInsert, 3, []byte("p"), c2, []byte("after")),
	}
	if j := e.srv.writeRun(cs, frames, 0); j != len(frames) {
		t.Fatalf("writeRun covers %d of %d frames", j, len(frames))
	}
	done := make(chan []byte, 1)
	go func() { done <- e.srv.handleWrites(cs, frames, nil) }()
	var out []byte
	select {
	case out = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the run's worker is stuck (a heavy frame waiting for the turn its own run holds)")
	}
	want := []struct {
		id     uint32
		status protocol.Status
	}{{1, protocol.StatusOK}, {2, protocol.StatusBadName}, {3, protocol.StatusOK}}
	for i, w := range want {
		n, err := protocol.FrameSize(out, 0)
		if err != nil || n > len(out) {
			t.Fatalf("reply %d: frame size %d of %d bytes left (%v)", i, n, len(out), err)
		}
		h := protocol.ParseHeader(out[:n])
		if h.ID != w.id || protocol.Status(h.Op) != w.status {
			t.Fatalf("reply %d: id %d status %v, want id %d status %v", i, h.ID, protocol.Status(h.Op), w.id, w.status)
		}
		out = out[n:]
	}
	for c, want := range map[phext.Coordinate]string{c1: string(big), c2: "after"} {
		if got, err := tn.store.AppendSelect(nil, []byte("p"), c); err != nil || string(got) != want {
			t.Fatalf("%v: %d bytes (%v), want %d", c, len(got), err, len(want))
		}
	}
}
