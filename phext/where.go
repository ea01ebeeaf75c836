package phext

import "strconv"

// DefaultWhereLimit is SQ's default limit for the xor algorithm.
const DefaultWhereLimit = 100

// Where infers a coordinate from text as SQ's where command does. The text
// is first converted with LossyUTF8, as SQ converts request bodies.
//
//   - "xor": start from 1 in all nine parts and XOR in the coordinate of
//     every token of the text (as the reference tokenizes it: coordinates
//     saturate at 999 here, since nothing is stored, and the empty tokens
//     described at TextMap count) whose byte length is at least limit. The
//     result can hold 0 or parts over 999 (one long scroll at the origin
//     gives 0.0.0/0.0.0/0.0.0); it is returned as the reference computes
//     it, so check Valid before using it as an address.
//   - "checksum": from h = Checksum(text), part k is
//     ((h[2k] << 8) | h[2k+1]) mod 999 with 0 replaced by 1 (always valid);
//     limit is ignored.
//
// An unknown algo gives ErrBadAlgo, a negative limit ErrBadLimit.
func Where(text []byte, algo string, limit int) (Coordinate, error) {
	text = LossyUTF8(text)
	switch algo {
	case "xor":
		if limit < 0 {
			return Coordinate{}, ErrBadLimit
		}
		c := Origin
		_ = phokens(text, true, func(t Coordinate, b []byte) {
			if len(b) >= limit {
				for k := range c {
					c[k] ^= t[k]
				}
			}
		})
		return c, nil
	case "checksum":
		var a [ChecksumLen]byte
		h := AppendChecksum(a[:0], text)
		var c Coordinate
		for k := range c {
			v := (uint32(h[2*k])<<8 | uint32(h[2*k+1])) % 999
			if v == 0 {
				v = 1
			}
			c[k] = uint16(v)
		}
		return c, nil
	}
	return Coordinate{}, ErrBadAlgo
}

// AppendWhereMessage appends SQ's reply to where:
// "Calculated coordinate <c> for input (algo=<algo>, limit=<limit>)."
func AppendWhereMessage(dst []byte, c Coordinate, algo string, limit int) []byte {
	dst = append(dst, "Calculated coordinate "...)
	dst = c.AppendText(dst)
	dst = append(dst, " for input (algo="...)
	dst = append(dst, algo...)
	dst = append(dst, ", limit="...)
	dst = strconv.AppendInt(dst, int64(limit), 10)
	return append(dst, ")."...)
}

// WhereMessage returns AppendWhereMessage as a string.
func WhereMessage(c Coordinate, algo string, limit int) string {
	return string(AppendWhereMessage(nil, c, algo, limit))
}
