package httpapi

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
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

// TestRESTAuthWaitsBounded: bad-token answers waiting their delay take the
// server-wide slots of waiting refusals that delayed failed HELLOs take
// (MaxConns/8: one here); past them the 401 goes out at once with
// Connection: close, and a waiting answer gives its slot back when its
// client leaves (REST delayed every bad token past the address's budget,
// without a bound: each held a connection and a goroutine for up to 5 s).
func TestRESTAuthWaitsBounded(t *testing.T) {
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
	sqtest.CheckFor(t, 5*time.Second, "the first bad token counted", func() bool { return e.srv.Stats().AuthFailures == 26 })
	// Its wait's slot is taken right after it is counted (the old code
	// took none: then it goes on without).
	for end := time.Now().Add(time.Second); e.srv.Stats().RefusalsWaiting != 1 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}

	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer tcancel()
	start := time.Now()
	resp, err := bad(tctx)
	if err != nil {
		t.Fatalf("a bad token with no slot to wait in: %v", err)
	}
	resp.Body.Close()
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("a bad token with no slot to wait in was answered after %v; want at once (its delay is 5 s)", d)
	}
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
		t.Errorf("a bad token with no slot to wait in: %d, close %v; want 401 with Connection: close", resp.StatusCode, resp.Close)
	}
	// The waiting one's client leaves: its slot is free again.
	cancel()
	<-first
	sqtest.CheckFor(t, 5*time.Second, "the slot given back", func() bool { return e.srv.Stats().RefusalsWaiting == 0 })

	// A waiting answer ends when the server's Shutdown begins.
	start = time.Now()
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
