package server_test

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

const (
	privAdminToken   = "admin-token-for-privilege-test-01"
	privMetricsToken = "metrics-token-for-privilege-test-01"
)

// httpDo sends one request over real loopback TCP with an optional
// Authorization header.
func httpDo(t *testing.T, addr, method, path, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// addTenantToFile adds tenant "newcomer" to the config file (not yet
// reloaded) and returns its token.
func addTenantToFile(t *testing.T, h *hostile) string {
	t.Helper()
	cfg, err := config.Load(h.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := config.GenerateToken(77)
	cfg.Tenants[tok] = config.TenantEntry{Name: "newcomer", DataDir: filepath.Join(h.dir, "data", "newcomer")}
	if err := config.WriteFile(h.cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	return tok
}

func helloStatus(t *testing.T, h *hostile, tok string) protocol.Status {
	t.Helper()
	c, err := dialP(h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	status, _, err := c.hello(tok)
	if err != nil {
		t.Fatal(err)
	}
	return status
}

// TestNoPrivilegeFromLoopback: in the default configuration a loopback
// peer (which every client is behind stunnel, HAProxy or nginx on the same
// host) has no privilege. A tenant connection's RELOAD is refused with
// AUTH and reloads nothing; POST /api/v2/reload, GET /metrics and /admin
// without the admin (or metrics) token are refused. Before, all four were
// open to loopback.
func TestNoPrivilegeFromLoopback(t *testing.T) {
	h := startHostile(t, hostileOpts{http: true, extra: func(c *config.Config) {
		c.AdminToken, c.MetricsToken = privAdminToken, privMetricsToken
	}})
	newTok := addTenantToFile(t, h)

	t.Run("binary RELOAD with a tenant token", func(t *testing.T) {
		a := h.dial(t, "alice")
		a.must(t, protocol.StatusAuth, protocol.OpReload, "", phext.Origin, nil)
		if status := helloStatus(t, h, newTok); status != protocol.StatusAuth {
			t.Fatalf("a tenant's RELOAD applied the config: newcomer HELLO %v", status)
		}
		// The tenant connection itself is fine.
		a.must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	})
	t.Run("REST reload", func(t *testing.T) {
		for _, auth := range []string{"", h.tokens["bob"], privMetricsToken} {
			if code, body := httpDo(t, h.httpAddr, "POST", "/api/v2/reload", auth); code != 403 {
				t.Fatalf("reload with %q: %d %q", auth, code, body)
			}
		}
		if status := helloStatus(t, h, newTok); status != protocol.StatusAuth {
			t.Fatalf("REST reload without the admin token applied the config: %v", status)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		for _, auth := range []string{"", h.tokens["bob"]} {
			if code, _ := httpDo(t, h.httpAddr, "GET", "/metrics", auth); code != 401 {
				t.Fatalf("metrics with %q: %d", auth, code)
			}
		}
		for _, auth := range []string{privMetricsToken, privAdminToken} {
			if code, _ := httpDo(t, h.httpAddr, "GET", "/metrics", auth); code != 200 {
				t.Fatalf("metrics with the metrics/admin token: %d", code)
			}
		}
	})
	t.Run("admin", func(t *testing.T) {
		for _, auth := range []string{"", h.tokens["bob"], privMetricsToken} {
			if code, _ := httpDo(t, h.httpAddr, "GET", "/admin/tenants", auth); code != 401 {
				t.Fatalf("admin with %q: %d", auth, code)
			}
			if code, _ := httpDo(t, h.httpAddr, "POST", "/admin/tenants/bob/disable", auth); code != 401 {
				t.Fatalf("admin disable with %q: %d", auth, code)
			}
		}
		if code, _ := httpDo(t, h.httpAddr, "GET", "/admin/tenants", privAdminToken); code != 200 {
			t.Fatalf("admin with the admin token: %d", code)
		}
	})
	t.Run("admin token reloads", func(t *testing.T) {
		adm, err := dialP(h.srv.Addr())
		must(t, err)
		t.Cleanup(func() { adm.nc.Close() })
		if status, body, err := adm.hello(privAdminToken); err != nil || status != protocol.StatusOK {
			t.Fatalf("admin HELLO: %v %v %s", err, status, body)
		}
		adm.must(t, protocol.StatusOK, protocol.OpReload, "", phext.Origin, nil)
		if status := helloStatus(t, h, newTok); status != protocol.StatusOK {
			t.Fatalf("newcomer after the admin's RELOAD: %v", status)
		}
	})
}

// TestTrustLoopbackOptIn: with Options.TrustLoopback (sq host
// --trust-loopback, the dev default) a loopback peer may reload (binary,
// on a tenant connection, and REST) and scrape /metrics without a token;
// the /admin API still needs the admin token.
func TestTrustLoopbackOptIn(t *testing.T) {
	h := startHostile(t, hostileOpts{http: true, opts: server.Options{TrustLoopback: true}})
	newTok := addTenantToFile(t, h)
	a := h.dial(t, "alice")
	if body := a.must(t, protocol.StatusOK, protocol.OpReload, "", phext.Origin, nil); !strings.Contains(string(body), "reloaded") {
		t.Fatalf("RELOAD answer %q", body)
	}
	if status := helloStatus(t, h, newTok); status != protocol.StatusOK {
		t.Fatalf("newcomer after a trusted RELOAD: %v", status)
	}
	if code, body := httpDo(t, h.httpAddr, "POST", "/api/v2/reload", ""); code != 200 {
		t.Fatalf("trusted REST reload: %d %q", code, body)
	}
	if code, _ := httpDo(t, h.httpAddr, "GET", "/metrics", ""); code != 200 {
		t.Fatalf("trusted metrics: %d", code)
	}
	if code, _ := httpDo(t, h.httpAddr, "GET", "/admin/tenants", ""); code != 401 {
		t.Fatalf("admin without a token under trust-loopback: %d", code)
	}
}

// TestAdminTokenMustNotBeATenantToken: a config whose admin_token (or
// metrics_token) is also a tenant's token is refused: that tenant would
// hold the admin's rights.
func TestAdminTokenMustNotBeATenantToken(t *testing.T) {
	tok, _ := config.GenerateToken(1)
	for _, tc := range []struct {
		name string
		cfg  config.Config
	}{
		{name: "admin", cfg: config.Config{AdminToken: tok}},
		{name: "metrics", cfg: config.Config{MetricsToken: tok}},
		{name: "admin is metrics", cfg: config.Config{AdminToken: "same-token-0123", MetricsToken: "same-token-0123"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.Tenants = map[string]config.TenantEntry{tok: {Name: "a", DataDir: t.TempDir()}}
			if err := c.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
