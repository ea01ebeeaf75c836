package httpapi

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

const testAdminToken = "pmb-admin-000000000000000000000001"

func startAdmin(t *testing.T, binary bool) *restEnv {
	t.Helper()
	var e *restEnv
	if binary {
		e = startREST(t, envOptions{}, Options{})
	} else {
		e = startHTTPOnly(t, envOptions{}, Options{})
	}
	e.rewriteConfig(func(c *config.Config) { c.AdminToken = testAdminToken })
	return e
}

func (e *restEnv) admin(method, path string) answer {
	e.t.Helper()
	return e.call(method, path, "", "Authorization", "Bearer "+testAdminToken)
}

func decodeJSON[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatalf("%d %q: %v", a.code, a.body, err)
	}
	return v
}

func TestAdminAuthAndRoutes(t *testing.T) {
	e := startAdmin(t, false)
	tests := []struct {
		name   string
		method string
		path   string
		hdr    []string
		code   int
	}{
		{name: "no token", method: "GET", path: "/admin/tenants", code: 401},
		{name: "tenant token", method: "GET", path: "/admin/tenants", hdr: []string{"Authorization", "Bearer " + e.tokenOf("alpha")}, code: 401},
		{name: "api key header is not admin auth", method: "GET", path: "/admin/tenants", hdr: []string{"X-SQ-API-Key", testAdminToken}, code: 401},
		{name: "list", method: "GET", path: "/admin/tenants", hdr: []string{"Authorization", "Bearer " + testAdminToken}, code: 200},
		{name: "list trailing slash", method: "GET", path: "/admin/tenants/", hdr: []string{"Authorization", "Bearer " + testAdminToken}, code: 200},
		{name: "bare admin token", method: "GET", path: "/admin/tenants", hdr: []string{"Authorization", testAdminToken}, code: 200},
		{name: "one", method: "GET", path: "/admin/tenants/alpha", hdr: []string{"Authorization", "Bearer " + testAdminToken}, code: 200},
		{name: "unknown tenant", method: "GET", path: "/admin/tenants/zeta", hdr: []string{"Authorization", "Bearer " + testAdminToken}, code: 404},
		{name: "unknown route", method: "GET", path: "/admin/nope", hdr: []string{"Authorization", "Bearer " + testAdminToken}, code: 404},
		{name: "unknown action", method: "POST", path: "/admin/tenants/alpha/explode", hdr: []string{"Authorization", "Bearer " + testAdminToken}, code: 404},
		{name: "list by POST", method: "POST", path: "/admin/tenants", hdr: []string{"Authorization", "Bearer " + testAdminToken}, code: 405},
		{name: "disable by GET", method: "GET", path: "/admin/tenants/alpha/disable", hdr: []string{"Authorization", "Bearer " + testAdminToken}, code: 405},
		{name: "disable unknown", method: "POST", path: "/admin/tenants/zeta/disable", hdr: []string{"Authorization", "Bearer " + testAdminToken}, code: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.call(tc.method, tc.path, "", tc.hdr...)
			if a.code != tc.code {
				t.Fatalf("code %d %q, want %d", a.code, a.body, tc.code)
			}
			if !strings.HasPrefix(a.hdr.Get("Content-Type"), "application/json") {
				t.Fatalf("content type %q", a.hdr.Get("Content-Type"))
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(a.body), &v); err != nil {
				t.Fatalf("not JSON: %q", a.body)
			}
		})
	}
	t.Run("no admin token configured", func(t *testing.T) {
		e.rewriteConfig(func(c *config.Config) { c.AdminToken = "" })
		defer e.rewriteConfig(func(c *config.Config) { c.AdminToken = testAdminToken })
		if a := e.admin("GET", "/admin/tenants"); a.code != 401 {
			t.Fatalf("code %d", a.code)
		}
	})
}

func TestAdminListAndStats(t *testing.T) {
	e := startAdmin(t, false)
	e.want(e.as("alpha", "POST", "/api/v2/insert?p=a&c=1.1.1/1.1.1/1.1.1", "0123456789"), 200, "Inserted 10 bytes")
	e.want(e.as("alpha", "POST", "/api/v2/insert?p=b&c=1.1.1/1.1.1/1.1.2", "abc"), 200, "Inserted 3 bytes")
	e.as("alpha", "POST", "/api/v2/insert?p=b&c=1.1.1/1.1.1/1.1.2", "bad\x01")

	list := decodeJSON[struct{ Tenants []AdminTenant }](t, e.admin("GET", "/admin/tenants"))
	if len(list.Tenants) != 2 || list.Tenants[0].Name != "alpha" || list.Tenants[1].Name != "beta" {
		t.Fatalf("list %+v", list)
	}
	a := list.Tenants[0]
	if !a.Enabled || a.Bytes != 13+2*store.ScrollCost || a.Phexts != 2 || a.Scrolls != 2 || a.Requests != 3 || a.Errors != 1 || a.Ops != nil {
		t.Fatalf("alpha %+v", a)
	}
	if a.DataDir != filepath.Join(e.dir, "alpha") {
		t.Fatalf("data dir %q", a.DataDir)
	}

	one := decodeJSON[AdminTenant](t, e.admin("GET", "/admin/tenants/alpha"))
	ins, ok := one.Ops["INSERT"]
	if !ok || ins.Requests != 3 || ins.Statuses["OK"] != 2 || ins.Statuses["BAD_SCROLL"] != 1 || ins.BytesIn == 0 {
		t.Fatalf("ops %+v", one.Ops)
	}
}

