package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/server"
)

// TestRESTConnLimit: the REST listener keeps at most Options.MaxConns
// connections open; one past it is answered 503 with Retry-After at once,
// before its request is read, and closed, and once a connection closes
// the next is served again (the REST port had no bound: every dialer got
// a goroutine and net/http's buffers).
func TestRESTConnLimit(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	ln := serveFront(t, e.testEnv, Options{MaxConns: 2})
	addr := ln.Addr().String()
	fl := ln.(*frontListener)
	// Two idle connections take the bound.
	var held []net.Conn
	for range 2 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	sqtest.CheckFor(t, 5*time.Second, "two connections open", func() bool { return fl.open.Load() == 2 })

	get := func() (*http.Response, string, error) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: sq\r\nConnection: close\r\n\r\n"); err != nil {
			return nil, "", err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return nil, "", err
		}
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	resp, body, err := get()
	if err != nil {
		t.Fatalf("a connection past the bound: %v (want a 503)", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !resp.Close ||
		!strings.Contains(body, "too many open REST connections") {
		t.Fatalf("a connection past the bound: %d %q, Retry-After %q, close %v", resp.StatusCode, body, resp.Header.Get("Retry-After"), resp.Close)
	}
	if got := fl.refused.Load(); got != 1 {
		t.Fatalf("%d connections counted refused, want 1", got)
	}
	if m := fl.open.Load(); m != 2 {
		t.Fatalf("%d connections counted open after a refusal, want 2", m)
	}
	// One held connection goes: the next is served.
	held[0].Close()
	sqtest.CheckForErr(t, 5*time.Second, func() error {
		resp, _, err := get()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = &statusError{resp.StatusCode}
		}
		return err
	})
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + http.StatusText(e.code) }

