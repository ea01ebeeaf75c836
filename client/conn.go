package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// maxKeptBuffer is the largest buffer (encode buffer, read frame, call body)
// a connection keeps for reuse; bigger ones are dropped after use so one
// large GET does not pin memory for the life of the connection.
const maxKeptBuffer = 1 << 20

// Conn is one connection to an SQ server, shared safely by many goroutines.
// Requests are pipelined: each caller writes its frame under a mutex and
// waits for its own response, which a single reader goroutine matches to it
// by order and checks by id.
//
// A Conn never reconnects. Once it is broken (network error, protocol
// violation, Close), every pending and later call returns an error wrapping
// ErrClosed; the caller decides whether to Dial again.
type Conn struct {
	nc    net.Conn
	opts  Options
	hello protocol.HelloReply
	// Snapshotted from HELLO so the send path reads no shared state.
	codec   uint8
	sendMax int

	// wmu guards the write side: id assignment, encoding into wbuf and the
	// push onto pending happen under it, so the order of pending equals the
	// order of frames on the wire. The socket write itself happens outside
	// it, by the one caller that set writing. Lock order: wmu, then pmu.
	wmu     sync.Mutex
	wbuf    []byte // encoded frames not yet handed to the socket
	spare   []byte // the other buffer, swapped with wbuf by the writer
	writing bool   // a caller is writing; others only append to wbuf
	nextID  uint32

	// pmu guards pending and err. The reader goroutine pops under it.
	pmu     sync.Mutex
	pending fifo
	err     error // non-nil once the connection is broken

	inflight atomic.Int64  // requests sent and not yet answered
	broken   atomic.Bool   // mirrors err != nil for lock-free readers (Pool)
	done     chan struct{} // closed when the reader goroutine has exited
	calls    sync.Pool     // *call

	watch watchState // subscriptions (watch.go)
}

// call is one outstanding request. Its life: taken from Conn.calls by the
// caller, pushed onto pending, completed by the reader (or by fail), and put
// back by whoever owns it last: the caller after reading the result, or the
// reader when the caller gave up (context done) before the answer came.
type call struct {
	id    uint32
	op    protocol.Op
	state atomic.Uint32 // callWaiting, callDone or callAbandoned
	done  chan struct{} // capacity 1; receives once per use

	// Written by the completer before state leaves callWaiting; read by
	// the caller after receiving from done.
	status protocol.Status
	body   []byte
	err    error
}

const (
	callWaiting uint32 = iota
	callDone
	callAbandoned
)

// Dial connects to the SQ server at addr (host:port), sends HELLO with the
// tenant's token and waits for the reply. ctx bounds the connect and the
// handshake (together with Options.DialTimeout); it does not affect the
// connection after Dial returns. A refused token gives a *StatusError with
// status AUTH.
func Dial(ctx context.Context, addr, token string, opts ...Option) (*Conn, error) {
	o := resolve(opts)
	nc, hello, err := handshake(ctx, addr, token, &o)
	if err != nil {
		return nil, err
	}
	c := &Conn{
		nc:      nc,
		opts:    o,
		hello:   hello,
		codec:   hello.Codec,
		sendMax: int(hello.MaxFrame),
		nextID:  1,
		done:    make(chan struct{}),
	}
	if c.sendMax <= 0 {
		c.sendMax = protocol.DefaultMaxFrame
	}
	c.calls.New = func() any { return &call{done: make(chan struct{}, 1)} }
	go c.readLoop()
	return c, nil
}

