package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/phext/sq/store"
)

// buildTable opens every enabled tenant of cfg in the store and returns the
// token table. Tenants of old whose name, data dir and token are unchanged
// keep their *tenant, so their connections carry on untouched. It also
// returns the tenants of old that are gone (removed, disabled, token
// rotated, moved to another data dir).
func (s *Server) buildTable(cfg *Config, old *tenantTable) (*tenantTable, []*tenant, error) {
	t := &tenantTable{
		byKey:  make(map[tokenKey]*tenant, len(cfg.Tenants)),
		byName: make(map[string]*tenant, len(cfg.Tenants)),
	}
	if cfg.AdminToken != "" {
		t.admin, t.hasAdm = keyOf([]byte(cfg.AdminToken)), true
	}
	for _, tok := range cfg.SortedTokens() {
		e := cfg.Tenants[tok]
		if !e.IsEnabled() {
			continue
		}
		dur := store.DurabilityDefault
		if e.Durability != "" {
			d, err := store.ParseDurability(e.Durability)
			if err != nil {
				return nil, nil, fmt.Errorf("tenant %q: %w", e.Name, err)
			}
			dur = d
		}
		key := keyOf([]byte(tok))
		if old != nil {
			if prev := old.byKey[key]; prev != nil && prev.name == e.Name &&
				filepath.Clean(prev.entry.DataDir) == filepath.Clean(e.DataDir) {
				// Same tenant: update quota and durability in place.
				if _, err := s.st.AddTenant(store.TenantConfig{Name: e.Name, DataDir: e.DataDir,
					QuotaBytes: e.QuotaBytes(), Durability: dur}); err != nil {
					return nil, nil, fmt.Errorf("tenant %q: %w", e.Name, err)
				}
				t.byKey[key] = prev
				t.byName[e.Name] = prev
				continue
			}
			if prev := old.byName[e.Name]; prev != nil &&
				filepath.Clean(prev.entry.DataDir) != filepath.Clean(e.DataDir) {
				// Moved to another data dir: the store tenant must be
				// reopened on the new dir.
				if err := s.st.RemoveTenant(e.Name); err != nil {
					return nil, nil, fmt.Errorf("tenant %q: closing old data dir: %w", e.Name, err)
				}
			}
		}
		if _, err := os.Stat(e.DataDir); errors.Is(err, fs.ErrNotExist) {
			// New tenants start this way; for an existing one it means its
			// data dir vanished, which an operator must be able to see.
			s.log.Info("data dir missing; creating it empty", "tenant", e.Name, "data_dir", e.DataDir)
		}
		st, err := s.st.AddTenant(store.TenantConfig{Name: e.Name, DataDir: e.DataDir,
			QuotaBytes: e.QuotaBytes(), Durability: dur})
		if err != nil {
			return nil, nil, fmt.Errorf("tenant %q (data_dir %s): %w", e.Name, e.DataDir, err)
		}
		tn := &tenant{name: e.Name, entry: e, st: st, stats: new(tenantStats)}
		if old != nil {
			// A rotated token keeps the tenant's counters.
			if prev := old.byName[e.Name]; prev != nil {
				tn.stats = prev.stats
			}
		}
		t.byKey[key] = tn
		t.byName[e.Name] = tn
	}
	var gone []*tenant
	if old != nil {
		for key, prev := range old.byKey {
			if t.byKey[key] != prev {
				gone = append(gone, prev)
			}
		}
	}
	return t, gone, nil
}

// Reload swaps in cfg: new tenants can connect at once; connections of
// removed, disabled or re-keyed tenants are closed; unchanged tenants are
// not touched. On error the old configuration stays in place.
func (s *Server) Reload(cfg *Config) (string, error) {
	if err := cfg.Validate(); err != nil {
		s.stats.reloadsFailed.Add(1)
		return "", err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.table.Load()
	t, gone, err := s.buildTable(cfg, old)
	if err != nil {
		s.log.Error("reload refused; keeping the old config", "err", err)
		s.stats.reloadsFailed.Add(1)
		return "", err
	}
	s.table.Store(t)
	s.stats.reloadsOK.Add(1)
	for _, g := range gone {
		g.closed.Store(true)
	}
	closed := s.closeConnsOf(gone)
	removed := 0
	for _, g := range gone {
		if _, still := t.byName[g.name]; !still {
			if err := s.st.RemoveTenant(g.name); err != nil {
				s.log.Warn("reload: closing tenant", "tenant", g.name, "err", err)
			}
			removed++
		}
	}
	added := 0
	for name := range t.byName {
		if _, ok := old.byName[name]; !ok {
			added++
		}
	}
	msg := fmt.Sprintf("reloaded: %d tenants (%d added, %d removed or disabled, %d connections closed)",
		len(t.byName), added, removed, closed)
	s.log.Info("tenant config reloaded", "tenants", len(t.byName), "added", added,
		"removed", removed, "conns_closed", closed)
	return msg, nil
}

// ReloadFromSource re-reads the configuration with Options.LoadConfig and
// applies it.
func (s *Server) ReloadFromSource() (string, error) {
	if s.opts.LoadConfig == nil {
		return "", fmt.Errorf("%w: no config source (the server runs without --config reload support)", ErrConfig)
	}
	cfg, err := s.opts.LoadConfig()
	if err != nil {
		s.log.Error("reload refused; keeping the old config", "err", err)
		s.stats.reloadsFailed.Add(1)
		return "", err
	}
	return s.Reload(cfg)
}

func (s *Server) closeConnsOf(gone []*tenant) int {
	if len(gone) == 0 {
		return 0
	}
	set := make(map[*tenant]bool, len(gone))
	for _, g := range gone {
		set[g] = true
	}
	n := 0
	for _, cs := range s.snapshotConns() {
		if t := cs.tenantPtr.Load(); t != nil && set[t] {
			cs.closeWith(closeTenantGone)
			n++
		}
	}
	return n
}
