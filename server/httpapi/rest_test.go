package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// restEnv is a started server (binary protocol on a random port) with its
// HTTP API behind an httptest server.
type restEnv struct {
	*testEnv
	api *httpAPI
	hs  *httptest.Server
}

func startREST(t *testing.T, eo envOptions, ho Options) *restEnv {
	t.Helper()
	return restOver(t, startEnv(t, eo), ho)
}

// startHTTPOnly is startREST without the gnet engine (server.New, not
// Start): for tests that use only the HTTP API, it saves the engine's stop
// time.
func startHTTPOnly(t *testing.T, eo envOptions, ho Options) *restEnv {
	t.Helper()
	eo.noEngine = true
	eo.opts.Logger = nil
	return restOver(t, startEnv(t, eo), ho)
}

func restOver(t *testing.T, e *testEnv, ho Options) *restEnv {
	t.Helper()
	if ho.ConfigPath == "" {
		ho.ConfigPath = e.cfgPath
	}
	api := Handler(e.srv, ho).(*httpAPI)
	hs := httptest.NewServer(api)
	t.Cleanup(hs.Close)
	return &restEnv{testEnv: e, api: api, hs: hs}
}

// rewriteConfig applies mut to the running config, writes it and reloads.
func (e *restEnv) rewriteConfig(mut func(c *config.Config)) {
	e.t.Helper()
	mut(e.cfg)
	if err := config.WriteFile(e.cfgPath, e.cfg); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.srv.ReloadFromSource(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *restEnv) tokenOf(name string) string { return e.tokens[name] }

type answer struct {
	code int
	body string
	hdr  http.Header
}

// call sends one request; hdr holds header pairs.
func (e *restEnv) call(method, target, body string, hdr ...string) answer {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.hs.URL+target, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := e.hs.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return answer{code: resp.StatusCode, body: string(b), hdr: resp.Header}
}

// as calls with "Authorization: Bearer <token of tenant>".
func (e *restEnv) as(tenant, method, target, body string) answer {
	e.t.Helper()
	return e.call(method, target, body, "Authorization", "Bearer "+e.tokenOf(tenant))
}

func (e *restEnv) want(a answer, code int, body string) {
	e.t.Helper()
	if a.code != code || a.body != body {
		e.t.Fatalf("got %d %q, want %d %q", a.code, a.body, code, body)
	}
}

func TestRESTEveryRoute(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	const c1, c2 = "1.1.1/1.1.1/1.1.1", "1.1.1/1.1.1/1.1.2"
	q := func(s string) string { return url.QueryEscape(s) }
	steps := []struct {
		name   string
		method string
		target string
		body   string
		code   int
		want   string
	}{
		{name: "version", method: "GET", target: "/api/v2/version", code: 200, want: server.Version},
		{name: "select empty", method: "GET", target: "/api/v2/select?p=notes&c=" + c1, code: 200, want: ""},
		{name: "insert GET s", method: "GET", target: "/api/v2/insert?p=notes&c=" + c1 + "&s=hello+world", code: 200, want: "Inserted 11 bytes"},
		{name: "insert POST body", method: "POST", target: "/api/v2/insert?p=notes&c=" + c1, body: ", again", code: 200, want: "Inserted 7 bytes"},
		{name: "select", method: "GET", target: "/api/v2/select?p=notes&c=" + c1, code: 200, want: "hello world, again"},
		{name: "update POST", method: "POST", target: "/api/v2/update?p=notes&c=" + c2, body: "second\nline", code: 200, want: "Updated 11 bytes"},
		{name: "update GET", method: "GET", target: "/api/v2/update?p=notes&c=" + q("1.1.1;1.1.1;1.1.3") + "&s=" + q("thé"), code: 200, want: "Updated 4 bytes"},
		{name: "toc", method: "GET", target: "/api/v2/toc?p=notes", code: 200,
			want: "* 1.1.1/1.1.1/1.1.1: hello world, again\n* 1.1.1/1.1.1/1.1.2: second...\n* 1.1.1/1.1.1/1.1.3: thé\n"},
		{name: "get", method: "GET", target: "/api/v2/get?p=notes", code: 200, want: "hello world, again\x17second\nline\x17thé"},
		{name: "checksum", method: "GET", target: "/api/v2/checksum?p=notes", code: 200,
			want: phext.Checksum([]byte("hello world, again\x17second\nline\x17thé"))},
		{name: "status", method: "GET", target: "/api/v2/status?p=notes", code: 200,
			want: "Hosting: notes.phext\nConnection ID: 0\nPhext Size: 35\nScrolls: 3"},
		{name: "load", method: "GET", target: "/api/v2/load?p=notes", code: 200, want: "Loaded notes.phext"},
		{name: "json-export", method: "GET", target: "/api/v2/json-export?p=notes", code: 200,
			want: "[\n   { \"coord\": \"1.1.1/1.1.1/1.1.1\", \"scroll\": \"hello world, again\" }\n" +
				",   { \"coord\": \"1.1.1/1.1.1/1.1.2\", \"scroll\": \"second\\nline\" }\n" +
				",   { \"coord\": \"1.1.1/1.1.1/1.1.3\", \"scroll\": \"thé\" }\n]\n"},
		{name: "delta POST empty request", method: "POST", target: "/api/v2/delta?p=notes", code: 200,
			want: "hello world, again\x17second\nline\x17thé"},
		{name: "delta POST", method: "POST", target: "/api/v2/delta?p=notes",
			body: c1 + ": " + phext.Checksum([]byte("hello world, again")) + "\n" + c2 + ": " + phext.Checksum([]byte("second\nline")) + "\n",
			code: 200, want: "\x17\x17thé"},
		{name: "delta GET s", method: "GET", target: "/api/v2/delta?p=notes&s=" + q(c1+": "+phext.Checksum([]byte("hello world, again"))),
			code: 200, want: "\x17second\nline\x17thé"},
		{name: "where xor", method: "POST", target: "/api/v2/where", body: "short", code: 200,
			want: "Calculated coordinate 1.1.1/1.1.1/1.1.1 for input (algo=xor, limit=100)."},
		{name: "where checksum s", method: "POST", target: "/api/v2/where?algo=checksum&limit=5&s=abc", code: 200,
			want: phext.WhereMessage(mustWhere(t, "abc", "checksum", 5), "checksum", 5)},
		{name: "json-export of a new phext", method: "GET", target: "/api/v2/json-export?p=fresh", code: 200,
			want: "[\n   { \"coord\": \"1.1.1/1.1.1/1.1.1\", \"scroll\": \"\" }\n]\n"},
		{name: "where limit above 2^31", method: "POST", target: "/api/v2/where?limit=3000000000", body: "short", code: 200,
			want: "Calculated coordinate 1.1.1/1.1.1/1.1.1 for input (algo=xor, limit=3000000000)."},
		{name: "where limit with plus sign", method: "POST", target: "/api/v2/where?algo=checksum&limit=%2B5&s=abc", code: 200,
			want: phext.WhereMessage(mustWhere(t, "abc", "checksum", 5), "checksum", 5)},
		{name: "delete GET", method: "GET", target: "/api/v2/delete?p=notes&c=" + c2, code: 200, want: "Removed 11 bytes"},
		{name: "delete DELETE", method: "DELETE", target: "/api/v2/delete?p=notes&c=" + c1, code: 200, want: "Removed 18 bytes"},
		{name: "delete absent", method: "DELETE", target: "/api/v2/delete?p=notes&c=" + c1, code: 200, want: "Removed 0 bytes"},
		{name: "get after deletes", method: "GET", target: "/api/v2/get?p=notes", code: 200, want: "\x17\x17thé"},
		{name: "default phext, no c", method: "POST", target: "/api/v2/insert", body: "root", code: 200, want: "Inserted 4 bytes"},
		{name: "default phext select", method: "GET", target: "/api/v2/select?c=" + c1, code: 200, want: "root"},
		{name: "default load", method: "GET", target: "/api/v2/load", code: 200, want: "Loaded .phext"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			a := e.as("alpha", s.method, s.target, s.body)
			if a.code != s.code || a.body != s.want {
				t.Fatalf("%s %s: got %d %q, want %d %q", s.method, s.target, a.code, a.body, s.code, s.want)
			}
			if got := a.hdr.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Fatalf("Access-Control-Allow-Origin %q", got)
			}
		})
	}
	// Another tenant sees none of it.
	e.want(e.as("beta", "GET", "/api/v2/get?p=notes", ""), 200, "")
}

