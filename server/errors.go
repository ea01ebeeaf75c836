package server

import (
	"errors"

	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// errForbidden is returned when a connection asks for an admin operation
// (RELOAD) without the admin token and without trusted loopback.
var errForbidden = errors.New("reload needs the admin token (or a loopback connection when the server trusts loopback)")

// StatusOf is the one mapping from an error of the store, protocol,
// phext or config packages (or of this one) to the status a client gets,
// for the binary protocol and the REST API alike (server/httpapi turns the
// status into an HTTP code). expected is false for errors that
// are a server-side failure (INTERNAL): only those are worth a log line.
//
// A phext or tenant that is closing (store.ErrClosed: a reload removed or
// moved the tenant under the request, or the store is shutting down) is
// SHUTTING_DOWN, the retryable answer, never INTERNAL: it is routine during
// a reload and logs nothing. Too many phexts open (store.ErrBusy) is BUSY,
// retryable too.
func StatusOf(err error) (status protocol.Status, expected bool) {
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
	case errors.Is(err, store.ErrBusy):
		return protocol.StatusBusy, true
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
