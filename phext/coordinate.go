package phext

import (
	"strconv"
)

// The nine delimiter bytes of phext, from the smallest break to the largest.
// Each one advances its part of the coordinate and resets every lower part
// to 1. Line feed (0x0A) is ordinary text.
const (
	ScrollBreak     byte = 0x17
	SectionBreak    byte = 0x18
	ChapterBreak    byte = 0x19
	BookBreak       byte = 0x1A
	VolumeBreak     byte = 0x1C
	CollectionBreak byte = 0x1D
	SeriesBreak     byte = 0x1E
	ShelfBreak      byte = 0x1F
	LibraryBreak    byte = 0x01
)

// Indexes of the nine parts of a Coordinate, highest level first.
const (
	Library = iota
	Shelf
	Series
	Collection
	Volume
	Book
	Chapter
	Section
	Scroll
)

// MaxPart is the largest valid value of one part of a coordinate.
const MaxPart = 999

// Coordinate addresses one scroll: nine parts, library first and scroll
// last, each 1..MaxPart when valid. The zero value is not valid; use Origin.
// Coordinates are comparable and may be used as map keys.
type Coordinate [9]uint16

// Origin is 1.1.1/1.1.1/1.1.1, the coordinate of the first scroll.
var Origin = Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 1}

// breakOf maps a level (Library..Scroll) to its delimiter byte.
var breakOf = [9]byte{LibraryBreak, ShelfBreak, SeriesBreak, CollectionBreak,
	VolumeBreak, BookBreak, ChapterBreak, SectionBreak, ScrollBreak}

// BreakOf returns the delimiter byte of level (Library..Scroll).
func BreakOf(level int) byte { return breakOf[level] }

// levelOf maps a byte to 1+level for delimiter bytes and 0 for text.
var levelOf = func() (t [256]uint8) {
	for l, b := range breakOf {
		t[b] = uint8(l + 1)
	}
	return t
}()

// IsBreak reports whether b is one of the nine phext delimiter bytes.
func IsBreak(b byte) bool { return levelOf[b] != 0 }

// LevelOf returns the level (Library..Scroll) of delimiter byte b, or -1
// when b is text.
func LevelOf(b byte) int { return int(levelOf[b]) - 1 }

// Valid reports whether every part is in 1..MaxPart.
func (c Coordinate) Valid() bool {
	for _, p := range c {
		if p < 1 || p > MaxPart {
			return false
		}
	}
	return true
}

// Compare returns -1, 0 or +1 as c sorts before, equal to or after o,
// library first, scroll last.
func (c Coordinate) Compare(o Coordinate) int {
	for i := range c {
		if c[i] != o[i] {
			if c[i] < o[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Less reports whether c sorts before o.
func (c Coordinate) Less(o Coordinate) bool { return c.Compare(o) < 0 }

// Advance applies the break of level to c: that part grows by one and every
// lower part resets to 1. It returns false, leaving c unchanged, when the
// part is already MaxPart (the reference library saturates there and
// silently merges scrolls; we refuse instead).
func (c *Coordinate) Advance(level int) bool {
	if c[level] >= MaxPart {
		return false
	}
	c[level]++
	for i := level + 1; i < len(c); i++ {
		c[i] = 1
	}
	return true
}

// AppendText appends the canonical form "L.S.R/C.V.B/Ch.Sn.Sc" to dst.
func (c Coordinate) AppendText(dst []byte) []byte {
	for i, p := range c {
		if i > 0 {
			if i%3 == 0 {
				dst = append(dst, '/')
			} else {
				dst = append(dst, '.')
			}
		}
		dst = strconv.AppendUint(dst, uint64(p), 10)
	}
	return dst
}

// String returns the canonical form "L.S.R/C.V.B/Ch.Sn.Sc".
func (c Coordinate) String() string {
	var a [48]byte
	return string(c.AppendText(a[:0]))
}
