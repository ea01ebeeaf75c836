package server_test

// Hostile configs: two tenants pointing at one data dir.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phext/sq/config"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// TestTwoTenantsOneDirConfig: a config pointing two tenants at one data
// dir is refused with a message naming both, at start and on reload; a
// refused reload leaves the running tenants serving.
func TestTwoTenantsOneDirConfig(t *testing.T) {
	h := startHostile(t, hostileOpts{})
	bad := &config.Config{Tenants: map[string]config.TenantEntry{}}
	for tok, e := range h.cfg.Tenants {
		bad.Tenants[tok] = e
	}
	bad.Tenants["pmb-v1-050-bbbbbbbbbbbbbbbbbbbbbbbb"] = config.TenantEntry{Name: "eve", DataDir: filepath.Join(h.dir, "data", "alice")}
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "eve") {
		t.Fatalf("validate: %v", err)
	}
	db, _ := store.Open(&store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer db.Close()
	if _, err := server.New(db, bad, &server.Options{Listen: "127.0.0.1:0"}); err == nil {
		t.Fatal("a server started with two tenants on one data dir")
	}
	a := h.dial(t, "alice")
	a.must(t, protocol.StatusOK, protocol.OpInsert, "", c9(1), []byte("before"))
	if _, err := h.srv.Reload(bad); err == nil {
		t.Fatal("reload accepted two tenants on one data dir")
	}
	a.must(t, protocol.StatusOK, protocol.OpInsert, "", c9(1), []byte(" after"))
	if got := a.must(t, protocol.StatusOK, protocol.OpSelect, "", c9(1), nil); string(got) != "before after" {
		t.Fatalf("alice after the refused reload: %q", got)
	}
}

// TestWorldReadableConfigRefused is in cmd/sq (killloop_test.go): the
// check lives in `sq host`.
