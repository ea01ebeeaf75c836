// Package httpapi is SQ's HTTP front end: the REST API of the Rust SQ
// under /api/v2/ (rest.go: routes, SQ's text formats, json-export, auth,
// reload), the change feed as Server-Sent Events (sse.go), GET /metrics
// (metrics.go), the health probes, the admin API (admin.go) and the
// tolerant listener in front of them (front.go).
//
// It runs over an Engine, which *server.Server implements (server/front.go):
// a request is authenticated against the engine's tenant table, runs
// against the same store tenant as the binary protocol, reserves its body
// and reply in the engine's client memory budget, and is counted in the
// same per-tenant counters. Errors map to statuses through
// server.StatusOf, the mapping the binary protocol uses, and statuses to
// HTTP codes through httpCode (status.go).
//
// Entry points: Handler (an http.Handler), Start and StartOn (a listener
// with its front and an http.Server); cmd/sq wires them next to the
// binary server.
//
// # Caveats
//
//   - Stop the HTTP server (its Shutdown, which also ends the SSE streams)
//     before the engine's Shutdown, so that no REST request is still
//     running when the store closes.
//   - Handlers run on net/http goroutines and call the store directly
//     (blocking I/O); see server/LOCKS.md for what they may lock.
package httpapi
