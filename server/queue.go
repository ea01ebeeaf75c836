package server

// The loop↔worker queue of a connection. The event loop appends whole
// frames (enqueue, enqueueOwned, enqueueRefusal), with its decoding of a
// frame the fast path left to the worker (decode takes it: a frame is
// decoded once), and starts the worker (kick); the worker takes them in
// batches (work), runs them (dispatch.go) and
// hands the replies back to the loop with one AsyncWrite per batch (send),
// whose callback lowers the in-flight count (written) and resumes a
// connection paused at its limit (overQueue). See LOCKS.md for who owns
// which field.

import (
	"time"

	"encoding/binary"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// overQueue reports whether the connection has as many requests in flight
// as it may (MaxInFlight), or a frame's worth of bytes queued: either way
// the loop stops reading it, so one connection's memory stays bounded by
// about two max frames plus gnet's inbound buffer.
func (cs *connState) overQueue() bool {
	return cs.inflight.Load() >= int64(cs.s.opts.MaxInFlight) ||
		cs.queuedBytes.Load() >= int64(cs.s.opts.queueBytes())
}

// decodedFrame is a frame and what Decode made of it: req, whose views
// point into frame, or the decode error err.
type decodedFrame struct {
	frame []byte
	req   protocol.Request
	err   error
}

// enqueue copies one whole small frame (≤ bigFrame) into the worker
// queue's arena (the peeked bytes are only valid until Discard). When the
// fast path has just decoded this frame and left it to the worker
// (cs.missed), its decoding is re-pointed into the copy and goes with it
// (cs.pre, taken by decode).
func (cs *connState) enqueue(frame []byte) {
	cs.inflight.Add(1)
	cs.queuedBytes.Add(int64(len(frame)))
	cs.mu.Lock()
	start := len(cs.arena)
	cs.arena = append(cs.arena, frame...)
	cp := cs.arena[start:len(cs.arena):len(cs.arena)]
	cs.frames = append(cs.frames, cp)
	if cs.missed {
		cs.missed = false
		if p := &cs.pre; len(p.frame) == len(frame) && &p.frame[0] == &frame[0] {
			if p.err == nil {
				p.req.Rebase(cp)
			}
			p.frame = cp
		} else {
			*p = decodedFrame{} // not this frame's: the worker decodes it
		}
	}
	cs.mu.Unlock()
}

// decode decodes the queued frame f into req for the worker, or takes the
// decoding the event loop made of it already (cs.pre, see enqueue): each
// frame is decoded once. Its error is a *protocol.Error, or for a
// compressed PUT the store's quota refusal (map it with StatusOf).
func (cs *connState) decode(f []byte, req *protocol.Request) error {
	cs.putDone = nil
	if p := &cs.pre; p.frame != nil && len(f) == len(p.frame) && &f[0] == &p.frame[0] {
		*req = p.req
		err := p.err
		*p = decodedFrame{}
		return err
	}
	if len(f) > protocol.HeaderSize && protocol.Op(f[4]) == protocol.OpPut && f[5]&protocol.FlagCompressed != 0 &&
		cs.tenant != nil && !cs.admin {
		// A compressed document cannot be counted as it arrives (a
		// 60 MB document of one-byte scrolls is 51 bytes of s2): it is
		// counted as it is decompressed, and one charged more than the
		// tenant's whole quota is refused with QUOTA after about a
		// quota's worth, before the rest is produced (issue 13, M4c).
		cs.decChk = cs.tenant.store.PutCheck()
		if cs.decChk.Active() {
			err := cs.dec.DecodeChecked(f, req, &cs.decChk)
			if err == nil {
				// This document, counted as it was decompressed, is not
				// counted again by the store (PutCounted uses a check
				// that saw exactly its bytes; M4c: a second count of
				// each accepted 400 k-scroll document).
				cs.putDone = &cs.decChk
			}
			return err
		}
	}
	return cs.dec.Decode(f, req)
}

// enqueueOwned queues a large frame received into its own buffer (cs.big),
// without copying it: the queue owns it from here. chk, if not nil, is
// the finished quota check of the PUT document the frame carries (a copy
// goes with it, see connState.counted).
func (cs *connState) enqueueOwned(frame []byte, chk *store.PutCheck) {
	cs.inflight.Add(1)
	cs.queuedBytes.Add(int64(len(frame)))
	cs.mu.Lock()
	cs.frames = append(cs.frames, frame)
	if chk != nil {
		cs.counted = append(cs.counted, countedPut{frame: &frame[0], size: len(frame), chk: *chk})
	}
	cs.mu.Unlock()
}

// countedPut is a queued large PUT frame, by its first byte and size, and
// the loop's finished quota check of its document.
type countedPut struct {
	frame *byte
	size  int
	chk   store.PutCheck
}

// takeCounted removes and returns the loop's quota check of queued frame
// f's document, or nil when the loop did not count it whole. Worker.
func (cs *connState) takeCounted(f []byte) *store.PutCheck {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if i := cs.countedAt(f); i >= 0 {
		chk := cs.counted[i].chk
		cs.counted = append(cs.counted[:i], cs.counted[i+1:]...)
		return &chk
	}
	return nil
}

// countedAt is the index in cs.counted of frame f's entry, or -1. Under mu.
func (cs *connState) countedAt(f []byte) int {
	if len(f) == 0 {
		return -1
	}
	for i := range cs.counted {
		if e := &cs.counted[i]; e.frame == &f[0] && e.size == len(f) {
			return i
		}
	}
	return -1
}

// enqueueBusy queues a BUSY answer for the frame whose header is hdr, in
// order with the connection's other replies (enqueueRefusal).
func (cs *connState) enqueueBusy(hdr []byte) {
	cs.enqueueRefusal(hdr, protocol.StatusBusy, errBusyMemory.Msg)
}

// enqueueRefusal queues an error answer (status, msg) for the frame whose
// header is hdr, refused before it was received whole, in order with the
// connection's other replies. It is queued as a stub: the 10-byte header
// with length 0 and flags 0xFF, which no delimited frame has, then the
// status byte, the frame's length field (4 bytes: what the refusal
// weighs, refusalWeight) and the message (see refusalStub).
func (cs *connState) enqueueRefusal(hdr []byte, status protocol.Status, msg string) {
	var a [protocol.HeaderSize + 1 + 4 + 256]byte
	stub := append(a[:0], hdr[:protocol.HeaderSize]...)
	binary.BigEndian.PutUint32(stub[:4], 0)
	stub[5] = 0xFF
	stub = append(stub, byte(status))
	stub = append(stub, hdr[:4]...)
	stub = append(stub, msg[:min(len(msg), 256)]...)
	cs.enqueue(stub)
	// The queue bound counts the bytes the refused frame drops, as it
	// counts a frame received whole (queuedLen): while the stub waits,
	// held past the tenant's refusal budget, the loop drops no more than
	// a queue's worth of the frames pipelined behind it (before: up to
	// MaxInFlight of them, 256 × 60 MiB, at the socket's speed, during
	// one hold).
	cs.queuedBytes.Add(int64(binary.BigEndian.Uint32(hdr[:4])))
}

// queuedLen is what queued frame f counts in the queue bound
// (queuedBytes): its length, plus for a refusal stub the length of the
// frame it refused (enqueueRefusal).
func queuedLen(f []byte) int64 {
	if _, size, _, ok := refusalStub(f); ok {
		return int64(len(f) + size)
	}
	return int64(len(f))
}

// refusalStub reports whether a queued frame is enqueueRefusal's stub and
// returns its status, the refused frame's size (its length field) and
// the message.
func refusalStub(f []byte) (status protocol.Status, size int, msg []byte, ok bool) {
	if len(f) < protocol.HeaderSize+1+4 || f[5] != 0xFF || binary.BigEndian.Uint32(f) != 0 {
		return 0, 0, nil, false
	}
	at := protocol.HeaderSize + 1
	return protocol.Status(f[protocol.HeaderSize]), int(binary.BigEndian.Uint32(f[at:])), f[at+4:], true
}

// releaseFrame gives back a large frame's buffer (framebuf.go) and what
// it reserved at its header; called by the worker once the frame is
// answered or dropped, after which nothing may use f.
func (cs *connState) releaseFrame(f []byte) {
	if len(f) > bigFrame {
		// Its count leaves first: the buffer may carry another frame next.
		cs.mu.Lock()
		if i := cs.countedAt(f); i >= 0 {
			cs.counted = append(cs.counted[:i], cs.counted[i+1:]...)
		}
		cs.mu.Unlock()
		cs.s.releaseFrameBuf(cs.frameMem, f, bigFrameCost(len(f)), false)
	}
}

// bigFrameCost is what a large frame of size bytes is charged: the one
// buffer it is received into (its size, or from hugeFrame on its mapping
// rounded to huge pages, framebuf.go), which the worker queue then owns
// (gnet's inbound buffer holds at most one read of it at a time).
func bigFrameCost(size int) int64 { return int64(frameMapLen(size)) }

// queueFatal queues an error reply to go out after everything already
// queued; the connection is then closed.
func (cs *connState) queueFatal(reply []byte, r closeReason) {
	cs.closing.Store(true)
	cs.s.stats.closed[r].Add(1)
	cs.mu.Lock()
	cs.fatal = reply
	cs.mu.Unlock()
	cs.wakeHold(false) // held replies go now, before the fatal one
	cs.kick()
}

// A connection closed after a fatal reply lingers until its peer has sent
// nothing for lingerQuiet (at most lingerMax): closing a socket with
// unread bytes, or with bytes still arriving (the rest of an oversized
// frame), makes the kernel send a reset, and the peer's kernel may drop
// the replies it has not read yet, the fatal one included. Reading stopped
// already (closing); what arrives meanwhile is discarded.
const (
	lingerQuiet = 50 * time.Millisecond
	lingerMax   = 2 * time.Second
)

// lingerClose closes c once the peer's bytes stopped arriving (see
// lingerQuiet), from a timer goroutine.
func (cs *connState) lingerClose(c gnet.Conn) {
	start := monoNow()
	var check func()
	check = func() {
		now := monoNow()
		if now-cs.discardedAt.Load() >= int64(lingerQuiet) || now-start >= int64(lingerMax) {
			c.Close()
			return
		}
		time.AfterFunc(lingerQuiet, check)
	}
	time.AfterFunc(lingerQuiet, check)
}

// kick starts the worker goroutine if it is not running.
func (cs *connState) kick() {
	cs.mu.Lock()
	if cs.running {
		cs.mu.Unlock()
		return
	}
	cs.running = true
	cs.s.workers.Add(1)
	cs.mu.Unlock()
	go cs.s.work(cs)
}

// work is a connection's worker goroutine: it takes queued frames in
// batches, runs them against the store in order, and sends each batch's
// replies with one AsyncWrite. At most one runs per connection; it exits
// when the queue is empty.
func (s *Server) work(cs *connState) {
	defer s.workers.Add(-1)
	for {
		cs.mu.Lock()
		if len(cs.frames) == 0 {
			fatal := cs.fatal
			cs.fatal = nil
			cs.running = false
			// An idle connection keeps no large buffers: thousands of
			// mostly idle connections must stay cheap.
			if cap(cs.spareArena) > idleSpare {
				cs.spareArena = nil
			}
			if cap(cs.arena) > idleSpare {
				cs.arena = nil
			}
			cs.dec.Release() // before running=false is visible to the loop
			cs.mu.Unlock()
			if fatal != nil {
				s.asyncPending.Add(1)
				err := cs.c.AsyncWrite(fatal, func(c gnet.Conn, _ error) error {
					s.asyncPending.Add(-1)
					if c != nil {
						cs.lingerClose(c)
					}
					return nil
				})
				if err != nil {
					s.asyncPending.Add(-1)
				}
			}
			return
		}
		frames, arena := cs.frames, cs.arena
		cs.frames, cs.arena = cs.spareFrames[:0], cs.spareArena[:0]
		cs.spareFrames, cs.spareArena = nil, nil
		cs.mu.Unlock()

		var bytes int64
		out := protocol.GetBuffer()
		done := 0 // frames whose replies are in out
		for i := 0; i < len(frames); {
			if cs.gone.Load() {
				// The connection is closed or closing (slow consumer,
				// timeout, reload):
				// the rest of the batch is not run and not acknowledged.
				for ; i < len(frames); i++ {
					bytes += queuedLen(frames[i])
					cs.releaseFrame(frames[i])
					frames[i] = nil
					done++
				}
				break
			}
			j := s.writeRun(cs, frames, i)
			pos := len(out.B)
			if j-i > 1 {
				out.B = s.handleWrites(cs, frames[i:j], out.B)
			} else {
				out.B = s.handle(cs, frames[i], out.B)
				j = i + 1
			}
			n := j - i
			for ; i < j; i++ {
				bytes += queuedLen(frames[i])
				cs.releaseFrame(frames[i])
				frames[i] = nil // a big frame can be collected once done
				done++
			}
			if cs.hold.Hold > 0 || cs.hold.Close {
				// Past the tenant's refusal budget (refusal.go).
				out, done = s.holdReplies(cs, out, pos, n, done)
			}
			if len(out.B) >= maxBatchReply && i < len(frames) {
				// Send what is built so a batch of large replies is not
				// held in memory whole (after a hold: then the batch
				// waits here); the write's callback checks MaxOutbound.
				s.sendReplies(cs, out, done)
				out, done = protocol.GetBuffer(), 0
			}
		}

		if cs.pre.frame != nil {
			// Its frame was not run (the connection went): the decoding
			// must not outlive the batch. The loop writes pre again only
			// once the batch's replies are written (inflight 0).
			cs.pre = decodedFrame{}
		}
		cs.mu.Lock()
		cs.spareFrames = frames[:0]
		if cap(arena) <= maxSpare {
			cs.spareArena = arena[:0]
		}
		cs.mu.Unlock()
		cs.queuedBytes.Add(-bytes)
		s.sendReplies(cs, out, done)
	}
}

// maxBatchReply is the reply bytes a worker builds before it sends them.
const maxBatchReply = 1 << 20

// send hands out (the replies of n frames) to the connection's loop. The
// in-flight count drops only once the replies are on the socket (the
// callback runs on the loop after the write): the loop answers cheap reads
// itself only when inflight is 0, which must mean no earlier reply is
// still waiting to be written. A client that does not read its replies is
// closed once more than MaxOutbound bytes wait for it.
func (s *Server) send(cs *connState, out *bytebufferpool.ByteBuffer, n int) {
	// What the replies reserved goes back once gnet has them (written, or
	// copied into its outbound buffer, which MaxOutbound bounds).
	held := cs.held.n
	cs.held.n = 0
	if cs.shut.Load() {
		// Closed, or closing without more replies: nothing is written to
		// it (a held batch's replies, refusal.go).
		cs.mem.release(held)
		protocol.PutBuffer(out)
		cs.written(n)
		return
	}
	s.asyncPending.Add(1)
	err := cs.c.AsyncWrite(out.B, func(c gnet.Conn, _ error) error {
		cs.mem.release(held)
		protocol.PutBuffer(out)
		s.asyncPending.Add(-1)
		if c != nil {
			cs.chargeBuffers(c)
			if c.OutboundBuffered() > s.opts.MaxOutbound {
				cs.closeWith(closeSlowConsumer)
			}
		}
		cs.written(n)
		return nil
	})
	if err != nil {
		cs.mem.release(held)
		protocol.PutBuffer(out)
		s.asyncPending.Add(-1)
		cs.written(n)
	}
}

// written records that the replies of n frames left, and resumes reading
// a connection that was paused at its in-flight limit.
func (cs *connState) written(n int) {
	cs.inflight.Add(-int64(n))
	if !cs.overQueue() && cs.blocked.Swap(false) {
		cs.c.Wake(nil)
	}
}
