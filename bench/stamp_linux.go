package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stampConn is a TCP connection that keeps, for what its latest Read
// returned, the time the kernel received it (SO_TIMESTAMPNS: the data's
// last segment read, stamped when the sender's write(2) put it through
// loopback). The watch scenario's watchers and writers read through it,
// so an event (and a write's answer) is timed twice: at its arrival in the
// bench's socket (server and kernel only) and when the bench's goroutine
// gets a core to read it (the load generator's own wait on the cores it
// shares with the server). Read, like net.Conn's, is for one goroutine at
// a time; Stamp belongs to the reading goroutine.
type stampConn struct {
	*net.TCPConn
	raw syscall.RawConn

	// One Read's arguments and results, for recv (a method value made once,
	// so a Read allocates nothing).
	p      []byte
	n      int
	err    error
	recvFn func(fd uintptr) bool
	oob    [8]uint64 // control messages; uint64s keep the cmsghdr aligned
	iov    unix.Iovec
	msg    unix.Msghdr // recvmsg's arguments, here so that they need no allocation
	stamp  int64       // unix ns of the latest Read's data; 0: not stamped
}

// stampsSupported says whether watchers can time arrivals (stampConn).
const stampsSupported = true

// dialStamped dials a TCP connection with receive timestamps on.
func dialStamped(ctx context.Context, network, addr string) (*stampConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return nil, errors.New("bench: receive timestamps need a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		tc.Close()
		return nil, err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		tc.Close()
		return nil, errors.Join(err, serr)
	}
	c := &stampConn{TCPConn: tc, raw: raw}
	c.recvFn = c.recv
	return c, nil
}

// Read reads like net.Conn's Read and records the data's arrival (Stamp).
func (c *stampConn) Read(p []byte) (int, error) {
	c.p = p
	if err := c.raw.Read(c.recvFn); err != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	c.p = nil
	return c.n, c.err
}

// Stamp is the kernel's receive time (unix ns) of the data the latest Read
// returned, 0 when it carried none (the kernel turns timestamps on a moment
// after the first socket of the machine asks: data received before is not
// stamped). For TCP it is that of the last segment
// the Read consumed, so for every byte of that Read it is at or after the
// byte's own arrival: latencies measured to it are upper bounds.
func (c *stampConn) Stamp() int64 { return c.stamp }

// recv is one recvmsg(2); false asks the poller to wait for readiness.
func (c *stampConn) recv(fd uintptr) bool {
	oob := unsafe.Slice((*byte)(unsafe.Pointer(&c.oob[0])), len(c.oob)*8)
	if len(c.p) == 0 {
		c.n, c.err = 0, nil
		return true
	}
	c.iov.Base = &c.p[0]
	c.iov.SetLen(len(c.p))
	defer func() { c.iov.Base, c.msg.Iov, c.msg.Control = nil, nil, nil }()
	for {
		// unix.Recvmsg would allocate its source address each call.
		c.msg = unix.Msghdr{Iov: &c.iov, Control: &oob[0]}
		c.msg.SetIovlen(1)
		c.msg.SetControllen(len(oob))
		r, _, errno := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&c.msg)), 0)
		n, oobn := int(r), int(c.msg.Controllen)
		var err error
		if errno != 0 {
			err = errno
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			c.n, c.err = 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("recvmsg", err)}
		case n == 0 && len(c.p) > 0:
			c.n, c.err = 0, io.EOF
		default:
			c.n, c.err = n, nil
			c.stamp = rxStamp(oob[:oobn])
		}
		return true
	}
}

// rxStamp returns the SCM_TIMESTAMPNS time in a recvmsg's control data
// (aligned as the kernel wrote it), or 0.
func rxStamp(oob []byte) int64 {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			return ts.Nano()
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}
