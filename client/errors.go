package client

import (
	"errors"

	"github.com/phext/sq/protocol"
)

// ErrClosed is returned (wrapped) by every call on a connection that has
// been closed, by Close or because the network connection broke. The
// wrapping error names the cause (the read or write error, a protocol
// violation) when there was one.
var ErrClosed = errors.New("client: connection closed")

// ErrProtocol is returned (wrapped) when the server sends something this
// client cannot accept: a frame that cannot be decoded, a response whose id
// does not match the oldest outstanding request, or a response nobody asked
// for. The connection is closed after it, so later calls also see ErrClosed.
var ErrProtocol = errors.New("client: protocol violation")

// ErrBadArgument is returned (wrapped) when a method is called with an
// argument that cannot be sent (a phext name breaking the name rule, an
// unknown WHERE algorithm). Nothing is sent.
var ErrBadArgument = errors.New("client: bad argument")

// StatusNone is what StatusOf returns for an error that carries no status
// from the server (a network error, a context error). It is not a status
// code of the protocol.
const StatusNone protocol.Status = 0xFF

// StatusError is returned when the server answered a request with a status
// other than OK. The request may be retried or not depending on Status: for
// example BUSY and SHUTTING_DOWN are transient, BAD_SCROLL and QUOTA are not.
// Every error status means the server left the stored data as it was.
//
// A StatusError with Status TOO_LARGE is also produced locally, without
// sending, when a request would exceed the max frame the server announced.
type StatusError struct {
	// Op is the operation of the request.
	Op protocol.Op
	// Status is the status code the server answered.
	Status protocol.Status
	// Msg is the server's message for people (may be empty).
	Msg string
}

// Error returns "sq: OP: STATUS: msg".
func (e *StatusError) Error() string {
	s := "sq: " + e.Op.String() + ": " + e.Status.String()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// StatusOf returns the status code carried by err: StatusOK for nil, the
// Status of a *StatusError found with errors.As, and StatusNone for any
// other error (network, context, ErrClosed). An ErrClosed error carries a
// status only when the server sent one, unasked, before closing (for
// example SHUTTING_DOWN while draining).
func StatusOf(err error) protocol.Status {
	if err == nil {
		return protocol.StatusOK
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return StatusNone
}

// IsStatus reports whether err is a *StatusError with status st.
func IsStatus(err error, st protocol.Status) bool {
	return err != nil && StatusOf(err) == st
}
