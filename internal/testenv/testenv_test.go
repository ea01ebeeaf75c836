package testenv

import (
	"context"
	"testing"

	"github.com/phext/sq/store"
)

type noServer struct{ stopped bool }

func (s *noServer) Shutdown(context.Context) error { s.stopped = true; return nil }

// TestOpen: the tenants file holds each named tenant under its token and
// reads back through LoadConfig; what a tenant wrote before Stop is there
// for ReopenTenant.
func TestOpen(t *testing.T) {
	e := Open(t, Options{Tenants: []string{"alpha", "gamma"}})
	cfg, err := e.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range e.Tokens {
		if got := cfg.Tenants[tok].Name; got != name {
			t.Fatalf("token of %s names %q", name, got)
		}
	}
	if len(cfg.Tenants) != 2 || cfg.MetricsToken != MetricsToken {
		t.Fatalf("config: %d tenants, metrics token %q", len(cfg.Tenants), cfg.MetricsToken)
	}
	tn, err := e.Store.AddTenant(store.TenantConfig{Name: "alpha", DataDir: cfg.Tenants[e.Tokens["alpha"]].DataDir})
	if err != nil {
		t.Fatal(err)
	}
	c := MustCoord(t, "1.1.1/1.1.1/1.1.2")
	if _, err := tn.Update(nil, c, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	srv := &noServer{}
	e.Stop(t, srv)
	if !srv.stopped {
		t.Fatal("Stop did not shut the server down")
	}
	got, err := e.ReopenTenant(t, "alpha").AppendSelect(nil, nil, c)
	if err != nil || string(got) != "kept" {
		t.Fatalf("reopened: %q (%v)", got, err)
	}
}
