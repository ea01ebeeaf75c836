package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server/httpapi"
)

// freeLoopbackPort returns a port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// haproxyCmd sends one command to HAProxy's admin socket and returns the
// answer.
func haproxyCmd(t *testing.T, addr, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(cmd + "\n")); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// runHAProxy starts haproxy in the foreground with env and the config
// files, stops it at the end of the test and waits until it listens on
// front.
func runHAProxy(t *testing.T, bin string, env []string, front string, files ...string) {
	t.Helper()
	args := []string{"-db"}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", logs.String())
		}
	})
	// Poll until HAProxy listens (checkFor style, bounded).
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", front, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not listen on %s: %v", front, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHAProxyRoutesByHelloToken runs Debian's HAProxy with
// deploy/haproxy/haproxy.cfg and the map and backends `sq tenants shard`
// writes, in front of two real servers, and checks that each token reaches
// its own server (req.payload_lv(11,1) reads the HELLO token), that an
// unknown token gets AUTH, and that "set map" re-routes a token at once.
// Skipped when haproxy is not installed (make e2e-haproxy installs it).
func TestHAProxyRoutesByHelloToken(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not installed (apt-get install haproxy); deploy/e2e-haproxy.sh covers this too")
	}
	cfgPath, err := filepath.Abs("../../deploy/haproxy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	h1 := startTestServer(t, "a1", "a2")
	h2 := startTestServer(t, "b1", "b2")
	var entries []mapEntry
	host := map[string]*testServer{}
	for _, ts := range []*testServer{h1, h2} {
		for name, tok := range ts.tokens {
			be := "sq_host1"
			if ts == h2 {
				be = "sq_host2"
			}
			entries = append(entries, mapEntry{Token: tok, Backend: be})
			host[name] = ts
		}
	}
	dir := t.TempDir()
	mapPath := filepath.Join(dir, "tokens.map")
	if err := os.WriteFile(mapPath, appendMap(nil, entries), 0o600); err != nil {
		t.Fatal(err)
	}
	bePath := filepath.Join(dir, "backends.cfg")
	// Each host's HTTP API, where HAProxy checks GET /readyz.
	var health []int
	for _, ts := range []*testServer{h1, h2} {
		hs, ln, err := httpapi.Start(ts.srv, "127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hs.Close() })
		health = append(health, ln.Addr().(*net.TCPAddr).Port)
	}
	if err := os.WriteFile(bePath, appendBackendsCfg(nil, 2, []string{h1.addr, h2.addr}, health), 0o644); err != nil {
		t.Fatal(err)
	}
	front := "127.0.0.1:" + freeLoopbackPort(t)
	admin := "127.0.0.1:" + freeLoopbackPort(t)
	runHAProxy(t, bin, []string{"SQ_FRONTEND=" + front, "SQ_MAP=" + mapPath,
		"SQ_HAPROXY_ADMIN=ipv4@" + admin, "SQ_MAXCONN=200"}, front, cfgPath, bePath)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for _, name := range []string{"a1", "a2", "b1", "b2"} {
		t.Run("route-"+name, func(t *testing.T) {
			tok := host[name].tokens[name]
			c, err := client.Dial(ctx, front, tok)
			if err != nil {
				t.Fatalf("dial through haproxy: %v", err)
			}
			defer c.Close()
			if got := c.Hello().TenantName; got != name {
				t.Fatalf("HELLO through haproxy answered for tenant %q, want %q", got, name)
			}
			coord := mustCoord(t, "3.1.4/1.5.9/2.6.5")
			if _, err := c.Update(ctx, "", coord, []byte("via proxy "+name)); err != nil {
				t.Fatal(err)
			}
			d, err := client.Dial(ctx, host[name].addr, tok)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			got, err := d.Select(ctx, "", coord)
			if err != nil || string(got) != "via proxy "+name {
				t.Fatalf("direct read on the tenant's host: %q, %v", got, err)
			}
		})
	}

	t.Run("unknown-token-gets-AUTH", func(t *testing.T) {
		_, err := client.Dial(ctx, front, "pmb-v1-999-000000000000000000000000")
		if !client.IsStatus(err, protocol.StatusAuth) {
			t.Fatalf("unknown token through haproxy: %v, want AUTH", err)
		}
	})

	t.Run("set-map-reroutes", func(t *testing.T) {
		tok := h1.tokens["a1"]
		if ans := haproxyCmd(t, admin, "set map "+mapPath+" "+tok+" sq_host2"); strings.TrimSpace(ans) != "" {
			t.Fatalf("set map: %q", ans)
		}
		// Host 2 does not know a1, so the re-routed HELLO gets AUTH.
		_, err := client.Dial(ctx, front, tok)
		if !client.IsStatus(err, protocol.StatusAuth) {
			t.Fatalf("a1 after set map to host 2: %v, want AUTH from host 2", err)
		}
		if ans := haproxyCmd(t, admin, "set map "+mapPath+" "+tok+" sq_host1"); strings.TrimSpace(ans) != "" {
			t.Fatalf("set map back: %q", ans)
		}
		c, err := client.Dial(ctx, front, tok)
		if err != nil {
			t.Fatalf("a1 after set map back: %v", err)
		}
		c.Close()
	})

	// Last: a host that is not ready (draining) is taken out by the
	// /readyz check; its tenants' new connections no longer reach it.
	t.Run("not-ready-host-taken-out", func(t *testing.T) {
		h2.srv.SetNotReady()
		sqtest.CheckFor(t, 20*time.Second, "HAProxy marks host 2 DOWN", func() bool {
			for _, l := range strings.Split(haproxyCmd(t, admin, "show stat"), "\n") {
				f := strings.Split(l, ",")
				if len(f) > 17 && f[0] == "sq_host2" && f[1] == "h2" {
					return strings.HasPrefix(f[17], "DOWN")
				}
			}
			return false
		})
		if c, err := client.Dial(ctx, front, h2.tokens["b1"]); err == nil {
			c.Close()
			t.Fatal("a tenant of the not-ready host still connects through haproxy")
		}
		c, err := client.Dial(ctx, front, h1.tokens["a1"])
		if err != nil {
			t.Fatalf("tenant of the ready host: %v", err)
		}
		c.Close()
	})
}

// restCall sends one REST request with the token in header hdr
// ("Authorization" gets "Bearer "), and returns status and body.
func restCall(t *testing.T, c *http.Client, method, url, hdr, tok, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	switch hdr {
	case "Authorization":
		req.Header.Set(hdr, "Bearer "+tok)
	case "":
	default:
		req.Header.Set(hdr, tok)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestHAProxyRoutesREST runs Debian's HAProxy with deploy/haproxy/haproxy.cfg
// and haproxy-rest.cfg, the map and both backend files `sq tenants shard`
// writes, in front of two real servers' REST APIs: each request reaches its
// tenant's host by its Authorization: Bearer or X-SQ-API-Key token, an
// unknown token gets 401, the admin surface is refused at the proxy, and a
// tenant moved to the other host (configs reloaded, "set map") is reached
// there by the next request of a keep-alive client.
func TestHAProxyRoutesREST(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not installed (apt-get install haproxy); deploy/e2e-haproxy.sh covers this too")
	}
	var cfgs [2]string
	for i, f := range []string{"haproxy.cfg", "haproxy-rest.cfg"} {
		if cfgs[i], err = filepath.Abs("../../deploy/haproxy/" + f); err != nil {
			t.Fatal(err)
		}
	}
	h1 := startTestServerHTTP(t, "a1", "a2")
	h2 := startTestServerHTTP(t, "b1", "b2")
	var entries []mapEntry
	host := map[string]*testServer{}
	for i, ts := range []*testServer{h1, h2} {
		for name, tok := range ts.tokens {
			entries = append(entries, mapEntry{Token: tok, Backend: shardBackend(i)})
			host[name] = ts
		}
	}
	dir := t.TempDir()
	mapPath := filepath.Join(dir, "tokens.map")
	bePath := filepath.Join(dir, "backends.cfg")
	httpPath := filepath.Join(dir, "backends-http.cfg")
	for path, data := range map[string][]byte{
		mapPath:  appendMap(nil, entries),
		bePath:   appendBackendsCfg(nil, 2, []string{h1.addr, h2.addr}, nil),
		httpPath: appendHTTPBackendsCfg(nil, 2, []string{h1.httpAddr, h2.httpAddr}),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	front := "127.0.0.1:" + freeLoopbackPort(t)
	rest := "127.0.0.1:" + freeLoopbackPort(t)
	admin := "127.0.0.1:" + freeLoopbackPort(t)
	runHAProxy(t, bin, []string{"SQ_FRONTEND=" + front, "SQ_REST_FRONTEND=" + rest, "SQ_MAP=" + mapPath,
		"SQ_HAPROXY_ADMIN=ipv4@" + admin, "SQ_MAXCONN=200"}, rest, cfgs[0], bePath, cfgs[1], httpPath)
	hc := &http.Client{Timeout: 10 * time.Second}
	const c = "3.1.4/1.5.9/2.6.5"
	proxied := "http://" + rest + "/api/v2/"

	for _, tc := range []struct{ name, hdr string }{
		{name: "a1", hdr: "Authorization"}, {name: "a2", hdr: "X-SQ-API-Key"},
		{name: "b1", hdr: "X-SQ-API-Key"}, {name: "b2", hdr: "Authorization"},
	} {
		t.Run("route-"+tc.name+"-"+tc.hdr, func(t *testing.T) {
			own := host[tc.name]
			other := h1
			if own == h1 {
				other = h2
			}
			tok := own.tokens[tc.name]
			code, body := restCall(t, hc, "POST", proxied+"update?c="+c, tc.hdr, tok, "via proxy "+tc.name)
			if code != 200 {
				t.Fatalf("update through haproxy: %d %q", code, body)
			}
			code, body = restCall(t, hc, "GET", "http://"+own.httpAddr+"/api/v2/select?c="+c, tc.hdr, tok, "")
			if code != 200 || body != "via proxy "+tc.name {
				t.Fatalf("direct read on the tenant's host: %d %q", code, body)
			}
			if code, _ := restCall(t, hc, "GET", "http://"+other.httpAddr+"/api/v2/select?c="+c, tc.hdr, tok, ""); code != 401 {
				t.Fatalf("the other host answered %d for %s, want 401", code, tc.name)
			}
		})
	}
	t.Run("bad-bearer-good-api-key", func(t *testing.T) {
		// The server tries Authorization first, then X-SQ-API-Key; the
		// proxy routes the same way.
		req, _ := http.NewRequest("GET", proxied+"select?c="+c, nil)
		req.Header.Set("Authorization", "Bearer pmb-v1-999-000000000000000000000000")
		req.Header.Set("X-SQ-API-Key", h2.tokens["b1"])
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "via proxy b1" {
			t.Fatalf("%d %q", resp.StatusCode, b)
		}
	})
	t.Run("unknown-token-401", func(t *testing.T) {
		for _, hdr := range []string{"Authorization", "X-SQ-API-Key", ""} {
			if code, body := restCall(t, hc, "GET", proxied+"select?c="+c, hdr, "pmb-v1-999-000000000000000000000000", ""); code != 401 {
				t.Fatalf("%s: %d %q, want 401", hdr, code, body)
			}
		}
	})
	t.Run("admin-surface-refused", func(t *testing.T) {
		// Percent-encoded forms too: the hosts route on the decoded path.
		for _, path := range []string{"/metrics", "/api/v2/reload", "/admin/tenants",
			"/%6detrics", "/api/v2/%72eload", "/%61dmin/tenants", "/api%2Fv2%2Freload"} {
			if code, _ := restCall(t, hc, "GET", "http://"+rest+path, "", "", ""); code != 403 {
				t.Fatalf("%s through haproxy: %d, want 403", path, code)
			}
		}
		for _, path := range []string{"/api/v2/reload", "/api/v2/%72eload"} {
			if code, _ := restCall(t, hc, "POST", "http://"+rest+path, "", "", ""); code != 403 {
				t.Fatalf("POST %s through haproxy: %d, want 403", path, code)
			}
		}
	})
	t.Run("moved-tenant", func(t *testing.T) {
		// One keep-alive client throughout: HTTP mode routes each request.
		tok := h1.tokens["a1"]
		if code, _ := restCall(t, hc, "GET", proxied+"select?c="+c, "Authorization", tok, ""); code != 200 {
			t.Fatalf("a1 before the move: %d", code)
		}
		// Host 2 takes a1 (a new data dir there), host 1 drops it, then
		// the map entry changes: the order of deploy/move-tenant.sh.
		moveEntry(t, h1.cfgPath, h2.cfgPath, "a1", filepath.Join(h2.dir, "a1"))
		for _, h := range []*testServer{h2, h1} {
			if code, body := restCall(t, hc, "POST", "http://"+h.httpAddr+"/api/v2/reload", "Authorization", testAdminToken, ""); code != 200 {
				t.Fatalf("reload: %d %q", code, body)
			}
		}
		if ans := haproxyCmd(t, admin, "set map "+mapPath+" "+tok+" sq_host2"); strings.TrimSpace(ans) != "" {
			t.Fatalf("set map: %q", ans)
		}
		code, body := restCall(t, hc, "POST", proxied+"update?c="+c, "Authorization", tok, "after the move")
		if code != 200 {
			t.Fatalf("a1 after the move through haproxy: %d %q", code, body)
		}
		if code, body := restCall(t, hc, "GET", "http://"+h2.httpAddr+"/api/v2/select?c="+c, "X-SQ-API-Key", tok, ""); code != 200 || body != "after the move" {
			t.Fatalf("a1's write after the move is not on host 2: %d %q", code, body)
		}
		if code, _ := restCall(t, hc, "GET", "http://"+h1.httpAddr+"/api/v2/select?c="+c, "X-SQ-API-Key", tok, ""); code != 401 {
			t.Fatalf("host 1 still serves a1: %d", code)
		}
	})
}

// moveEntry moves tenant name from the config at from to the one at to,
// with data dir dir.
func moveEntry(t *testing.T, from, to, name, dir string) {
	t.Helper()
	src, err := config.Load(from)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := config.Load(to)
	if err != nil {
		t.Fatal(err)
	}
	for tok, e := range src.Tenants {
		if e.Name == name {
			delete(src.Tenants, tok)
			e.DataDir = dir
			dst.Tenants[tok] = e
		}
	}
	if err := config.WriteFile(to, dst); err != nil {
		t.Fatal(err)
	}
	if err := config.WriteFile(from, src); err != nil {
		t.Fatal(err)
	}
}
