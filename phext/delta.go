package phext

import (
	"bytes"
	"fmt"
	"math"
	"slices"
)

// MissingMarker is the text SQ's delta puts at a requested coordinate that
// holds no scroll.
const MissingMarker = "---sq:Scroll-Missing---"

// Delta answers SQ's delta command for a stored phext made of scrolls
// (sorted by coordinate without duplicates, as Explode returns them). An
// empty Scroll in scrolls counts as present (its checksum is that of "")
// and is written as nothing: pass ExplodeRef's result to reproduce SQ on a
// document it has just loaded with its extra empty token, Explode's (or the
// store's non-empty scrolls) for a document SQ saved and reloaded. request holds lines
// "<coord>: <checksum>" (split like Rust's str::lines: on "\n", one trailing
// "\r" dropped). Each line is split on every ": "; a line with at least two
// fields whose first field is a coordinate records diff[coord] = second
// field, later lines winning. The result is the document (AppendImplode)
// holding every scroll whose Checksum differs from diff[coord] or that has
// no entry, plus MissingMarker at every diff coordinate that holds no
// scroll. An empty request therefore returns the whole document.
//
// Differences from SQ, all deliberate: the first field is read with
// ToCoordinateLoose after an optional "* " prefix (the toc form), so a line
// whose coordinate SQ would guess at (junk, missing parts, 0, over 999) is
// skipped; SQ ignores coordinates with a 0 as we do, but loops forever,
// eating memory, on a part of 1000, which we skip as well. SQ writes the
// result with libphext's implode, which would drop the breaks before an
// entry that follows an empty one; we write it like AppendImplode.
//
// The error is always nil today; it is kept for request limits.
func Delta(scrolls []Scroll, request []byte) ([]byte, error) {
	return DeltaLimit(scrolls, request, math.MaxInt)
}

// DeltaLimit is Delta with a bound on the output: a request naming many
// missing coordinates far apart makes an output hundreds of times its own
// size (each missing scroll costs up to ~9,000 break bytes), so a server
// passes the largest reply it can send. Past limit it stops and returns an
// error wrapping ErrTooLarge.
func DeltaLimit(scrolls []Scroll, request []byte, limit int) ([]byte, error) {
	diff := make(map[Coordinate][]byte)
	for len(request) > 0 {
		line := request
		if i := bytes.IndexByte(request, '\n'); i >= 0 {
			line, request = request[:i], request[i+1:]
		} else {
			request = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		i := bytes.Index(line, []byte(": "))
		if i < 0 {
			continue
		}
		field0, rest := line[:i], line[i+2:]
		if j := bytes.Index(rest, []byte(": ")); j >= 0 {
			rest = rest[:j]
		}
		field0 = bytes.TrimPrefix(field0, []byte("* "))
		c, err := ToCoordinateLoose(field0)
		if err != nil {
			continue
		}
		diff[c] = rest
	}
	out := make([]Scroll, 0, len(scrolls)+len(diff))
	var sum [ChecksumLen]byte
	for _, sc := range scrolls {
		want, ok := diff[sc.Coord]
		if ok && bytes.Equal(AppendChecksum(sum[:0], sc.Text), want) {
			continue
		}
		out = append(out, sc)
	}
	marker := []byte(MissingMarker)
	for c := range diff {
		_, found := slices.BinarySearchFunc(scrolls, c, func(s Scroll, c Coordinate) int {
			return s.Coord.Compare(c)
		})
		if !found {
			out = append(out, Scroll{Coord: c, Text: marker})
		}
	}
	slices.SortFunc(out, func(a, b Scroll) int { return a.Coord.Compare(b.Coord) })
	dst, ok := appendImplodeLimit(nil, out, limit)
	if !ok {
		return nil, fmt.Errorf("%w: delta output passes %d bytes", ErrTooLarge, limit)
	}
	return dst, nil
}
