package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

func mustDial(t *testing.T, s *fakeServer, opts ...Option) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), s.addr(), s.token, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func coord(t *testing.T, s string) phext.Coordinate {
	t.Helper()
	c, err := phext.ParseCoordinate(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDialHello(t *testing.T) {
	s := startFake(t, nil)
	c := mustDial(t, s)
	h := c.Hello()
	if h.TenantName != "tenant-001" || h.ServerVersion != "fake-1" || h.Codec != protocol.CodecNone {
		t.Fatalf("hello = %+v", h)
	}
}

func TestDialErrors(t *testing.T) {
	s := startFake(t, nil)
	tests := []struct {
		name   string
		token  string
		status protocol.Status
		is     error
	}{
		{name: "bad token", token: "pmb-v1-999-nope", status: protocol.StatusAuth},
		{name: "empty token", token: "", status: StatusNone, is: ErrBadArgument},
		{name: "token too long", token: strings.Repeat("x", 256), status: StatusNone, is: ErrBadArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Dial(context.Background(), s.addr(), tt.token)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if got := StatusOf(err); got != tt.status {
				t.Fatalf("StatusOf(%v) = %v, want %v", err, got, tt.status)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err %v is not %v", err, tt.is)
			}
		})
	}
	t.Run("nothing listening", func(t *testing.T) {
		addr := s.addr()
		s.close()
		_, err := Dial(context.Background(), addr, s.token, WithDialTimeout(2*time.Second))
		if err == nil || StatusOf(err) != StatusNone {
			t.Fatalf("err = %v, want a network error", err)
		}
	})
}

func TestDialTimeoutOnSilentServer(t *testing.T) {
	// A listener that accepts but never answers HELLO.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if nc, err := silent.Accept(); err == nil {
			accepted <- nc
		}
	}()
	start := time.Now()
	_, err = Dial(context.Background(), silent.Addr().String(), "tok", WithDialTimeout(100*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Dial took %v", d)
	}
	(<-accepted).Close()

	// Cancelling a context without a deadline interrupts the HELLO too.
	go func() {
		if nc, err := silent.Accept(); err == nil {
			accepted <- nc
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = Dial(ctx, silent.Addr().String(), "tok", WithDialTimeout(time.Hour))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	(<-accepted).Close()
}

func TestOperations(t *testing.T) {
	s := startFake(t, nil)
	c := mustDial(t, s)
	ctx := context.Background()
	a := coord(t, "1.1.1/1.1.1/1.1.2")
	b := coord(t, "2.1.1/1.1.1/1.1.1")

	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := c.Insert(ctx, "", a, []byte("hello"))
	if err != nil || n != 5 {
		t.Fatalf("Insert = %d, %v", n, err)
	}
	if n, err = c.Insert(ctx, "", a, []byte(" world")); err != nil || n != 6 {
		t.Fatalf("Insert = %d, %v", n, err)
	}
	if got, err := c.Select(ctx, "", a); err != nil || string(got) != "hello world" {
		t.Fatalf("Select = %q, %v", got, err)
	}
	if n, err = c.Update(ctx, "", b, []byte("second")); err != nil || n != 6 {
		t.Fatalf("Update = %d, %v", n, err)
	}
	if got, err := c.Select(ctx, "", coord(t, "9.9.9/9.9.9/9.9.9")); err != nil || len(got) != 0 {
		t.Fatalf("Select absent = %q, %v", got, err)
	}
	toc, err := c.TOC(ctx, "")
	if err != nil || !bytes.Contains(toc, []byte("1.1.1/1.1.1/1.1.2")) {
		t.Fatalf("TOC = %q, %v", toc, err)
	}
	doc, err := c.Get(ctx, "")
	if err != nil || !bytes.Contains(doc, []byte("hello world")) || !bytes.Contains(doc, []byte("second")) {
		t.Fatalf("Get = %q, %v", doc, err)
	}
	sum, err := c.Checksum(ctx, "")
	if err != nil || sum != phext.Checksum(doc) {
		t.Fatalf("Checksum = %q, %v; want %q", sum, err, phext.Checksum(doc))
	}
	if n, err = c.Delete(ctx, "", a); err != nil || n != 11 {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	if n, err = c.Put(ctx, "other", []byte("x\x17y\x01z")); err != nil || n != 3 {
		t.Fatalf("Put = %d, %v", n, err)
	}
	d, err := c.Delta(ctx, "other", []byte("1.1.1/1.1.1/1.1.1: abc\n"))
	if err != nil || string(d) != "delta:1.1.1/1.1.1/1.1.1: abc\n" {
		t.Fatalf("Delta = %q, %v", d, err)
	}
	w, err := c.Where(ctx, []byte("some text"), "checksum", 7)
	if err != nil || w != (phext.Coordinate{2, 7, 9, 1, 1, 1, 1, 1, 1}) {
		t.Fatalf("Where = %v, %v", w, err)
	}
	if w, err = c.Where(ctx, []byte("ab"), "", 0); err != nil || w[0] != 1 || w[1] != phext.DefaultWhereLimit {
		t.Fatalf("Where default = %v, %v", w, err)
	}
	if _, err = c.Where(ctx, nil, "md5", 1); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("Where md5: %v", err)
	}
	names, err := c.List(ctx)
	if err != nil || fmt.Sprint(names) != "[ other]" {
		t.Fatalf("List = %q, %v", names, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Phexts != 2 || st.Quota != 1<<20 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if v, err := c.Version(ctx); err != nil || v != "fake-1" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	if err := c.Compact(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Reload(ctx); err != nil || r != "reloaded 1 tenant" {
		t.Fatalf("Reload = %q, %v", r, err)
	}
}

func TestStatusErrors(t *testing.T) {
	s := startFake(t, nil)
	c := mustDial(t, s)
	ctx := context.Background()
	a := phext.Origin
	tests := []struct {
		name   string
		call   func() error
		status protocol.Status
		sent   bool
	}{
		{name: "delimiter in scroll", call: func() error { _, err := c.Insert(ctx, "", a, []byte("a\x17b")); return err }, status: protocol.StatusBadScroll, sent: true},
		{name: "invalid utf8", call: func() error { _, err := c.Update(ctx, "", a, []byte{0xff}); return err }, status: protocol.StatusBadScroll, sent: true},
		{name: "quota", call: func() error { _, err := c.Insert(ctx, "", a, []byte("over quota")); return err }, status: protocol.StatusQuota, sent: true},
		{name: "bad coordinate", call: func() error { _, err := c.Select(ctx, "", phext.Coordinate{0, 1, 1, 1, 1, 1, 1, 1, 1}); return err }, status: protocol.StatusBadCoord, sent: true},
		{name: "bad name", call: func() error { _, err := c.Select(ctx, ".hidden", a); return err }, status: protocol.StatusBadName},
		{name: "name too long", call: func() error { _, err := c.Get(ctx, strings.Repeat("n", 65)); return err }, status: protocol.StatusBadName},
		{name: "unknown op", call: func() error {
			st, body, err := c.Do(ctx, protocol.Op(0x3F), nil, a, nil, nil)
			if err != nil {
				return err
			}
			return &StatusError{Op: 0x3F, Status: st, Msg: string(body)}
		}, status: protocol.StatusUnknownOp, sent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.requests.Load()
			err := tt.call()
			var se *StatusError
			if !errors.As(err, &se) || se.Status != tt.status || StatusOf(err) != tt.status || !IsStatus(err, tt.status) {
				t.Fatalf("err = %v, want status %v", err, tt.status)
			}
			if !strings.Contains(err.Error(), tt.status.String()) {
				t.Fatalf("message %q does not name %v", err, tt.status)
			}
			if sent := s.requests.Load() != before; sent != tt.sent {
				t.Fatalf("sent = %v, want %v", sent, tt.sent)
			}
			if c.Broken() {
				t.Fatal("an error status broke the connection")
			}
		})
	}
	// Nothing was stored by the refused writes.
	if got, err := c.Select(ctx, "", a); err != nil || len(got) != 0 {
		t.Fatalf("Select after refused writes = %q, %v", got, err)
	}
}

func TestConcurrentPipelining(t *testing.T) {
	s := startFake(t, nil)
	c := mustDial(t, s)
	ctx := context.Background()
	const workers, per = 16, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			at := phext.Coordinate{uint16(w + 1), 1, 1, 1, 1, 1, 1, 1, 1}
			var want []byte
			for i := 0; i < per; i++ {
				piece := fmt.Sprintf("w%d-%d;", w, i)
				if _, err := c.Insert(ctx, "", at, []byte(piece)); err != nil {
					errs <- err
					return
				}
				want = append(want, piece...)
				got, err := c.Select(ctx, "", at)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, want) {
					errs <- fmt.Errorf("worker %d op %d: got %q", w, i, got)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p := c.Pending(); p != 0 {
		t.Fatalf("Pending = %d after all calls returned", p)
	}
}

func TestContextCancel(t *testing.T) {
	gate := make(chan struct{})
	s := startFake(t, func(s *fakeServer) { s.gate = gate })
	c := mustDial(t, s)
	slow := phext.Coordinate{999, 1, 1, 1, 1, 1, 1, 1, 1}

	t.Run("deadline while waiting", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Select(ctx, "", slow)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
		if StatusOf(err) != StatusNone {
			t.Fatalf("a context error carries status %v", StatusOf(err))
		}
	})
	t.Run("cancelled before sending", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		before := s.requests.Load()
		if err := c.Ping(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if s.requests.Load() != before {
			t.Fatal("a cancelled call was sent")
		}
	})
	// The abandoned SELECT is still first in line: a later call waits for
	// it, then gets its own answer, not the abandoned one.
	done := make(chan error, 1)
	go func() {
		_, err := c.Insert(context.Background(), "", phext.Origin, []byte("after"))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("call overtook the gated one: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, err := c.Select(context.Background(), "", phext.Origin); err != nil || string(got) != "after" {
		t.Fatalf("Select = %q, %v", got, err)
	}
	if c.Broken() || c.Pending() != 0 {
		t.Fatalf("broken=%v pending=%d", c.Broken(), c.Pending())
	}
}

func TestDefaultTimeoutOption(t *testing.T) {
	gate := make(chan struct{})
	s := startFake(t, func(s *fakeServer) { s.gate = gate })
	defer close(gate)
	c := mustDial(t, s, WithTimeout(30*time.Millisecond))
	start := time.Now()
	_, err := c.Select(context.Background(), "", phext.Coordinate{999, 1, 1, 1, 1, 1, 1, 1, 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the default timeout to apply", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestBrokenConnection(t *testing.T) {
	s := startFake(t, func(s *fakeServer) { s.closeOnOp.Store(uint32(protocol.OpVersion)) })
	c := mustDial(t, s)
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := c.Version(ctx)
	if !errors.Is(err, ErrClosed) || StatusOf(err) != StatusNone {
		t.Fatalf("err = %v, want ErrClosed and no status", err)
	}
	if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Logf("cause: %v", err) // EOF or connection reset, depending on timing
	}
	if !c.Broken() || !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Broken=%v Err=%v", c.Broken(), c.Err())
	}
	if err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("later call: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCloseFailsPendingCalls(t *testing.T) {
	gate := make(chan struct{})
	s := startFake(t, func(s *fakeServer) { s.gate = gate })
	defer close(gate)
	c := mustDial(t, s)
	errc := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			_, err := c.Select(context.Background(), "", phext.Coordinate{999, 1, 1, 1, 1, 1, 1, 1, 1})
			errc <- err
		}()
	}
	sqtest.CheckFor(t, time.Second, "4 pending calls", func() bool { return c.Pending() == 4 })
	c.Close()
	for i := 0; i < 4; i++ {
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("pending call: %v", err)
		}
	}
	if err := c.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestResponseIDMismatch(t *testing.T) {
	s := startFake(t, nil)
	c := mustDial(t, s)
	s.badID.Store(true)
	err := c.Ping(context.Background())
	if !errors.Is(err, ErrProtocol) || !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrProtocol and ErrClosed", err)
	}
	if !c.Broken() {
		t.Fatal("connection still usable after an id mismatch")
	}
}

func TestUnsolicitedErrorKeepsStatus(t *testing.T) {
	s := startFake(t, func(s *fakeServer) { s.drainAfterHello = true })
	c := mustDial(t, s)
	sqtest.CheckFor(t, 2*time.Second, "the conn to break", c.Broken)
	err := c.Ping(context.Background())
	if !errors.Is(err, ErrClosed) || StatusOf(err) != protocol.StatusShuttingDown {
		t.Fatalf("err = %v (status %v), want ErrClosed with SHUTTING_DOWN", err, StatusOf(err))
	}
}

func TestCompression(t *testing.T) {
	for _, tc := range []struct {
		name  string
		allow uint8
		codec uint8
	}{
		{name: "zstd", allow: protocol.AcceptZstd, codec: protocol.CodecZstd},
		{name: "s2", allow: protocol.AcceptS2 | protocol.AcceptZstd, codec: protocol.CodecS2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startFake(t, func(s *fakeServer) { s.allow = tc.allow })
			c := mustDial(t, s)
			if c.Hello().Codec != tc.codec {
				t.Fatalf("codec = %d, want %d", c.Hello().Codec, tc.codec)
			}
			ctx := context.Background()
			big := bytes.Repeat([]byte("phext compresses well. "), 1000)
			if _, err := c.Update(ctx, "", phext.Origin, big); err != nil {
				t.Fatal(err)
			}
			if s.compressedIn.Load() != 1 {
				t.Fatalf("compressed requests = %d, want 1", s.compressedIn.Load())
			}
			if _, err := c.Update(ctx, "", phext.Origin, []byte("small")); err != nil {
				t.Fatal(err)
			}
			if s.compressedIn.Load() != 1 {
				t.Fatal("a small body was compressed")
			}
			c.Update(ctx, "", phext.Origin, big)
			got, err := c.Select(ctx, "", phext.Origin)
			if err != nil || !bytes.Equal(got, big) {
				t.Fatalf("Select of a compressed answer: %d bytes, %v", len(got), err)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		s := startFake(t, func(s *fakeServer) { s.allow = protocol.AcceptZstd | protocol.AcceptS2 })
		c := mustDial(t, s, WithCompression(false))
		if c.Hello().Codec != protocol.CodecNone {
			t.Fatalf("codec = %d with compression off", c.Hello().Codec)
		}
	})
}

func TestTooLargeRefusedLocally(t *testing.T) {
	s := startFake(t, func(s *fakeServer) { s.maxFrame = 1024 })
	c := mustDial(t, s)
	before := s.requests.Load()
	_, err := c.Insert(context.Background(), "", phext.Origin, bytes.Repeat([]byte("x"), 2000))
	if StatusOf(err) != protocol.StatusTooLarge {
		t.Fatalf("err = %v, want TOO_LARGE", err)
	}
	if s.requests.Load() != before || c.Broken() {
		t.Fatal("oversized request was sent or broke the connection")
	}
	if _, err := c.Insert(context.Background(), "", phext.Origin, bytes.Repeat([]byte("x"), 900)); err != nil {
		t.Fatal(err)
	}
}

func TestPool(t *testing.T) {
	s := startFake(t, nil)
	ctx := context.Background()
	p, err := NewPool(ctx, s.addr(), s.token, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			at := phext.Coordinate{uint16(w + 1), 1, 1, 1, 1, 1, 1, 1, 1}
			for i := 0; i < 50; i++ {
				if _, err := p.Update(ctx, "", at, []byte(fmt.Sprint(i))); err != nil {
					t.Error(err)
					return
				}
				if got, err := p.Select(ctx, "", at); err != nil || string(got) != fmt.Sprint(i) {
					t.Errorf("Select = %q, %v", got, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	used := map[*Conn]bool{}
	for i := 0; i < 6; i++ {
		used[p.Get()] = true
	}
	if len(used) != 3 {
		t.Fatalf("Get spread over %d connections, want 3", len(used))
	}

	// Break every connection: calls fail until the caller redials.
	s.dropConns()
	sqtest.CheckFor(t, 2*time.Second, "every pooled conn to break", func() bool {
		for _, c := range p.Conns() {
			if !c.Broken() {
				return false
			}
		}
		return true
	})
	if err := p.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping on a broken pool: %v", err)
	}
	n, err := p.Redial(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Redial = %d, %v", n, err)
	}
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := p.Version(ctx); err != nil || v != "fake-1" {
		t.Fatalf("Version = %q, %v", v, err)
	}
}

// TestNewRawConnOwnHandshake: a RawConn over a connection that said no
// HELLO lets the caller send its own (a wrong token is answered AUTH), and
// after SetHello it compresses and decompresses with the codec the server
// chose.
func TestNewRawConnOwnHandshake(t *testing.T) {
	s := startFake(t, func(s *fakeServer) { s.allow = protocol.AcceptS2 })
	dial := func() *RawConn {
		nc, err := net.DialTimeout("tcp", s.addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		return NewRawConn(nc)
	}
	var resp protocol.Response
	bad := dial()
	bad.WriteFrames(protocol.AppendHello(nil, 1, []byte("pmb-v1-999-wrong"), protocol.AcceptS2))
	if err := bad.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := bad.Recv(&resp); err != nil || resp.Status != protocol.StatusAuth {
		t.Fatalf("wrong token: status %v, err %v; want AUTH", resp.Status, err)
	}

	rc := dial()
	rc.WriteFrames(protocol.AppendHello(nil, 1, []byte(s.token), protocol.AcceptS2))
	rc.Flush()
	if err := rc.Recv(&resp); err != nil || resp.Status != protocol.StatusOK {
		t.Fatalf("HELLO: status %v, err %v", resp.Status, err)
	}
	hr, err := protocol.DecodeHelloReply(resp.Body)
	if err != nil || hr.Codec != protocol.CodecS2 {
		t.Fatalf("HELLO reply: codec %d, err %v; want s2", hr.Codec, err)
	}
	rc.SetHello(hr)
	if rc.Hello().TenantName != "tenant-001" {
		t.Fatalf("Hello() = %+v", rc.Hello())
	}
	big := bytes.Repeat([]byte("compressible "), protocol.CompressThreshold)
	c := phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 1}
	rc.Send(protocol.OpInsert, []byte("own"), c, big)
	rc.Send(protocol.OpSelect, []byte("own"), c, nil)
	rc.Flush()
	if err := rc.Recv(&resp); err != nil || resp.Status != protocol.StatusOK {
		t.Fatalf("INSERT: status %v, err %v", resp.Status, err)
	}
	if err := rc.Recv(&resp); err != nil || !bytes.Equal(resp.Body, big) {
		t.Fatalf("SELECT: %d bytes back, err %v; want the %d sent", len(resp.Body), err, len(big))
	}
	if s.compressedIn.Load() == 0 {
		t.Fatal("the large INSERT was not sent compressed")
	}
}

func TestRawConnPipelined(t *testing.T) {
	s := startFake(t, func(s *fakeServer) { s.allow = protocol.AcceptS2 })
	rc, err := DialRaw(context.Background(), s.addr(), s.token)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	const depth, total = 8, 100
	var ids []uint32
	sent := 0
	send := func() {
		text := []byte(fmt.Sprint(sent))
		id, err := rc.Send(protocol.OpUpdate, []byte("raw"), phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, uint16(sent + 1)}, text)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		sent++
	}
	for sent < depth {
		send()
	}
	if err := rc.Flush(); err != nil {
		t.Fatal(err)
	}
	var resp protocol.Response
	for got := 0; got < total; got++ {
		if err := rc.Recv(&resp); err != nil {
			t.Fatal(err)
		}
		if resp.ID != ids[got] || resp.Status != protocol.StatusOK {
			t.Fatalf("answer %d: id %d status %v, want id %d OK", got, resp.ID, resp.Status, ids[got])
		}
		if n, _ := protocol.DecodeCount(resp.Body); int(n) != len(fmt.Sprint(got)) {
			t.Fatalf("answer %d: count %d", got, n)
		}
		if sent < total {
			send()
			rc.Flush()
		}
	}
	// Pre-built frames go out as given.
	frame := protocol.AppendRequest(nil, protocol.OpSelect, 77, []byte("raw"), phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 5}, nil)
	if err := rc.WriteFrames(frame); err != nil {
		t.Fatal(err)
	}
	rc.Flush()
	if err := rc.Recv(&resp); err != nil || resp.ID != 77 || string(resp.Body) != "4" {
		t.Fatalf("pre-built SELECT: id %d body %q err %v", resp.ID, resp.Body, err)
	}
}

func TestDoAllocations(t *testing.T) {
	s := startFake(t, nil)
	c := mustDial(t, s)
	ctx := context.Background()
	name := []byte("bench")
	text := bytes.Repeat([]byte("a"), 1024)
	if _, err := c.Update(ctx, "bench", phext.Origin, text); err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 0, 4096)
	// Warm the pools.
	for i := 0; i < 10; i++ {
		c.Do(ctx, protocol.OpSelect, name, phext.Origin, nil, dst[:0])
	}
	// The count is process wide, so it includes the fake server's
	// goroutine; both sides are meant to be allocation-free here.
	allocs := testing.AllocsPerRun(200, func() {
		st, out, err := c.Do(ctx, protocol.OpSelect, name, phext.Origin, nil, dst[:0])
		if err != nil || st != protocol.StatusOK || len(out) != 1024 {
			t.Fatalf("Do = %v, %d bytes, %v", st, len(out), err)
		}
	})
	if allocs > 0.5 {
		t.Fatalf("Do SELECT allocates %.1f per call, want 0", allocs)
	}
}

// TestDialHTTPServerSaysRESTPort: an HTTP server answering HELLO (as SQ's
// hand-written parser or a proxy does) is recognised at once.
func TestDialHTTPServerSaysRESTPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.Read(make([]byte, 512))
		io.WriteString(nc, "HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nBad Request")
	}()
	start := time.Now()
	_, err = Dial(context.Background(), ln.Addr().String(), "pmb-v1-001-x", WithDialTimeout(30*time.Second))
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Dial took %v", time.Since(start))
	}
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "is this the REST port?") {
		t.Fatalf("err = %v, want ErrProtocol asking about the REST port", err)
	}
}
