package server

import (
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// The engine's face toward front ends other than the binary protocol: the
// HTTP API (package server/httpapi) reaches tenants, the client memory
// budget, the counters, reloads, the change feed (watch_stream.go) and
// the metrics exposition (metrics_expo.go) only through what this file and
// those two export. Everything here is safe from any goroutine and
// blocks no event loop; the store calls a front end makes through
// Tenant.Store run on its own goroutine (net/http's), as workers do.

// Tenant is one enabled tenant as a front end sees it, for the length of
// one request: a reload may replace or close the tenant behind it, and its
// store calls then fail with store.ErrClosed (SHUTTING_DOWN). The zero
// Tenant stands for no tenant and must not be used.
type Tenant struct{ t *tenant }

// TenantByToken returns the tenant whose token is token (the same table
// HELLO reads); false for an unknown token or a tenant being removed.
func (s *Server) TenantByToken(token string) (Tenant, bool) {
	t := s.table.Load().lookupString(token)
	return Tenant{t}, t != nil
}

// TenantByName returns the enabled tenant called name.
func (s *Server) TenantByName(name string) (Tenant, bool) {
	t := s.table.Load().byName[name]
	return Tenant{t}, t != nil
}

// Tenants returns every enabled tenant, in no order.
func (s *Server) Tenants() []Tenant {
	tab := s.table.Load()
	out := make([]Tenant, 0, len(tab.byName))
	for _, t := range tab.byName {
		out = append(out, Tenant{t})
	}
	return out
}

// IsAdminToken reports whether token is the config's admin_token.
func (s *Server) IsAdminToken(token string) bool {
	return token != "" && s.table.Load().isAdmin([]byte(token))
}

// IsMetricsToken reports whether token is the config's metrics_token.
func (s *Server) IsMetricsToken(token string) bool {
	return token != "" && s.table.Load().isMetrics([]byte(token))
}

// AuthRefusal is how the answer to one failed authentication goes out
// (Server.AuthRefused). The zero AuthRefusal: at once.
type AuthRefusal struct {
	// Hold is how long the answer waits (AuthRefusal.Wait).
	Hold time.Duration

	s *Server
}

// Wait waits out Hold, or until the server's Shutdown begins, stop is
// closed (the front end's own shutdown) or left is (the client left:
// then false, nothing to answer), and leaves the count of waiting
// answers. It returns at once for an answer that does not wait.
func (f AuthRefusal) Wait(left, stop <-chan struct{}) bool {
	if f.s == nil {
		return true
	}
	defer f.s.authWaiting.Add(-1)
	return f.s.waitAnswer(f.Hold, left, stop)
}

// AuthRefused counts a failed authentication from address ip and says how
// its answer goes out, by the rule of failed HELLOs (authlimit.go): within
// the address's budget (Options.AuthFailBudget) at once; past it after a
// delay, however many wait (counted, not bounded: see authlimit.go). Any
// goroutine.
//
// The delay is at most half the frame timeout, as a held limit refusal's
// (Options.refusalHold): the REST server must write its answer within
// twice the frame timeout of the request's head (net/http's
// WriteTimeout), and a delay of up to 5 s with --frame-timeout under
// 2.5 s broke the connection instead of answering 401.
func (s *Server) AuthRefused(ip string) AuthRefusal {
	s.stats.authFailures.Add(1)
	d := s.auth.fail(ip, time.Now())
	if ft := s.opts.FrameTimeout; ft > 0 {
		d = min(d, ft/2)
	}
	if d <= 0 {
		return AuthRefusal{}
	}
	s.authWaiting.Add(1)
	return AuthRefusal{Hold: d, s: s}
}

// Draining reports whether Shutdown has begun: new requests are answered
// SHUTTING_DOWN (REST: 503 with Retry-After).
func (s *Server) Draining() bool { return s.draining.Load() }

// Options returns the server's options, defaults filled in.
func (s *Server) Options() Options { return s.opts }

// Name is the tenant's name.
func (t Tenant) Name() string { return t.t.name }

// Store is the tenant's store handle.
func (t Tenant) Store() *store.Tenant { return t.t.store }

// Entry is the tenant's current config entry.
func (t Tenant) Entry() config.TenantEntry { return t.t.entry() }

// Connections is how many binary-protocol connections the tenant has open.
func (t Tenant) Connections() int64 { return t.t.conns.Load() }

// Hold starts what one request of the tenant reserves of the client memory
// budget (its share, and the server's): reserve with Hold.Reserve before
// allocating, release with Hold.Done once the reply has left.
func (t Tenant) Hold() Hold { return Hold{hold{b: t.t.mem}} }

// Record counts one request of the tenant in the counters the binary
// protocol updates too (per operation: requests, bytes, statuses,
// latency).
func (t Tenant) Record(op protocol.Op, status protocol.Status, in, out int, d time.Duration) {
	t.t.stats.record(op, status, in, out, d)
}

// OpStats returns the tenant's counters of op, nil before its first
// request.
func (t Tenant) OpStats(op protocol.Op) *OpStats { return t.t.stats.op(int(opSlots[op])) }

// EachOp calls fn with the counters of every operation the tenant has
// used, named as in /metrics ("OTHER" for opcodes without their own).
func (t Tenant) EachOp(fn func(op string, o *OpStats)) {
	for i := range t.t.stats.ops {
		if o := t.t.stats.op(i); o != nil {
			fn(opSlotName(i), o)
		}
	}
}

// Hold is what one request reserved of the client memory budget (see
// budget.go). It belongs to the request's goroutine.
type Hold struct{ h hold }

// Reserve reserves n more bytes, or returns a BUSY *protocol.Error and
// reserves nothing; it is a store.Limit.Reserve.
func (h *Hold) Reserve(n int) error { return h.h.reserve(n) }

// Done releases everything reserved.
func (h *Hold) Done() { h.h.done() }
