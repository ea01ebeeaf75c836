package protocol

import (
	"encoding/binary"
	"strconv"

	"github.com/phext/sq/phext"
)

// Frame and handshake constants of protocol v1 (docs/PROTOCOL.md).
const (
	// HeaderSize is the size of the frame header: u32 length, u8 op/status,
	// u8 flags, u32 id.
	HeaderSize = 10
	// minLength is the smallest valid value of the length field (op, flags,
	// id and an empty body).
	minLength = HeaderSize - 4
	// DefaultMaxFrame is the default limit on the length field.
	DefaultMaxFrame = 64 << 20
	// Version is the protocol version this package speaks.
	Version = 1
	// FlagCompressed is flags bit 0: the body is compressed with the codec
	// agreed in HELLO. Every other bit must be 0.
	FlagCompressed = 0x01
	// CompressThreshold is the body size below which a sender never
	// compresses.
	CompressThreshold = 4096
	// MaxTokenLen is the longest tenant token in HELLO, in bytes.
	MaxTokenLen = 255
	// CoordSize is the wire size of a coordinate: nine u16.
	CoordSize = 18
)

// Codec identifiers as the HELLO response names the chosen codec.
const (
	CodecNone uint8 = 0
	CodecZstd uint8 = 1
	CodecS2   uint8 = 2
)

// Bits of the HELLO request's "codecs accepted" byte.
const (
	AcceptZstd uint8 = 1
	AcceptS2   uint8 = 2
)

// Op is a request opcode.
type Op uint8

// Opcodes. 0x01..0x17 except 0x16 are fixed by the contract; the others are
// SQ's own and documented in docs/PROTOCOL.md.
const (
	OpHello    Op = 0x01
	OpPing     Op = 0x02
	OpSelect   Op = 0x10
	OpInsert   Op = 0x11
	OpUpdate   Op = 0x12
	OpDelete   Op = 0x13
	OpTOC      Op = 0x14
	OpGet      Op = 0x15
	OpPut      Op = 0x16
	OpChecksum Op = 0x17
	OpDelta    Op = 0x18
	OpWhere    Op = 0x19
	OpList     Op = 0x1A
	OpStatus   Op = 0x1B
	OpVersion  Op = 0x1C
	OpWatch    Op = 0x1D
	OpUnwatch  Op = 0x1E
	OpCompact  Op = 0x30
	OpReload   Op = 0x31
)

// opInfo holds what the codec needs to know of each opcode.
type opInfo struct {
	name     string
	known    bool
	useName  bool // the phext name is meaningful, so it is validated
	useCoord bool // the coordinate is meaningful, so it is validated
}

var ops = func() (t [256]opInfo) {
	set := func(o Op, name string, useName, useCoord bool) {
		t[o] = opInfo{name: name, known: true, useName: useName, useCoord: useCoord}
	}
	set(OpHello, "HELLO", false, false)
	set(OpPing, "PING", false, false)
	set(OpSelect, "SELECT", true, true)
	set(OpInsert, "INSERT", true, true)
	set(OpUpdate, "UPDATE", true, true)
	set(OpDelete, "DELETE", true, true)
	set(OpTOC, "TOC", true, false)
	set(OpGet, "GET", true, false)
	set(OpPut, "PUT", true, false)
	set(OpChecksum, "CHECKSUM", true, false)
	set(OpDelta, "DELTA", true, false)
	set(OpWhere, "WHERE", false, false)
	set(OpList, "LIST", false, false)
	set(OpStatus, "STATUS", false, false)
	set(OpVersion, "VERSION", false, false)
	set(OpWatch, "WATCH", true, false)
	set(OpUnwatch, "UNWATCH", false, false)
	set(OpCompact, "COMPACT", true, false)
	set(OpReload, "RELOAD", false, false)
	return t
}()

// AllOps lists every opcode this version knows, in numeric order (what a
// server advertises in its HELLO reply when it serves them all).
var AllOps = []Op{OpHello, OpPing, OpSelect, OpInsert, OpUpdate, OpDelete,
	OpTOC, OpGet, OpPut, OpChecksum, OpDelta, OpWhere, OpList, OpStatus,
	OpVersion, OpWatch, OpUnwatch, OpCompact, OpReload}

// String returns the operation's name, or "OP(0xNN)" when unknown.
func (o Op) String() string {
	if ops[o].known {
		return ops[o].name
	}
	return "OP(0x" + hex2(uint8(o)) + ")"
}

// Known reports whether this version of the protocol defines o.
func (o Op) Known() bool { return ops[o].known }

