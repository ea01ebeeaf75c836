package client

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// FuzzResponses feeds arbitrary bytes as the server's answers after a
// valid HELLO reply. Whatever arrives, calls must return (a result or an
// error, never a panic or a hang), and a broken stream must leave the Conn
// broken with ErrClosed.
func FuzzResponses(f *testing.F) {
	f.Add(protocol.AppendResponse(nil, 1, protocol.StatusOK, nil))
	f.Add(protocol.AppendResponse(nil, 2, protocol.StatusOK, []byte("x")))
	f.Add(protocol.AppendError(nil, 1, protocol.StatusBusy, "busy"))
	f.Add(append(protocol.AppendResponse(nil, 1, protocol.StatusOK, nil), protocol.AppendResponse(nil, 2, protocol.StatusOK, []byte("scroll"))...))
	f.Add([]byte{0, 0, 0, 10, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9}) // compressed flag, no codec
	f.Add([]byte{0, 0, 0, 5, 0, 0})                          // length below 6
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})                    // length above max
	f.Add([]byte{0, 0, 0, 6, 0, 0x80, 0, 0, 0, 1})           // unknown flag bit
	f.Fuzz(func(t *testing.T, answers []byte) {
		srv, cli := net.Pipe()
		defer srv.Close()
		go func() {
			buf := make([]byte, 4096)
			// HELLO request in, HELLO reply out, then the fuzz bytes.
			if _, err := srv.Read(buf); err != nil {
				return
			}
			srv.Write(protocol.AppendHelloReply(nil, 0, &protocol.HelloReply{Version: 1, MaxFrame: 1 << 16}))
			go func() {
				for { // drain requests
					if _, err := srv.Read(buf); err != nil {
						return
					}
				}
			}()
			srv.Write(answers)
			srv.Close()
		}()
		dial := func(context.Context, string, string) (net.Conn, error) { return cli, nil }
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := Dial(ctx, "pipe", "tok", WithDialer(dial), WithMaxFrame(1<<16))
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		errc := make(chan error, 2)
		go func() { errc <- c.Ping(ctx) }()
		go func() { _, err := c.Select(ctx, "", phext.Origin); errc <- err }()
		for i := 0; i < 2; i++ {
			err := <-errc
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("call hung")
			}
		}
		// The stream ended: every later call fails with ErrClosed.
		sqtest.CheckFor(t, 5*time.Second, "the conn to break", c.Broken)
		if err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("call after the stream ended: %v", err)
		}
	})
}
