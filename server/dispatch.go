package server

// Request execution: the connection's worker (queue.go) runs each queued
// frame here, decoding it unless the event loop did (handle, through
// connState.decode), running a run of pipelined writes as
// one group commit (handleWrites), and calling the store for every
// operation (exec); errors become statuses through StatusOf (errors.go).
// The event loop's own cheap answers are in fastpath.go.

import (
	"errors"
	"fmt"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// maxWriteRun bounds the writes sent to the store as one WriteMany.
const maxWriteRun = 64

// writeRun returns the end of the run of uncompressed INSERT, UPDATE and
// DELETE frames starting at frames[i] (i itself when frames[i] is not one).
func (s *Server) writeRun(cs *connState, frames [][]byte, i int) int {
	if cs.admin || cs.tenant == nil {
		return i
	}
	j := i
	for j < len(frames) && j-i < maxWriteRun {
		f := frames[j]
		if len(f) < protocol.HeaderSize || f[5] != 0 {
			break
		}
		switch protocol.Op(f[4]) {
		case protocol.OpInsert, protocol.OpUpdate, protocol.OpDelete:
			j++
			continue
		}
		break
	}
	return j
}

// handleWrites runs a run of pipelined writes with one store.WriteMany, so
// they share one group commit (one log write, one fsync in always mode),
// and appends their replies in order. Each frame is decoded once: one that
// does not decode is answered with its error and writes nothing, and the
// writes on each side of it go to the store as their own WriteMany, in
// order. While draining the run goes frame by frame (handle answers
// SHUTTING_DOWN).
func (s *Server) handleWrites(cs *connState, frames [][]byte, out []byte) []byte {
	t := cs.tenant
	s.executing.Add(1)
	defer s.executing.Add(-1)
	if s.draining.Load() || t.closed.Load() {
		return s.handleEach(cs, frames, out)
	}
	for _, f := range frames {
		if heavyFrame(f) {
			defer s.heavyTurn(t)()
			break
		}
	}
	start := time.Now()
	ws := cs.writes[:0]
	var req protocol.Request
	for _, f := range frames {
		if err := cs.decode(f, &req); err != nil {
			// Kind 0 marks a frame that did not decode (writeOf never
			// makes one): not sent to the store, answered with err.
			ws = append(ws, store.Write{Err: err})
			continue
		}
		ws = append(ws, writeOf(&req))
	}
	for i := 0; i < len(ws); {
		if ws[i].Kind == 0 {
			i++
			continue
		}
		j := i + 1
		for j < len(ws) && ws[j].Kind != 0 {
			j++
		}
		t.store.WriteMany(ws[i:j])
		i = j
	}
	d := time.Since(start)
	for i, f := range frames {
		h := protocol.ParseHeader(f)
		op := protocol.Op(h.Op)
		pos := len(out)
		status := protocol.StatusOK
		if ws[i].Kind == 0 {
			// As handle answers a frame that does not decode.
			err := ws[i].Err
			status = protocol.StatusOf(err)
			out = protocol.AppendError(out, h.ID, status, err.Error())
			t.stats.record(op, status, len(f), 0, d)
			ws[i] = store.Write{}
			if s.badFrame(cs, status) {
				// The writes before it stand (they are done); its
				// successors in the run were done too and are answered.
				cs.badFrameClose()
			} else {
				s.refused(cs, status, len(f))
			}
			continue
		}
		if err := ws[i].Err; err != nil {
			req := protocol.Request{Op: op, ID: h.ID, Name: ws[i].Name}
			var msg string
			status, msg = s.errReply(t, &req, err)
			out = protocol.AppendError(out, h.ID, status, msg)
			s.refused(cs, status, len(f))
		} else {
			out = protocol.AppendResponseHeader(out, h.ID, protocol.StatusOK, 4)
			out = protocol.AppendCount(out, uint32(ws[i].N))
		}
		t.stats.record(op, status, len(f), len(out)-pos, d)
		ws[i] = store.Write{} // drop the views into the frames
	}
	cs.writes = ws[:0]
	return out
}

func (s *Server) handleEach(cs *connState, frames [][]byte, out []byte) []byte {
	for _, f := range frames {
		out = s.handle(cs, f, out)
	}
	return out
}

// handle runs one request frame and appends its reply to out.
func (s *Server) handle(cs *connState, frame []byte, out []byte) []byte {
	start := time.Now()
	var req protocol.Request
	if status, size, msg, ok := refusalStub(frame); ok {
		h := protocol.ParseHeader(frame)
		s.record(cs, protocol.Op(h.Op), status, 0, 0, start)
		out = protocol.AppendError(out, h.ID, status, string(msg))
		// A frame refused while it arrived counts as one that does not
		// decode (below) when that is what it was refused for, and as a
		// limit refusal (refusal.go) otherwise.
		if s.badFrame(cs, status) {
			cs.badFrameClose()
		} else {
			s.refused(cs, status, size)
		}
		return out
	}
	heavy := cs.tenant != nil && !cs.admin && heavyFrame(frame)
	if heavy {
		defer s.heavyTurn(cs.tenant)()
	}
	if err := cs.decode(frame, &req); err != nil {
		status, _ := StatusOf(err)
		msg := err.Error()
		weighs := len(frame) // what the refusal weighs (refusalWeight)
		if status == protocol.StatusQuota {
			// A compressed PUT refused while decompressed: its name and
			// coordinate passed (DecodeChecked checks them first). It
			// weighs the size it declared, not its wire bytes
			// (refusalWeight).
			size := protocol.DeclaredSize(frame) - (protocol.RequestSize(len(req.Name), 0) - protocol.HeaderSize)
			status, msg = s.putRefusal(cs, &req, size, err)
			weighs = max(weighs, protocol.DeclaredSize(frame))
		}
		out = protocol.AppendError(out, req.ID, status, msg)
		s.record(cs, req.Op, status, len(frame), 0, start)
		if s.badFrame(cs, status) {
			cs.badFrameClose()
		} else {
			s.refused(cs, status, weighs)
		}
		return out
	}
	if !heavy && cs.tenant != nil && !cs.admin && wholePhext(req.Op) && heavyPhext(cs.tenant, req.Name) {
		defer s.heavyTurn(cs.tenant)()
	}
	if req.Op == protocol.OpPut && len(frame) > bigFrame {
		if chk := cs.takeCounted(frame); chk != nil {
			cs.putDone = chk // counted on the loop as it arrived
		}
	}
	pos := len(out)
	status, out := s.exec(cs, &req, out)
	cs.putDone = nil // never another frame's: exec may not have reached the store
	s.record(cs, req.Op, status, len(frame), len(out)-pos, start)
	s.refused(cs, status, len(frame))
	return out
}

func (s *Server) record(cs *connState, op protocol.Op, status protocol.Status, in, out int, start time.Time) {
	if cs.tenant != nil {
		cs.tenant.stats.record(op, status, in, out, time.Since(start))
	}
}

// exec runs a decoded request and appends a complete reply frame to out.
func (s *Server) exec(cs *connState, req *protocol.Request, out []byte) (protocol.Status, []byte) {
	// Count first, then check draining: once Shutdown has set draining and
	// seen executing at 0, no request can reach the store any more.
	s.executing.Add(1)
	defer s.executing.Add(-1)
	if status, msg := s.gate(cs, req.Op); status != protocol.StatusOK {
		return status, protocol.AppendError(out, req.ID, status, msg)
	}
	t := cs.tenant

	// Reserve the header; the body is appended in place and the header
	// written last, so large bodies are never copied.
	pos := len(out)
	out = append(out, make([]byte, protocol.HeaderSize)...)
	var err error
	switch req.Op {
	case protocol.OpPing:
	case protocol.OpSelect:
		out, err = t.store.AppendSelect(out, req.Name, req.Coord)
	case protocol.OpInsert:
		var n int
		if n, err = t.store.Insert(req.Name, req.Coord, req.Payload); err == nil {
			out = protocol.AppendCount(out, uint32(n))
		}
	case protocol.OpUpdate:
		var n int
		if n, err = t.store.Update(req.Name, req.Coord, req.Payload); err == nil {
			out = protocol.AppendCount(out, uint32(n))
		}
	case protocol.OpDelete:
		var n int
		if n, err = t.store.Delete(req.Name, req.Coord); err == nil {
			out = protocol.AppendCount(out, uint32(n))
		}
	case protocol.OpTOC:
		out, err = t.store.AppendTOCLimit(out, req.Name, s.replyLimit(cs))
	case protocol.OpGet:
		out, err = t.store.AppendGetLimit(out, req.Name, s.replyLimit(cs))
	case protocol.OpPut:
		// The log batch copies the document once more while it is written.
		// The loop's count of an arriving document goes with it (handle).
		chk := cs.putDone
		if err = cs.held.reserve(len(req.Payload)); err == nil {
			var n int
			if n, err = t.store.PutCounted(req.Name, req.Payload, chk); err == nil {
				out = protocol.AppendCount(out, uint32(n))
			}
		}
	case protocol.OpChecksum:
		out, err = t.store.AppendChecksum(out, req.Name)
	case protocol.OpDelta:
		out, err = t.store.AppendDeltaLimit(out, req.Name, req.Payload, s.replyLimit(cs))
	case protocol.OpWhere:
		algo, limit, text, derr := protocol.DecodeWherePayload(req.Payload)
		if err = derr; err == nil {
			var c phext.Coordinate
			if c, err = phext.Where(text, protocol.WhereAlgoName(algo), int(limit)); err == nil {
				out = protocol.AppendCoordinate(out, c)
			}
		}
	case protocol.OpList:
		var names []string
		if names, err = t.store.List(); err == nil {
			out = protocol.AppendList(out, names)
		}
	case protocol.OpStatus:
		var u store.Usage
		if u, err = t.store.Usage(); err == nil {
			out = protocol.AppendStatusInfo(out, protocol.StatusInfo{
				Phexts: uint32(u.Phexts), Scrolls: uint64(u.Scrolls),
				Bytes: uint64(u.Bytes), Quota: uint64(u.QuotaBytes)})
		}
	case protocol.OpVersion:
		out = append(out, "sq "+Version...)
	case protocol.OpCompact:
		err = t.store.Compact(req.Name)
	case protocol.OpWatch:
		out, err = s.execWatch(cs, req, out)
	case protocol.OpUnwatch:
		err = s.execUnwatch(cs, req)
	case protocol.OpReload:
		if !cs.admin && !(cs.loopback && s.opts.TrustLoopback) {
			err = errForbidden
		} else {
			var msg string
			if msg, err = s.ReloadFromSource(); err == nil {
				out = append(out, msg...)
			}
		}
	default:
		err = &protocol.Error{Status: protocol.StatusUnknownOp, Msg: "unknown operation " + req.Op.String()}
	}
	if err != nil {
		status, msg := s.errReply(t, req, err)
		return status, protocol.AppendError(out[:pos], req.ID, status, msg)
	}
	body := out[pos+protocol.HeaderSize:]
	if len(body)+6 > s.opts.MaxFrame {
		// The client could not accept the frame (PROTOCOL.md §2.6).
		msg := fmt.Sprintf("reply of %d bytes is above the max frame (%d)", len(body), s.opts.MaxFrame)
		return protocol.StatusTooLarge, protocol.AppendError(out[:pos], req.ID, protocol.StatusTooLarge, msg)
	}
	if cs.codec != protocol.CodecNone && len(body) >= protocol.CompressThreshold {
		return protocol.StatusOK, s.compressReply(out, pos, req.ID, cs.codec)
	}
	protocol.AppendResponseHeader(out[:pos], req.ID, protocol.StatusOK, len(body))
	return protocol.StatusOK, out
}

// gate is what exec answers a decoded request with before running it:
// SHUTTING_DOWN while draining, AUTH for what the admin token may not do
// or for a removed or disabled tenant; OK when it may run.
func (s *Server) gate(cs *connState, op protocol.Op) (protocol.Status, string) {
	if s.draining.Load() {
		return protocol.StatusShuttingDown, "server is shutting down"
	}
	if cs.admin {
		switch op {
		case protocol.OpPing, protocol.OpVersion, protocol.OpReload:
			return protocol.StatusOK, ""
		}
		return protocol.StatusAuth, "the admin token may only PING, VERSION and RELOAD"
	}
	if t := cs.tenant; t == nil || t.closed.Load() {
		return protocol.StatusAuth, "tenant removed or disabled"
	}
	return protocol.StatusOK, ""
}

// putRefusal answers a PUT whose document its quota check refused (qerr)
// before the whole document was there: on the event loop as the frame
// arrived (arrivingPutRefusal), or while the worker decompressed it
// (handle). The answer is the one the whole request would get, in the
// worker's order: req has passed the decoder's checks (the caller answers
// their errors), then exec's gate, then the store's checks before the
// quota (store.CheckPut, for a document of size bytes), and QUOTA only
// when none of them refuses it first. It never touches the store's data.
func (s *Server) putRefusal(cs *connState, req *protocol.Request, size int, qerr error) (protocol.Status, string) {
	if status, msg := s.gate(cs, req.Op); status != protocol.StatusOK {
		return status, msg
	}
	err := store.CheckPut(req.Name, size)
	if err == nil {
		err = qerr
	}
	return s.errReply(cs.tenant, req, err)
}

// replyLimit bounds a reply the store builds for cs: at most a max frame,
// charged to the memory budget until it is sent.
func (s *Server) replyLimit(cs *connState) store.Limit {
	return store.Limit{Max: s.opts.MaxFrame - 6, Reserve: cs.held.reserve}
}

// compressReply replaces the uncompressed reply at out[pos:] by its
// compressed form when that is smaller.
func (s *Server) compressReply(out []byte, pos int, id uint32, codec uint8) []byte {
	buf := protocol.GetBuffer()
	defer protocol.PutBuffer(buf)
	body := out[pos+protocol.HeaderSize:]
	buf.B = protocol.AppendCompressedResponse(buf.B[:0], id, protocol.StatusOK, body, codec)
	return append(out[:pos], buf.B...)
}

// errReply is the status and message of a failed request (StatusOf).
// Only INTERNAL answers are logged: the others are the client's doing, or
// routine (a tenant closing during a reload), and a log line per request
// would let a client flood the log.
func (s *Server) errReply(t *tenant, req *protocol.Request, err error) (protocol.Status, string) {
	status, expected := StatusOf(err)
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return status, pe.Msg
	}
	if expected {
		return status, err.Error()
	}
	name := ""
	if t != nil {
		name = t.name
	}
	s.log.Warn("request failed", "tenant", name, "op", req.Op.String(), "phext", string(req.Name), "err", err)
	return status, "internal error: " + err.Error()
}

// writeOf is the store write an INSERT, UPDATE or DELETE request asks for.
// Its Name and Text alias the request's frame.
func writeOf(req *protocol.Request) store.Write {
	w := store.Write{Kind: store.WriteInsert, Name: req.Name, Coord: req.Coord, Text: req.Payload}
	switch req.Op {
	case protocol.OpUpdate:
		w.Kind = store.WriteUpdate
	case protocol.OpDelete:
		w.Kind, w.Text = store.WriteDelete, nil
	}
	return w
}