func mustWhere(t *testing.T, text, algo string, limit int) phext.Coordinate {
	t.Helper()
	c, err := phext.Where([]byte(text), algo, limit)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRESTAuthForms(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	tok := e.tokenOf("alpha")
	e.rewriteConfig(func(c *config.Config) { c.AdminToken = "admin-secret-token-0001" })
	tests := []struct {
		name string
		hdr  []string
		code int
	}{
		{name: "bearer", hdr: []string{"Authorization", "Bearer " + tok}, code: 200},
		{name: "bearer lower case", hdr: []string{"Authorization", "bearer " + tok}, code: 200},
		{name: "bearer extra spaces", hdr: []string{"Authorization", "Bearer   " + tok + "  "}, code: 200},
		{name: "bare authorization", hdr: []string{"Authorization", tok}, code: 200},
		{name: "x-sq-api-key", hdr: []string{"X-SQ-API-Key", tok}, code: 200},
		{name: "x-sq-api-key lower case header", hdr: []string{"x-sq-api-key", tok}, code: 200},
		{name: "bad authorization, good api key", hdr: []string{"Authorization", "Bearer nope", "X-SQ-API-Key", tok}, code: 200},
		{name: "no header", code: 401},
		{name: "wrong token", hdr: []string{"Authorization", "Bearer pmb-v1-001-000000000000000000000000"}, code: 401},
		{name: "empty bearer", hdr: []string{"Authorization", "Bearer "}, code: 401},
		{name: "token of another header", hdr: []string{"X-Api-Key", tok}, code: 401},
		{name: "admin token is no tenant", hdr: []string{"Authorization", "Bearer admin-secret-token-0001"}, code: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.call("GET", "/api/v2/select?c=1.1.1/1.1.1/1.1.1", "", tc.hdr...)
			if a.code != tc.code {
				t.Fatalf("code %d (%q), want %d", a.code, a.body, tc.code)
			}
			if tc.code == 401 && a.body != "Unauthorized" {
				t.Fatalf("body %q", a.body)
			}
		})
	}
	t.Run("disabled tenant", func(t *testing.T) {
		e.rewriteConfig(func(c *config.Config) {
			ent := c.Tenants[tok]
			no := false
			ent.Enabled = &no
			c.Tenants[tok] = ent
		})
		e.want(e.call("GET", "/api/v2/version", "", "Authorization", "Bearer "+tok), 401, "Unauthorized")
	})
}

