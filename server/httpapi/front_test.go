package httpapi

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// startFront starts the binary engine and StartHTTP (with its front) on
// random loopback ports and returns the env and the REST address.
func startFront(t *testing.T) (*testEnv, string) {
	t.Helper()
	e := startEnv(t, envOptions{})
	return e, serveFront(t, e, Options{}).Addr().String()
}

// serveFront serves e's HTTP API with its front (Start, with o and e's
// config) on a random loopback port until the test ends and returns the
// listener.
func serveFront(t *testing.T, e *testEnv, o Options) net.Listener {
	t.Helper()
	o.ConfigPath = e.cfgPath
	hs, ln, err := Start(e.srv, "127.0.0.1:0", &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
	})
	return ln
}

func TestBinaryClientAtRESTPortFailsFast(t *testing.T) {
	e, restAddr := startFront(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := client.Dial(ctx, restAddr, e.tokens["alpha"])
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Dial took %v", took)
	}
	var se *client.StatusError
	if !errors.As(err, &se) || se.Status != protocol.StatusBadFrame {
		t.Fatalf("err = %v, want a BAD_FRAME StatusError", err)
	}
	if !strings.Contains(se.Msg, "is this the REST port?") || !strings.Contains(se.Msg, e.srv.Addr()) {
		t.Fatalf("message %q does not say REST port and name %s", se.Msg, e.srv.Addr())
	}
	// The REST port still serves HTTP afterwards.
	if code, body := rawHTTP(t, restAddr, "GET /api/v2/version HTTP/1.1\r\nHost: x\r\nX-SQ-API-Key: "+e.tokens["alpha"]+"\r\n\r\n"); code != 200 || body != server.Version {
		t.Fatalf("version: %d %q", code, body)
	}
}

// rawHTTP sends raw bytes as one request on a new connection and returns
// the answer's code and body.
func rawHTTP(t *testing.T, addr, raw string) (int, string) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFrontToleratesSQRequests sends what SQ's own parser served and
// net/http alone refuses with 400.
func TestFrontToleratesSQRequests(t *testing.T) {
	e, restAddr := startFront(t)
	tok := e.tokens["alpha"]
	for _, tc := range []struct {
		name string
		raw  string
		code int
		body string
	}{
		{name: "HTTP/1.1 without Host", raw: "GET /api/v2/update?p=front&c=1.1.1/1.1.1/1.1.1&s=no+host HTTP/1.1\r\nX-SQ-API-Key: " + tok + "\r\n\r\n",
			code: 200, body: "Updated 7 bytes"},
		{name: "raw space in the query", raw: "GET /api/v2/update?p=front&c=1.1.1/1.1.1/1.1.2&s=hello world HTTP/1.1\r\nHost: x\r\nX-SQ-API-Key: " + tok + "\r\n\r\n",
			code: 200, body: "Updated 11 bytes"},
		{name: "raw tab, no Host, bare LF", raw: "GET /api/v2/update?p=front&c=1.1.1/1.1.1/1.1.3&s=a\tb c HTTP/1.1\nAuthorization: " + tok + "\n\n",
			code: 200, body: "Updated 5 bytes"},
		{name: "POST body kept", raw: "POST /api/v2/insert?p=front&c=1.1.1/1.1.1/1.1.2&x=a b HTTP/1.1\r\nX-SQ-API-Key: " + tok + "\r\nContent-Length: 4\r\n\r\n!!!!",
			code: 200, body: "Inserted 4 bytes"},
		{name: "HTTP/1.0 without Host", raw: "GET /api/v2/select?p=front&c=1.1.1/1.1.1/1.1.1 HTTP/1.0\r\nX-SQ-API-Key: " + tok + "\r\n\r\n",
			code: 200, body: "no host"},
		{name: "still 401 without a token", raw: "GET /api/v2/select?p=front HTTP/1.1\r\n\r\n", code: 401, body: "Unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := rawHTTP(t, restAddr, tc.raw)
			if code != tc.code || body != tc.body {
				t.Fatalf("got %d %q, want %d %q", code, body, tc.code, tc.body)
			}
		})
	}
	c := e.dial("alpha")
	for coord, want := range map[string]string{
		"1.1.1/1.1.1/1.1.2": "hello world!!!!",
		"1.1.1/1.1.1/1.1.3": "a\tb c",
	} {
		if got := c.ok(protocol.OpSelect, "front", mustCoord(t, coord), nil); string(got) != want {
			t.Fatalf("%s = %q, want %q", coord, got, want)
		}
	}
}

func TestRepairHead(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{name: "untouched", in: "GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n", want: "GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n"},
		{name: "host any case", in: "GET /a HTTP/1.1\r\nhOsT: h\r\n\r\n", want: "GET /a HTTP/1.1\r\nhOsT: h\r\n\r\n"},
		{name: "space and tab", in: "GET /a?s=x y\tz HTTP/1.1\r\nHost: h\r\n\r\nBODY", want: "GET /a?s=x%20y%09z HTTP/1.1\r\nHost: h\r\n\r\nBODY"},
		{name: "host added", in: "GET /a HTTP/1.1\r\nX: y\r\n\r\n", want: "GET /a HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX: y\r\n\r\n"},
		{name: "HTTP/1.0 needs no host", in: "GET /a HTTP/1.0\r\n\r\n", want: "GET /a HTTP/1.0\r\n\r\n"},
		{name: "not HTTP/1.x", in: "GET /a b\r\n\r\n", want: "GET /a b\r\n\r\n"},
		{name: "X-Host is not Host", in: "GET /a HTTP/1.1\r\nX-Host: h\r\n\r\n", want: "GET /a HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-Host: h\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := headEnd([]byte(tc.in))
			if i < 0 {
				t.Fatal("no head end")
			}
			if got := string(repairHead([]byte(tc.in[:i]), []byte(tc.in[i:]), "127.0.0.1:9")); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
