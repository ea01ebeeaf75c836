package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/phext/sq/store"
)

// storeConfig is what the store needs of a config entry.
func storeConfig(e TenantEntry) (store.TenantConfig, error) {
	dur := store.DurabilityDefault
	if e.Durability != "" {
		d, err := store.ParseDurability(e.Durability)
		if err != nil {
			return store.TenantConfig{}, fmt.Errorf("tenant %q: %w", e.Name, err)
		}
		dur = d
	}
	return store.TenantConfig{Name: e.Name, DataDir: e.DataDir, QuotaBytes: e.QuotaBytes(), Durability: dur}, nil
}

func sameDir(a, b string) bool { return filepath.Clean(a) == filepath.Clean(b) }

// buildTable opens every enabled tenant of cfg in the store and returns the
// token table. Tenants of old whose name, data dir and token are unchanged
// keep their *tenant, so their connections carry on untouched. It also
// returns the tenants of old that are gone (removed, disabled, token
// rotated, renamed, moved to another data dir).
//
// It changes the store in two phases so that a failure leaves the old
// configuration serving: first everything that closes nothing (new
// tenants, quota and durability updates), undone on error; then moves and
// renames, which must close the old store tenant (the store keys tenants
// by name and by data dir). If one of those fails, the old store tenants
// are reopened and patched is the old table pointing at them; the caller
// publishes it (the affected tenants' connections are closed).
func (s *Server) buildTable(cfg *Config, old *tenantTable) (t *tenantTable, gone []*tenant, patched *tenantTable, err error) {
	t = &tenantTable{
		byKey:  make(map[tokenKey]*tenant, len(cfg.Tenants)),
		byName: make(map[string]*tenant, len(cfg.Tenants)),
	}
	if cfg.AdminToken != "" {
		t.admin, t.hasAdm = keyOf([]byte(cfg.AdminToken)), true
	}
	oldByDir := map[string]*tenant{}
	if old != nil {
		for _, prev := range old.byName {
			oldByDir[filepath.Clean(prev.entry.DataDir)] = prev
		}
	}
	type change struct {
		key  tokenKey
		e    TenantEntry
		sc   store.TenantConfig
		prev *tenant // the old tenant this one replaces in the store, if any
		keep bool    // same token, name and dir: keep prev itself
	}
	var updates, adds, moves []change
	for _, tok := range cfg.SortedTokens() {
		e := cfg.Tenants[tok]
		if !e.IsEnabled() {
			continue
		}
		sc, err := storeConfig(e)
		if err != nil {
			return nil, nil, nil, err
		}
		c := change{key: keyOf([]byte(tok)), e: e, sc: sc}
		if old != nil {
			if prev := old.byKey[c.key]; prev != nil && prev.name == e.Name && sameDir(prev.entry.DataDir, e.DataDir) {
				c.prev, c.keep = prev, true
				updates = append(updates, c)
				continue
			}
			if prev := old.byName[e.Name]; prev != nil {
				c.prev = prev
				if sameDir(prev.entry.DataDir, e.DataDir) {
					updates = append(updates, c) // token rotated: same store tenant
				} else {
					moves = append(moves, c)
				}
				continue
			}
			if prev := oldByDir[filepath.Clean(e.DataDir)]; prev != nil {
				c.prev = prev // renamed, or a new tenant on a removed one's dir
				moves = append(moves, c)
				continue
			}
		}
		adds = append(adds, c)
	}

	// Phase 1: nothing is closed; undo on error.
	var added []string
	var updated []*tenant
	undo := func() {
		for _, name := range added {
			if err := s.st.RemoveTenant(name); err != nil {
				s.log.Warn("reload rollback: closing tenant", "tenant", name, "err", err)
			}
		}
		for _, prev := range updated {
			if sc, err := storeConfig(prev.entry); err == nil {
				s.st.AddTenant(sc) // back to the old quota and durability
			}
		}
	}
	place := func(c change, st *store.Tenant) {
		tn := c.prev
		if !c.keep {
			tn = &tenant{name: c.e.Name, entry: c.e, st: st, stats: new(tenantStats)}
			if c.prev != nil && c.prev.name == c.e.Name {
				tn.stats = c.prev.stats // a rotated or moved tenant keeps its counters
			}
		}
		t.byKey[c.key] = tn
		t.byName[c.e.Name] = tn
	}
	for _, c := range updates {
		st, err := s.st.AddTenant(c.sc)
		if err != nil {
			undo()
			return nil, nil, nil, fmt.Errorf("tenant %q: %w", c.e.Name, err)
		}
		updated = append(updated, c.prev)
		place(c, st)
	}
	for _, c := range adds {
		if _, err := os.Stat(c.e.DataDir); errors.Is(err, fs.ErrNotExist) {
			// New tenants start this way; for an existing one it means its
			// data dir vanished, which an operator must be able to see.
			s.log.Info("data dir missing; creating it empty", "tenant", c.e.Name, "data_dir", c.e.DataDir)
		}
		st, err := s.st.AddTenant(c.sc)
		if err != nil {
			undo()
			return nil, nil, nil, fmt.Errorf("tenant %q (data_dir %s): %w", c.e.Name, c.e.DataDir, err)
		}
		added = append(added, c.e.Name)
		place(c, st)
	}

	// Phase 2: moves and renames close the old store tenant first.
	var closedOld []*tenant
	for _, c := range moves {
		if err := s.st.RemoveTenant(c.prev.name); err != nil {
			err = fmt.Errorf("tenant %q: closing %s: %w", c.prev.name, c.prev.entry.DataDir, err)
			return nil, nil, s.reopen(old, closedOld, undo), err
		}
		closedOld = append(closedOld, c.prev)
		st, err := s.st.AddTenant(c.sc)
		if err != nil {
			err = fmt.Errorf("tenant %q (data_dir %s): %w", c.e.Name, c.e.DataDir, err)
			return nil, nil, s.reopen(old, closedOld, func() {
				undo()
				for _, d := range moves {
					if d.prev == c.prev {
						break
					}
					s.st.RemoveTenant(d.e.Name) // earlier moves: close their new dirs
				}
			}), err
		}
		added = append(added, c.e.Name)
		place(c, st)
	}
	if old != nil {
		for key, prev := range old.byKey {
			if t.byKey[key] != prev {
				gone = append(gone, prev)
			}
		}
	}
	return t, gone, nil, nil
}