func TestRESTErrors(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{MaxBody: 1024})
	const c1 = "1.1.1/1.1.1/1.1.1"
	e.want(e.as("alpha", "POST", "/api/v2/insert?p=keep&c="+c1, "kept"), 200, "Inserted 4 bytes")
	before := e.as("alpha", "GET", "/api/v2/get?p=keep", "").body

	tests := []struct {
		name   string
		method string
		target string
		body   string
		code   int
		prefix string // of the body
	}{
		{name: "PUT is a bad request", method: "PUT", target: "/api/v2/insert?p=keep", body: "x", code: 400, prefix: "Bad Request"},
		{name: "PATCH is a bad request", method: "PATCH", target: "/api/v2/select", code: 400, prefix: "Bad Request"},
		{name: "coordinate with three parts", method: "GET", target: "/api/v2/insert?p=keep&c=1.2.3&s=x", code: 400, prefix: "Bad Request: phext: bad coordinate"},
		{name: "coordinate part 0", method: "GET", target: "/api/v2/insert?p=keep&c=0.1.1/1.1.1/1.1.1&s=x", code: 400, prefix: "Bad Request"},
		{name: "coordinate part 1000", method: "POST", target: "/api/v2/update?p=keep&c=1.1.1/1.1.1/1.1.1000", body: "x", code: 400, prefix: "Bad Request"},
		{name: "coordinate with junk", method: "GET", target: "/api/v2/delete?p=keep&c=1-1-1/1.1.1/1.1.1", code: 400, prefix: "Bad Request"},
		{name: "coordinate with space", method: "GET", target: "/api/v2/select?p=keep&c=1.1.1/1.1.1/1.1.1+", code: 400, prefix: "Bad Request"},
		{name: "scroll break in body", method: "POST", target: "/api/v2/insert?p=keep&c=" + c1, body: "a\x17b", code: 400, prefix: "Bad Request: scroll text must be valid UTF-8 without phext delimiter bytes (0x01, 0x17-0x1A, 0x1C-0x1F): byte 0x17 at offset 1 is a delimiter"},
		{name: "library break in s", method: "GET", target: "/api/v2/update?p=keep&c=" + c1 + "&s=a%01b", code: 400, prefix: "Bad Request: scroll text must be valid UTF-8 without phext delimiter bytes (0x01, 0x17-0x1A, 0x1C-0x1F): byte 0x01 at offset 1 is a delimiter"},
		{name: "invalid UTF-8 body", method: "POST", target: "/api/v2/update?p=keep&c=" + c1, body: "a\xffb", code: 400, prefix: "Bad Request: scroll text must be valid UTF-8 without phext delimiter bytes (0x01, 0x17-0x1A, 0x1C-0x1F): byte 0xFF at offset 1 is not valid UTF-8"},
		{name: "invalid UTF-8 in s", method: "GET", target: "/api/v2/insert?p=keep&c=" + c1 + "&s=%E6%97", code: 400, prefix: "Bad Request: scroll text must be valid UTF-8 without phext delimiter bytes (0x01, 0x17-0x1A, 0x1C-0x1F): byte 0xE6 at offset 0 is not valid UTF-8"},
		{name: "where bad algo", method: "POST", target: "/api/v2/where?algo=md5", body: "x", code: 400, prefix: "Bad Request"},
		{name: "where bad limit", method: "POST", target: "/api/v2/where?limit=-1", body: "x", code: 400, prefix: "Bad Request"},
		{name: "where limit past 2^63", method: "POST", target: "/api/v2/where?limit=9223372036854775808", body: "x", code: 400, prefix: "Bad Request: limit"},
		{name: "where limit two signs", method: "POST", target: "/api/v2/where?limit=%2B%2B5", body: "x", code: 400, prefix: "Bad Request: limit"},
		{name: "path traversal", method: "GET", target: "/api/v2/select?p=../beta/x", code: 403, prefix: "Forbidden: Invalid phext path"},
		{name: "slash in name", method: "POST", target: "/api/v2/insert?p=a/b", body: "x", code: 403, prefix: "Forbidden: Invalid phext path"},
		{name: "hidden name", method: "GET", target: "/api/v2/get?p=.hidden", code: 403, prefix: "Forbidden: Invalid phext path"},
		{name: "long name", method: "GET", target: "/api/v2/get?p=" + strings.Repeat("a", 65), code: 403, prefix: "Forbidden"},
		{name: "unknown route", method: "GET", target: "/api/v2/nope", code: 404, prefix: "Not Found"},
		{name: "where needs POST", method: "GET", target: "/api/v2/where?s=x", code: 404, prefix: "Not Found"},
		{name: "select needs GET", method: "POST", target: "/api/v2/select", body: "x", code: 404, prefix: "Not Found"},
		{name: "DELETE on select", method: "DELETE", target: "/api/v2/select", code: 404, prefix: "Not Found"},
		{name: "prefix is not a route", method: "GET", target: "/api/v2/selectx", code: 404, prefix: "Not Found"},
		{name: "favicon", method: "GET", target: "/favicon.ico", code: 404, prefix: "Not Found"},
		{name: "body over the limit", method: "POST", target: "/api/v2/insert?p=keep&c=" + c1, body: strings.Repeat("x", 1025), code: 413, prefix: "body too large: 1025 bytes (max 1024)"},
		{name: "delta body over the limit", method: "POST", target: "/api/v2/delta?p=keep", body: strings.Repeat("x", 2000), code: 413, prefix: "body too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.as("alpha", tc.method, tc.target, tc.body)
			if a.code != tc.code || !strings.HasPrefix(a.body, tc.prefix) {
				t.Fatalf("got %d %q, want %d %q…", a.code, a.body, tc.code, tc.prefix)
			}
			if after := e.as("alpha", "GET", "/api/v2/get?p=keep", "").body; after != before {
				t.Fatalf("stored data changed: %q, was %q", after, before)
			}
		})
	}
	t.Run("chunked body over the limit", func(t *testing.T) {
		req, _ := http.NewRequest("POST", e.hs.URL+"/api/v2/insert?p=keep&c="+c1, io.MultiReader(strings.NewReader(strings.Repeat("y", 1000)), strings.NewReader(strings.Repeat("y", 1000))))
		req.ContentLength = -1
		req.Header.Set("Authorization", "Bearer "+e.tokenOf("alpha"))
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("code %d", resp.StatusCode)
		}
	})
	t.Run("unknown route without token is 401 as in SQ", func(t *testing.T) {
		e.want(e.call("GET", "/api/v2/nope", ""), 401, "Unauthorized")
	})
	t.Run("quota", func(t *testing.T) {
		e.rewriteConfig(func(c *config.Config) {
			ent := c.Tenants[e.tokenOf("alpha")]
			ent.QuotaMB = 0.5 / 1024 // 512 bytes
			c.Tenants[e.tokenOf("alpha")] = ent
		})
		a := e.as("alpha", "POST", "/api/v2/insert?p=big&c="+c1, strings.Repeat("q", 1000))
		if a.code != 507 {
			t.Fatalf("got %d %q, want 507", a.code, a.body)
		}
		e.want(e.as("alpha", "GET", "/api/v2/get?p=big", ""), 200, "")
	})
	t.Run("busy", func(t *testing.T) {
		e.api.inflight.Add(int64(e.api.o.MaxInFlight))
		defer e.api.inflight.Add(-int64(e.api.o.MaxInFlight))
		e.want(e.as("alpha", "GET", "/api/v2/version", ""), 503, msgBusy)
	})
	// Last: a drained server stays draining.
	t.Run("draining", func(t *testing.T) {
		e.drain()
		a := e.as("alpha", "GET", "/api/v2/version", "")
		if a.code != 503 {
			t.Fatalf("got %d %q", a.code, a.body)
		}
	})
}

