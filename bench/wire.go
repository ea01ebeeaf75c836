package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// Protocols Run can speak.
const (
	// ProtoSQ is SQ's binary protocol (docs/PROTOCOL.md) via client.RawConn.
	ProtoSQ = "sq"
	// ProtoRESP is Redis's RESP2: GET, SET, APPEND, DEL on one key per
	// scroll. It exists to compare SQ with Redis using one generator.
	ProtoRESP = "resp"
)

// answer is one decoded reply.
type answer struct {
	ok       bool
	status   string // error status name when !ok
	msg      []byte // error text when !ok
	id       uint32 // request id echoed (SQ only; 0 for RESP)
	body     []byte // SELECT text (valid until the next recv)
	count    int64  // the count of a write answer, when hasCount
	hasCount bool
}

// target is what a request addresses, prepared once per scroll.
type target struct {
	name  []byte           // SQ phext name
	coord phext.Coordinate // SQ coordinate
	key   []byte           // RESP key
}

// wire is one connection's protocol. Calls come from one goroutine.
type wire interface {
	// send buffers one request for op on t with text (nil for SELECT and
	// DELETE) and returns the id its answer must carry (0: unchecked).
	send(op OpKind, t *target, text []byte) (uint32, error)
	flush() error
	recv(a *answer) error
	// buffered reports how many answer bytes are already read from the
	// socket (so the caller can tell whether to flush before blocking).
	buffered() int
	close() error
}

// dialFunc opens the wire of connection i for tenant token.
type dialFunc func(ctx context.Context, addr, token string) (wire, error)

// sqWire speaks SQ through client.RawConn, writing frames it builds itself
// into one reused buffer.
type sqWire struct {
	rc     *client.RawConn
	buf    []byte
	nextID uint32
	resp   protocol.Response
	// buffered is RawConn's Buffered method when the client has it.
	buf2 interface{ Buffered() int }
}

var sqOps = [numOps]protocol.Op{OpSelect: protocol.OpSelect, OpUpdate: protocol.OpUpdate,
	OpInsert: protocol.OpInsert, OpDelete: protocol.OpDelete}

func dialSQ(compress bool, readBuf int) dialFunc {
	return func(ctx context.Context, addr, token string) (wire, error) {
		o := client.DefaultOptions
		o.NoCompression = !compress
		if readBuf > 0 {
			o.ReadBufferSize = readBuf
		}
		rc, err := client.DialRaw(ctx, addr, token, client.WithOptions(o))
		if err != nil {
			return nil, err
		}
		w := &sqWire{rc: rc, nextID: 1}
		w.buf2, _ = any(rc).(interface{ Buffered() int })
		return w, nil
	}
}

func (w *sqWire) send(op OpKind, t *target, text []byte) (uint32, error) {
	id := w.nextID
	w.nextID++
	w.buf = protocol.AppendRequest(w.buf[:0], sqOps[op], id, t.name, t.coord, text)
	err := w.rc.WriteFrames(w.buf)
	if cap(w.buf) > 4<<20 {
		w.buf = nil // drop a buffer grown by a huge scroll
	}
	return id, err
}

func (w *sqWire) flush() error { return w.rc.Flush() }

// buffered returns RawConn.Buffered when the client has it; otherwise 1,
// meaning "unknown", so the caller's other flush rules decide.
func (w *sqWire) buffered() int {
	if w.buf2 == nil {
		return 1
	}
	return w.buf2.Buffered()
}

func (w *sqWire) recv(a *answer) error {
	if err := w.rc.Recv(&w.resp); err != nil {
		return err
	}
	*a = answer{id: w.resp.ID, ok: w.resp.Status == protocol.StatusOK}
	if !a.ok {
		a.status, a.msg = w.resp.Status.String(), w.resp.Body
		return nil
	}
	a.body = w.resp.Body
	if len(a.body) == 4 {
		n, _ := protocol.DecodeCount(a.body)
		a.count, a.hasCount = int64(n), true
	}
	return nil
}

func (w *sqWire) close() error { return w.rc.Close() }

// respWire speaks RESP2 to Redis.
type respWire struct {
	nc   net.Conn
	bw   *bufio.Writer
	br   *bufio.Reader
	buf  []byte
	body []byte
	fifo []OpKind // ops in flight, oldest first (ring)
	head int
	n    int
}

var respCmds = [numOps]string{OpSelect: "GET", OpUpdate: "SET", OpInsert: "APPEND", OpDelete: "DEL"}

func dialRESP(readBuf int) dialFunc {
	return func(ctx context.Context, addr, _ string) (wire, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		size := readBuf
		if size <= 0 {
			size = 64 << 10
		}
		return &respWire{nc: nc, bw: bufio.NewWriterSize(nc, size), br: bufio.NewReaderSize(nc, size),
			fifo: make([]OpKind, 64)}, nil
	}
}

func appendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

func (w *respWire) send(op OpKind, t *target, text []byte) (uint32, error) {
	b := w.buf[:0]
	if text != nil {
		b = append(b, "*3\r\n"...)
	} else {
		b = append(b, "*2\r\n"...)
	}
	cmd := respCmds[op]
	b = append(b, '$', byte('0'+len(cmd)), '\r', '\n')
	b = append(b, cmd...)
	b = append(b, '\r', '\n')
	b = appendBulk(b, t.key)
	if text != nil {
		b = appendBulk(b, text)
	}
	w.buf = b
	if w.n == len(w.fifo) {
		nf := make([]OpKind, 2*len(w.fifo))
		for i := 0; i < w.n; i++ {
			nf[i] = w.fifo[(w.head+i)%len(w.fifo)]
		}
		w.fifo, w.head = nf, 0
	}
	w.fifo[(w.head+w.n)%len(w.fifo)] = op
	w.n++
	_, err := w.bw.Write(b)
	if cap(w.buf) > 4<<20 {
		w.buf = nil
	}
	return 0, err
}

func (w *respWire) flush() error  { return w.bw.Flush() }
func (w *respWire) buffered() int { return w.br.Buffered() }
func (w *respWire) close() error  { return w.nc.Close() }

var errRESP = errors.New("bench: malformed RESP reply")

func (w *respWire) recv(a *answer) error {
	if w.n == 0 {
		return fmt.Errorf("%w: answer without a request", errRESP)
	}
	w.head = (w.head + 1) % len(w.fifo)
	w.n--
	*a = answer{}
	line, err := w.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return fmt.Errorf("%w: %q", errRESP, line)
	}
	kind, rest := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		a.ok = true
	case '-':
		a.status = "ERR"
		w.body = append(w.body[:0], rest...)
		a.msg = w.body
	case ':':
		n, err := strconv.ParseInt(string(rest), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: integer %q", errRESP, rest)
		}
		a.ok, a.count, a.hasCount = true, n, true
	case '$':
		n, err := strconv.Atoi(string(rest))
		if err != nil || n < -1 || n > 512<<20 {
			return fmt.Errorf("%w: bulk length %q", errRESP, rest)
		}
		a.ok = true
		if n < 0 {
			a.body = w.body[:0]
			return nil
		}
		if cap(w.body) < n+2 {
			w.body = make([]byte, n+2)
		}
		w.body = w.body[:n+2]
		if _, err := io.ReadFull(w.br, w.body); err != nil {
			return err
		}
		a.body = w.body[:n]
	default:
		return fmt.Errorf("%w: %q", errRESP, line)
	}
	return nil
}

// Aliases used by the scenarios.
const (
	opPing   = protocol.OpPing
	statusOK = protocol.StatusOK
)

type respFrame = protocol.Response
