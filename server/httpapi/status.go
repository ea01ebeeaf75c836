package httpapi

import (
	"errors"
	"net/http"

	"github.com/phext/sq/protocol"
)

// The REST answer of an error: server.StatusOf maps the error to the
// protocol status (the one mapping, shared with the binary protocol), and
// httpCode maps that status to the HTTP code.

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

// msgOf is the text of a *protocol.Error without its status prefix (the
// memory budget's BUSY answer), else err's text.
func msgOf(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Msg
	}
	return err.Error()
}