func TestRESTPreflight(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	for _, path := range []string{"/api/v2/insert", "/api/v2/nope", "/"} {
		a := e.call("OPTIONS", path, "", "Origin", "https://notepad.example", "Access-Control-Request-Method", "POST")
		if a.code != 204 || a.body != "" {
			t.Fatalf("%s: %d %q", path, a.code, a.body)
		}
		for k, v := range map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
			"Access-Control-Allow-Headers": "Authorization, Content-Type, X-SQ-API-Key",
			"Access-Control-Max-Age":       "86400",
		} {
			if got := a.hdr.Get(k); got != v {
				t.Fatalf("%s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
}

// TestRESTCompatReplay replays the exact bytes SQ clients send (curl-style
// scripts with Bearer and a text body; Phext Notepad with X-SQ-API-Key) on
// a raw connection and checks SQ's answers.
func TestRESTCompatReplay(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	tok := e.tokenOf("alpha")
	host := strings.TrimPrefix(e.hs.URL, "http://")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	steps := []struct {
		name string
		raw  string
		code int
		body string
	}{
		{name: "curl insert with text body",
			raw: "POST /api/v2/insert?p=memory&c=1.1.1/1.1.1/1.1.1 HTTP/1.1\r\nHost: " + host +
				"\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nAuthorization: Bearer " + tok +
				"\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nremember me.",
			code: 200, body: "Inserted 12 bytes"},
		{name: "curl select",
			raw: "GET /api/v2/select?p=memory&c=1.1.1/1.1.1/1.1.1 HTTP/1.1\r\nHost: " + host +
				"\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
			code: 200, body: "remember me."},
		{name: "curl url-encoded coordinate",
			raw: "POST /api/v2/update?p=memory&c=1.1.1%3B1.1.1%3B1.1.2 HTTP/1.1\r\nHost: " + host +
				"\r\nAuthorization: Bearer " + tok + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nnotes",
			code: 200, body: "Updated 5 bytes"},
		{name: "curl toc",
			raw:  "GET /api/v2/toc?p=memory HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
			code: 200, body: "* 1.1.1/1.1.1/1.1.1: remember me.\n* 1.1.1/1.1.1/1.1.2: notes\n"},
		{name: "curl -X DELETE",
			raw: "DELETE /api/v2/delete?p=memory&c=1.1.1/1.1.1/1.1.2 HTTP/1.1\r\nHost: " + host +
				"\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
			code: 200, body: "Removed 5 bytes"},
		{name: "notepad X-SQ-API-Key select",
			raw: "GET /api/v2/select?p=memory&c=1.1.1/1.1.1/1.1.1 HTTP/1.1\r\nHost: " + host +
				"\r\nOrigin: https://phext.io\r\nX-SQ-API-Key: " + tok + "\r\n\r\n",
			code: 200, body: "remember me."},
		{name: "notepad X-SQ-API-Key update form body",
			raw: "POST /api/v2/update?p=memory&c=2.1.1/1.1.1/1.1.1 HTTP/1.1\r\nHost: " + host +
				"\r\nX-SQ-API-Key: " + tok + "\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 9\r\n\r\nnew shelf",
			code: 200, body: "Updated 9 bytes"},
		{name: "get after all",
			raw:  "GET /api/v2/get?p=memory HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: " + tok + "\r\n\r\n",
			code: 200, body: "remember me.\x01new shelf"},
		{name: "no token",
			raw:  "GET /api/v2/toc?p=memory HTTP/1.1\r\nHost: " + host + "\r\n\r\n",
			code: 401, body: "Unauthorized"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(nc, s.raw); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != s.code || string(b) != s.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, b, s.code, s.body)
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Fatal("no CORS header")
			}
		})
	}
}

