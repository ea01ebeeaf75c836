package server

import (
	"testing"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
)

// TestMemBudgetParent: a tenant's share reserves in itself and in the
// server budget; what does not fit in either is refused with nothing left
// reserved in the other, every refusal is counted by the server, and a
// release returns the bytes to both.
func TestMemBudgetParent(t *testing.T) {
	srv := &memBudget{limit: 100}
	a := &memBudget{limit: 60, parent: srv}
	b := &memBudget{limit: 60, parent: srv}
	if !a.tryReserve(50) || !b.tryReserve(40) {
		t.Fatal("reservations within both budgets refused")
	}
	if a.tryReserve(11) { // over a's share (61 > 60), the server has room
		t.Fatal("a went past its share")
	}
	if b.tryReserve(20) { // within b's share (60) but over the server's (110)
		t.Fatal("b went past the server budget")
	}
	if a.used.Load() != 50 || b.used.Load() != 40 || srv.used.Load() != 90 {
		t.Fatalf("a refusal left bytes reserved: a %d b %d server %d", a.used.Load(), b.used.Load(), srv.used.Load())
	}
	if srv.refused.Load() != 2 || a.refused.Load() != 1 || b.refused.Load() != 0 {
		t.Fatalf("refusals: server %d a %d b %d, want 2 1 0", srv.refused.Load(), a.refused.Load(), b.refused.Load())
	}
	a.release(50)
	b.release(40)
	if a.used.Load() != 0 || b.used.Load() != 0 || srv.used.Load() != 0 {
		t.Fatalf("release: a %d b %d server %d", a.used.Load(), b.used.Load(), srv.used.Load())
	}
	if srv.peak.Load() != 90 || a.peak.Load() != 50 {
		t.Fatalf("peaks: server %d a %d", srv.peak.Load(), a.peak.Load())
	}
}

// TestTenantMemoryShareSurvivesReload: a reload that replaces a tenant's
// *tenant (here a token rotation) keeps its memory share, so what the old
// value's connections reserved still counts against the name and is
// released to the budget it was reserved in; a new tenant gets its own.
func TestTenantMemoryShareSurvivesReload(t *testing.T) {
	e := startEnv(t, envOptions{tenants: []string{"alpha", "beta"}})
	old := e.srv.table.Load().byName["alpha"]
	if old.mem == nil || old.mem.parent != &e.srv.mem || old.mem.limit != e.srv.opts.MaxClientMemoryPerTenant {
		t.Fatalf("alpha's share: %+v", old.mem)
	}
	if beta := e.srv.table.Load().byName["beta"]; beta.mem == old.mem {
		t.Fatal("two tenants share one budget")
	}
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	entry := cfg.Tenants[e.tokens["alpha"]]
	delete(cfg.Tenants, e.tokens["alpha"])
	newTok, _ := config.GenerateToken(7)
	cfg.Tenants[newTok] = entry
	gTok, _ := config.GenerateToken(8)
	cfg.Tenants[gTok] = config.TenantEntry{Name: "gamma", DataDir: e.dir + "/gamma"}
	if _, err := e.reloadCfg(cfg); err != nil {
		t.Fatal(err)
	}
	tab := e.srv.table.Load()
	nw := tab.byName["alpha"]
	if nw == old {
		t.Fatal("the token rotation did not replace the *tenant (test premise)")
	}
	if nw.mem != old.mem {
		t.Fatal("the reload gave alpha a fresh budget: reservations of its old connections would be uncounted")
	}
	if nw.heavy == nil || nw.heavy != old.heavy {
		t.Fatal("the reload gave alpha a fresh heavy turn: its old and new connections could run heavy requests at once")
	}
	if g := tab.byName["gamma"]; g.mem == nil || g.mem == old.mem || g.mem.parent != &e.srv.mem {
		t.Fatalf("gamma's share: %+v", g.mem)
	}
}

// TestUncollectedGarbageCounts: bytes released to the server budget count
// against it until the collection that took them has run: a reservation
// that fits only without them is refused (and starts a collection), and
// fits once the collection has run.
func TestUncollectedGarbageCounts(t *testing.T) {
	srv := &memBudget{limit: 100 << 20, headroom: 10 << 20}
	share := &memBudget{limit: 80 << 20, parent: srv}
	if !share.tryReserve(60 << 20) {
		t.Fatal("a reservation within the budget refused")
	}
	srv.collecting.Store(true) // a collection is running: none starts now
	share.release(60 << 20)
	if g := srv.garbage.Load(); g != 60<<20 {
		t.Fatalf("garbage %d after a release, want %d", g, 60<<20)
	}
	if share.tryReserve(60 << 20) {
		t.Fatal("60 MiB reserved over 60 MiB of uncollected garbage in a 100 MiB budget")
	}
	if !share.tryReserve(30 << 20) {
		t.Fatal("30 MiB refused: it fits with the garbage")
	}
	share.release(30 << 20)
	srv.collecting.Store(false)
	if share.tryReserve(60 << 20) { // refused again, and starts a collection
		t.Fatal("reserved before any collection ran")
	}
	sqtest.CheckFor(t, 10*time.Second, "the collection to take the garbage", func() bool {
		return srv.garbage.Load() == 0 && !srv.collecting.Load()
	})
	if !share.tryReserve(60 << 20) {
		t.Fatal("refused after the collection")
	}
	if srv.gcs.Load() == 0 {
		t.Fatal("no collection counted")
	}
}
