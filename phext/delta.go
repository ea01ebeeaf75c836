package phext

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"unsafe"
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
	r := ParseDeltaRequest(request)
	kept := make([]Scroll, 0, len(scrolls))
	for _, sc := range scrolls {
		if r.Keep(sc.Coord, sc.Text) {
			kept = append(kept, sc)
		}
	}
	return r.AppendOutput(nil, kept, limit)
}

// DeltaRequest is a parsed delta request: one entry per coordinate named
// (the last line naming it wins), sorted by coordinate. It holds views into
// the request, which must outlive it. A server parses the request before it
// locks the stored phext, calls Keep for each stored scroll under the lock,
// and builds the output with AppendOutput after releasing it, so the work
// proportional to the request never runs under the lock.
type DeltaRequest struct {
	req     []byte
	entries []deltaEntry
}

// deltaEntry is one requested coordinate; its checksum field is
// req[lo:hi].
type deltaEntry struct {
	c       Coordinate
	present bool // a stored scroll sits at c
	lo, hi  uint32
}

// DeltaEntrySize is the memory one line of a delta request costs once
// parsed: a caller bounds ParseDeltaRequest's allocation by
// DeltaLines(request) × DeltaEntrySize before calling it.
const DeltaEntrySize = int(unsafe.Sizeof(deltaEntry{}))

// DeltaLines returns an upper bound on the entries ParseDeltaRequest makes
// of request (its line count).
func DeltaLines(request []byte) int {
	if len(request) == 0 {
		return 0
	}
	return countByte(request, '\n') + 1
}

// scanChunk bounds the bytes one assembly scan (bytes.Count, IndexByte,
// Index) reads of a request in one call. Those routines cannot be
// preempted: a stop-the-world (the GC's) waits for them with every other
// P already stopped, so one scan of a 60 MiB DELTA request (~10-20 ms)
// froze every event loop of the server for as long. Between chunks the
// goroutine can be preempted.
const scanChunk = 1 << 20

// countByte is bytes.Count(b, {c}) a chunk at a time.
func countByte(b []byte, c byte) int {
	n := 0
	for len(b) > scanChunk {
		n += bytes.Count(b[:scanChunk], []byte{c})
		b = b[scanChunk:]
	}
	return n + bytes.Count(b, []byte{c})
}

// indexByte is bytes.IndexByte a chunk at a time.
func indexByte(b []byte, c byte) int {
	for off := 0; off < len(b); off += scanChunk {
		if i := bytes.IndexByte(b[off:min(off+scanChunk, len(b))], c); i >= 0 {
			return off + i
		}
	}
	return -1
}

// indexSep is bytes.Index(b, sep) a chunk at a time (chunks overlap by
// len(sep)-1 bytes, so a sep across a boundary is found).
func indexSep(b, sep []byte) int {
	for off := 0; off < len(b); off += scanChunk {
		if i := bytes.Index(b[off:min(off+scanChunk+len(sep)-1, len(b))], sep); i >= 0 {
			return off + i
		}
	}
	return -1
}