// TestRESTBinaryEquivalence writes through one protocol and reads through
// the other, live and after reopening the data dir.
func TestRESTBinaryEquivalence(t *testing.T) {
	e := startREST(t, envOptions{}, Options{})
	bin := e.dial("alpha")
	coords := []string{"1.1.1/1.1.1/1.1.1", "1.1.1/1.1.1/1.1.7", "1.1.1/1.1.2/1.1.1", "3.1.4/1.5.9/2.6.5", "9.9.9/9.9.9/9.9.9"}

	// REST writes, binary reads.
	for i, c := range coords {
		e.want(e.as("alpha", "POST", "/api/v2/update?p=viarest&c="+c, "rest scroll "+c), 200,
			"Updated "+itoa(len("rest scroll "+c))+" bytes")
		if i%2 == 0 {
			e.want(e.as("alpha", "GET", "/api/v2/insert?p=viarest&c="+c+"&s=+%2B+more", ""), 200, "Inserted 7 bytes")
		}
	}
	restDoc := e.as("alpha", "GET", "/api/v2/get?p=viarest", "").body
	if got := string(bin.ok(protocol.OpGet, "viarest", phext.Origin, nil)); got != restDoc {
		t.Fatalf("binary GET %q, REST get %q", got, restDoc)
	}
	for _, c := range coords {
		b := bin.ok(protocol.OpSelect, "viarest", mustCoord(t, c), nil)
		r := e.as("alpha", "GET", "/api/v2/select?p=viarest&c="+c, "").body
		if string(b) != r {
			t.Fatalf("%s: binary %q, REST %q", c, b, r)
		}
	}
	if b, r := bin.ok(protocol.OpChecksum, "viarest", phext.Origin, nil), e.as("alpha", "GET", "/api/v2/checksum?p=viarest", "").body; string(b) != r {
		t.Fatalf("checksum binary %q REST %q", b, r)
	}
	if b, r := bin.ok(protocol.OpTOC, "viarest", phext.Origin, nil), e.as("alpha", "GET", "/api/v2/toc?p=viarest", "").body; string(b) != r {
		t.Fatalf("toc binary %q REST %q", b, r)
	}

	// Binary writes, REST reads.
	for _, c := range coords {
		bin.ok(protocol.OpUpdate, "viabin", mustCoord(t, c), []byte("bin scroll "+c))
	}
	bin.ok(protocol.OpDelete, "viabin", mustCoord(t, coords[1]), nil)
	binDoc := string(bin.ok(protocol.OpGet, "viabin", phext.Origin, nil))
	if r := e.as("alpha", "GET", "/api/v2/get?p=viabin", "").body; r != binDoc {
		t.Fatalf("REST get %q, binary GET %q", r, binDoc)
	}
	e.want(e.as("alpha", "GET", "/api/v2/select?p=viabin&c="+coords[1], ""), 200, "")
	e.want(e.as("alpha", "GET", "/api/v2/select?p=viabin&c="+coords[3], ""), 200, "bin scroll "+coords[3])

	// The data dir reads back the same after a restart.
	e.hs.Close()
	e.stop()
	tn := reopenStore(t, e.testEnv)
	for name, want := range map[string]string{"viarest": restDoc, "viabin": binDoc} {
		got, err := tn.AppendGet(nil, []byte(name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("%s after reopen: %q, want %q", name, got, want)
		}
	}
}

func itoa(n int) string { return string(appendCountMsg(nil, "", n, "")) }

func TestRESTReload(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	// A new tenant appears in the file; the reload makes it usable.
	tok, _ := config.GenerateToken(9)
	e.cfg.Tenants[tok] = config.TenantEntry{Name: "gamma", DataDir: filepath.Join(e.dir, "gamma")}
	if err := config.WriteFile(e.cfgPath, e.cfg); err != nil {
		t.Fatal(err)
	}
	e.want(e.call("GET", "/api/v2/version", "", "Authorization", "Bearer "+tok), 401, "Unauthorized")
	// Loopback alone is no privilege: no token, or a tenant's, is refused.
	e.want(e.call("POST", "/api/v2/reload", ""), 403, msgReloadForbidden)
	e.want(e.call("POST", "/api/v2/reload", "", "Authorization", "Bearer "+e.tokenOf("alpha")), 403, msgReloadForbidden)
	e.want(e.call("GET", "/api/v2/version", "", "Authorization", "Bearer "+tok), 401, "Unauthorized")
	e.cfg.AdminToken = "the-admin-token-123"
	if err := config.WriteFile(e.cfgPath, e.cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.ReloadFromSource(); err != nil { // the operator's SIGHUP
		t.Fatal(err)
	}
	e.want(e.call("GET", "/api/v2/version", "", "Authorization", "Bearer "+tok), 200, server.Version)
	a := e.call("POST", "/api/v2/reload", "", "Authorization", "Bearer the-admin-token-123")
	if a.code != 200 || !strings.HasPrefix(a.body, "Config reload triggered") {
		t.Fatalf("reload: %d %q", a.code, a.body)
	}

	remote := func(hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/api/v2/reload", nil)
		req.RemoteAddr = "203.0.113.7:40000"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		return rec
	}
	t.Run("tenant token from elsewhere", func(t *testing.T) {
		rec := remote("Authorization", "Bearer "+tok)
		if rec.Code != 403 || rec.Body.String() != msgReloadForbidden {
			t.Fatalf("%d %q", rec.Code, rec.Body.String())
		}
	})
	t.Run("admin token from anywhere", func(t *testing.T) {
		if rec := remote("Authorization", "Bearer the-admin-token-123"); rec.Code != 200 {
			t.Fatalf("%d %q", rec.Code, rec.Body.String())
		}
	})
	t.Run("broken config keeps the old one", func(t *testing.T) {
		if err := writeFile(e.cfgPath, "{not json"); err != nil {
			t.Fatal(err)
		}
		a := e.call("POST", "/api/v2/reload", "", "Authorization", "Bearer the-admin-token-123")
		if a.code != 500 {
			t.Fatalf("%d %q", a.code, a.body)
		}
		e.want(e.call("GET", "/api/v2/version", "", "Authorization", "Bearer "+tok), 200, server.Version)
	})
	t.Run("no config source", func(t *testing.T) {
		db, err := store.Open(&store.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		cfg := &config.Config{Tenants: map[string]config.TenantEntry{"tok-1": {Name: "x", DataDir: t.TempDir()}}}
		s, err := server.New(db, cfg, &server.Options{Logger: quietLogger(), TrustLoopback: true})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/api/v2/reload", nil)
		req.RemoteAddr = "127.0.0.1:5555"
		Handler(s, Options{}).ServeHTTP(rec, req)
		if rec.Code != 503 || rec.Body.String() != "Reload not available in this mode" {
			t.Fatalf("%d %q", rec.Code, rec.Body.String())
		}
	})
}

func writeFile(path, data string) error {
	return os.WriteFile(path, []byte(data), 0o600)
}

func TestRESTCountsTenantStats(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	tn, _ := e.srv.TenantByName("alpha")
	if tn.OpStats(protocol.OpInsert) != nil {
		t.Fatal("INSERT counters exist before the first INSERT")
	}
	e.as("alpha", "POST", "/api/v2/insert?c=1.1.1/1.1.1/1.1.1", "abc")
	e.as("alpha", "POST", "/api/v2/insert?c=1.1.1/1.1.1/1.1.1", "a\x17")
	e.as("alpha", "GET", "/api/v2/select?c=1.1.1/1.1.1/1.1.1", "")
	ins := tn.OpStats(protocol.OpInsert)
	sel := tn.OpStats(protocol.OpSelect)
	if d := ins.Requests.Load(); d != 2 {
		t.Fatalf("insert requests +%d, want +2", d)
	}
	if d := sel.Requests.Load(); d != 1 {
		t.Fatalf("select requests +%d, want +1", d)
	}
	if ins.Status[protocol.StatusBadScroll].Load() != 1 {
		t.Fatal("BAD_SCROLL not counted")
	}
	if e.api.codes[routeInsert][codeSlot(400)].Load() != 1 || e.api.codes[routeInsert][codeSlot(200)].Load() != 1 {
		t.Fatal("HTTP codes not counted")
	}
}

func TestRESTAuthFailuresSlowDown(t *testing.T) {
	e := startHTTPOnly(t, envOptions{opts: server.Options{AuthFailBudget: 1}}, Options{})
	bad := []string{"Authorization", "Bearer wrong"}
	e.call("GET", "/api/v2/version", "", bad...) // within budget
	start := time.Now()
	e.call("GET", "/api/v2/version", "", bad...)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("second failure answered after %v; want a delay", d)
	}
	// A request without any token is not a guess and is not delayed.
	start = time.Now()
	e.call("GET", "/api/v2/version", "")
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("tokenless request delayed %v", d)
	}
}

func TestSQParam(t *testing.T) {
	tests := []struct {
		name  string
		raw   string
		key   string
		want  string
		found bool
	}{
		{name: "plain", raw: "p=notes&c=1.1.1/1.1.1/1.1.1", key: "c", want: "1.1.1/1.1.1/1.1.1", found: true},
		{name: "plus is space", raw: "s=a+b", key: "s", want: "a b", found: true},
		{name: "percent", raw: "s=%41%e2%82%ac%2B", key: "s", want: "A€+", found: true},
		{name: "invalid escape kept", raw: "s=100%&t=%zz%4", key: "s", want: "100%", found: true},
		{name: "invalid escape kept 2", raw: "s=100%&t=%zz%4", key: "t", want: "%zz%4", found: true},
		{name: "last wins", raw: "s=1&s=2", key: "s", want: "2", found: true},
		{name: "no equals ignored", raw: "s&p=x", key: "s", found: false},
		{name: "empty value", raw: "s=", key: "s", want: "", found: true},
		{name: "encoded key", raw: "%73=x", key: "s", want: "x", found: true},
		{name: "absent", raw: "p=x", key: "s", found: false},
		{name: "empty query", raw: "", key: "s", found: false},
		{name: "equals in value", raw: "s=a=b", key: "s", want: "a=b", found: true},
		{name: "raw invalid utf-8 kept", raw: "s=%ff", key: "s", want: "\xff", found: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, found := sqParam(nil, tc.raw, tc.key)
			if found != tc.found || string(got) != tc.want {
				t.Fatalf("got %q %v, want %q %v", got, found, tc.want, tc.found)
			}
		})
	}
}

