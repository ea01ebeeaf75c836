package httpapi

import (
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// Engine is all the HTTP API uses of the server (server/front.go): the
// tenant table, the auth limiter, the drain state, reloads, the change
// feed and the metrics exposition. A tenant's store calls go through
// server.Tenant.Store, its memory budget through server.Tenant.Hold and
// its counters through server.Tenant.Record; errors become statuses
// through server.StatusOf. *server.Server implements it.
type Engine interface {
	// TenantByToken is the tenant of a token (false: none, or being
	// removed); TenantByName and Tenants serve the admin API.
	TenantByToken(token string) (server.Tenant, bool)
	TenantByName(name string) (server.Tenant, bool)
	Tenants() []server.Tenant
	IsAdminToken(token string) bool
	IsMetricsToken(token string) bool
	// AuthRefused counts a bad token from ip and says how long its 401
	// waits (AuthRefusal.Wait).
	AuthRefused(ip string) server.AuthRefusal

	// Options are the server's options (limits, TrustLoopback,
	// LoadConfig, Logger); Addr is the binary protocol's address.
	Options() server.Options
	Addr() string
	Draining() bool
	ReadyForTraffic() bool

	// ReloadFromSource and ReloadFile re-read the tenant configuration
	// (the server's LoadConfig, or a file) and apply it.
	ReloadFromSource() (string, error)
	ReloadFile(path string) (string, error)

	// HeavyTurn waits for t's turn for a heavy request (one per tenant,
	// all Ps but one in the server; server/heavy.go) when a request of
	// input bytes, or one whose work is that of the whole phext name, is
	// heavy; the func it returns ends the turn.
	HeavyTurn(t server.Tenant, input int, whole bool, name []byte) (done func())

	// Refuse books an error answer with status of t's request against
	// t's budget of limit refusals (server/refusal.go) and says whether
	// it goes out at once, waits (Refusal.Hold: Refusal.Wait) or
	// goes out on a connection that then closes.
	Refuse(t server.Tenant, status protocol.Status) server.Refusal

	// Watch subscribes an SSE stream to the change feed.
	Watch(t server.Tenant, name []byte, w *protocol.Watch, text bool, enc server.StreamEncoder) (*server.WatchStream, error)
	// AppendMetrics writes the /metrics exposition, the HTTP counters
	// included.
	AppendMetrics(dst []byte, http server.HTTPMetrics) []byte
}

var _ Engine = (*server.Server)(nil)
