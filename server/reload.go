package server

import (
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// storeConfig is what the store needs of a config entry.
func storeConfig(e config.TenantEntry) (store.TenantConfig, error) {
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

// plan is what one reload does to the store and the tenant table.
type plan struct {
	t *tenantTable
	// gone are the old *tenant values that the new table does not hold:
	// removed, disabled, re-keyed, renamed or moved tenants. Their
	// connections are closed.
	gone []*tenant
	// release are the old store tenants that nothing uses any more and
	// that were not closed during the build: Reload closes them once the
	// new table is published and their connections are gone.
	release []string
	// entries are kept *tenant values with their new config entry (a quota
	// or durability change), applied when the table is published.
	entries map[*tenant]config.TenantEntry
}

// buildTable opens every enabled tenant of cfg in the store and returns the
// plan that turns old into the new token table.
//
// The store keys tenants by name and by data dir, so each config entry is
// one store tenant (name, dir). An entry whose (name, dir) pair the old
// table has reuses that store tenant (its quota and durability are
// updated); when its token is unchanged too, the *tenant itself is kept
// and its connections carry on untouched. Any other entry needs a new
// store tenant, which collides with the old store tenants holding its name
// or its dir (a rename, a move, a swap, a name or dir given to another
// token). No old store tenant is ever closed twice and no new one closed
// after it opens, whatever the order of names.
//
// It changes the store in two phases so that a failure leaves the old
// configuration serving: first everything that closes nothing (reused
// tenants' quota and durability, new tenants that collide with nothing),
// undone on error; then the colliding old store tenants are closed and the
// colliding new ones opened. If that fails, the new ones are closed, the
// old ones reopened and patched is the old table pointing at them; the
// caller publishes it (the affected tenants' connections are closed).
func (s *Server) buildTable(cfg *config.Config, old *tenantTable) (p *plan, patched *tenantTable, err error) {
	t := &tenantTable{
		byKey:  make(map[tokenKey]*tenant, len(cfg.Tenants)),
		byName: make(map[string]*tenant, len(cfg.Tenants)),
	}
	if cfg.AdminToken != "" {
		t.admin, t.hasAdm = keyOf([]byte(cfg.AdminToken)), true
	}
	if cfg.MetricsToken != "" {
		t.metrics, t.hasMet = keyOf([]byte(cfg.MetricsToken)), true
	}
	if old == nil {
		old = &tenantTable{byKey: map[tokenKey]*tenant{}, byName: map[string]*tenant{}}
	}
	// The old tenants by data dir, built only if an entry's dir is not
	// its old tenant's (a reload that changes no name or dir needs none).
	var oldByDir map[string]*tenant
	byDirOf := func(dir string) *tenant {
		if oldByDir == nil {
			oldByDir = make(map[string]*tenant, len(old.byName))
			for _, prev := range old.byName {
				oldByDir[filepath.Clean(prev.conf.Load().DataDir)] = prev
			}
		}
		return oldByDir[filepath.Clean(dir)]
	}
	type change struct {
		key  tokenKey
		e    config.TenantEntry
		sc   store.TenantConfig
		prev *tenant // the old tenant whose store tenant this one reuses
	}
	var reuses, adds, collides []change
	if len(old.byName) == 0 {
		adds = make([]change, 0, len(cfg.Tenants)) // a start: all are new
	} else {
		reuses = make([]change, 0, len(cfg.Tenants))
	}
	closing := map[*tenant]bool{} // old store tenants to close before opening
	for _, tok := range cfg.SortedTokens() {
		e := cfg.Tenants[tok]
		if !e.IsEnabled() {
			continue
		}
		sc, err := storeConfig(e)
		if err != nil {
			return nil, nil, err
		}
		c := change{key: keyOf([]byte(tok)), e: e, sc: sc}
		byName := old.byName[e.Name]
		var byDir *tenant
		if byName != nil && byName.conf.Load().DataDir == e.DataDir {
			byDir = byName // old dirs are unique: no other old tenant has it
		} else {
			byDir = byDirOf(e.DataDir)
		}
		switch {
		case byName != nil && byName == byDir:
			c.prev = byName
			reuses = append(reuses, c)
		case byName == nil && byDir == nil:
			adds = append(adds, c)
		default:
			// Config names and dirs are unique, so an old store tenant
			// that collides here is reused by no other entry.
			if byName != nil {
				closing[byName] = true
			}
			if byDir != nil {
				closing[byDir] = true
			}
			collides = append(collides, c)
		}
	}

	p = &plan{t: t, entries: map[*tenant]config.TenantEntry{}}
	place := func(c change, storeTenant *store.Tenant) {
		var tn *tenant
		if c.prev != nil && old.byKey[c.key] == c.prev {
			tn = c.prev // same token, name and dir: keep it
			if c.prev.entry() != c.e {
				p.entries[tn] = c.e
			}
		} else {
			tn = s.newTenant(c.e, storeTenant, c.prev)
			if prev := old.byName[c.e.Name]; prev != nil {
				tn.stats = prev.stats // the name's counters go on
			}
		}
		t.byKey[c.key] = tn
		t.byName[c.e.Name] = tn
	}

	// Phase 1: nothing is closed; undo on error.
	var added []string
	var updated []*tenant
	undo := func() {
		for _, name := range added {
			if err := s.store.RemoveTenant(name); err != nil {
				s.log.Warn("reload rollback: closing tenant", "tenant", name, "err", err)
			}
		}
		added = nil
		for _, prev := range updated {
			if sc, err := storeConfig(prev.entry()); err == nil {
				s.store.AddTenant(sc) // back to the old quota and durability
			}
		}
	}
	for _, c := range reuses {
		if psc, err := storeConfig(c.prev.entry()); err == nil && psc == c.sc && s.store.Tenant(c.e.Name) == c.prev.store {
			// Unchanged and still the store's: no store call, so a
			// reload costs O(changes) in store work.
			place(c, c.prev.store)
			continue
		}
		t.storeCalls++
		storeTenant, err := s.store.AddTenant(c.sc)
		if err == nil && storeTenant != c.prev.store {
			// The store lost the tenant (a failed reopen): not a reuse.
			err = fmt.Errorf("store tenant %q is not the one serving", c.e.Name)
			s.store.RemoveTenant(c.e.Name)
		}
		if err != nil {
			undo()
			return nil, nil, fmt.Errorf("tenant %q: %w", c.e.Name, err)
		}
		updated = append(updated, c.prev)
		place(c, storeTenant)
	}
	openFailed := func(c change, err error) error {
		return fmt.Errorf("tenant %q (data_dir %s): %w", c.e.Name, c.e.DataDir, err)
	}
	opened := func(c change, storeTenant *store.Tenant) {
		if storeTenant.CreatedDir() {
			// New tenants start this way; for an existing one it means its
			// data dir vanished: the count is in the start or reload
			// summary line, the names at debug level.
			t.dirsCreated++
			s.log.Debug("data dir missing; created it empty", "tenant", c.e.Name, "data_dir", c.e.DataDir)
		}
		added = append(added, c.e.Name)
		place(c, storeTenant)
	}
	open := func(c change) error {
		t.storeCalls++
		storeTenant, err := s.store.AddTenant(c.sc)
		if err != nil {
			return openFailed(c, err)
		}
		opened(c, storeTenant)
		return nil
	}
	if len(adds) > 0 {
		// One batch: the store looks the data dirs up in parallel.
		scs := make([]store.TenantConfig, len(adds))
		for i, c := range adds {
			scs[i] = c.sc
		}
		sts, err := s.store.AddTenants(scs)
		t.storeCalls += min(len(sts)+1, len(adds))
		for i, storeTenant := range sts {
			opened(adds[i], storeTenant)
		}
		if err != nil {
			undo()
			return nil, nil, openFailed(adds[len(sts)], err)
		}
	}

	// Phase 2: close the colliding old store tenants, then open the new
	// ones. Sorted by name so that logs and failures are reproducible.
	var closedOld []*tenant
	for prev := range closing {
		closedOld = append(closedOld, prev)
	}
	sort.Slice(closedOld, func(i, j int) bool { return closedOld[i].name < closedOld[j].name })
	for i, prev := range closedOld {
		t.storeCalls++
		if err := s.store.RemoveTenant(prev.name); err != nil {
			// RemoveTenant unregisters the tenant even when its final
			// flush fails: reopen it with the others.
			err = fmt.Errorf("tenant %q: closing %s: %w", prev.name, prev.entry().DataDir, err)
			return nil, s.reopen(old, closedOld[:i+1], undo), err
		}
	}
	for _, c := range collides {
		if err := open(c); err != nil {
			return nil, s.reopen(old, closedOld, undo), err
		}
	}

	for key, prev := range old.byKey {
		if t.byKey[key] != prev {
			p.gone = append(p.gone, prev)
		}
	}
	for name, prev := range old.byName {
		// The store keys tenants by name, so only the new tenant of the
		// same name can still use prev's store tenant.
		if cur := t.byName[name]; (cur == nil || cur.store != prev.store) && !closing[prev] {
			p.release = append(p.release, name)
		}
	}
	sort.Strings(p.release)
	return p, nil, nil
}

// tenantAlloc is what a new tenant needs, allocated at once: one
// allocation per tenant at start instead of four.
type tenantAlloc struct {
	t      tenant
	stats  tenantStats
	mem    memBudget
	frames memBudget
	pace   pace
	refs   refusals
	conf   config.TenantEntry
}

// newTenant is a fresh *tenant for entry e over the store tenant
// storeTenant. prev, when not nil, is the old *tenant whose store tenant
// this one reuses (the same name and data dir: a token rotation): the new
// one keeps its memory shares, heavy turn, schedules (pace) and budget of
// limit refusals (refusal.go), so what its connections hold stays counted
// against the tenant, its penalty stands, and its old and new connections
// take turns. Any other tenant
// starts fresh, also one given a name another tenant had (its data dir
// is another) and a renamed one (the store reopens it as a new tenant;
// the reload closes the old name's connections). Its counters (stats)
// follow the name, as the metrics' labels do; the caller carries them.
func (s *Server) newTenant(e config.TenantEntry, storeTenant *store.Tenant, prev *tenant) *tenant {
	a := &tenantAlloc{conf: e}
	tn := &a.t
	tn.name, tn.store, tn.stats = e.Name, storeTenant, &a.stats
	s.initTenantStats(tn.stats)
	tn.conf.Store(&a.conf)
	if prev != nil {
		tn.mem, tn.frames, tn.heavy, tn.pace = prev.mem, prev.frames, prev.heavy, prev.pace
		tn.refusals = prev.refusals
	}
	if tn.mem == nil {
		a.mem = memBudget{limit: s.opts.MaxClientMemoryPerTenant, parent: &s.mem}
		a.frames = memBudget{limit: s.opts.MaxFrameMemoryPerTenant, parent: &a.mem}
		tn.mem, tn.frames = &a.mem, &a.frames
		tn.heavy = newHeavyGate(1)
		tn.pace = &a.pace
		tn.refusals = &a.refs
	}
	return tn
}

// reopen undoes a failed phase 2: it runs undo (closing the tenants the
// reload opened), reopens the store tenants of closedOld on their old data
// dirs and returns a copy of old in which they point at the reopened store
// tenants. The replaced *tenant values are marked closed by the caller so
// their connections go.
func (s *Server) reopen(old *tenantTable, closedOld []*tenant, undo func()) *tenantTable {
	undo()
	t := &tenantTable{byKey: make(map[tokenKey]*tenant, len(old.byKey)),
		byName: make(map[string]*tenant, len(old.byName)), admin: old.admin, hasAdm: old.hasAdm,
		metrics: old.metrics, hasMet: old.hasMet}
	fresh := map[*tenant]*tenant{}
	for _, prev := range closedOld {
		sc, err := storeConfig(prev.entry())
		if err != nil {
			continue
		}
		storeTenant, err := s.store.AddTenant(sc)
		if err != nil {
			s.log.Error("reload rollback: reopening tenant failed; it is unavailable", "tenant", prev.name, "err", err)
			continue
		}
		f := s.newTenant(prev.entry(), storeTenant, prev)
		f.stats = prev.stats
		fresh[prev] = f
	}
	closed := map[*tenant]bool{}
	for _, prev := range closedOld {
		closed[prev] = true
	}
	for key, prev := range old.byKey {
		if f := fresh[prev]; f != nil {
			t.byKey[key] = f
			t.byName[prev.name] = f
			continue
		}
		if closed[prev] {
			continue // could not be reopened: refused until the next reload
		}
		t.byKey[key] = prev
		t.byName[prev.name] = prev
	}
	return t
}

// Reload swaps in cfg: new tenants can connect at once; connections of
// removed, disabled, renamed, moved or re-keyed tenants are closed;
// connections of unchanged tenants (same token, name and data dir) are not
// touched. On error the old configuration stays in place. Each call logs
// its outcome once ("tenant config reloaded", with the time it took, or
// "reload refused"); callers
// do not log it again.
func (s *Server) Reload(cfg *config.Config) (string, error) {
	return s.reload(cfg, time.Now())
}

// reload is Reload of a config whose reading started at start.
func (s *Server) reload(cfg *config.Config, start time.Time) (string, error) {
	if err := cfg.Validate(); err != nil {
		s.log.Error("reload refused; keeping the old config", "err", err)
		s.stats.reloadsFailed.Add(1)
		return "", err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.table.Load()
	p, patched, err := s.buildTable(cfg, old)
	if err != nil {
		s.log.Error("reload refused; keeping the old config", "err", err)
		s.stats.reloadsFailed.Add(1)
		if patched != nil {
			// Tenants whose store tenant was closed were reopened on their
			// old dirs (or are gone, if that failed); their old
			// connections hold closed store handles.
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
			s.closeConnsOf(stale, func(g *tenant) string {
				return "tenant " + g.name + " was reopened after a failed config reload; connection closed, reconnect"
			})
		}
		return "", err
	}
	for tn, e := range p.entries {
		tn.conf.Store(&e)
	}
	t := p.t
	s.table.Store(t)
	s.stats.reloadsOK.Add(1)
	for _, g := range p.gone {
		g.closed.Store(true)
	}
	closed := s.closeConnsOf(p.gone, func(g *tenant) string {
		if _, still := t.byName[g.name]; still {
			return "tenant " + g.name + ": its token or data dir changed in a config reload; connection closed, reconnect with the current token"
		}
		return "tenant " + g.name + " was disabled, removed or renamed by a config reload; connection closed"
	})
	for _, name := range p.release {
		if err := s.store.RemoveTenant(name); err != nil {
			s.log.Warn("reload: closing tenant", "tenant", name, "err", err)
		}
	}
	added, removed := 0, 0
	for name := range t.byName {
		if _, ok := old.byName[name]; !ok {
			added++
		}
	}
	for name := range old.byName {
		if _, ok := t.byName[name]; !ok {
			removed++
		}
	}
	msg := fmt.Sprintf("reloaded: %d tenants (%d added, %d removed or disabled, %d connections closed, %d data dirs created)",
		len(t.byName), added, removed, closed, t.dirsCreated)
	s.log.Info("tenant config reloaded", "tenants", len(t.byName), "added", added,
		"removed", removed, "conns_closed", closed, "data_dirs_created", t.dirsCreated,
		"took", time.Since(start).Round(time.Microsecond).String())
	return msg, nil
}

// ReloadFromSource re-reads the configuration with Options.LoadConfig and
// applies it, logging the outcome once like Reload.
func (s *Server) ReloadFromSource() (string, error) {
	if s.opts.LoadConfig == nil {
		return "", fmt.Errorf("%w: no config source (the server runs without --config reload support)", config.ErrInvalid)
	}
	return s.reloadFrom(s.opts.LoadConfig)
}

// ReloadFile is Reload of the configuration file at path (config.Load):
// the admin API's reload after it edited the file, and REST reload when
// the server has no Options.LoadConfig. A file that cannot be read or
// parsed is refused, counted and logged like any failed reload.
func (s *Server) ReloadFile(path string) (string, error) {
	return s.reloadFrom(func() (*config.Config, error) { return config.Load(path) })
}

// reloadFrom is Reload of the configuration load returns.
func (s *Server) reloadFrom(load func() (*config.Config, error)) (string, error) {
	start := time.Now()
	cfg, err := load()
	if err != nil {
		s.log.Error("reload refused; keeping the old config", "err", err)
		s.stats.reloadsFailed.Add(1)
		return "", err
	}
	return s.reload(cfg, start)
}

// closeConnsOf closes every connection of the tenants in gone. Each gets
// a last frame first, id 0 and status AUTH with why(tenant) as its text, so
// its client learns the reason instead of reading a bare EOF. It returns
// the number of connections closed.
func (s *Server) closeConnsOf(gone []*tenant, why func(*tenant) string) int {
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
			cs.closeWithFrame(closeTenantGone, protocol.AppendError(nil, 0, protocol.StatusAuth, why(t)))
			n++
		}
	}
	return n
}
