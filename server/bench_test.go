package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// TestHandleSelectAllocs checks the worker's per-request path (decode,
// store, encode) allocates nothing for a 1 KiB SELECT and a PING.
func TestHandleSelectAllocs(t *testing.T) {
	e := startEnv(t, envOptions{})
	tn := e.srv.table.Load().byName["alpha"]
	cs := &connState{s: e.srv, tenant: tn}
	cs.dec = protocol.Decoder{MaxFrame: e.srv.opts.MaxFrame}
	coord := phext.Origin
	text := make([]byte, 1024)
	for i := range text {
		text[i] = 'a' + byte(i%26)
	}
	out := make([]byte, 0, 64<<10)
	out = e.srv.handle(cs, protocol.AppendRequest(nil, protocol.OpUpdate, 1, nil, coord, text), out[:0])
	sel := protocol.AppendRequest(nil, protocol.OpSelect, 2, nil, coord, nil)
	ping := protocol.AppendRequest(nil, protocol.OpPing, 3, nil, coord, nil)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{name: "select 1KiB", frame: sel},
		{name: "ping", frame: ping},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(200, func() {
				out = e.srv.handle(cs, tc.frame, out[:0])
			})
			if allocs > 0 {
				t.Fatalf("%s: %.1f allocs per request, want 0", tc.name, allocs)
			}
		})
	}
}

