package server

import (
	"testing"

	"github.com/phext/sq/config"
)

// TestTenantStateFollowsStoreTenant: across a reload a tenant keeps its
// memory shares, heavy turn and schedule of new connections (with any
// bad-frame penalty) exactly while it keeps its store tenant, its name and
// data dir: through a token rotation. A new tenant given a name another
// tenant had (with its own data dir) starts fresh, and so does a renamed
// one. Before, these followed the name alone: the new tenant inherited
// the old one's penalty and shared the memory its closing connections
// held.
func TestTenantStateFollowsStoreTenant(t *testing.T) {
	e := startEnv(t, envOptions{tenants: []string{"alpha", "beta", "gamma"}})
	tab := e.srv.table.Load()
	alpha, beta, gamma := tab.byName["alpha"], tab.byName["beta"], tab.byName["gamma"]
	for _, tn := range []*tenant{alpha, beta, gamma} {
		tn.pace.penalize(monoNow(), 1, 1) // as past the bad-frame budget
	}
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	tok := func(seed int) string {
		s, err := config.GenerateToken(seed)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// alpha: a token rotation.
	ae := cfg.Tenants[e.tokens["alpha"]]
	delete(cfg.Tenants, e.tokens["alpha"])
	cfg.Tenants[tok(11)] = ae
	// beta goes; a new tenant gets its name, with a data dir of its own.
	delete(cfg.Tenants, e.tokens["beta"])
	cfg.Tenants[tok(12)] = config.TenantEntry{Name: "beta", DataDir: e.dir + "/beta-new"}
	// gamma is renamed zulu (same token and data dir).
	ge := cfg.Tenants[e.tokens["gamma"]]
	ge.Name = "zulu"
	cfg.Tenants[e.tokens["gamma"]] = ge
	if _, err := e.reloadCfg(cfg); err != nil {
		t.Fatal(err)
	}
	tab = e.srv.table.Load()
	if a := tab.byName["alpha"]; a == alpha || a.pace != alpha.pace || a.mem != alpha.mem || a.frames != alpha.frames || a.heavy != alpha.heavy {
		t.Error("the token rotation did not keep alpha's shares, heavy turn and schedule")
	}
	for _, c := range []struct {
		what string
		old  *tenant
		now  *tenant
	}{{"the new beta", beta, tab.byName["beta"]}, {"zulu (gamma renamed)", gamma, tab.byName["zulu"]}} {
		if c.now == nil {
			t.Fatalf("%s missing", c.what)
		}
		if c.now.pace == c.old.pace || c.now.mem == c.old.mem || c.now.frames == c.old.frames || c.now.heavy == c.old.heavy {
			t.Errorf("%s shares state with the old tenant", c.what)
		}
		if c.now.pace.helloTAT.Load() != 0 {
			t.Errorf("%s inherited a schedule (the old one's penalty)", c.what)
		}
		if c.now.mem.parent != &e.srv.mem || c.now.frames.parent != c.now.mem {
			t.Errorf("%s: shares not wired to the server budget", c.what)
		}
	}
}
