package bench

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestStampConn: a stamped connection reads what was sent, its Stamp lies
// between the peer's write and the Read's return (the kernel's receipt,
// not the reader's), a Read allocates nothing, and the peer's close is
// io.EOF.
func TestStampConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := dialStamped(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	buf := make([]byte, 64)
	// The kernel turns receive timestamps on for the first socket that asks
	// a moment later (net_enable_timestamp defers it to a work queue):
	// until then reads carry none.
	for deadline := time.Now().Add(5 * time.Second); c.Stamp() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no read carried a receive timestamp in 5 s")
		}
		if _, err := peer.Write([]byte("w")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now().UnixNano()
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the data waits in the socket
	n, err := c.Read(buf)
	after := time.Now().UnixNano()
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read: %q, %v", buf[:n], err)
	}
	if s := c.Stamp(); s < before || s > after-40*int64(time.Millisecond) {
		t.Fatalf("stamp %d: want the arrival, in [%d, %d] (the read returned at %d)", s, before, after-40*int64(time.Millisecond), after)
	}

	one := []byte("x")
	if a := testing.AllocsPerRun(100, func() {
		if _, err := peer.Write(one); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("a stamped Read allocates %v times", a)
	}

	if err := c.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); err == nil {
		t.Fatal("Read past its deadline returned no error")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v, want a timeout", err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	if n, err := c.Read(buf); err != io.EOF {
		t.Fatalf("Read after the peer's close: %d, %v, want io.EOF", n, err)
	}
}
