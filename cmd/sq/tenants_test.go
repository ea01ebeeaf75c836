package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/protocol"
)

var tokenRE = regexp.MustCompile(`^pmb-v1-\d{3,}-[0-9a-f]{24}$`)

func TestTenantsGen(t *testing.T) {
	r := runCLI(nil, "", "tenants", "gen", "--count", "12", "--dir", "/var/lib/sq/tenants")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	cfg, err := config.Parse([]byte(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Tenants) != 12 {
		t.Fatalf("%d tenants", len(cfg.Tenants))
	}
	for i, tok := range cfg.SortedTokens() {
		e := cfg.Tenants[tok]
		name := "tenant-" + pad3(i+1)
		if !tokenRE.MatchString(tok) || !strings.HasPrefix(tok, "pmb-v1-"+pad3(i+1)+"-") {
			t.Fatalf("token %q for %s", tok, e.Name)
		}
		if e.Name != name || e.DataDir != "/var/lib/sq/tenants/"+name || !e.IsEnabled() {
			t.Fatalf("entry %+v, want name %s", e, name)
		}
	}
	// Tokens are random: two runs share none.
	r2 := runCLI(nil, "", "tenants", "gen", "--count", "12")
	cfg2, err := config.Parse([]byte(r2.stdout))
	if err != nil {
		t.Fatal(err)
	}
	for tok := range cfg2.Tenants {
		if _, dup := cfg.Tenants[tok]; dup {
			t.Fatalf("token %s generated twice", tok)
		}
	}

	t.Run("to file with admin token and quota", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "t.json")
		r := runCLI(nil, "", "tenants", "gen", "--count", "2", "--dir", "d", "--quota-mb", "5", "--admin-token", "--out", out)
		if r.code != 0 || r.stdout != "" {
			t.Fatalf("%+v", r)
		}
		cfg, err := config.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.AdminToken == "" || len(cfg.Tenants) != 2 {
			t.Fatalf("%+v", cfg)
		}
		for _, e := range cfg.Tenants {
			if e.QuotaMB != 5 {
				t.Fatalf("quota %v", e.QuotaMB)
			}
		}
	})
	for _, bad := range [][]string{{"--count", "0"}, {"--quota-mb", "-1"}, {"extra"}, {"--nope"}} {
		if r := runCLI(nil, "", "tenants", append([]string{"gen"}, bad...)...); r.code != 2 {
			t.Errorf("gen %v: exit %d", bad, r.code)
		}
	}
}

func pad3(n int) string {
	s := "00" + itoa(n)
	return s[len(s)-3:]
}

func TestTenantsEditOffline(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "tenants.json")
	tn := func(args ...string) cliResult {
		return runCLI(nil, "", "tenants", append(args, "--config", cfgPath, "--no-reload")...)
	}
	// The first add needs a dir and creates the file.
	if r := tn("add", "alpha"); r.code != 2 {
		t.Fatalf("add without dir: %+v", r)
	}
	r := tn("add", "alpha", "--dir", "data")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	f := strings.Fields(r.stdout)
	if len(f) != 3 || f[0] != "alpha" || !tokenRE.MatchString(f[1]) || !strings.HasPrefix(f[1], "pmb-v1-001-") || f[2] != filepath.Join("data", "alpha") {
		t.Fatalf("add output %q", r.stdout)
	}
	// Later adds number on and put data next to the others.
	r = tn("add", "beta", "--quota-mb", "2", "--json")
	var added struct{ Name, Token, Data_dir string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &added) != nil {
		t.Fatalf("%+v", r)
	}
	if !strings.HasPrefix(added.Token, "pmb-v1-002-") || added.Data_dir != filepath.Join("data", "beta") {
		t.Fatalf("%+v", added)
	}
	if r := tn("add", "beta"); r.code != 2 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("duplicate add: %+v", r)
	}
	before, _ := os.ReadFile(cfgPath)
	if r := tn("add", "gamma", "--data-dir", filepath.Join("data", "alpha")); r.code != 2 {
		t.Fatalf("shared data dir accepted: %+v", r)
	}
	if after, _ := os.ReadFile(cfgPath); string(after) != string(before) {
		t.Fatal("a refused edit changed the file")
	}
	if r := tn("disable", "beta"); r.code != 0 || r.stdout != "disabled beta\n" {
		t.Fatalf("%+v", r)
	}
	if r := tn("disable", "nobody"); r.code != 2 {
		t.Fatalf("%+v", r)
	}
	cfg, err := config.Parse(mustRead(t, cfgPath))
	if err != nil {
		t.Fatal(err)
	}
	if tok, _ := findTenant(cfg, "beta"); cfg.Tenants[tok].IsEnabled() || cfg.Tenants[tok].QuotaMB != 2 {
		t.Fatalf("beta = %+v", cfg.Tenants[tok])
	}
	// Relative data dirs stay relative in the file.
	if tok, _ := findTenant(cfg, "alpha"); cfg.Tenants[tok].DataDir != filepath.Join("data", "alpha") {
		t.Fatalf("alpha = %+v", cfg.Tenants[tok])
	}
	if st, err := os.Stat(cfgPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v, %v", st.Mode(), err)
	}

	r = runCLI(nil, "", "tenants", "list", "--config", cfgPath, "--json")
	var list struct {
		Tenants []struct {
			Name    string
			Enabled bool
			Token   string
		}
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list.Tenants) != 2 {
		t.Fatalf("%+v", r)
	}
	if list.Tenants[0].Name != "alpha" || !list.Tenants[0].Enabled || list.Tenants[1].Enabled || strings.Contains(r.stdout, f[1]) {
		t.Fatalf("list %+v (tokens must be redacted)", list)
	}
	r = runCLI(nil, "", "tenants", "list", "--config", cfgPath, "--show-tokens")
	if r.code != 0 || !strings.Contains(r.stdout, f[1]) || !strings.Contains(r.stdout, "NAME") {
		t.Fatalf("%+v", r)
	}
	if r := tn("enable", "beta"); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if r := runCLI(nil, "", "tenants", "list"); r.code != 2 {
		t.Fatalf("list without --config: %+v", r)
	}
	if r := runCLI(nil, "", "tenants", "shard", "-h"); r.code != 0 || !strings.Contains(r.stdout+r.stderr, "--hosts") {
		t.Fatalf("shard is not dispatched: %+v", r)
	}
	if r := runCLI(nil, "", "tenants", "frobnicate"); r.code != 2 {
		t.Fatalf("%+v", r)
	}
	if r := runCLI(nil, "", "tenants", "--help"); r.code != 0 || !strings.Contains(r.stdout, "-no-reload") {
		t.Fatalf("%+v", r)
	}
}

