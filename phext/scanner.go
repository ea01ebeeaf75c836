package phext

import (
	"encoding/binary"
	"math/bits"
)

// Scanner walks a phext buffer once and yields every non-empty scroll with
// its coordinate and byte range, in document order. It never allocates
// (except for the *OverflowError it reports) and is a plain value: it may be
// embedded in another struct and reused with Reset. A zero Scanner yields
// nothing.
//
// In a buffer that Scanner accepts, coordinates strictly increase from one
// scroll to the next, so a document has no duplicate coordinates.
//
// Usage:
//
//	var s phext.Scanner
//	s.Reset(buf)
//	for s.Next() {
//		use(s.Coordinate(), s.Scroll())
//	}
//	if err := s.Err(); err != nil { ... }
type Scanner struct {
	buf   []byte
	pos   int
	cur   Coordinate // cursor: the coordinate after every break read so far
	coord Coordinate // coordinate of the last scroll yielded before the current Next (tail)
	start int
	end   int
	n     int // number of scrolls yielded
	err   error
	done  bool
	// saturate makes the scanner behave like the reference (parts stop at
	// 999) instead of failing; only Where uses it.
	saturate bool
}

// Reset starts a new scan of buf. The Scanner keeps buf (no copy), so buf
// must not change until the scan is over.
func (s *Scanner) Reset(buf []byte) {
	sat := s.saturate
	*s = Scanner{buf: buf, cur: Origin, saturate: sat}
}

// ResetAt starts a scan of buf at offset pos as if the breaks before pos had
// led to coordinate c (the coordinate of the scroll that ends at pos, when
// pos is a scroll's end). Offsets stay offsets into buf. A store's sparse
// index resumes a scan this way from a scroll it recorded.
func (s *Scanner) ResetAt(buf []byte, pos int, c Coordinate) {
	sat := s.saturate
	*s = Scanner{buf: buf, pos: pos, cur: c, saturate: sat}
}

// Next advances to the next non-empty scroll. It returns false at the end of
// the buffer or on an error (see Err).
func (s *Scanner) Next() bool {
	if s.done {
		return false
	}
	buf := s.buf
	i := s.pos
	// The last scroll's coordinate (for tail), copied before the breaks
	// move the cursor: copied after, the wide load of the cursor waits
	// for the narrow stores Advance just made (a store-forwarding stall,
	// a third of the cost of a one-byte scroll).
	s.coord = s.cur
	for i < len(buf) {
		l := levelOf[buf[i]]
		if l == 0 {
			break
		}
		if !s.cur.Advance(int(l - 1)) {
			if !s.saturate {
				s.err = &OverflowError{Offset: i, Level: int(l - 1)}
				s.done = true
				return false
			}
			// The reference: the part stays at 999, lower parts reset.
			for k := int(l); k < len(s.cur); k++ {
				s.cur[k] = 1
			}
		}
		i++
	}
	if i >= len(buf) {
		s.pos = i
		s.done = true
		return false
	}
	s.start = i
	s.end = scanText(buf, i)
	s.pos = s.end
	s.n++
	return true
}

// Coordinate returns the coordinate of the current scroll (only while the
// last Next returned true): the cursor, which only the breaks after the
// scroll move.
func (s *Scanner) Coordinate() Coordinate { return s.cur }

// Start returns the byte offset of the current scroll's first byte.
func (s *Scanner) Start() int { return s.start }

// End returns the byte offset just past the current scroll.
func (s *Scanner) End() int { return s.end }

// Scroll returns the current scroll's text, a view into the buffer given to
// Reset (valid as long as that buffer is).
func (s *Scanner) Scroll() []byte { return s.buf[s.start:s.end:s.end] }

// Err returns the error that stopped the scan, nil at a clean end. A part
// that would pass MaxPart gives an *OverflowError (errors.Is(err,
// ErrOverflow)).
func (s *Scanner) Err() error { return s.err }

// tail reports, once Next has returned false without error, the extra empty
// token the reference phokenizer emits at the end of the buffer: one at the
// origin when the buffer has no text at all, and, when two or more breaks
// follow the last text, one at the coordinate reached after the first of
// them. ok is false when there is no such token.
func (s *Scanner) tail() (c Coordinate, ok bool) {
	if s.n == 0 {
		return Origin, true
	}
	if len(s.buf)-s.end < 2 {
		return Coordinate{}, false
	}
	c = s.coord
	l := LevelOf(s.buf[s.end])
	if !c.Advance(l) {
		// Only reachable when saturating: the reference stays at 999.
		for k := l + 1; k < len(c); k++ {
			c[k] = 1
		}
	}
	return c, true
}

// TextEnd returns the offset of the first delimiter byte at or after i in
// b, or len(b): where text starting at i ends, found as Scanner finds it
// (16 bytes a step while none is a delimiter).
func TextEnd(b []byte, i int) int { return scanText(b, i) }

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// scanText returns the offset of the first delimiter byte at or after i, or
// len(b). Every delimiter is below 0x20, so it skips 16 bytes at a time
// while no byte is below 0x20 (a SWAR test). On a hit it looks at the lowest
// flagged byte only (that one is exact; higher flags may be borrow
// artefacts) and resumes just after it, so a line feed costs one step.
func scanText(b []byte, i int) int {
	for i+16 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		y := binary.LittleEndian.Uint64(b[i+8:])
		mx := (x - 0x20*lsb) &^ x & msb
		if mx|((y-0x20*lsb)&^y&msb) == 0 {
			i += 16
			continue
		}
		if mx == 0 {
			i += 8
			mx = (y - 0x20*lsb) &^ y & msb
		}
		j := i + bits.TrailingZeros64(mx)>>3
		if levelOf[b[j]] != 0 {
			return j
		}
		i = j + 1
	}
	for ; i < len(b); i++ {
		if levelOf[b[i]] != 0 {
			return i
		}
	}
	return len(b)
}
