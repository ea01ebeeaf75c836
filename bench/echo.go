package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/phext/sq/protocol"
	"golang.org/x/sys/unix"
)

// Echo is a do-nothing gnet server that speaks just enough of SQ's
// protocol for the load generator: it accepts any HELLO, answers SELECT
// with ValueSize bytes, INSERT and UPDATE with the payload's length, every
// other request with an empty OK, and stores nothing. It measures what the
// network path and the event loop cost on this machine, the ceiling for
// SQ's ops/s with the same load.
type Echo struct {
	gnet.BuiltinEventEngine
	valueSize int
	value     []byte
	hello     []byte
	eng       gnet.Engine
	addr      string
	ready     chan struct{}
	done      chan struct{}
	runErr    error
	stopOnce  sync.Once
}

// echoConn is the per-connection state, touched only by its event loop.
type echoConn struct {
	authed bool
	out    []byte
}

// StartEcho starts an Echo on addr ("127.0.0.1:0" picks a free port) with
// loops event loops (0: one per CPU) and returns once it listens.
func StartEcho(addr string, valueSize, loops int) (*Echo, error) {
	if valueSize < 0 || valueSize > 64<<20 {
		return nil, fmt.Errorf("%w: echo value size %d", ErrUsage, valueSize)
	}
	e := &Echo{valueSize: valueSize, value: newPool(valueSize, 3), ready: make(chan struct{}), done: make(chan struct{})}
	e.hello = protocol.AppendHelloReply(nil, 0, &protocol.HelloReply{
		Version: protocol.Version, MaxFrame: protocol.DefaultMaxFrame, TenantName: "echo",
		ServerVersion: "echo", CompressThreshold: protocol.CompressThreshold, MaxInFlight: 4096,
		Ops: []protocol.Op{protocol.OpHello, protocol.OpPing, protocol.OpSelect, protocol.OpInsert, protocol.OpUpdate, protocol.OpDelete},
	})
	go func() {
		e.runErr = gnet.Run(e, "tcp://"+addr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(loops),
			gnet.WithReusePort(false),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(quietLogger{}))
		select {
		case <-e.ready:
		default:
			close(e.ready)
		}
		close(e.done)
	}()
	<-e.ready
	if e.addr == "" {
		<-e.done
		if e.runErr == nil {
			e.runErr = errors.New("bench: echo engine stopped before listening")
		}
		return nil, e.runErr
	}
	return e, nil
}

// Addr is the address the echo server listens on.
func (e *Echo) Addr() string { return e.addr }

// Stop shuts the engine down and waits for it.
func (e *Echo) Stop() error {
	var err error
	e.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = e.eng.Stop(ctx)
		<-e.done
	})
	return err
}

// OnBoot records the engine and the bound address (the port the kernel
// picked when addr had port 0).
func (e *Echo) OnBoot(eng gnet.Engine) gnet.Action {
	e.eng = eng
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			if a, ok := sa.(*unix.SockaddrInet4); ok {
				e.addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
			} else if a, ok := sa.(*unix.SockaddrInet6); ok {
				e.addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
			}
		}
		unix.Close(fd)
	}
	close(e.ready)
	return gnet.None
}

// OnOpen gives the connection its state.
func (e *Echo) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(&echoConn{})
	return nil, gnet.None
}

// OnTraffic answers every complete frame and writes the answers at once.
func (e *Echo) OnTraffic(c gnet.Conn) gnet.Action {
	st, _ := c.Context().(*echoConn)
	if st == nil {
		return gnet.Close
	}
	out := st.out[:0]
	for {
		hdr, err := c.Peek(4)
		if err != nil {
			break // io.ErrShortBuffer: wait for more bytes
		}
		n, err := protocol.FrameSize(hdr, protocol.DefaultMaxFrame)
		if err != nil {
			return gnet.Close
		}
		if c.InboundBuffered() < n {
			break
		}
		frame, err := c.Peek(n)
		if err != nil {
			if errors.Is(err, io.ErrShortBuffer) {
				break
			}
			return gnet.Close
		}
		h := protocol.ParseHeader(frame)
		op := protocol.Op(h.Op)
		switch {
		case !st.authed && op == protocol.OpHello:
			st.authed = true
			out = append(out, e.hello...)
			// The reply was built with id 0: patch in the request's id.
			putID(out[len(out)-len(e.hello)+6:], h.ID)
		case !st.authed:
			out = protocol.AppendError(out, h.ID, protocol.StatusAuth, "HELLO first")
		case op == protocol.OpSelect:
			out = protocol.AppendResponse(out, h.ID, protocol.StatusOK, e.value)
		case op == protocol.OpInsert || op == protocol.OpUpdate:
			payload := 0
			if len(frame) > protocol.HeaderSize {
				payload = len(frame) - protocol.HeaderSize - 1 - int(frame[protocol.HeaderSize]) - protocol.CoordSize
			}
			out = protocol.AppendResponseHeader(out, h.ID, protocol.StatusOK, 4)
			out = protocol.AppendCount(out, uint32(max(payload, 0)))
		case op == protocol.OpDelete:
			out = protocol.AppendResponseHeader(out, h.ID, protocol.StatusOK, 4)
			out = protocol.AppendCount(out, 0)
		default:
			out = protocol.AppendResponse(out, h.ID, protocol.StatusOK, nil)
		}
		c.Discard(n)
	}
	if len(out) > 0 {
		if _, err := c.Write(out); err != nil {
			return gnet.Close
		}
	}
	if cap(out) > 1<<20 {
		out = nil // drop a buffer grown by a burst of big answers
	}
	st.out = out
	return gnet.None
}

func putID(b []byte, id uint32) {
	b[0], b[1], b[2], b[3] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
}

// quietLogger drops gnet's debug and info lines (its banner would land in
// benchmark output) and sends warnings and errors to slog.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any)          {}
func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Warnf(format string, a ...any)  { slog.Warn("gnet: " + fmt.Sprintf(format, a...)) }
func (quietLogger) Errorf(format string, a ...any) { slog.Error("gnet: " + fmt.Sprintf(format, a...)) }
func (quietLogger) Fatalf(format string, a ...any) { slog.Error("gnet: " + fmt.Sprintf(format, a...)) }
