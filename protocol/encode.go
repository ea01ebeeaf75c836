package protocol

import (
	"encoding/binary"

	"github.com/phext/sq/phext"
)

// appendHeader appends a frame header for a body of bodyLen bytes.
func appendHeader(dst []byte, op uint8, flags uint8, id uint32, bodyLen int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(minLength+bodyLen))
	dst = append(dst, op, flags)
	return binary.BigEndian.AppendUint32(dst, id)
}

// AppendResponse appends a complete uncompressed response frame.
func AppendResponse(dst []byte, id uint32, st Status, body []byte) []byte {
	dst = appendHeader(dst, uint8(st), 0, id, len(body))
	return append(dst, body...)
}

// AppendResponseHeader appends only the 10-byte header of an uncompressed
// response whose body of bodyLen bytes the caller writes next (writev: the
// header from a small buffer, the body from wherever it already is).
func AppendResponseHeader(dst []byte, id uint32, st Status, bodyLen int) []byte {
	return appendHeader(dst, uint8(st), 0, id, bodyLen)
}

// AppendError appends an error response whose body is msg.
func AppendError(dst []byte, id uint32, st Status, msg string) []byte {
	dst = appendHeader(dst, uint8(st), 0, id, len(msg))
	return append(dst, msg...)
}

// AppendErr appends an error response for err: status StatusOf(err) and the
// error's text (an *Error's Msg) as the body.
func AppendErr(dst []byte, id uint32, err error) []byte {
	if e, ok := err.(*Error); ok {
		return AppendError(dst, id, e.Status, e.Msg)
	}
	return AppendError(dst, id, StatusOf(err), err.Error())
}

// RequestSize is the frame size of a request with a name of nameLen bytes
// and a payload of payloadLen bytes.
func RequestSize(nameLen, payloadLen int) int {
	return HeaderSize + 1 + nameLen + CoordSize + payloadLen
}

// AppendRequestHeader appends a request's header, name and coordinate: all
// of the frame except the payload of payloadLen bytes, which the caller
// writes next (writev). name must be at most phext.MaxNameLen bytes; the encoder
// does not check it (the server answers BAD_NAME).
func AppendRequestHeader(dst []byte, op Op, id uint32, name []byte, c phext.Coordinate, payloadLen int) []byte {
	dst = appendHeader(dst, uint8(op), 0, id, 1+len(name)+CoordSize+payloadLen)
	dst = append(dst, uint8(len(name)))
	dst = append(dst, name...)
	return AppendCoordinate(dst, c)
}

// AppendRequest appends a complete uncompressed request frame.
func AppendRequest(dst []byte, op Op, id uint32, name []byte, c phext.Coordinate, payload []byte) []byte {
	dst = AppendRequestHeader(dst, op, id, name, c, len(payload))
	return append(dst, payload...)
}

// AppendCompressedResponse appends a response, compressed with codec when
// the body is at least CompressThreshold bytes and compression makes it
// smaller; otherwise it appends the same as AppendResponse. codec is the one
// agreed in HELLO (CodecNone: never compress). It may be called from many
// goroutines at once.
func AppendCompressedResponse(dst []byte, id uint32, st Status, body []byte, codec uint8) []byte {
	if codec == CodecNone || len(body) < CompressThreshold {
		return AppendResponse(dst, id, st, body)
	}
	start := len(dst)
	dst = appendHeader(dst, uint8(st), FlagCompressed, id, 0)
	dst, ok := appendCompressed(dst, codec, body)
	if !ok {
		return AppendResponse(dst[:start], id, st, body)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// AppendCompressedRequest appends a request, compressing its body (name,
// coordinate and payload together) with codec under the same rule as
// AppendCompressedResponse. It may be called from many goroutines at once.
func AppendCompressedRequest(dst []byte, op Op, id uint32, name []byte, c phext.Coordinate, payload []byte, codec uint8) []byte {
	bodyLen := 1 + len(name) + CoordSize + len(payload)
	if codec == CodecNone || bodyLen < CompressThreshold {
		return AppendRequest(dst, op, id, name, c, payload)
	}
	// The codec needs the body contiguous: build it in a pooled buffer.
	plain := GetBuffer()
	defer PutBuffer(plain)
	plain.B = append(plain.B, uint8(len(name)))
	plain.B = append(plain.B, name...)
	plain.B = AppendCoordinate(plain.B, c)
	plain.B = append(plain.B, payload...)
	start := len(dst)
	dst = appendHeader(dst, uint8(op), FlagCompressed, id, 0)
	dst, ok := appendCompressed(dst, codec, plain.B)
	if !ok {
		return AppendRequest(dst[:start], op, id, name, c, payload)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}