// reopen undoes a failed phase 2: it runs undo, reopens the store tenants
// of closedOld on their old data dirs and returns a copy of old in which
// they point at the reopened store tenants (nil when old is nil). The
// replaced *tenant values are marked closed so their connections go.
func (s *Server) reopen(old *tenantTable, closedOld []*tenant, undo func()) *tenantTable {
	undo()
	if old == nil {
		return nil
	}
	t := &tenantTable{byKey: make(map[tokenKey]*tenant, len(old.byKey)),
		byName: make(map[string]*tenant, len(old.byName)), admin: old.admin, hasAdm: old.hasAdm}
	fresh := map[*tenant]*tenant{}
	for _, prev := range closedOld {
		sc, err := storeConfig(prev.entry)
		if err != nil {
			continue
		}
		st, err := s.st.AddTenant(sc)
		if err != nil {
			s.log.Error("reload rollback: reopening tenant failed; it is unavailable", "tenant", prev.name, "err", err)
			continue
		}
		fresh[prev] = &tenant{name: prev.name, entry: prev.entry, st: st, stats: prev.stats}
	}
	for key, prev := range old.byKey {
		if f := fresh[prev]; f != nil {
			t.byKey[key] = f
			t.byName[prev.name] = f
			continue
		}
		t.byKey[key] = prev
		t.byName[prev.name] = prev
	}
	return t
}

// Reload swaps in cfg: new tenants can connect at once; connections of
// removed, disabled or re-keyed tenants are closed; unchanged tenants are
// not touched. On error the old configuration stays in place. Each call
// logs its outcome once ("tenant config reloaded" or "reload refused");
// callers do not log it again.
func (s *Server) Reload(cfg *Config) (string, error) {
	if err := cfg.Validate(); err != nil {
		s.log.Error("reload refused; keeping the old config", "err", err)
		s.stats.reloadsFailed.Add(1)
		return "", err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.table.Load()
	t, gone, patched, err := s.buildTable(cfg, old)
	if err != nil {
		s.log.Error("reload refused; keeping the old config", "err", err)
		s.stats.reloadsFailed.Add(1)
		if patched != nil {
			// Tenants whose move failed were reopened on their old dirs;
			// their old connections hold closed store handles.
			s.table.Store(patched)
			var stale []*tenant
			for _, prev := range old.byName {
				if patched.byName[prev.name] != prev {
					stale = append(stale, prev)
				}
			}
			for _, g := range stale {
				g.closed.Store(true)
			}
			s.closeConnsOf(stale)
		}
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
// applies it, logging the outcome once like Reload.
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