// handshake dials and performs the HELLO exchange; on success the returned
// net.Conn has no deadline set and no bytes beyond the HELLO reply consumed.
func handshake(ctx context.Context, addr, token string, o *Options) (net.Conn, protocol.HelloReply, error) {
	var hr protocol.HelloReply
	if len(token) == 0 || len(token) > protocol.MaxTokenLen {
		return nil, hr, fmt.Errorf("%w: token must be 1..%d bytes", ErrBadArgument, protocol.MaxTokenLen)
	}
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	nc, err := o.Dialer(ctx, "tcp", addr)
	if err != nil {
		return nil, hr, err
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	// A cancelled ctx (with or without a deadline) interrupts a blocked
	// read or write by moving the socket deadline into the past.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (net.Conn, protocol.HelloReply, error) {
		nc.Close()
		cerr := ctx.Err()
		if _, hasDL := ctx.Deadline(); cerr == nil && hasDL && errors.Is(err, os.ErrDeadlineExceeded) {
			// The socket deadline is ctx's deadline; it may fire a moment
			// before ctx's own timer does.
			cerr = context.DeadlineExceeded
		}
		if cerr != nil {
			return nil, hr, fmt.Errorf("client: HELLO: %w (%v)", cerr, err)
		}
		return nil, hr, err
	}
	frame := protocol.AppendHello(nil, 0, []byte(token), o.accept())
	if _, err := nc.Write(frame); err != nil {
		return fail(fmt.Errorf("client: HELLO write: %w", err))
	}
	var dec protocol.Decoder
	dec.MaxFrame = o.MaxFrame
	frame, err = readFrame(nc, frame[:0], o.MaxFrame)
	if err != nil {
		if errors.Is(err, ErrProtocol) && cap(frame) >= 4 && string(frame[:4]) == "HTTP" {
			// readFrame read the four length bytes and refused them.
			// An HTTP server answered (it read HELLO as a bad request).
			return fail(fmt.Errorf("%w: %s answered HELLO in HTTP: is this the REST port? The binary protocol has its own port (sq host --listen, default 127.0.0.1:1337)", ErrProtocol, addr))
		}
		return fail(fmt.Errorf("client: HELLO read: %w", err))
	}
	var resp protocol.Response
	if err := dec.DecodeResponse(frame, &resp); err != nil {
		return fail(fmt.Errorf("%w: HELLO reply: %w", ErrProtocol, err))
	}
	if resp.Status != protocol.StatusOK {
		return fail(&StatusError{Op: protocol.OpHello, Status: resp.Status, Msg: string(resp.Body)})
	}
	hr, err = protocol.DecodeHelloReply(resp.Body)
	if err != nil {
		return fail(fmt.Errorf("%w: HELLO reply: %w", ErrProtocol, err))
	}
	if hr.Codec != protocol.CodecNone && codecBit(hr.Codec)&o.accept() == 0 {
		return fail(fmt.Errorf("%w: server chose codec %d, which was not offered", ErrProtocol, hr.Codec))
	}
	if !stop() {
		// ctx ended and the AfterFunc already poisoned the deadline.
		return fail(ctx.Err())
	}
	nc.SetDeadline(time.Time{})
	return nc, hr, nil
}

// codecBit maps a codec id to its accept bit.
func codecBit(codec uint8) uint8 {
	switch codec {
	case protocol.CodecZstd:
		return protocol.AcceptZstd
	case protocol.CodecS2:
		return protocol.AcceptS2
	}
	return 0
}

// readFrame reads one whole frame from r into buf (reused when large
// enough), checking the length field against maxFrame before reading the
// rest.
func readFrame(r io.Reader, buf []byte, maxFrame int) ([]byte, error) {
	// The header is read into buf itself: a local array would escape to
	// the heap through the io.Reader interface (one allocation per frame).
	if cap(buf) < protocol.HeaderSize {
		buf = make([]byte, 0, 512)
	}
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		return buf, err
	}
	n, err := protocol.FrameSize(buf[:4], maxFrame)
	if err != nil {
		return buf, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if cap(buf) < n {
		nb := make([]byte, n)
		copy(nb, buf[:4])
		buf = nb
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	return buf, nil
}

// Hello returns what the server said in its HELLO reply: protocol version,
// chosen codec, limits, tenant name, server version and supported ops.
func (c *Conn) Hello() protocol.HelloReply { return c.hello }

// Pending returns the number of requests sent on c and not yet answered.
func (c *Conn) Pending() int { return int(c.inflight.Load()) }

// Broken reports whether c can no longer be used (see Err).
func (c *Conn) Broken() bool { return c.broken.Load() }

// Err returns nil while c is usable, else the error that broke it (it wraps
// ErrClosed).
func (c *Conn) Err() error {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.err
}

// Close closes the connection. Pending calls return an error wrapping
// ErrClosed. Close waits for the reader goroutine to exit and is safe to
// call more than once and concurrently with calls.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	<-c.done
	return nil
}

