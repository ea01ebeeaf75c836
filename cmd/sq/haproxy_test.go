package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/protocol"
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
		hs, ln, err := ts.srv.StartHTTP("127.0.0.1:0", nil)
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
	cmd := exec.Command(bin, "-db", "-f", cfgPath, "-f", bePath)
	cmd.Env = append(os.Environ(), "SQ_FRONTEND="+front, "SQ_MAP="+mapPath,
		"SQ_HAPROXY_ADMIN=ipv4@"+admin, "SQ_MAXCONN=200")
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Poll until HAProxy listens (checkFor style, bounded).
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", front, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not listen on %s: %v", front, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

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
		checkFor(t, 20*time.Second, "HAProxy marks host 2 DOWN", func() bool {
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
