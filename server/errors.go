package server

import (
	"errors"
	"net/http"

	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// errForbidden is returned when a connection asks for an admin operation
// (RELOAD) without the admin token and without trusted loopback.
var errForbidden = errors.New("reload needs the admin token (or a loopback connection when the server trusts loopback)")

// statusOf is the one mapping from an error of the store, protocol or
// phext packages to the status a client gets, for the binary protocol and
// (through httpCode) the REST API alike. expected is false for errors that
// are a server-side failure (INTERNAL): only those are worth a log line.
//
// A phext or tenant that is closing (store.ErrClosed: a reload removed or
// moved the tenant under the request, or the store is shutting down) is
// SHUTTING_DOWN, the retryable answer, never INTERNAL: it is routine during
// a reload and logs nothing.
func statusOf(err error) (status protocol.Status, expected bool) {
	var pe *protocol.Error
	switch {
	case err == nil:
		return protocol.StatusOK, true
	case errors.As(err, &pe):
		return pe.Status, true
	case errors.Is(err, store.ErrClosed):
		return protocol.StatusShuttingDown, true
	case errors.Is(err, store.ErrBadName):
		return protocol.StatusBadName, true
	case errors.Is(err, store.ErrBadCoord), errors.Is(err, phext.ErrBadCoordinate):
		return protocol.StatusBadCoord, true
	case errors.Is(err, store.ErrBadScroll), errors.Is(err, store.ErrOverflow), errors.Is(err, phext.ErrOverflow):
		return protocol.StatusBadScroll, true
	case errors.Is(err, store.ErrQuota):
		return protocol.StatusQuota, true
	case errors.Is(err, store.ErrTooLarge):
		return protocol.StatusTooLarge, true
	case errors.Is(err, errForbidden):
		return protocol.StatusAuth, true
	case errors.Is(err, config.ErrInvalid):
		// A refused reload: Reload logs it already.
		return protocol.StatusInternal, true
	}
	return protocol.StatusInternal, false
}

// httpCode is the HTTP status code of the REST answer for a protocol
// status. SHUTTING_DOWN and BUSY are 503 and carry Retry-After
// (retryAfter).
func httpCode(status protocol.Status) int {
	switch status {
	case protocol.StatusOK:
		return http.StatusOK
	case protocol.StatusBadFrame, protocol.StatusBadCoord, protocol.StatusBadScroll:
		return http.StatusBadRequest
	case protocol.StatusUnknownOp:
		return http.StatusNotFound
	case protocol.StatusAuth:
		return http.StatusUnauthorized
	case protocol.StatusBadName:
		return http.StatusForbidden // SQ's answer to a bad phext path
	case protocol.StatusTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.StatusQuota:
		return http.StatusInsufficientStorage
	case protocol.StatusBusy, protocol.StatusShuttingDown:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// retryAfter is the Retry-After value (seconds) of a 503 answer: a reload
// or a restart takes about that long.
var retryAfter = []string{"1"}