// ParseDeltaRequest parses request as Delta reads it. Its one allocation
// is at most DeltaLines(request) × DeltaEntrySize bytes. Requests above
// 4 GiB are cut at 4 GiB.
func ParseDeltaRequest(request []byte) DeltaRequest {
	if len(request) > math.MaxUint32 {
		request = request[:math.MaxUint32]
	}
	r := DeltaRequest{req: request}
	if len(request) == 0 {
		return r
	}
	r.entries = make([]deltaEntry, 0, DeltaLines(request))
	pos := 0
	for pos < len(request) {
		line := request[pos:]
		start := pos
		if i := indexByte(line, '\n'); i >= 0 {
			line = line[:i]
			pos += i + 1
		} else {
			pos = len(request)
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		i := indexSep(line, []byte(": "))
		if i < 0 {
			continue
		}
		field0, rest := line[:i], line[i+2:]
		if j := indexSep(rest, []byte(": ")); j >= 0 {
			rest = rest[:j]
		}
		field0 = bytes.TrimPrefix(field0, []byte("* "))
		c, err := ToCoordinateLoose(field0)
		if err != nil {
			continue
		}
		lo := start + i + 2
		r.entries = append(r.entries, deltaEntry{c: c, lo: uint32(lo), hi: uint32(lo + len(rest))})
	}
	// Stable, so that among equal coordinates the last line stays last.
	slices.SortStableFunc(r.entries, func(a, b deltaEntry) int { return a.c.Compare(b.c) })
	out := r.entries[:0]
	for i, e := range r.entries {
		if i+1 < len(r.entries) && r.entries[i+1].c == e.c {
			continue // a later line names the same coordinate
		}
		out = append(out, e)
	}
	r.entries = out
	return r
}

// Keep reports whether the stored scroll at c with text belongs in the
// delta output (the request has no entry for c, or one whose checksum
// differs from text's), and records that a scroll is stored at c. Call it
// once per stored scroll, including empty ones that should count as
// present. It does not allocate.
func (r *DeltaRequest) Keep(c Coordinate, text []byte) bool {
	i, found := slices.BinarySearchFunc(r.entries, c, func(e deltaEntry, c Coordinate) int {
		return e.c.Compare(c)
	})
	if !found {
		return true
	}
	e := &r.entries[i]
	e.present = true
	var sum [ChecksumLen]byte
	return !bytes.Equal(AppendChecksum(sum[:0], text), r.req[e.lo:e.hi])
}

// AppendOutput appends the delta document: the kept scrolls (sorted by
// coordinate, as Keep selected them) merged with MissingMarker at every
// requested coordinate Keep never saw. Past limit bytes of output it stops
// and returns an error wrapping ErrTooLarge. OutputLen gives the size
// first, so dst can be grown once.
func (r *DeltaRequest) AppendOutput(dst []byte, kept []Scroll, limit int) ([]byte, error) {
	start := len(dst)
	prev := Origin
	over := false
	r.each(kept, func(sc Scroll) bool {
		if len(dst)-start+DelimitersLen(prev, sc.Coord)+len(sc.Text) > limit {
			over = true
			return false
		}
		dst = AppendDelimiters(dst, prev, sc.Coord)
		dst = append(dst, sc.Text...)
		prev = sc.Coord
		return true
	})
	if over {
		return dst[:start], fmt.Errorf("%w: delta output passes %d bytes", ErrTooLarge, limit)
	}
	return dst, nil
}

// OutputLen returns len of AppendOutput's output without building it, or
// an error wrapping ErrTooLarge once it passes limit.
func (r *DeltaRequest) OutputLen(kept []Scroll, limit int) (int, error) {
	n := 0
	prev := Origin
	r.each(kept, func(sc Scroll) bool {
		n += DelimitersLen(prev, sc.Coord) + len(sc.Text)
		prev = sc.Coord
		return n <= limit
	})
	if n > limit {
		return n, fmt.Errorf("%w: delta output passes %d bytes", ErrTooLarge, limit)
	}
	return n, nil
}

// each calls fn, in coordinate order, for every non-empty kept scroll and
// a MissingMarker scroll at every requested coordinate Keep never saw,
// until fn returns false.
func (r *DeltaRequest) each(kept []Scroll, fn func(sc Scroll) bool) {
	marker := []byte(MissingMarker)
	i, j := 0, 0
	for i < len(kept) || j < len(r.entries) {
		if j < len(r.entries) && r.entries[j].present {
			j++
			continue
		}
		var sc Scroll
		if j >= len(r.entries) || (i < len(kept) && kept[i].Coord.Less(r.entries[j].c)) {
			sc = kept[i]
			i++
		} else {
			sc = Scroll{Coord: r.entries[j].c, Text: marker}
			j++
		}
		if len(sc.Text) > 0 && !fn(sc) {
			return
		}
	}
}
