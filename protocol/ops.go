package protocol

import (
	"encoding/binary"
)

// WHERE algorithms (the first payload byte of a WHERE request).
const (
	// WhereXor XORs the coordinates of every phoken at least limit bytes
	// long into 1.1.1/1.1.1/1.1.1 (the result may hold 0 parts).
	WhereXor uint8 = 0
	// WhereChecksum derives the coordinate from the xxh3-128 checksum of
	// the text; the limit is ignored.
	WhereChecksum uint8 = 1
)

// WhereAlgoName returns the phext.Where name of algo ("xor", "checksum") or
// "" when unknown.
func WhereAlgoName(algo uint8) string {
	switch algo {
	case WhereXor:
		return "xor"
	case WhereChecksum:
		return "checksum"
	}
	return ""
}

// AppendWherePayload appends a WHERE payload: u8 algo, u32 limit, text.
func AppendWherePayload(dst []byte, algo uint8, limit uint32, text []byte) []byte {
	dst = append(dst, algo)
	dst = binary.BigEndian.AppendUint32(dst, limit)
	return append(dst, text...)
}

// DecodeWherePayload splits a WHERE payload; text is a view into p. An
// unknown algo or a payload under 5 bytes is StatusBadFrame.
func DecodeWherePayload(p []byte) (algo uint8, limit uint32, text []byte, err error) {
	if len(p) < 5 {
		return 0, 0, nil, errn(StatusBadFrame, "WHERE payload needs 5 bytes, have", uint64(len(p)))
	}
	if WhereAlgoName(p[0]) == "" {
		return 0, 0, nil, errn(StatusBadFrame, "unknown WHERE algorithm", uint64(p[0]))
	}
	return p[0], binary.BigEndian.Uint32(p[1:]), p[5:], nil
}

// AppendCount appends a u32 count body: bytes written (INSERT, UPDATE),
// bytes removed (DELETE), scrolls stored (PUT).
func AppendCount(dst []byte, n uint32) []byte {
	return binary.BigEndian.AppendUint32(dst, n)
}

// DecodeCount reads a u32 count body (exactly 4 bytes).
func DecodeCount(body []byte) (uint32, error) {
	if len(body) != 4 {
		return 0, errn(StatusBadFrame, "count body must be 4 bytes, have", uint64(len(body)))
	}
	return binary.BigEndian.Uint32(body), nil
}

// AppendList appends a LIST body: u16 count, then per name u8 length and
// the name. The default phext is listed with an empty name. Names longer
// than 255 bytes are cut and only the first 65535 names are written
// (neither happens with valid phext names and any real tenant).
func AppendList(dst []byte, names []string) []byte {
	if len(names) > 0xFFFF {
		names = names[:0xFFFF]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(names)))
	for _, n := range names {
		if len(n) > 255 {
			n = n[:255]
		}
		dst = append(dst, uint8(len(n)))
		dst = append(dst, n...)
	}
	return dst
}

// DecodeList decodes a LIST body; trailing bytes are StatusBadFrame.
func DecodeList(body []byte) ([]string, error) {
	if len(body) < 2 {
		return nil, newError(StatusBadFrame, "LIST body needs a 2-byte count")
	}
	n := int(binary.BigEndian.Uint16(body))
	b := body[2:]
	// Each entry takes at least one byte: bound the allocation by the body.
	if n > len(b) {
		return nil, errn(StatusBadFrame, "LIST count larger than the body allows:", uint64(n))
	}
	names := make([]string, 0, n)
	for i := 0; i < n; i++ {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return nil, newError(StatusBadFrame, "LIST body truncated")
		}
		l := int(b[0])
		names = append(names, string(b[1:1+l]))
		b = b[1+l:]
	}
	if len(b) != 0 {
		return nil, errn(StatusBadFrame, "LIST body has trailing bytes:", uint64(len(b)))
	}
	return names, nil
}

// StatusInfo is the body of an OK answer to STATUS: the tenant's usage.
type StatusInfo struct {
	Phexts  uint32 // number of phexts
	Scrolls uint64 // non-empty scrolls over all phexts
	Bytes   uint64 // serialized bytes over all phexts
	Quota   uint64 // quota in bytes; 0 means unlimited
}

// StatusInfoSize is the size of a STATUS body.
const StatusInfoSize = 4 + 8 + 8 + 8

// AppendStatusInfo appends a STATUS body (StatusInfoSize bytes).
func AppendStatusInfo(dst []byte, s StatusInfo) []byte {
	dst = binary.BigEndian.AppendUint32(dst, s.Phexts)
	dst = binary.BigEndian.AppendUint64(dst, s.Scrolls)
	dst = binary.BigEndian.AppendUint64(dst, s.Bytes)
	return binary.BigEndian.AppendUint64(dst, s.Quota)
}

// DecodeStatusInfo decodes a STATUS body. Bytes after the fixed 28 are
// ignored (room to grow).
func DecodeStatusInfo(body []byte) (StatusInfo, error) {
	if len(body) < StatusInfoSize {
		return StatusInfo{}, errn(StatusBadFrame, "STATUS body needs 28 bytes, have", uint64(len(body)))
	}
	return StatusInfo{
		Phexts:  binary.BigEndian.Uint32(body),
		Scrolls: binary.BigEndian.Uint64(body[4:]),
		Bytes:   binary.BigEndian.Uint64(body[12:]),
		Quota:   binary.BigEndian.Uint64(body[20:]),
	}, nil
}