// UsesName reports whether o addresses a phext by name (the decoder
// validates the name only for these ops; the others ignore it).
func (o Op) UsesName() bool { return ops[o].useName }

// UsesCoord reports whether o addresses a scroll (the decoder validates the
// coordinate only for these ops; the others ignore it).
func (o Op) UsesCoord() bool { return ops[o].useCoord }

// Status is a response status code.
type Status uint8

// Status codes, fixed by the contract.
const (
	StatusOK           Status = 0x00
	StatusBadFrame     Status = 0x01
	StatusUnknownOp    Status = 0x02
	StatusAuth         Status = 0x03
	StatusBadName      Status = 0x04
	StatusBadCoord     Status = 0x05
	StatusBadScroll    Status = 0x06
	StatusTooLarge     Status = 0x07
	StatusQuota        Status = 0x08
	StatusBusy         Status = 0x09
	StatusInternal     Status = 0x0A
	StatusShuttingDown Status = 0x0B
)

var statusNames = [...]string{"OK", "BAD_FRAME", "UNKNOWN_OP", "AUTH",
	"BAD_NAME", "BAD_COORD", "BAD_SCROLL", "TOO_LARGE", "QUOTA", "BUSY",
	"INTERNAL", "SHUTTING_DOWN"}

// String returns the contract's name of s (e.g. "BAD_NAME"), or
// "STATUS(0xNN)" when unknown.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "STATUS(0x" + hex2(uint8(s)) + ")"
}

func hex2(b uint8) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[b>>4], digits[b&15]})
}

// Header is the fixed 10-byte frame header.
type Header struct {
	// Length is the length field: the number of bytes after it (6 + body).
	Length uint32
	// Op is the opcode in a request, the status in a response.
	Op uint8
	// Flags holds FlagCompressed or 0.
	Flags uint8
	// ID is the request id, echoed in the response.
	ID uint32
}

// ParseHeader reads the header of frame, which must hold at least
// HeaderSize bytes (it panics otherwise). It checks nothing.
func ParseHeader(frame []byte) Header {
	_ = frame[HeaderSize-1] // one bounds check for the reads below
	return Header{
		Length: binary.BigEndian.Uint32(frame),
		Op:     frame[4],
		Flags:  frame[5],
		ID:     binary.BigEndian.Uint32(frame[6:]),
	}
}

// FrameSize reads the length field from hdr (at least 4 bytes) and returns
// the size of the whole frame, 4+length. It checks the length before the
// caller waits for or allocates that many bytes: below 6 is StatusBadFrame,
// above maxFrame (DefaultMaxFrame when maxFrame ≤ 0) is StatusTooLarge. Both
// errors mean the stream cannot be delimited any more, so the connection must
// be closed after the error reply.
func FrameSize(hdr []byte, maxFrame int) (int, error) {
	if len(hdr) < 4 {
		return 0, newError(StatusBadFrame, "need 4 bytes to read the length")
	}
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	n := binary.BigEndian.Uint32(hdr)
	if n < minLength {
		return 0, errn(StatusBadFrame, "length below 6:", uint64(n))
	}
	if uint64(n) > uint64(maxFrame) {
		return 0, errn(StatusTooLarge, "length above max frame "+strconv.Itoa(maxFrame)+":", uint64(n))
	}
	return 4 + int(n), nil
}

// Request is one decoded request. The byte slices are views into the frame
// (or into the Decoder's scratch when the body was compressed); see the
// package's Caveats for how long they stay valid.
type Request struct {
	Op    Op
	Flags uint8
	ID    uint32
	// Name is the phext name; empty means the tenant's default phext.
	Name  []byte
	Coord phext.Coordinate
	// Payload is the rest of the body after name and coordinate; for HELLO
	// it is the whole HELLO body.
	Payload []byte
}

// Response is one decoded response; Body is a view like Request's slices.
type Response struct {
	Status Status
	Flags  uint8
	ID     uint32
	Body   []byte
}

// AppendCoordinate appends c as nine big-endian u16 (CoordSize bytes).
func AppendCoordinate(dst []byte, c phext.Coordinate) []byte {
	for _, p := range c {
		dst = binary.BigEndian.AppendUint16(dst, p)
	}
	return dst
}

// DecodeCoordinate reads a coordinate from the first CoordSize bytes of b.
// It does not check the range of the parts (WHERE may return 0 parts).
func DecodeCoordinate(b []byte) (phext.Coordinate, error) {
	var c phext.Coordinate
	if len(b) < CoordSize {
		return c, errn(StatusBadFrame, "coordinate needs 18 bytes, have", uint64(len(b)))
	}
	for i := range c {
		c[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return c, nil
}
