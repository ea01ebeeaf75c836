package server

import (
	"bytes"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

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

// replyConn is a gnet.Conn for a worker run in the test's goroutine: an
// AsyncWrite is written at once (its bytes kept) and its callback run.
type replyConn struct {
	gnet.Conn
	out []byte
}

func (c *replyConn) AsyncWrite(b []byte, cb gnet.AsyncCallback) error {
	c.out = append(c.out, b...)
	return cb(c, nil)
}
func (c *replyConn) Wake(gnet.AsyncCallback) error { return nil }
func (c *replyConn) OutboundBuffered() int         { return 0 }
func (c *replyConn) InboundBuffered() int          { return 0 }

// TestFastMissDecodesOnce: a frame the fast path decodes and cannot answer
// goes to the worker with the loop's decoding, re-pointed into the queued
// copy, and the worker does not decode it again (issue 17: every such miss
// was decoded on both sides). The worker's decoder is made to refuse every
// frame (MaxFrame below any frame: TOO_LARGE), and the loop's bytes are
// overwritten once queued, as gnet reuses its buffer: a second decode, or a
// view left in the loop's bytes, changes the reply. A frame queued behind
// the miss without going through the fast path (as OnTraffic queues it) is
// decoded by the worker, once: it gets the refusal.
func TestFastMissDecodesOnce(t *testing.T) {
	e, cs, frames := missEnv(t)
	conn := &replyConn{}
	cs.c = conn
	fastOut := protocol.GetBuffer()
	defer protocol.PutBuffer(fastOut)
	fresh := phext.Coordinate{2, 2, 2, 2, 2, 2, 2, 2, 2}
	for _, tc := range []struct {
		name   string
		frame  []byte
		status protocol.Status
		check  func(t *testing.T, body []byte)
	}{
		{name: "select above maxFastReply", frame: frames["select-big"], status: protocol.StatusOK,
			check: func(t *testing.T, body []byte) {
				if len(body) != maxFastReply+1 || body[0] != 'a' {
					t.Fatalf("body of %d bytes", len(body))
				}
			}},
		{name: "select with a bad name", frame: frames["bad-name"], status: protocol.StatusBadName},
		{name: "insert into a phext not open", status: protocol.StatusOK,
			frame: protocol.AppendRequest(nil, protocol.OpInsert, 9, []byte("fresh"), fresh, []byte("new text")),
			check: func(t *testing.T, body []byte) {
				got, err := cs.tenant.store.AppendSelect(nil, []byte("fresh"), fresh)
				if err != nil || string(got) != "new text" {
					t.Fatalf("stored %q (%v)", got, err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn.out = conn.out[:0]
			cs.dec = protocol.Decoder{MaxFrame: e.srv.opts.MaxFrame, Budget: cs.mem}
			// What OnTraffic does: fast misses, the frame is queued, then a
			// second frame is queued behind it without the fast path.
			inbound := bytes.Clone(tc.frame) // gnet's buffer
			if _, ok := e.srv.fast(cs, inbound, fastOut); ok {
				t.Fatal("answered on the loop")
			}
			cs.enqueue(inbound)
			for i := range inbound {
				inbound[i] = 0xEE
			}
			behind := protocol.AppendRequest(nil, protocol.OpPing, 99, nil, phext.Origin, nil)
			cs.enqueue(behind)
			fastOut = e.srv.endRound(cs, fastOut) // the round's end, before the worker starts
			cs.dec.MaxFrame = protocol.HeaderSize // any decode on the worker fails
			cs.running = true
			e.srv.workers.Add(1)
			e.srv.work(cs)

			out := conn.out
			for i, want := range []struct {
				id     uint32
				status protocol.Status
			}{{protocol.ParseHeader(tc.frame).ID, tc.status}, {99, protocol.StatusTooLarge}} {
				n, err := protocol.FrameSize(out, 0)
				if err != nil || n > len(out) {
					t.Fatalf("reply %d: frame size %d of %d bytes left (%v)", i, n, len(out), err)
				}
				var r protocol.Response
				if err := (&protocol.Decoder{}).DecodeResponse(out[:n], &r); err != nil {
					t.Fatal(err)
				}
				if r.ID != want.id || r.Status != want.status {
					t.Fatalf("reply %d: id %d %v %q, want id %d %v", i, r.ID, r.Status, r.Body, want.id, want.status)
				}
				if i == 0 && tc.check != nil {
					tc.check(t, r.Body)
				}
				out = out[n:]
			}
			if cs.inflight.Load() != 0 || cs.pre.frame != nil {
				t.Fatalf("after the batch: inflight %d, decoding kept %v", cs.inflight.Load(), cs.pre.frame != nil)
			}
		})
	}
}
