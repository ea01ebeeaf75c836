package protocol

import (
	"errors"
	"strconv"
)

// Error is a protocol error: something the peer sent that breaks the wire
// format. It carries the status code the server answers with. Every decode
// function of this package returns *Error for malformed input, so callers can
// reply with StatusOf(err) and keep the connection when the frame could be
// delimited.
type Error struct {
	// Status is the status code that describes the problem.
	Status Status
	// Msg is a short, human-readable explanation (sent as the error body).
	Msg string
}

// Error returns "protocol: STATUS: msg".
func (e *Error) Error() string {
	return "protocol: " + e.Status.String() + ": " + e.Msg
}

// Is reports whether target is an *Error with the same Status, so that
// errors.Is(err, ErrBadName) matches any BAD_NAME error whatever its message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status
}

// Sentinel errors, one per status a decoder can produce. Compare with
// errors.Is; the errors actually returned carry a more specific message.
var (
	// ErrBadFrame is returned for a malformed frame or body: a length field
	// that disagrees with the bytes given, a set unknown flag bit, a compressed
	// body without an agreed codec or that does not decompress, a truncated
	// body.
	ErrBadFrame = &Error{Status: StatusBadFrame, Msg: "malformed frame"}
	// ErrUnknownOp is returned for a well-formed frame with an opcode this
	// version does not know. The header fields of the Request are filled.
	ErrUnknownOp = &Error{Status: StatusUnknownOp, Msg: "unknown opcode"}
	// ErrAuth is returned by DecodeHello when the first frame is not a HELLO.
	ErrAuth = &Error{Status: StatusAuth, Msg: "HELLO required"}
	// ErrBadName is returned when a phext name is longer than phext.MaxNameLen or
	// breaks the name rule (see phext.ValidName).
	ErrBadName = &Error{Status: StatusBadName, Msg: "bad phext name"}
	// ErrBadCoord is returned when a data operation's coordinate has a part
	// outside 1..999.
	ErrBadCoord = &Error{Status: StatusBadCoord, Msg: "coordinate part outside 1..999"}
	// ErrTooLarge is returned when a frame's length, or the declared
	// uncompressed size of a compressed body, is above the max frame.
	ErrTooLarge = &Error{Status: StatusTooLarge, Msg: "frame above max frame"}
)

// StatusOf maps err to the status code to answer with: the Status of an
// *Error found with errors.As, StatusOK for nil, StatusInternal otherwise.
func StatusOf(err error) Status {
	if err == nil {
		return StatusOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return StatusInternal
}

// newError builds an *Error. Only error paths call it, so its allocation is
// outside the zero-allocation budget of the decoders.
func newError(st Status, msg string) *Error { return &Error{Status: st, Msg: msg} }

// badCoordError shows the coordinate as sent and the form a good one has;
// only called on the error path.
func badCoordError(c [9]uint16) *Error {
	b := []byte("coordinate ")
	for i, p := range c {
		if i > 0 {
			sep := byte('.')
			if i%3 == 0 {
				sep = '/'
			}
			b = append(b, sep)
		}
		b = strconv.AppendUint(b, uint64(p), 10)
	}
	b = append(b, " has a part outside 1..999 (want nine parts 1..999 in the form 1.1.1/1.1.1/1.1.1)"...)
	return &Error{Status: StatusBadCoord, Msg: string(b)}
}

// errn builds an *Error whose message ends with a number (a length, a limit).
func errn(st Status, msg string, n uint64) *Error {
	return &Error{Status: st, Msg: msg + " " + strconv.FormatUint(n, 10)}
}
