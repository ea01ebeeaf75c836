package server

import (
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/phext/sq/protocol"
)

// maxFastReply bounds a reply built on the event loop: larger scrolls are
// copied on a worker.
const maxFastReply = 16 << 10

// fast answers frame on the event loop when that cannot block: PING,
// VERSION, and a SELECT of a small scroll of an already open phext whose
// locks are free (store.TryAppendSelect). It returns ok=false, having
// appended nothing, for anything else, and the frame goes to the worker.
// Measured (BenchmarkPipelined, bench/RESULTS.md): at pipeline depth 1 the
// worker hand-off (goroutine start, AsyncWrite, loop wake-up) costs more
// than the SELECT itself; answering on the loop gave ~1.4× the requests/s.
//
// logged says this OnTraffic call already made its one log write: a loop
// makes at most one per round (as Redis writes its AOF once per loop
// iteration), so a later write in the same round goes to the worker,
// whose WriteMany commits the rest of the batch with one write. A write
// answered here sets it.
func (s *Server) fast(cs *connState, frame []byte, out *bytebufferpool.ByteBuffer, logged *bool) (*bytebufferpool.ByteBuffer, bool) {
	if s.opts.NoLoopReads || len(frame) < protocol.HeaderSize || frame[5] != 0 || cs.admin || s.draining.Load() {
		return out, false
	}
	op := protocol.Op(frame[4])
	switch op {
	case protocol.OpPing, protocol.OpSelect, protocol.OpVersion:
	case protocol.OpInsert, protocol.OpUpdate, protocol.OpDelete:
		if *logged {
			return out, false
		}
		out, ok := s.fastWrite(cs, frame, out)
		*logged = ok
		return out, ok
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
		return out, false // the worker answers with the error
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
		return out, false
	}
	protocol.AppendResponseHeader(out.B[:pos], req.ID, protocol.StatusOK, body)
	t.stats.record(op, protocol.StatusOK, len(frame), len(out.B)-pos, time.Since(start))
	return out, true
}

// fastWrite answers an INSERT, UPDATE or DELETE on the event loop when the
// store can take it without waiting (store.TryWrite): the record is in the
// kernel (one write() to the WAL, no fsync) before the reply is built, so a
// crash of the process loses nothing acknowledged, as on the worker path.
// Tenants in mode "always", big texts, phexts not open yet and busy locks
// go to the worker. Measured in bench/RESULTS.md (issue 14): the worker
// hand-off made UPDATE's p99 1.6x SELECT's.
func (s *Server) fastWrite(cs *connState, frame []byte, out *bytebufferpool.ByteBuffer) (*bytebufferpool.ByteBuffer, bool) {
	if s.opts.NoLoopWrites {
		return out, false
	}
	t := cs.tenant
	if t == nil || t.closed.Load() {
		return out, false
	}
	// Counted like exec, so Shutdown never closes the store under a write.
	s.executing.Add(1)
	defer s.executing.Add(-1)
	if s.draining.Load() {
		return out, false
	}
	start := time.Now()
	var req protocol.Request
	if err := cs.loopDec.Decode(frame, &req); err != nil {
		return out, false
	}
	w := writeOf(&req)
	scratch := protocol.GetBuffer()
	var ok bool
	scratch.B, ok = t.store.TryWrite(&w, scratch.B)
	protocol.PutBuffer(scratch)
	if !ok {
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
		out.B = protocol.AppendResponseHeader(out.B, req.ID, protocol.StatusOK, 4)
		out.B = protocol.AppendCount(out.B, uint32(w.N))
	}
	t.stats.record(req.Op, status, len(frame), len(out.B)-pos, time.Since(start))
	return out, true
}
