package httpapi

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/phext/sq/protocol"
)

// maxFrontHead is the most of a connection's first request head the front
// reads to tolerate SQ-isms; a longer head is passed on untouched and
// net/http judges it (MaxHeaderBytes).
const maxFrontHead = 16 << 10

// frontListener wraps the REST listener with a small tolerant front for the
// first bytes of each connection, so that:
//
//   - a binary-protocol client dialled at the REST port by mistake (its
//     first byte is 0x00, the top byte of a frame length, which no HTTP
//     request starts with) gets one binary error frame saying so, instead
//     of waiting for an HTTP header that never ends;
//   - the first request's head is repaired where SQ's hand-written parser
//     accepted what net/http refuses: raw spaces and tabs inside the
//     request target (percent-encoded, so they decode to the same bytes)
//     and an HTTP/1.1 request without a Host header (one is added).
//
// Only the first request of a connection is looked at: SQ closes every
// connection after one request, so its clients never send a second.
//
// It also bounds the open connections (Options.MaxConns, like the binary
// port's --max-conns): each is a goroutine of net/http and its buffers,
// and an idle keep-alive or a bad-token answer waiting its delay
// (Engine.AuthRefused) holds one. A connection past the bound is answered
// 503 with Retry-After at once, before its request is read, and closed;
// at most MaxConns/8 are being answered so at a time (the share of the
// binary side's waiting refusals, server/pace.go), and past that a
// connection is closed unanswered, as the binary port closes one past
// --max-conns.
type frontListener struct {
	net.Listener
	binaryAddr string // shown to binary clients that came to the wrong port

	maxConns int64        // 0: no bound
	open     atomic.Int64 // connections accepted and not yet closed
	refusing atomic.Int64 // connections past maxConns being answered
	refused  atomic.Uint64
}

// Accept returns the next connection within the bound, wrapped.
func (l *frontListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.maxConns > 0 && l.open.Add(1) > l.maxConns {
			l.open.Add(-1)
			l.refuse(c)
			continue
		}
		return &frontConn{Conn: c, l: l}, nil
	}
}

// connRefusal is the whole answer to a connection past MaxConns.
var connRefusal = []byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 64\r\n\r\n" +
	"Service Unavailable: too many open REST connections; retry later")

// refuseTime bounds how long a refused connection is kept: to send the
// 503 and read what the client sent, so that the close does not reset
// the connection (and lose the answer) over unread bytes.
const refuseTime = time.Second

// refuse answers c, a connection past MaxConns, on its own goroutine, or
// closes it at once when too many are being answered.
func (l *frontListener) refuse(c net.Conn) {
	l.refused.Add(1)
	if l.refusing.Add(1) > max(1, l.maxConns/8) {
		l.refusing.Add(-1)
		c.Close()
		return
	}
	go func() {
		defer l.refusing.Add(-1)
		defer c.Close()
		c.SetDeadline(time.Now().Add(refuseTime))
		if _, err := c.Write(connRefusal); err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		io.Copy(io.Discard, io.LimitReader(c, maxFrontHead))
	}()
}

// frontConn holds the (possibly rewritten) head until net/http has read it.
// net/http reads a connection from one goroutine at a time, so no lock;
// Close may come from another goroutine (Shutdown) as well, hence closed.
type frontConn struct {
	net.Conn
	l       *frontListener
	started bool
	pending []byte
	closed  atomic.Bool
}

// Close closes the connection and gives back its place in MaxConns once.
func (c *frontConn) Close() error {
	if !c.closed.Swap(true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}

// Read serves the repaired head first, then the socket.
func (c *frontConn) Read(p []byte) (int, error) {
	if !c.started {
		c.started = true
		if err := c.front(); err != nil {
			return 0, err
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// front reads the start of the connection (under the deadline net/http has
// set for the header) and decides. Bytes read stay in c.pending.
func (c *frontConn) front() error {
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > 0 && buf[0] == 0 {
			// A binary frame: wait for its id (bytes 6..9) if it is on
			// the way, then answer and close.
			if len(buf) < protocol.HeaderSize && err == nil {
				continue
			}
			c.refuseBinary(buf)
			return net.ErrClosed
		}
		if err != nil {
			c.pending = buf
			if len(buf) > 0 {
				return nil // hand over what came; the error shows on the next read
			}
			return err
		}
		if i := headEnd(buf); i >= 0 {
			c.pending = repairHead(buf[:i], buf[i:], c.LocalAddr().String())
			return nil
		}
		if len(buf) >= maxFrontHead || (len(buf) > 0 && !isTokenByte(buf[0])) {
			c.pending = buf // not ours to repair
			return nil
		}
	}
}

// refuseBinary answers a binary frame with BAD_FRAME naming the binary
// port, then closes the connection.
func (c *frontConn) refuseBinary(head []byte) {
	var id uint32
	if len(head) >= protocol.HeaderSize {
		id = binary.BigEndian.Uint32(head[6:10])
	}
	msg := "is this the REST port? This is SQ's REST (HTTP) API, not the binary protocol"
	if c.l.binaryAddr != "" {
		msg += "; the binary protocol listens on " + c.l.binaryAddr
	}
	c.Conn.Write(protocol.AppendResponse(nil, id, protocol.StatusBadFrame, []byte(msg)))
	c.Conn.Close()
}

// headEnd returns the offset just past the blank line ending the request
// head ("\r\n\r\n" or "\n\n"), or -1.
func headEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

// isTokenByte reports whether b may start an HTTP method.
func isTokenByte(b byte) bool { return b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' }

// repairHead returns head (the request line and headers, blank line
// included) followed by rest, with raw spaces and tabs inside the request
// target percent-encoded and a Host header added to an HTTP/1.1 request
// that has none. A head it does not understand is returned unchanged.
func repairHead(head, rest []byte, host string) []byte {
	nl := bytes.IndexByte(head, '\n')
	line := head[:nl]
	cr := len(line) > 0 && line[len(line)-1] == '\r'
	if cr {
		line = line[:len(line)-1]
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1 || !bytes.HasPrefix(line[sp2+1:], []byte("HTTP/1.")) {
		return append(head, rest...)
	}
	target := line[sp1+1 : sp2]
	fixTarget := bytes.ContainsAny(target, " \t")
	needHost := bytes.Equal(line[sp2+1:], []byte("HTTP/1.1")) && !hasHost(head[nl+1:])
	if !fixTarget && !needHost {
		return append(head, rest...)
	}
	out := make([]byte, 0, len(head)+len(rest)+len(host)+32)
	out = append(out, line[:sp1+1]...)
	for _, b := range target {
		switch b {
		case ' ':
			out = append(out, "%20"...)
		case '\t':
			out = append(out, "%09"...)
		default:
			out = append(out, b)
		}
	}
	out = append(out, line[sp2:]...)
	out = append(out, "\r\n"...)
	if needHost {
		out = append(out, "Host: "...)
		out = append(out, host...)
		out = append(out, "\r\n"...)
	}
	out = append(out, head[nl+1:]...)
	return append(out, rest...)
}

// hasHost reports whether the header lines hold a Host header.
func hasHost(lines []byte) bool {
	for len(lines) > 0 {
		i := bytes.IndexByte(lines, '\n')
		if i < 0 {
			i = len(lines) - 1
		}
		l := lines[:i+1]
		if len(l) >= 5 && bytes.EqualFold(l[:5], []byte("host:")) {
			return true
		}
		lines = lines[i+1:]
	}
	return false
}
