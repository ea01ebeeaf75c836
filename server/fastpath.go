package server

import (
	"encoding/binary"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/phext/sq/protocol"
)

// maxFastReply bounds a reply built on the event loop: larger scrolls are
// copied on a worker.
const maxFastReply = 16 << 10

// fast answers frame on the event loop when that cannot block: PING,
// VERSION, a SELECT of a small scroll of an already open phext whose
// locks are free (store.TryAppendSelect), and INSERT, UPDATE and DELETE
// (fastWrite). It returns ok=false, having appended nothing, for anything
// else, and the frame goes to the worker. Measured (BenchmarkPipelined,
// bench/RESULTS.md): at pipeline depth 1 the worker hand-off (goroutine
// start, AsyncWrite, loop wake-up) costs more than the SELECT itself;
// answering on the loop gave ~1.4× the requests/s.
func (s *Server) fast(cs *connState, frame []byte, out *bytebufferpool.ByteBuffer) (*bytebufferpool.ByteBuffer, bool) {
	if s.opts.NoLoopReads || len(frame) < protocol.HeaderSize || frame[5] != 0 || cs.admin || s.draining.Load() {
		return out, false
	}
	op := protocol.Op(frame[4])
	switch op {
	case protocol.OpPing, protocol.OpSelect, protocol.OpVersion:
	case protocol.OpInsert, protocol.OpUpdate, protocol.OpDelete:
		return s.fastWrite(cs, frame, out)
	default:
		return out, false
	}
	t := cs.tenant
	if t == nil || t.closed.Load() {
		return out, false
	}
	start := time.Now()
	var req protocol.Request
	if err := cs.loopDec.Decode(frame, &req); err != nil {
		cs.miss(frame, &req, err) // the worker answers with the error
		return out, false
	}
	if out == nil {
		out = protocol.GetBuffer()
	}
	pos := len(out.B)
	out.B = append(out.B, make([]byte, protocol.HeaderSize)...)
	switch op {
	case protocol.OpSelect:
		b, ok := t.store.TryAppendSelect(out.B, req.Name, req.Coord, maxFastReply)
		if !ok {
			out.B = out.B[:pos]
			cs.miss(frame, &req, nil)
			return out, false
		}
		out.B = b
	case protocol.OpVersion:
		out.B = append(out.B, "sq "+Version...)
	}
	body := len(out.B) - pos - protocol.HeaderSize
	if cs.codec != protocol.CodecNone && body >= protocol.CompressThreshold {
		// Compression is for workers.
		out.B = out.B[:pos]
		cs.miss(frame, &req, nil)
		return out, false
	}
	protocol.AppendResponseHeader(out.B[:pos], req.ID, protocol.StatusOK, body)
	t.stats.record(op, protocol.StatusOK, len(frame), len(out.B)-pos, time.Since(start))
	return out, true
}

// miss records what fast decoded of a frame it leaves to the worker (req,
// or the decode error err): OnTraffic enqueues that frame next, and the
// decoding goes with it (cs.pre), so the frame is decoded once. The fast
// path decodes only uncompressed frames, which the loop's decoder and the
// worker's decode alike (same MaxFrame; the codec and budget are for
// compressed bodies only).
func (cs *connState) miss(frame []byte, req *protocol.Request, err error) {
	cs.pre = decodedFrame{frame: frame, req: *req, err: err}
	cs.missed = true
}