func TestAdminDisableEnable(t *testing.T) {
	e := startAdmin(t, true)
	tok := e.tokenOf("alpha")
	e.want(e.as("alpha", "POST", "/api/v2/update?c=1.1.1/1.1.1/1.1.1", "still here"), 200, "Updated 10 bytes")
	bin := e.dial("alpha")

	ch := decodeJSON[AdminChange](t, e.admin("POST", "/admin/tenants/alpha/disable"))
	if !ch.Changed || ch.Enabled || !strings.Contains(ch.Reload, "reloaded") {
		t.Fatalf("disable: %+v", ch)
	}
	// Persisted, atomically written, and the tenant is off on both protocols.
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tenants[tok].IsEnabled() || cfg.AdminToken != testAdminToken {
		t.Fatalf("config after disable: %+v", cfg.Tenants[tok])
	}
	e.want(e.as("alpha", "GET", "/api/v2/version", ""), 401, "Unauthorized")
	bin.expectClosed(5e9)
	if _, err := client.Dial(context.Background(), e.srv.Addr(), tok); client.StatusOf(err) != protocol.StatusAuth {
		t.Fatalf("HELLO of a disabled tenant: %v", err)
	}
	e.want(e.as("beta", "GET", "/api/v2/version", ""), 200, server.Version)

	// The list shows it disabled; disabling again changes nothing.
	list := decodeJSON[struct{ Tenants []AdminTenant }](t, e.admin("GET", "/admin/tenants"))
	if len(list.Tenants) != 2 || list.Tenants[0].Name != "alpha" || list.Tenants[0].Enabled {
		t.Fatalf("list %+v", list)
	}
	one := decodeJSON[AdminTenant](t, e.admin("GET", "/admin/tenants/alpha"))
	if one.Enabled {
		t.Fatalf("one %+v", one)
	}
	if ch := decodeJSON[AdminChange](t, e.admin("POST", "/admin/tenants/alpha/disable")); ch.Changed {
		t.Fatalf("second disable: %+v", ch)
	}

	ch = decodeJSON[AdminChange](t, e.admin("POST", "/admin/tenants/alpha/enable"))
	if !ch.Changed || !ch.Enabled {
		t.Fatalf("enable: %+v", ch)
	}
	e.want(e.as("alpha", "GET", "/api/v2/select?c=1.1.1/1.1.1/1.1.1", ""), 200, "still here")
	b := e.dial("alpha")
	if got := b.ok(protocol.OpSelect, "", phext.Origin, nil); string(got) != "still here" {
		t.Fatalf("binary select %q", got)
	}
	raw, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), `"enabled"`) {
		t.Fatalf("enable should drop the field (SQ format): %s", raw)
	}
}

func TestAdminKeepsRelativeDataDirs(t *testing.T) {
	e := startAdmin(t, false)
	// Rewrite the file with relative data dirs, as SQ deployments have.
	rel := &config.Config{Tenants: map[string]config.TenantEntry{}, AdminToken: testAdminToken}
	for tok, ent := range e.cfg.Tenants {
		r, err := filepath.Rel(filepath.Dir(e.cfgPath), ent.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		ent.DataDir = r
		rel.Tenants[tok] = ent
	}
	if err := config.WriteFile(e.cfgPath, rel); err != nil {
		t.Fatal(err)
	}
	if a := e.admin("POST", "/admin/tenants/beta/disable"); a.code != 200 {
		t.Fatalf("%d %q", a.code, a.body)
	}
	raw, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range parsed.Tenants {
		if filepath.IsAbs(ent.DataDir) {
			t.Fatalf("data dir made absolute: %s", raw)
		}
	}
}

func TestAdminRollbackOnFailedReload(t *testing.T) {
	e := startAdmin(t, false)
	// A disabled tenant whose data dir is a file cannot be opened: enabling
	// it must fail, leave the file as it was and keep serving.
	blocker := filepath.Join(e.dir, "blocked")
	if err := writeFile(blocker, "not a dir"); err != nil {
		t.Fatal(err)
	}
	tok, _ := config.GenerateToken(7)
	off := false
	e.rewriteConfig(func(c *config.Config) {
		c.Tenants[tok] = config.TenantEntry{Name: "omega", DataDir: blocker, Enabled: &off}
	})
	before, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a := e.admin("POST", "/admin/tenants/omega/enable")
	if a.code != 500 || !strings.Contains(a.body, "change undone") {
		t.Fatalf("%d %q", a.code, a.body)
	}
	after, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := config.Parse(before)
	pa, err := config.Parse(after)
	if err != nil || pa.Tenants[tok].IsEnabled() || len(pa.Tenants) != len(pb.Tenants) {
		t.Fatalf("config not restored: %s", after)
	}
	e.want(e.as("alpha", "GET", "/api/v2/version", ""), 200, server.Version)
	if m := scrape(t, e); m[`sq_reloads_total{result="failed"}`] != 1 {
		t.Fatalf("failed reloads %v", m[`sq_reloads_total{result="failed"}`])
	}
}

func TestAdminWithoutConfigPath(t *testing.T) {
	e := startAdmin(t, false)
	h := Handler(e.srv, Options{}) // no ConfigPath
	do := func(method, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := do("POST", "/admin/tenants/alpha/disable"); rec.Code != 503 {
		t.Fatalf("disable without a config path: %d %s", rec.Code, rec.Body)
	}
	rec := do("GET", "/admin/tenants")
	var list struct{ Tenants []AdminTenant }
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list.Tenants) != 2 || !list.Tenants[0].Enabled {
		t.Fatalf("list without a config path: %d %s", rec.Code, rec.Body)
	}
	e.want(e.as("alpha", "GET", "/api/v2/version", ""), 200, server.Version)
}