// fail marks c broken with err (the first error wins), completes every
// pending call with it and closes the network connection.
func (c *Conn) fail(err error) {
	c.pmu.Lock()
	if c.err != nil {
		c.pmu.Unlock()
		return
	}
	c.err = err
	c.broken.Store(true)
	var failed []*call
	for {
		cl := c.pending.pop()
		if cl == nil {
			break
		}
		failed = append(failed, cl)
	}
	c.pmu.Unlock()
	c.nc.Close()
	for _, cl := range failed {
		c.complete(cl, err)
	}
}

// closedErr wraps a network error so that callers can match both ErrClosed
// and the cause.
func closedErr(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrClosed, what, err)
}

func (c *Conn) getCall(op protocol.Op) *call {
	cl := c.calls.Get().(*call)
	cl.op = op
	cl.state.Store(callWaiting)
	cl.err = nil
	cl.status = 0
	cl.body = cl.body[:0]
	return cl
}

func (c *Conn) putCall(cl *call) {
	if cap(cl.body) > maxKeptBuffer {
		cl.body = nil
	}
	c.calls.Put(cl)
}

// complete hands the result (already stored in cl) to the waiting caller,
// or recycles cl when the caller has given up.
func (c *Conn) complete(cl *call, err error) {
	cl.err = err
	c.inflight.Add(-1)
	if cl.state.CompareAndSwap(callWaiting, callDone) {
		cl.done <- struct{}{}
		return
	}
	c.putCall(cl) // abandoned: the caller is gone and will not touch cl
}

// send assigns an id, encodes the request and makes sure it is written. On
// success cl is on the pending queue and will be completed by the reader or
// by fail. On error nothing was queued and the caller still owns cl.
//
// Writes are batched without a writer goroutine: the first caller to find
// no write in progress becomes the writer and keeps writing until the
// buffer is empty; callers that arrive meanwhile only append their frame
// and go on to wait for their answer. At pipeline depth n this turns n
// write syscalls into about one.
func (c *Conn) send(cl *call, name []byte, coord phext.Coordinate, payload []byte) error {
	if !phext.ValidName(name) { // ValidName bounds the length too
		return &StatusError{Op: cl.op, Status: protocol.StatusBadName, Msg: "phext name must match [A-Za-z0-9_-][A-Za-z0-9._-]* and be at most 64 bytes (not sent)"}
	}
	if size := protocol.RequestSize(len(name), len(payload)); size-4 > c.sendMax && c.codec == protocol.CodecNone {
		return tooLarge(cl.op, size, c.sendMax)
	}
	c.wmu.Lock()
	start := len(c.wbuf)
	c.wbuf = protocol.AppendCompressedRequest(c.wbuf, cl.op, c.nextID, name, coord, payload, c.codec)
	if size := len(c.wbuf) - start; size-4 > c.sendMax {
		c.wbuf = c.wbuf[:start]
		c.wmu.Unlock()
		return tooLarge(cl.op, size, c.sendMax)
	}
	cl.id = c.nextID
	c.nextID++
	if c.nextID == protocol.EventID {
		c.nextID = 1 // reserved for events (PROTOCOL.md §2.10)
	}
	c.pmu.Lock()
	if err := c.err; err != nil {
		c.pmu.Unlock()
		c.wbuf = c.wbuf[:start]
		c.wmu.Unlock()
		return err
	}
	c.pending.push(cl)
	c.inflight.Add(1)
	c.pmu.Unlock()
	if c.writing {
		c.wmu.Unlock() // the active writer will send our frame
		return nil
	}
	c.writing = true
	var err error
	for len(c.wbuf) > 0 && err == nil {
		buf := c.wbuf
		c.wbuf = c.spare[:0]
		c.wmu.Unlock()
		if c.opts.WriteTimeout > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		}
		_, err = c.nc.Write(buf)
		c.wmu.Lock()
		if cap(buf) > maxKeptBuffer {
			buf = nil
		}
		c.spare = buf[:0]
	}
	c.writing = false
	c.wbuf = c.wbuf[:0]
	c.wmu.Unlock()
	if err != nil {
		// A partial frame may be on the wire: the stream is unusable.
		// Every queued call, ours included, is completed with the error.
		c.fail(closedErr("write", err))
	}
	return nil
}

