package server

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/phext/sq/internal/sqtest"
)

// TestDiscardSocketBoundedPerCall: a socket holding several MiB of a
// refused body gives up at most directRead to one discardSocket call, so a
// loop round that drops part of it lets the loop's other connections in
// before it drops more; repeated calls drop it all. On the old code one
// call dropped whatever the socket held (up to tcp_rmem's maximum): a
// round of the loop took milliseconds in M4.
func TestDiscardSocketBoundedPerCall(t *testing.T) {
	// A receive buffer set on the listener (so the window scale agreed
	// at the handshake allows it) lets the socket queue several MiB
	// that nobody reads.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20) })
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	snd, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	rcv, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer rcv.Close()
	raw, err := rcv.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	raw.Control(func(f uintptr) { fd = int(f) })
	const body = 8 << 20
	go func() {
		snd.SetWriteDeadline(time.Now().Add(30 * time.Second))
		snd.Write(make([]byte, body))
	}()
	queued := func() int {
		n, _ := unix.IoctlGetInt(fd, unix.SIOCINQ)
		return n
	}
	sqtest.CheckFor(t, 10*time.Second, "more than 2 × directRead queued in the socket", func() bool { return queued() > 2*directRead })
	dropped := discardSocket(fd, body)
	if dropped <= 0 || dropped > directRead {
		t.Fatalf("one call dropped %d bytes of the %d queued, want 1 to %d", dropped, queued(), directRead)
	}
	sqtest.CheckFor(t, 10*time.Second, "the rest dropped", func() bool {
		for {
			d := discardSocket(fd, body)
			if d <= 0 {
				break
			}
			if d > directRead {
				t.Fatalf("one call dropped %d bytes, want at most %d", d, directRead)
			}
			dropped += d
		}
		return dropped == body
	})
}
