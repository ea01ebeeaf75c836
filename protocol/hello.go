package protocol

import (
	"encoding/binary"
)

// Hello is a decoded HELLO request.
type Hello struct {
	// Version is the protocol version the client speaks (≥ 1).
	Version uint8
	// Token is the tenant's API token, a view into the frame.
	Token []byte
	// Codecs holds the client's accept bits (AcceptZstd, AcceptS2).
	Codecs uint8
}

// AppendHello appends a HELLO request frame (never compressed). token must
// be 1..MaxTokenLen bytes; a longer token is cut to MaxTokenLen (the server
// then refuses it).
func AppendHello(dst []byte, id uint32, token []byte, codecs uint8) []byte {
	if len(token) > MaxTokenLen {
		token = token[:MaxTokenLen]
	}
	dst = appendHeader(dst, uint8(OpHello), 0, id, 3+len(token))
	dst = append(dst, Version, uint8(len(token)))
	dst = append(dst, token...)
	return append(dst, codecs)
}

// DecodeHello decodes the first frame of a connection, which must be a whole
// frame as FrameSize delimited it. It returns the request id whenever the
// header was readable, also with an error. A frame that is not a HELLO gives
// StatusAuth; a malformed HELLO gives StatusBadFrame (the server answers and
// closes in both cases). Bytes after the codecs byte are ignored, so a later
// version may add fields. Version 0 is malformed; any version ≥ 1 is
// returned as sent (the server answers with min(sent, Version)).
func DecodeHello(frame []byte) (Hello, uint32, error) {
	if len(frame) < HeaderSize {
		return Hello{}, 0, errn(StatusBadFrame, "frame shorter than the header:", uint64(len(frame)))
	}
	h := ParseHeader(frame)
	if uint64(h.Length) != uint64(len(frame)-4) {
		return Hello{}, h.ID, errn(StatusBadFrame, "length field disagrees with frame size:", uint64(h.Length))
	}
	if Op(h.Op) != OpHello {
		return Hello{}, h.ID, newError(StatusAuth, "HELLO must be the first frame, got "+Op(h.Op).String())
	}
	if h.Flags != 0 {
		return Hello{}, h.ID, errn(StatusBadFrame, "HELLO must have flags 0, got", uint64(h.Flags))
	}
	b := frame[HeaderSize:]
	if len(b) < 2 {
		return Hello{}, h.ID, newError(StatusBadFrame, "HELLO body too short")
	}
	if b[0] == 0 {
		return Hello{}, h.ID, newError(StatusBadFrame, "HELLO protocol version 0")
	}
	l := int(b[1])
	if l == 0 {
		return Hello{}, h.ID, newError(StatusAuth, "empty token")
	}
	if len(b) < 2+l+1 {
		return Hello{}, h.ID, newError(StatusBadFrame, "HELLO body truncated")
	}
	return Hello{Version: b[0], Token: b[2 : 2+l], Codecs: b[2+l]}, h.ID, nil
}

// HelloReply is the body of the OK answer to HELLO.
type HelloReply struct {
	// Version is the protocol version both sides speak from now on.
	Version uint8
	// Codec is the codec chosen for compressed bodies (CodecNone, CodecZstd,
	// CodecS2).
	Codec uint8
	// MaxFrame is the largest length field the server accepts.
	MaxFrame uint32
	// TenantName names the tenant the token belongs to (≤ 255 bytes).
	TenantName string
	// ServerVersion is the server's software version (≤ 255 bytes).
	ServerVersion string
	// CompressThreshold: bodies shorter than this are never compressed.
	CompressThreshold uint32
	// MaxInFlight is how many requests a client may have outstanding on
	// one connection before the server stops reading from it.
	MaxInFlight uint32
	// Ops lists the opcodes the server serves on this connection.
	Ops []Op
}

// AppendHelloReply appends the OK response to HELLO. Strings longer than
// 255 bytes and op lists longer than 255 entries are cut.
func AppendHelloReply(dst []byte, id uint32, r *HelloReply) []byte {
	tn, sv, ops := r.TenantName, r.ServerVersion, r.Ops
	if len(tn) > 255 {
		tn = tn[:255]
	}
	if len(sv) > 255 {
		sv = sv[:255]
	}
	if len(ops) > 255 {
		ops = ops[:255]
	}
	n := 1 + 1 + 4 + 1 + len(tn) + 1 + len(sv) + 4 + 4 + 1 + len(ops)
	dst = appendHeader(dst, uint8(StatusOK), 0, id, n)
	dst = append(dst, r.Version, r.Codec)
	dst = binary.BigEndian.AppendUint32(dst, r.MaxFrame)
	dst = append(dst, uint8(len(tn)))
	dst = append(dst, tn...)
	dst = append(dst, uint8(len(sv)))
	dst = append(dst, sv...)
	dst = binary.BigEndian.AppendUint32(dst, r.CompressThreshold)
	dst = binary.BigEndian.AppendUint32(dst, r.MaxInFlight)
	dst = append(dst, uint8(len(ops)))
	for _, o := range ops {
		dst = append(dst, uint8(o))
	}
	return dst
}

// DecodeHelloReply decodes the body of an OK answer to HELLO. Bytes after
// the op list are ignored (later versions may append fields). A body that
// ends right after the contract's fixed part (version, codec, max frame,
// tenant name) is accepted with the remaining fields zero.
func DecodeHelloReply(body []byte) (HelloReply, error) {
	var r HelloReply
	bad := func(what string) (HelloReply, error) {
		return HelloReply{}, newError(StatusBadFrame, "HELLO reply truncated in "+what)
	}
	if len(body) < 7 {
		return bad("fixed part")
	}
	r.Version, r.Codec = body[0], body[1]
	r.MaxFrame = binary.BigEndian.Uint32(body[2:])
	n := int(body[6])
	b := body[7:]
	if len(b) < n {
		return bad("tenant name")
	}
	r.TenantName, b = string(b[:n]), b[n:]
	if len(b) == 0 {
		return r, nil
	}
	n = int(b[0])
	if len(b) < 1+n+4+4+1 {
		return bad("server version, limits or op list")
	}
	r.ServerVersion, b = string(b[1:1+n]), b[1+n:]
	r.CompressThreshold = binary.BigEndian.Uint32(b)
	r.MaxInFlight = binary.BigEndian.Uint32(b[4:])
	n, b = int(b[8]), b[9:]
	if len(b) < n {
		return bad("op list")
	}
	r.Ops = make([]Op, n)
	for i := range r.Ops {
		r.Ops[i] = Op(b[i])
	}
	return r, nil
}

// NegotiateVersion returns the version a server puts in its HELLO reply
// for a client that sent clientVersion: the lower of the two (both sides
// then speak it). DecodeHello has already refused version 0.
func NegotiateVersion(clientVersion uint8) uint8 {
	return min(clientVersion, Version)
}