func tooLarge(op protocol.Op, size, max int) error {
	return &StatusError{Op: op, Status: protocol.StatusTooLarge, Msg: fmt.Sprintf("request of %d bytes is above the server's max frame %d (not sent)", size, max)}
}

// roundTrip sends one request and waits for its answer. On success the
// caller owns the returned call and must putCall it after reading
// status/body. Error statuses are returned as the call's status, not as an
// error: callers that want a *StatusError use check.
func (c *Conn) roundTrip(ctx context.Context, op protocol.Op, name []byte, coord phext.Coordinate, payload []byte) (*call, error) {
	if c.opts.Timeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
			defer cancel()
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cl := c.getCall(op)
	if err := c.send(cl, name, coord, payload); err != nil {
		c.putCall(cl)
		return nil, err
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		if cl.state.CompareAndSwap(callWaiting, callAbandoned) {
			// The slot stays in the FIFO; the reader discards the answer
			// and recycles cl.
			return nil, ctx.Err()
		}
		<-cl.done // completed concurrently: take the result
	}
	if cl.err != nil {
		err := cl.err
		c.putCall(cl)
		return nil, err
	}
	return cl, nil
}

// readLoop is the connection's only reader. It owns the bufio.Reader, the
// frame buffer and the Decoder. It exits when the connection breaks.
func (c *Conn) readLoop() {
	defer close(c.done)
	defer c.endAllSubs()
	br := bufio.NewReaderSize(c.nc, c.opts.ReadBufferSize)
	dec := protocol.Decoder{MaxFrame: c.opts.MaxFrame, Codec: c.codec}
	var frame []byte
	var resp protocol.Response
	for {
		var err error
		frame, err = readFrame(br, frame, c.opts.MaxFrame)
		if err != nil {
			if c.Err() == nil {
				c.fail(closedErr("read", err))
			}
			return
		}
		if err := dec.DecodeResponse(frame, &resp); err != nil {
			c.fail(fmt.Errorf("%w: %w: %w", ErrClosed, ErrProtocol, err))
			return
		}
		if protocol.IsEvent(&resp) {
			if err := c.onEvent(resp.Body); err != nil {
				c.fail(fmt.Errorf("%w: %w: %w", ErrClosed, ErrProtocol, err))
				return
			}
			continue
		}
		c.pmu.Lock()
		cl := c.pending.pop()
		c.pmu.Unlock()
		if cl == nil {
			if resp.Status != protocol.StatusOK {
				// A server about to close says why (SHUTTING_DOWN, BUSY…)
				// without a request to answer: keep the status visible to
				// StatusOf.
				c.fail(fmt.Errorf("%w: unsolicited answer id %d: %w", ErrClosed, resp.ID,
					&StatusError{Op: protocol.Op(0), Status: resp.Status, Msg: string(clip(resp.Body))}))
				return
			}
			c.fail(fmt.Errorf("%w: %w: unsolicited OK answer id %d", ErrClosed, ErrProtocol, resp.ID))
			return
		}
		if resp.ID != cl.id {
			err := fmt.Errorf("%w: %w: response id %d, expected %d (status %s: %q)", ErrClosed, ErrProtocol, resp.ID, cl.id, resp.Status, clip(resp.Body))
			// Break the connection before handing cl the error: a caller
			// who has seen it must find Broken() true.
			c.fail(err)
			c.complete(cl, err)
			return
		}
		cl.status = resp.Status
		cl.body = append(cl.body[:0], resp.Body...)
		c.complete(cl, nil)
		if cap(frame) > maxKeptBuffer {
			frame = nil
		}
	}
}

// clip shortens a server message for inclusion in an error.
func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// fifo is a growable ring of pending calls (no allocation once grown).
type fifo struct {
	buf  []*call
	head int
	n    int
}

func (q *fifo) push(c *call) {
	if q.n == len(q.buf) {
		nb := make([]*call, max(16, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = c
	q.n++
}

func (q *fifo) pop() *call {
	if q.n == 0 {
		return nil
	}
	c := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return c
}