func TestSQCoord(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		found bool
		want  string
		ok    bool
	}{
		{name: "absent is origin", found: false, want: "1.1.1/1.1.1/1.1.1", ok: true},
		{name: "empty is origin", in: "", found: true, want: "1.1.1/1.1.1/1.1.1", ok: true},
		{name: "slashes", in: "2.3.4/5.6.7/8.9.10", found: true, want: "2.3.4/5.6.7/8.9.10", ok: true},
		{name: "semicolons", in: "2.3.4;5.6.7;8.9.10", found: true, want: "2.3.4/5.6.7/8.9.10", ok: true},
		{name: "SQ would guess 1.2.1/1.1.1/1.1.3", in: "1.2.3", found: true},
		{name: "SQ would read 5 as scroll 5", in: "5", found: true},
		{name: "zero", in: "0.1.1/1.1.1/1.1.1", found: true},
		{name: "1000", in: "1.1.1/1.1.1/1.1.1000", found: true},
		{name: "letters", in: "a.b.c/d.e.f/g.h.i", found: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := sqCoord([]byte(tc.in), tc.found)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && c.String() != tc.want {
				t.Fatalf("got %v, want %s", c, tc.want)
			}
		})
	}
}

func TestAppendJSONString(t *testing.T) {
	got := string(appendJSONString(nil, []byte("a\"b\\c\nd\re\tf\x02g\x7fé")))
	want := `"a\"b\\c\nd\re\tf\u0002g\u007fé"`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// discardWriter is an http.ResponseWriter that keeps nothing, for
// allocation budgets.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

func newRequest(t testing.TB, method, target, token string, body []byte) *http.Request {
	req := httptest.NewRequest(method, target, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	return req
}

// TestRESTSelectAllocs bounds the handler's own allocations for a select:
// the token digest, the query parse and the store read allocate nothing;
// only the Content-Length header value does.
func TestRESTSelectAllocs(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	e.want(e.as("alpha", "POST", "/api/v2/update?c=1.1.1/1.1.1/1.1.1", strings.Repeat("z", 1000)), 200, "Updated 1000 bytes")
	req := newRequest(t, "GET", "/api/v2/select?p=&c=1.1.1/1.1.1/1.1.1", e.tokenOf("alpha"), nil)
	w := &discardWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.h)
		w.n = 0
		e.api.ServeHTTP(w, req)
	})
	if w.code != 200 || w.n != 1000 {
		t.Fatalf("code %d, %d bytes", w.code, w.n)
	}
	// Measured: 2 (the Content-Length string and its header slice). Under
	// -race sync.Pool drops items on purpose: allow the buffer refills.
	budget := 2.0
	if raceBuild() {
		budget = 4
	}
	if allocs > budget {
		t.Fatalf("%.1f allocs per select, budget %v", allocs, budget)
	}
}