// TestRESTAuthAllWait: every bad-token answer past the address's budget
// waits its delay, however many wait (here two with MaxConns 8, whose
// MaxConns/8 = 1 slot of waiting refusals they used to take: past it the
// second was answered at once, which let one client switch the guessing
// delay off for everyone; server/authlimit.go); a waiting answer leaves
// the count when its client leaves, and ends when the server's Shutdown
// begins.
func TestRESTAuthAllWait(t *testing.T) {
	e := startHTTPOnly(t, envOptions{opts: server.Options{AuthFailBudget: 1, MaxConns: 8}}, Options{})
	// The address's failures so far: the next one waits the most (5 s).
	closed := make(chan struct{})
	close(closed)
	for range 25 {
		e.srv.AuthRefused("127.0.0.1").Wait(nil, closed)
	}
	bad := func(ctx context.Context) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", e.hs.URL+"/api/v2/version", nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer wrong")
		return e.hs.Client().Do(req)
	}
	// badLater sends a bad token on its own goroutine; the channel gets
	// the outcome.
	badLater := func(ctx context.Context) <-chan error {
		done := make(chan error, 1)
		go func() {
			resp, err := bad(ctx)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		return done
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := badLater(ctx)
	sqtest.CheckFor(t, 5*time.Second, "the first bad token waiting", func() bool { return e.srv.Stats().RefusalsWaiting == 1 })

	// The second waits too (the old code answered it at once, closing).
	ctx2, cancel2 := context.WithCancel(context.Background())
	second := badLater(ctx2)
	sqtest.CheckFor(t, 5*time.Second, "the second bad token waiting", func() bool { return e.srv.Stats().RefusalsWaiting == 2 })
	select {
	case err := <-second:
		t.Fatalf("the second bad token answered before its delay: %v", err)
	case <-time.After(time.Second):
	}
	cancel2()
	<-second

	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer tcancel()
	// The waiting ones' clients leave: the count is 0 again.
	cancel()
	<-first
	sqtest.CheckFor(t, 5*time.Second, "the count back to 0", func() bool { return e.srv.Stats().RefusalsWaiting == 0 })

	// A waiting answer ends when the server's Shutdown begins.
	start := time.Now()
	third := badLater(tctx)
	sqtest.CheckFor(t, 5*time.Second, "the third bad token waiting", func() bool { return e.srv.Stats().RefusalsWaiting == 1 })
	e.drain()
	if err := <-third; err != nil {
		t.Fatalf("a waiting bad token at shutdown: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("a waiting bad token was answered %v after it came, the server shutting down; want at once (its delay is 5 s)", d)
	}
}

// TestRESTDelayedAuthWithinWriteTimeout: a bad token's 401, delayed past
// its address's budget, still reaches the client when --frame-timeout is
// short: the REST server must write an answer within WriteTimeout (twice
// the frame timeout) of the request's head, so the delay is at most half
// the frame timeout, as a held limit refusal's is. Before, a delay of
// 500 ms against a 200 ms WriteTimeout broke the connection instead of
// answering 401 (up to 5 s against --frame-timeout < 2.5 s).
func TestRESTDelayedAuthWithinWriteTimeout(t *testing.T) {
	e := startEnv(t, envOptions{noEngine: true, opts: server.Options{AuthFailBudget: 1, FrameTimeout: 100 * time.Millisecond}})
	ln := serveFront(t, e, Options{})
	closed := make(chan struct{})
	close(closed)
	// The budget's one failure and one past it: the next waits 500 ms.
	for range 2 {
		e.srv.AuthRefused("127.0.0.1").Wait(nil, closed)
	}
	req, err := http.NewRequest("GET", "http://"+ln.Addr().String()+"/api/v2/version", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer wrong")
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("a delayed bad token: %v; want a 401", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a delayed bad token: %d, want 401", resp.StatusCode)
	}
	if got := e.srv.Stats().AuthFailures; got != 3 {
		t.Fatalf("%d failures counted, want 3", got)
	}
}

// TestRESTConnCountErrorPaths: every way a REST connection ends gives its
// place in MaxConns back (frontConn.Close, once): a binary frame at the
// REST port (answered by the front, which closes the socket under
// net/http), an HTTP/2 preface, a head cut short, bytes that are no
// request, a keep-alive or a bad token whose client leaves, and many of
// these at once past the bound (refused with 503 or closed). A place
// that is never given back would refuse every connection once MaxConns
// of them leaked.
func TestRESTConnCountErrorPaths(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	ln := serveFront(t, e.testEnv, Options{MaxConns: 4})
	addr := ln.Addr().String()
	fl := ln.(*frontListener)
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	served := func(when string) {
		t.Helper()
		sqtest.CheckFor(t, 5*time.Second, when+": no connection counted open", func() bool {
			return fl.open.Load() == 0 && fl.refusing.Load() == 0
		})
		// The connections closed by the client may still wait in the
		// accept queue: accepted, they count as open until net/http sees
		// their close, and a request meanwhile may meet the bound (a 503,
		// or a reset as its request is left unread). It is served once
		// they are gone.
		sqtest.CheckForErr(t, 5*time.Second, func() error {
			c := dial()
			defer c.Close()
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: sq\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: a request after: %v %v", when, resp, err)
			}
			return nil
		})
	}
	for _, tc := range []struct {
		name, send string
		answered   bool // the server answers and closes: read to the end
	}{
		{name: "binary-frame", send: "\x00\x00\x00\x10\x01\x00\x00\x00\x00\x07abcdefgh", answered: true},
		{name: "http2-preface", send: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", answered: true},
		{name: "head-cut-short", send: "GET /healthz HTTP/1.1\r\nHo"},
		{name: "no-request", send: "hello there\r\n\r\n", answered: true},
		{name: "keep-alive-left", send: "GET /healthz HTTP/1.1\r\nHost: sq\r\n\r\n"},
		{name: "bad-token-left", send: "GET /api/v2/version HTTP/1.1\r\nHost: sq\r\nAuthorization: Bearer wrong\r\n\r\n"},
	} {
		for range 2 * int(fl.maxConns) {
			c := dial()
			io.WriteString(c, tc.send)
			if tc.answered {
				io.Copy(io.Discard, c)
			}
			c.Close()
		}
		served(tc.name)
	}
	// Many at once, most past the bound.
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if (g+i)%2 == 0 {
					io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: sq\r\nConnection: close\r\n\r\n")
					io.Copy(io.Discard, c)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	if fl.refused.Load() == 0 {
		t.Error("no connection refused past the bound")
	}
	served("many at once")
}

// TestRESTMaxConnsZeroIsDefault: Options.MaxConns 0 (sq host
// --http-max-conns 0) bounds the listener at DefaultMaxConns, as leaving
// it out does; a negative one leaves it unbounded.
func TestRESTMaxConnsZeroIsDefault(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	for _, tc := range []struct {
		name     string
		maxConns int
		want     int64 // frontListener.maxConns; 0: no bound
	}{
		{name: "zero", maxConns: 0, want: DefaultMaxConns},
		{name: "set", maxConns: 7, want: 7},
		{name: "negative", maxConns: -1, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := serveFront(t, e.testEnv, Options{MaxConns: tc.maxConns}).(*frontListener)
			if fl.maxConns != tc.want {
				t.Errorf("MaxConns %d: bound %d, want %d", tc.maxConns, fl.maxConns, tc.want)
			}
		})
	}
}

// TestRESTDepartedClientLeavesDelayedAuth: a bad token past its address's
// budget waits 5 s for its 401; when its client leaves first, the wait ends
// and its place in MaxConns comes back, long before the answer was due,
// also for a request whose body the handler never read (net/http ends a
// request's context at its client's close only once the body is read: on
// the old code such a place was held the whole 5 s).
func TestRESTDepartedClientLeavesDelayedAuth(t *testing.T) {
	e := startEnv(t, envOptions{noEngine: true, opts: server.Options{AuthFailBudget: 1}})
	fl := serveFront(t, e, Options{MaxConns: 4}).(*frontListener)
	closed := make(chan struct{})
	close(closed)
	for range 25 {
		e.srv.AuthRefused("127.0.0.1").Wait(nil, closed) // the next one waits 5 s
	}
	for _, tc := range []struct {
		name, req string
	}{
		{name: "no-body", req: "GET /api/v2/select?p=x&c=1.1.1/1.1.1/1.1.1 HTTP/1.1\r\nHost: sq\r\nAuthorization: Bearer wrong\r\n\r\n"},
		{name: "body-unread", req: "POST /api/v2/insert?p=x&c=1.1.1/1.1.1/1.1.1 HTTP/1.1\r\nHost: sq\r\nAuthorization: Bearer wrong\r\nContent-Length: 10\r\n\r\n0123456789"},
		{name: "body-cut-short", req: "POST /api/v2/insert?p=x&c=1.1.1/1.1.1/1.1.1 HTTP/1.1\r\nHost: sq\r\nAuthorization: Bearer wrong\r\nContent-Length: 100000\r\n\r\n0123456789"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", fl.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			// Its 401 is due 5 s after the request is sent, no earlier
			// than due.
			due := time.Now().Add(5 * time.Second)
			io.WriteString(c, tc.req)
			sqtest.CheckFor(t, 4*time.Second, "the answer waiting", func() bool { return e.srv.Stats().RefusalsWaiting == 1 })
			c.Close()
			sqtest.CheckFor(t, time.Until(due.Add(-time.Second)), "the place back before the answer was due", func() bool {
				return fl.open.Load() == 0 && e.srv.Stats().RefusalsWaiting == 0
			})
		})
	}
}