// BenchmarkPipelined measures requests per second over one loopback
// connection at pipeline depth 1 and 16; every iteration ends with its replies
// read, so the timer covers the server's work.
func BenchmarkPipelined(b *testing.B) {
	for _, tc := range []struct {
		name   string
		op     protocol.Op
		size   int
		depth  int
		noLoop bool
		always bool
	}{
		{name: "ping-d16", op: protocol.OpPing, depth: 16},
		{name: "select-1KiB-d16", op: protocol.OpSelect, size: 1024, depth: 16},
		{name: "update-1KiB-d16", op: protocol.OpUpdate, size: 1024, depth: 16},
		{name: "update-1KiB-d16-always", op: protocol.OpUpdate, size: 1024, depth: 16, always: true},
		{name: "select-1KiB-d1", op: protocol.OpSelect, size: 1024, depth: 1},
		{name: "select-1KiB-d1-workers-only", op: protocol.OpSelect, size: 1024, depth: 1, noLoop: true},
		{name: "select-1KiB-d16-workers-only", op: protocol.OpSelect, size: 1024, depth: 16, noLoop: true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dur := store.DurabilityEverySec
			if tc.always {
				dur = store.DurabilityAlways
			}
			e := startEnv(b, envOptions{durability: dur, opts: Options{NoLoopReads: tc.noLoop}})
			c := e.dial("alpha")
			text := make([]byte, tc.size)
			for i := range text {
				text[i] = 'x'
			}
			c.ok(protocol.OpUpdate, "", phext.Origin, text)
			depth := tc.depth
			var batch []byte
			for i := 0; i < depth; i++ {
				var payload []byte
				if tc.op == protocol.OpUpdate {
					payload = text
				}
				batch = protocol.AppendRequest(batch, tc.op, uint32(i), nil, phext.Origin, payload)
			}
			c.nc.SetWriteDeadline(time.Time{})
			b.ReportAllocs()
			b.SetBytes(int64(depth * (tc.size + protocol.HeaderSize + 19)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.nc.Write(batch); err != nil {
					b.Fatal(err)
				}
				for j := 0; j < depth; j++ {
					r, err := c.read()
					if err != nil || r.Status != protocol.StatusOK {
						b.Fatal(fmt.Sprint(err, r.Status))
					}
				}
			}
			b.ReportMetric(float64(b.N*depth)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// TestLoopWriteRoundAllocs: a loop round of 16 pipelined UPDATEs (fast →
// fastWrite → store.TryApply, then endRound's one log write) allocates
// nothing once its buffers have grown.
func TestLoopWriteRoundAllocs(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec})
	c := e.dial("alpha")
	text := make([]byte, 1024)
	for i := range text {
		text[i] = 'a' + byte(i%26)
	}
	var frames [][]byte
	for i := 0; i < 16; i++ {
		co := phext.Origin
		co[phext.LevelScroll] = uint16(i + 1)
		c.ok(protocol.OpUpdate, "", co, text) // opens the phext, puts the scrolls in the overlay
		frames = append(frames, protocol.AppendRequest(nil, protocol.OpUpdate, uint32(i), nil, co, text))
	}
	tn := e.srv.table.Load().byName["alpha"]
	cs := &connState{s: e.srv, tenant: tn}
	cs.loopDec = protocol.Decoder{MaxFrame: e.srv.opts.MaxFrame}
	out := protocol.GetBuffer()
	defer protocol.PutBuffer(out)
	round := func() {
		out.B = out.B[:0]
		for _, f := range frames {
			var ok bool
			if out, ok = e.srv.fast(cs, f, out); !ok {
				e.srv.endRound(cs, out)
				t.Fatal("a write was not answered on the loop")
			}
		}
		out = e.srv.endRound(cs, out)
	}
	round()
	if a := testing.AllocsPerRun(100, round); a != 0 {
		t.Fatalf("%.1f allocs per round of 16 loop writes, want 0", a)
	}
	if len(out.B) != 16*(protocol.HeaderSize+4) {
		t.Fatalf("replies: %d bytes", len(out.B))
	}
}

// missEnv is a connection state of tenant alpha as HELLO leaves it, and
// frames the fast path decodes and cannot answer: a SELECT whose scroll is
// above maxFastReply, and a SELECT with a bad name (a decode error).
func missEnv(tb testing.TB) (*testEnv, *connState, map[string][]byte) {
	tb.Helper()
	e := startEnv(tb, envOptions{durability: store.DurabilityEverySec})
	c := e.dial("alpha")
	big := make([]byte, maxFastReply+1)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	c.ok(protocol.OpUpdate, "", phext.Origin, big)
	tn := e.srv.table.Load().byName["alpha"]
	cs := &connState{s: e.srv, tenant: tn, mem: tn.mem}
	cs.held.b = cs.mem
	cs.dec = protocol.Decoder{MaxFrame: e.srv.opts.MaxFrame, Budget: cs.mem}
	cs.loopDec = protocol.Decoder{MaxFrame: e.srv.opts.MaxFrame}
	return e, cs, map[string][]byte{
		"select-big": protocol.AppendRequest(nil, protocol.OpSelect, 7, nil, phext.Origin, nil),
		"bad-name":   protocol.AppendRequest(nil, protocol.OpSelect, 8, []byte("../x"), phext.Origin, nil),
	}
}

// missRound is what OnTraffic and the worker do for a frame the fast path
// cannot answer: fast (decodes, misses), enqueue (copies the frame out of
// gnet's buffer), then the worker's batch (handle) and the queue reset.
// fastOut is the loop's reply buffer of the round (nothing is appended to
// it on a miss).
func missRound(tb testing.TB, s *Server, cs *connState, frame []byte, fastOut *bytebufferpool.ByteBuffer, out []byte) []byte {
	if _, ok := s.fast(cs, frame, fastOut); ok {
		tb.Fatal("the frame was answered on the loop")
	}
	cs.enqueue(frame)
	cs.mu.Lock()
	frames := cs.frames
	cs.mu.Unlock()
	out = s.handle(cs, frames[0], out)
	cs.mu.Lock()
	cs.frames, cs.arena = cs.frames[:0], cs.arena[:0]
	cs.mu.Unlock()
	cs.inflight.Add(-1)
	cs.queuedBytes.Add(-int64(len(frame)))
	return out
}

// BenchmarkFastMiss: a frame the fast path decodes and cannot answer, from
// the loop's decode to the worker's reply (issue 17: such a frame was
// decoded on both sides).
func BenchmarkFastMiss(b *testing.B) {
	e, cs, frames := missEnv(b)
	for _, name := range []string{"select-big", "bad-name"} {
		b.Run(name, func(b *testing.B) {
			frame := frames[name]
			out := make([]byte, 0, 64<<10)
			fastOut := protocol.GetBuffer()
			defer protocol.PutBuffer(fastOut)
			out = missRound(b, e.srv, cs, frame, fastOut, out[:0])
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out = missRound(b, e.srv, cs, frame, fastOut, out[:0])
			}
		})
	}
}

// TestFastMissAllocs: a frame the fast path cannot answer, from the loop's
// decode through the queue to the worker's reply, allocates nothing once
// the queue's buffers have grown (the loop's part: decode, the failed try,
// the copy into the queue and re-pointing the decoding into it).
func TestFastMissAllocs(t *testing.T) {
	e, cs, frames := missEnv(t)
	frame := frames["select-big"]
	out := make([]byte, 0, 64<<10)
	fastOut := protocol.GetBuffer()
	defer protocol.PutBuffer(fastOut)
	out = missRound(t, e.srv, cs, frame, fastOut, out[:0])
	if a := testing.AllocsPerRun(200, func() { out = missRound(t, e.srv, cs, frame, fastOut, out[:0]) }); a != 0 {
		t.Fatalf("%.1f allocs per miss, want 0", a)
	}
	if r := protocol.ParseHeader(out); protocol.Status(r.Op) != protocol.StatusOK || int(r.Length) != 6+maxFastReply+1 {
		t.Fatalf("reply: %v, %d bytes", protocol.Status(r.Op), r.Length)
	}
}