// fastWrite answers an INSERT, UPDATE or DELETE on the event loop when the
// store can take it without waiting (store.TryApply): validated, applied
// in memory and its record appended to the round's log buffer. Its reply
// is built now but leaves only after endRound wrote the round's records
// with one write() (no fsync), so a crash of the process loses nothing
// acknowledged, as on the worker path; every write of a pipelined batch
// shares that write. Tenants in mode "always", big texts, phexts not open
// yet and busy locks go to the worker. Measured in bench/RESULTS.md (issue
// 14): the worker hand-off made UPDATE's p99 1.6x SELECT's.
func (s *Server) fastWrite(cs *connState, frame []byte, out *bytebufferpool.ByteBuffer) (*bytebufferpool.ByteBuffer, bool) {
	if s.opts.NoLoopWrites {
		return out, false
	}
	t := cs.tenant
	// A tenant whose writes the store never takes on a loop (mode always,
	// first request not served yet) goes to the worker before the frame is
	// decoded: the worker decodes it, once.
	if t == nil || t.closed.Load() || !t.store.LoopWrites() {
		return out, false
	}
	if !cs.roundExec {
		// Counted like exec until endRound, so Shutdown never closes the
		// store under a round.
		s.executing.Add(1)
		if s.draining.Load() {
			s.executing.Add(-1)
			return out, false
		}
		cs.roundExec = true
	}
	start := time.Now()
	var req protocol.Request
	if err := cs.loopDec.Decode(frame, &req); err != nil {
		cs.miss(frame, &req, err)
		return out, false
	}
	w := writeOf(&req)
	ok, logged := t.store.TryApply(&cs.round, &w)
	if !ok || w.Err != nil && s.refusedOnLoop(cs, w.Err) {
		// A refusal past the tenant's budget is answered by the worker,
		// which may hold it (refusal.go); the store refused it without
		// a side effect, so the worker runs it again.
		cs.miss(frame, &req, nil)
		return out, false
	}
	s.stats.loopWrites.Add(1)
	if out == nil {
		out = protocol.GetBuffer()
	}
	pos := len(out.B)
	status := protocol.StatusOK
	if w.Err != nil {
		var msg string
		status, msg = s.errReply(t, &req, w.Err)
		out.B = protocol.AppendError(out.B, req.ID, status, msg)
	} else {
		if logged {
			cs.roundAt = append(cs.roundAt, pos)
		}
		out.B = protocol.AppendResponseHeader(out.B, req.ID, protocol.StatusOK, 4)
		out.B = protocol.AppendCount(out.B, uint32(w.N))
	}
	t.stats.record(req.Op, status, len(frame), len(out.B)-pos, time.Since(start))
	return out, true
}

// endRound ends the connection's loop round: the records of the writes it
// applied go to the log with one write() (store.LoopRound.Flush) before
// any reply of the round leaves. If that write fails, the replies of those
// writes become errors (the writes were applied in memory; the store
// refuses writes until it checkpointed them from memory); the other
// replies stand. Call it before out is written.
func (s *Server) endRound(cs *connState, out *bytebufferpool.ByteBuffer) *bytebufferpool.ByteBuffer {
	if !cs.roundExec {
		return out
	}
	if cs.round.Records() > 0 {
		s.stats.loopLogWrites.Add(1)
	}
	err := cs.round.Flush()
	cs.roundExec = false
	s.executing.Add(-1)
	if err != nil && len(cs.roundAt) > 0 {
		s.log.Error("log write of a loop round failed", "writes", len(cs.roundAt), "err", err)
		out.B = failReplies(out.B, cs.roundAt, err)
	}
	cs.roundAt = cs.roundAt[:0]
	return out
}

// failReplies replaces the replies at offsets at (each a whole reply frame
// in b, in order) with INTERNAL errors carrying err. Rare: allocates.
func failReplies(b []byte, at []int, err error) []byte {
	msg := "internal error: " + err.Error()
	out := make([]byte, 0, len(b)+len(at)*(protocol.HeaderSize+len(msg)))
	prev := 0
	for _, off := range at {
		end := off + 4 + int(binary.BigEndian.Uint32(b[off:]))
		out = append(out, b[prev:off]...)
		out = protocol.AppendError(out, binary.BigEndian.Uint32(b[off+6:]), protocol.StatusInternal, msg)
		prev = end
	}
	return append(out, b[prev:]...)
}