func FuzzSQParam(f *testing.F) {
	for _, s := range []string{"p=x&c=1.1.1/1.1.1/1.1.1&s=a+b", "s=%zz&s=%41", "%73=1;x=2", "a&b&=c", "s=%e6%97"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, key := range []string{"s", "p", "c"} {
			got, found := sqParam(nil, raw, key)
			vals, err := url.ParseQuery(raw)
			if err != nil || hasBarePair(raw) {
				continue // Go refuses what SQ tolerates; nothing to compare
			}
			v, ok := vals[key]
			if ok != found {
				t.Fatalf("%q key %s: found %v, net/url %v", raw, key, found, ok)
			}
			if ok && string(got) != v[len(v)-1] {
				t.Fatalf("%q key %s: %q, net/url %q", raw, key, got, v[len(v)-1])
			}
		}
	})
}

// hasBarePair reports a non-empty pair without '=': net/url reads it as a
// key with an empty value, SQ ignores it.
func hasBarePair(raw string) bool {
	for _, p := range strings.Split(raw, "&") {
		if p != "" && !strings.Contains(p, "=") {
			return true
		}
	}
	return false
}

// benchServer is a server without the engine, for handler benchmarks.
type benchServer struct {
	srv    *server.Server
	tokens []string
}

func benchEnv(b testing.TB, tenants int) *benchServer {
	b.Helper()
	dir := b.TempDir()
	cfg := &config.Config{Tenants: map[string]config.TenantEntry{}}
	be := &benchServer{}
	for i := 0; i < tenants; i++ {
		tok, err := config.GenerateToken(i)
		if err != nil {
			b.Fatal(err)
		}
		name := "t" + itoa(i)
		cfg.Tenants[tok] = config.TenantEntry{Name: name, DataDir: filepath.Join(dir, name)}
		be.tokens = append(be.tokens, tok)
	}
	db, err := store.Open(&store.Options{Durability: store.DurabilityNo, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	srv, err := server.New(db, cfg, &server.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	be.srv = srv
	// Give every tenant some traffic so that scrapes write every series.
	h := Handler(srv, Options{})
	for _, tok := range be.tokens {
		for _, target := range []string{"/api/v2/insert?c=1.1.1/1.1.1/1.1.1&s=hello", "/api/v2/select?c=1.1.1/1.1.1/1.1.1", "/api/v2/toc"} {
			w := &discardWriter{h: http.Header{}}
			h.ServeHTTP(w, newRequest(b, "GET", target, tok, nil))
			if w.code != 200 {
				b.Fatalf("%s: %d", target, w.code)
			}
		}
	}
	return be
}

// BenchmarkRESTSelect1K runs the handler directly (no socket) for a 1 KiB
// select: the REST layer's own cost over the store.
func BenchmarkRESTSelect1K(b *testing.B) {
	be := benchEnv(b, 1)
	h := Handler(be.srv, Options{})
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, newRequest(b, "POST", "/api/v2/update?c=1.1.1/1.1.1/1.1.2", be.tokens[0], bytes.Repeat([]byte("x"), 1024)))
	req := newRequest(b, "GET", "/api/v2/select?c=1.1.1/1.1.1/1.1.2", be.tokens[0], nil)
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	if w.code != 200 {
		b.Fatal(w.code)
	}
}

// BenchmarkRESTInsert1K: POST /api/v2/update of 1 KiB, handler only
// (durability no, so the WAL append is the store's part).
func BenchmarkRESTInsert1K(b *testing.B) {
	be := benchEnv(b, 1)
	h := Handler(be.srv, Options{})
	w := &discardWriter{h: http.Header{}}
	body := bytes.Repeat([]byte("y"), 1024)
	rd := bytes.NewReader(body)
	req := newRequest(b, "POST", "/api/v2/update?c=1.1.1/1.1.1/1.1.3", be.tokens[0], nil)
	req.ContentLength = int64(len(body))
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		h.ServeHTTP(w, req)
	}
	if w.code != 200 {
		b.Fatal(w.code)
	}
}

// BenchmarkRESTSelectHTTP is a full round trip over loopback HTTP/1.1
// keep-alive with net/http's client: what a curl-like client sees.
func BenchmarkRESTSelectHTTP(b *testing.B) {
	be := benchEnv(b, 1)
	hs := httptest.NewServer(Handler(be.srv, Options{}))
	defer hs.Close()
	req, _ := http.NewRequest("GET", hs.URL+"/api/v2/select?c=1.1.1/1.1.1/1.1.1", nil)
	req.Header.Set("Authorization", "Bearer "+be.tokens[0])
	cl := hs.Client()
	buf := make([]byte, 4096)
	b.SetBytes(5)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := cl.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.ReadFull(resp.Body, buf[:5])
		resp.Body.Close()
		if resp.StatusCode != 200 || n != 5 {
			b.Fatal(resp.StatusCode, n)
		}
	}
}

