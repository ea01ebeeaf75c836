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

// Indexes of the nine parts of a Coordinate (levels), highest level first.
// They carry a Level prefix because Scroll names the scroll type.
const (
	LevelLibrary = iota
	LevelShelf
	LevelSeries
	LevelCollection
	LevelVolume
	LevelBook
	LevelChapter
	LevelSection
	LevelScroll
)

// MaxPart is the largest valid value of one part of a coordinate.
const MaxPart = 999

// Coordinate addresses one scroll: nine parts, library first and scroll
// last, each 1..MaxPart when valid. The zero value is not valid; use Origin.
// Coordinates are comparable and may be used as map keys.
type Coordinate [9]uint16

// Origin is 1.1.1/1.1.1/1.1.1, the coordinate of the first scroll.
var Origin = Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 1}

// breakOf maps a level (LevelLibrary..LevelScroll) to its delimiter byte.
var breakOf = [9]byte{LibraryBreak, ShelfBreak, SeriesBreak, CollectionBreak,
	VolumeBreak, BookBreak, ChapterBreak, SectionBreak, ScrollBreak}

// BreakOf returns the delimiter byte of level (LevelLibrary..LevelScroll).
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

// LevelOf returns the level (LevelLibrary..LevelScroll) of delimiter byte b, or -1
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

// ParseCoordinate parses the canonical text "L.S.R/C.V.B/Ch.Sn.Sc": nine
// decimal parts, '.' between the parts of an arm and '/' or ';' between the
// three arms (the URL form uses ';'; both may be mixed). Every part must be
// 1..MaxPart; leading zeros are accepted ("01" is 1). Anything else (spaces,
// signs, letters, missing, empty or extra parts) is an error wrapping
// ErrBadCoordinate. Accepted text reads exactly as the reference
// to_coordinate reads it. It does not allocate unless it fails.
func ParseCoordinate(s string) (Coordinate, error) { return parseCoord(s, true) }

// ToCoordinateLoose parses coordinate text the way the reference
// to_coordinate does, but only where the reference does not guess: exactly
// nine decimal parts, each 1..MaxPart, separated by any of '.', '/' and ';'
// (the reference treats the three alike, so "1.2.3.4.5.6.7.8.9" and
// "1/2/3/4/5/6/7/8/9" are accepted). Where the reference would guess it
// returns an error wrapping ErrBadCoordinate instead: any other byte (it
// skips junk, "1-2-3" would become 123), fewer or more than nine parts (it
// fills in 1s or drops parts), an empty part, 0, a part over 999 or one
// that would wrap a 32-bit integer. It does not allocate unless it fails.
func ToCoordinateLoose(s []byte) (Coordinate, error) { return parseCoord(s, false) }

// parseCoord is the shared parser; strict requires '.' inside arms and '/'
// or ';' between them.
func parseCoord[T ~string | ~[]byte](s T, strict bool) (Coordinate, error) {
	var c Coordinate
	part, val, digits := 0, 0, 0
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= '0' && ch <= '9':
			val = val*10 + int(ch-'0')
			digits++
			// Bounding val here also rules out the reference's u32 wrap.
			if val > MaxPart {
				return Coordinate{}, badCoord("part %d over %d at offset %d", part+1, MaxPart, i)
			}
		case ch == '.' || ch == '/' || ch == ';':
			if digits == 0 {
				return Coordinate{}, badCoord("empty part %d at offset %d", part+1, i)
			}
			if part == len(c)-1 {
				return Coordinate{}, badCoord("more than nine parts (offset %d)", i)
			}
			if strict {
				armEnd := part%3 == 2
				if armEnd && ch == '.' || !armEnd && ch != '.' {
					return Coordinate{}, badCoord("separator %q at offset %d: want '.' inside an arm and '/' or ';' between arms", ch, i)
				}
			}
			if val == 0 {
				return Coordinate{}, badCoord("part %d is 0", part+1)
			}
			c[part] = uint16(val)
			part++
			val, digits = 0, 0
		default:
			return Coordinate{}, badCoord("unexpected byte %q at offset %d", ch, i)
		}
	}
	if part != len(c)-1 || digits == 0 {
		return Coordinate{}, badCoord("%d parts", part+min(digits, 1))
	}
	if val == 0 {
		return Coordinate{}, badCoord("part 9 is 0")
	}
	c[len(c)-1] = uint16(val)
	return c, nil
}

// ParsePrefix parses a coordinate prefix: 1 to 9 decimal parts, each
// 1..MaxPart, separated by '.', '/' or ';' (for example "1.1.1/1.1.1/1.2",
// everything under section 2 of chapter 1 of book 1…). The empty string is
// the empty prefix (depth 0), under which every coordinate lies. The parts
// fill the returned Coordinate from the library on; the rest stay 0.
func ParsePrefix(s string) (Coordinate, int, error) {
	var c Coordinate
	if s == "" {
		return c, 0, nil
	}
	part, val, digits := 0, 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] >= '0' && s[i] <= '9' {
			val = val*10 + int(s[i]-'0')
			digits++
			if val > MaxPart {
				return Coordinate{}, 0, badCoord("prefix part %d over %d at offset %d", part+1, MaxPart, i)
			}
			continue
		}
		if i < len(s) && s[i] != '.' && s[i] != '/' && s[i] != ';' {
			return Coordinate{}, 0, badCoord("prefix: unexpected byte 0x%02X at offset %d", s[i], i)
		}
		if digits == 0 || val == 0 {
			return Coordinate{}, 0, badCoord("prefix part %d empty or 0 at offset %d", part+1, i)
		}
		if part == 9 {
			return Coordinate{}, 0, badCoord("prefix has more than nine parts")
		}
		c[part] = uint16(val)
		part, val, digits = part+1, 0, 0
	}
	return c, part, nil
}

// HasPrefix reports whether c lies under the first depth parts of prefix
// (depth 0: every coordinate does).
func (c Coordinate) HasPrefix(prefix Coordinate, depth int) bool {
	for i := 0; i < depth && i < len(c); i++ {
		if prefix[i] != c[i] {
			return false
		}
	}
	return true
}