// Concurrent adds under the lock file lose no tenant.
func TestTenantsConcurrentAdds(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "tenants.json")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if r := runCLI(nil, "", "tenants", "add", "t"+itoa(i), "--dir", "d", "--config", cfgPath, "--no-reload"); r.code != 0 {
				t.Errorf("%+v", r)
			}
		}(i)
	}
	wg.Wait()
	cfg, err := config.Parse(mustRead(t, cfgPath))
	if err != nil || len(cfg.Tenants) != 8 {
		t.Fatalf("%d tenants, %v", len(cfg.Tenants), err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Against a running server: add makes the new token usable, disable makes
// it refused, both through RELOAD.
func TestTenantsReload(t *testing.T) {
	ts := startTestServer(t, "tenant-001")
	env := map[string]string{"SQ_ADDR": ts.addr, "SQ_CONFIG": ts.cfgPath}
	r := runCLI(env, "", "tenants", "add", "newbie")
	if r.code != 0 || !strings.Contains(r.stderr, "server reloaded") {
		t.Fatalf("add: %+v", r)
	}
	tok := strings.Fields(r.stdout)[1]
	ctx := context.Background()
	c, err := client.Dial(ctx, ts.addr, tok)
	if err != nil {
		t.Fatalf("new tenant cannot connect: %v", err)
	}
	if _, err := c.Update(ctx, "", [9]uint16{1, 1, 1, 1, 1, 1, 1, 1, 1}, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	c.Close()

	if r := runCLI(env, "", "tenants", "disable", "newbie"); r.code != 0 || !strings.Contains(r.stderr, "server reloaded") {
		t.Fatalf("disable: %+v", r)
	}
	if _, err := client.Dial(ctx, ts.addr, tok); client.StatusOf(err) != protocol.StatusAuth {
		t.Fatalf("disabled tenant: %v", err)
	}

	// A reload failure is a warning; the edit stands.
	env["SQ_ADDR"] = "127.0.0.1:1" // nothing listens on port 1
	r = runCLI(env, "", "tenants", "enable", "newbie")
	if r.code != 0 || !strings.Contains(r.stderr, "warning") {
		t.Fatalf("enable with the server away: %+v", r)
	}
	cfg, err := config.Parse(mustRead(t, ts.cfgPath))
	if err != nil {
		t.Fatal(err)
	}
	if tok2, _ := findTenant(cfg, "newbie"); tok2 != tok || !cfg.Tenants[tok].IsEnabled() {
		t.Fatalf("newbie not enabled in the file")
	}
	// sq reload (client command) with a tenant's token is refused, also
	// from loopback; with the admin token it reloads.
	r = runCLI(map[string]string{"SQ_ADDR": ts.addr, "SQ_TOKEN": ts.tokens["tenant-001"]}, "", "reload")
	if r.code == 0 || !strings.Contains(r.stderr, "AUTH") {
		t.Fatalf("reload with a tenant token: %+v", r)
	}
	if _, err := client.Dial(ctx, ts.addr, tok); client.StatusOf(err) != protocol.StatusAuth {
		t.Fatalf("a tenant's reload applied the config: %v", err)
	}
	r = runCLI(map[string]string{"SQ_ADDR": ts.addr, "SQ_TOKEN": testAdminToken}, "", "reload")
	if r.code != 0 {
		t.Fatalf("reload: %+v", r)
	}
	if c, err := client.Dial(ctx, ts.addr, tok); err != nil {
		t.Fatalf("re-enabled tenant: %v", err)
	} else {
		c.Close()
	}
}