// FuzzRESTWrite sends arbitrary queries and bodies to insert, update,
// delete and select: the server never answers 500, and a refused write
// leaves the phext as it was.
func FuzzRESTWrite(f *testing.F) {
	be := benchEnv(f, 1)
	h := Handler(be.srv, Options{})
	for _, seed := range []struct {
		route, query, body string
	}{
		{route: "insert", query: "c=1.1.1/1.1.1/1.1.1", body: "hello"},
		{route: "update", query: "p=x&c=2.1.1;1.1.1;1.1.9&s=a+b", body: ""},
		{route: "insert", query: "c=1.2.3", body: "x"},
		{route: "update", query: "c=1.1.1/1.1.1/1.1.1", body: "a\x17b"},
		{route: "delete", query: "p=../x&c=1.1.1/1.1.1/1.1.1", body: ""},
		{route: "select", query: "c=%zz&p=%2e%2e", body: ""},
		{route: "where", query: "algo=checksum&limit=3", body: "text"},
		{route: "delta", query: "p=x", body: "1.1.1/1.1.1/1.1.1: 00\n"},
	} {
		f.Add(seed.route, seed.query, []byte(seed.body))
	}
	tok := be.tokens[0]
	f.Fuzz(func(t *testing.T, route, query string, body []byte) {
		if strings.ContainsAny(query, "# \t\r\n") || strings.ContainsAny(route, "/?# \t\r\n") {
			return // not a request line a client can send
		}
		getDoc := func(name []byte) string {
			tn, _ := be.srv.TenantByToken(tok)
			doc, err := tn.Store().AppendGet(nil, name)
			if err != nil {
				return "error: " + err.Error()
			}
			return string(doc)
		}
		name, _ := sqParam(nil, query, "p")
		valid := phext.ValidName(name)
		var before string
		if valid {
			before = getDoc(name)
		}
		method := "GET"
		if len(body) > 0 {
			method = "POST"
		}
		req := &http.Request{Method: method, URL: &url.URL{Path: "/api/v2/" + route, RawQuery: query},
			Header: http.Header{"Authorization": {"Bearer " + tok}}, RemoteAddr: "127.0.0.1:1",
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
		req = req.WithContext(context.Background())
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		if w.code == http.StatusInternalServerError {
			t.Fatalf("%s %s?%s %q: 500", method, route, query, body)
		}
		if w.code != http.StatusOK && valid {
			if after := getDoc(name); after != before {
				t.Fatalf("refused %s changed the phext: %q -> %q", route, before, after)
			}
		}
	})
}

// raceBuild reports whether the test binary was built with -race.
func raceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, st := range bi.Settings {
		if st.Key == "-race" && st.Value == "true" {
			return true
		}
	}
	return false
}

func TestStartHTTP(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	hs, ln, err := Start(e.srv, "127.0.0.1:0", &Options{ConfigPath: e.cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/api/v2/version", nil)
	req.Header.Set("X-SQ-API-Key", e.tokenOf("beta"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != server.Version {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("still serving after Shutdown")
	}
	if _, _, err := Start(e.srv, "127.0.0.1:-1", nil); err == nil {
		t.Fatal("bad address accepted")
	}
}

// TestRESTBodyReadExactly is open issue 11 of issue 13: a REST body was
// reserved at its declared length but read with ByteBuffer.ReadFrom, which
// doubles a full buffer before it sees EOF, so a body of 2^k bytes took a
// 2^(k+1) buffer plus every smaller one on the way (~4 × the body). It is
// now read into one buffer of its length plus one byte. A body with a
// delimiter in it is refused after it is read, so the store keeps nothing.
func TestRESTBodyReadExactly(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	const size = 2 << 20 // above protocol's maxPooledBuffer: every request allocates its buffer
	body := strings.Repeat("b", size-1) + string(rune(phext.ScrollBreak))
	target := "/api/v2/insert?p=big&c=1.1.1/1.1.1/1.1.1"
	e.as("alpha", "POST", target, body) // warm the client's and server's pools
	const n = 4
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		if a := e.as("alpha", "POST", target, body); a.code != http.StatusBadRequest {
			t.Fatalf("insert of a scroll with a delimiter: %d %.80s", a.code, a.body)
		}
	}
	runtime.ReadMemStats(&after)
	per := float64(after.TotalAlloc-before.TotalAlloc) / n
	t.Logf("a %d MiB body: %.2f MiB allocated a request", size>>20, per/(1<<20))
	if per > 1.5*size {
		t.Fatalf("a %d-byte body allocated %.0f bytes a request (> 1.5 × the body): its buffer doubles", size, per)
	}
	if m := e.srv.Memory(); m.Used != 0 {
		t.Fatalf("the budget holds %d bytes after the requests", m.Used)
	}
}
