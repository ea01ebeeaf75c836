package server

import (
	"crypto/sha256"
	"sync/atomic"

	"github.com/phext/sq/config"
	"github.com/phext/sq/store"
)

// tokenKey is the fixed-size digest under which a token is looked up, so a
// lookup costs the same whatever the token and the plaintext need not stay
// in memory after loading.
type tokenKey [sha256.Size]byte

func keyOf(token []byte) tokenKey { return sha256.Sum256(token) }

// tenant is the server's view of one configured tenant. A *tenant is shared
// by every connection authenticated as it; its fields are immutable after
// the table that holds it is published, except the atomics.
type tenant struct {
	name  string
	store *store.Tenant
	// conf is the tenant's config entry. Name and data dir never change
	// for one *tenant; a reload may change the rest (quota, durability).
	conf atomic.Pointer[config.TenantEntry]

	// closed is set when a reload removes or disables the tenant; the
	// connections still holding the pointer are being closed.
	closed atomic.Bool
	conns  atomic.Int64
	stats  *tenantStats
	// mem is the tenant's share of the client memory budget (budget.go);
	// shared by the *tenant values of one store tenant (name and data
	// dir) across reloads (newTenant).
	mem *memBudget
	// frames is the part of mem the tenant's large frames may hold at
	// once, from their header until they are answered (budget.go,
	// Options.MaxFrameMemoryPerTenant); its parent is mem, and it is
	// shared like mem across reloads.
	frames *memBudget
	// heavy is the tenant's turn for heavy requests (heavy.go); shared
	// like mem across reloads.
	heavy heavyGate
	// pace is the tenant's schedule of new connections (pace.go); shared
	// like mem across reloads.
	pace *pace
	// refusals is the tenant's budget of limit refusals (refusal.go);
	// shared like mem by the *tenant values of one name across reloads.
	refusals *refusals
}

// tenantTable is one immutable generation of the token map. Reload builds a
// new table and swaps it in with an atomic pointer store, so the per-frame
// path takes no lock.
type tenantTable struct {
	byKey  map[tokenKey]*tenant
	byName map[string]*tenant
	admin  tokenKey
	hasAdm bool
	// dirsCreated counts the data dirs created while building the table
	// (for the start and reload summary lines).
	dirsCreated int
	storeCalls  int // store.AddTenant/RemoveTenant calls made building it
	// metrics may read GET /metrics only.
	metrics tokenKey
	hasMet  bool
}

func (t *tenantTable) lookup(token []byte) *tenant {
	return t.byKey[keyOf(token)]
}

// lookupString is lookup for a string token (REST); a tenant being
// removed by a reload counts as absent.
func (t *tenantTable) lookupString(token string) *tenant {
	if token == "" {
		return nil
	}
	// Tokens are at most 255 bytes (Config.Validate); a stack copy keeps
	// the conversion from allocating.
	var kb [256]byte
	if len(token) > len(kb) {
		return nil
	}
	n := copy(kb[:], token)
	tn := t.byKey[keyOf(kb[:n])]
	if tn == nil || tn.closed.Load() {
		return nil
	}
	return tn
}

func (t *tenantTable) isAdmin(token []byte) bool {
	return t.hasAdm && keyOf(token) == t.admin
}

func (t *tenantTable) isMetrics(token []byte) bool {
	return t.hasMet && keyOf(token) == t.metrics
}

// entry returns the tenant's current config entry.
func (t *tenant) entry() config.TenantEntry { return *t.conf.Load() }
