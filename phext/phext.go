package phext

import (
	"math"
	"unicode/utf8"
)

// Scroll is one addressed text of a phext document.
type Scroll struct {
	Coord Coordinate
	Text  []byte
}

// Explode returns the non-empty scrolls of buf, sorted by coordinate (which
// is document order). Texts are views into buf, not copies. A part that
// would pass MaxPart gives an *OverflowError and no scrolls.
//
// The reference explode also keeps empty tokens (the origin of a document
// without text, or the coordinate after the first of two or more trailing
// breaks); Explode drops them, as SQ drops them when it writes the file.
func Explode(buf []byte) ([]Scroll, error) {
	var s Scanner
	s.Reset(buf)
	var out []Scroll
	for s.Next() {
		out = append(out, Scroll{Coord: s.Coordinate(), Text: s.Scroll()})
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ExplodeRef returns what the reference explode returns for buf (and what
// SQ holds in memory after loading it): the scrolls of Explode plus the one
// empty token the reference tokenizer adds, an empty Scroll at Origin when
// buf has no text, or, when two or more breaks follow the last text, at the
// coordinate reached after the first of them. Still sorted, no duplicates.
func ExplodeRef(buf []byte) ([]Scroll, error) {
	var out []Scroll
	err := phokens(buf, false, func(c Coordinate, text []byte) {
		out = append(out, Scroll{Coord: c, Text: text})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Select returns the text of the scroll at c in buf (a view into buf), or
// nil when that scroll is empty or absent. It stops scanning at the first
// scroll past c and does not allocate. A part past MaxPart before that point
// gives an *OverflowError.
func Select(buf []byte, c Coordinate) ([]byte, error) {
	var s Scanner
	s.Reset(buf)
	for s.Next() {
		switch s.Coordinate().Compare(c) {
		case 0:
			return s.Scroll(), nil
		case 1:
			return nil, nil
		}
	}
	return nil, s.Err()
}

// AppendDelimiters appends the breaks SQ's implode_ref writes between two
// consecutive non-empty scrolls at prev and next (prev = Origin before the
// first scroll): at the highest level where they differ, next−prev copies of
// that level's break (none if next is smaller), then next−1 copies of each
// lower level's break. Equal coordinates get no break. For coordinates
// outside 1..MaxPart it writes what SQ writes (counts that read back
// saturated); callers that store data should only pass valid coordinates.
func AppendDelimiters(dst []byte, prev, next Coordinate) []byte {
	for l := range prev {
		if prev[l] == next[l] {
			continue
		}
		if next[l] > prev[l] {
			dst = appendN(dst, breakOf[l], int(next[l]-prev[l]))
		}
		for m := l + 1; m < len(next); m++ {
			if next[m] > 1 {
				dst = appendN(dst, breakOf[m], int(next[m]-1))
			}
		}
		return dst
	}
	return dst
}

// DelimitersLen returns len(AppendDelimiters(nil, prev, next)) without
// building the breaks.
func DelimitersLen(prev, next Coordinate) int {
	for l := range prev {
		if prev[l] == next[l] {
			continue
		}
		n := 0
		if next[l] > prev[l] {
			n = int(next[l] - prev[l])
		}
		for m := l + 1; m < len(next); m++ {
			if next[m] > 1 {
				n += int(next[m] - 1)
			}
		}
		return n
	}
	return 0
}

func appendN(dst []byte, b byte, n int) []byte {
	for ; n > 0; n-- {
		dst = append(dst, b)
	}
	return dst
}

// Implode serializes scrolls as SQ writes a phext file (implode_ref). See
// AppendImplode.
func Implode(scrolls []Scroll) []byte { return AppendImplode(nil, scrolls) }

// AppendImplode appends the document made of scrolls, which must be sorted
// by coordinate without duplicates: empty scrolls are dropped and the
// minimal breaks (AppendDelimiters) go between the others. For valid
// coordinates this equals both SQ's implode_ref and libphext's implode, and
// Explode of the result gives back the non-empty scrolls. It allocates only
// to grow dst.
func AppendImplode(dst []byte, scrolls []Scroll) []byte {
	dst, _ = appendImplodeLimit(dst, scrolls, math.MaxInt)
	return dst
}

// appendImplodeLimit is AppendImplode that stops, returning false, once dst
// is longer than limit.
func appendImplodeLimit(dst []byte, scrolls []Scroll, limit int) ([]byte, bool) {
	prev := Origin
	for i := range scrolls {
		sc := &scrolls[i]
		if len(sc.Text) == 0 {
			continue
		}
		dst = AppendDelimiters(dst, prev, sc.Coord)
		dst = append(dst, sc.Text...)
		prev = sc.Coord
		if len(dst) > limit {
			return dst, false
		}
	}
	return dst, true
}

// Normalize returns buf re-serialized with minimal breaks: trailing breaks
// and empty scrolls go, runs of breaks become the shortest run that reaches
// the same coordinate. It equals the reference normalize and SQ's
// implode_ref(explode(buf)). A part past MaxPart gives an *OverflowError.
func Normalize(buf []byte) ([]byte, error) {
	return AppendNormalize(make([]byte, 0, len(buf)), buf)
}

// AppendNormalize appends Normalize(buf) to dst in one pass; on error dst is
// returned unchanged in length.
func AppendNormalize(dst, buf []byte) ([]byte, error) {
	n := len(dst)
	var s Scanner
	s.Reset(buf)
	prev := Origin
	for s.Next() {
		dst = AppendDelimiters(dst, prev, s.Coordinate())
		dst = append(dst, s.Scroll()...)
		prev = s.Coordinate()
	}
	if err := s.Err(); err != nil {
		return dst[:n], err
	}
	return dst, nil
}

// ValidScroll reports whether b may be stored as one scroll: valid UTF-8
// and none of the nine delimiter bytes.
func ValidScroll(b []byte) bool {
	return scanText(b, 0) == len(b) && utf8.Valid(b)
}

// CheckScroll is ValidScroll with the reason: nil for valid text, else a
// *ScrollError naming the first offending byte and its offset (the first
// delimiter, or else the first byte of the first invalid UTF-8 sequence).
// It allocates only when it fails.
func CheckScroll(b []byte) error {
	if i := scanText(b, 0); i < len(b) {
		return &ScrollError{Offset: i, Byte: b[i], Delimiter: true}
	}
	if i := InvalidUTF8At(b); i >= 0 {
		return &ScrollError{Offset: i, Byte: b[i]}
	}
	return nil
}

// InvalidUTF8At returns the offset of the first byte of the first invalid
// UTF-8 sequence in b, or -1 when b is valid UTF-8.
func InvalidUTF8At(b []byte) int {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// LossyUTF8 returns b with each maximal invalid UTF-8 subsequence replaced
// by one U+FFFD, byte for byte as Rust's String::from_utf8_lossy (SQ applies
// it to request bodies). Valid input is returned as is, without a copy.
func LossyUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/2)
	for i := 0; i < len(b); {
		c := b[i]
		if c < 0x80 {
			out = append(out, c)
			i++
			continue
		}
		w, lo, hi := 0, byte(0x80), byte(0xBF)
		switch {
		case c >= 0xC2 && c <= 0xDF:
			w = 2
		case c == 0xE0:
			w, lo = 3, 0xA0
		case c == 0xED:
			w, hi = 3, 0x9F
		case c >= 0xE1 && c <= 0xEF:
			w = 3
		case c == 0xF0:
			w, lo = 4, 0x90
		case c >= 0xF1 && c <= 0xF3:
			w = 4
		case c == 0xF4:
			w, hi = 4, 0x8F
		}
		j, ok := i+1, w > 0
		for k := 1; ok && k < w; k++ {
			if j >= len(b) {
				ok = false
				break
			}
			x := b[j]
			if k == 1 && (x < lo || x > hi) || k > 1 && (x < 0x80 || x > 0xBF) {
				ok = false
				break
			}
			j++
		}
		if ok {
			out = append(out, b[i:j]...)
		} else {
			out = append(out, "\uFFFD"...)
		}
		i = j
	}
	return out
}

// phokens calls fn for each token of the reference phokenize in stream
// order: the non-empty scrolls, then the extra empty token described at
// Scanner.tail. With saturate the parts stop at 999 as in the reference
// (tokens may then repeat); without, a part past 999 is an *OverflowError.
func phokens(buf []byte, saturate bool, fn func(c Coordinate, text []byte)) error {
	s := Scanner{saturate: saturate}
	s.Reset(buf)
	for s.Next() {
		fn(s.Coordinate(), s.Scroll())
	}
	if err := s.Err(); err != nil {
		return err
	}
	if c, ok := s.tail(); ok {
		fn(c, nil)
	}
	return nil
}
