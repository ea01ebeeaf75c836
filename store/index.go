package store

import (
	"bytes"
	"slices"
	"unicode/utf8"

	"github.com/phext/sq/phext"
)

// index locates the non-empty scrolls of a base document (a snapshot
// mapping or a Put's document). It is sparse: it holds an entry for some
// scrolls only (the samples) and finds the others by scanning from the
// sample before them. A scroll is a sample when it is the document's
// first, when sampleScrolls-1 scrolls were not sampled since the last
// sample, or when it ends more than sampleBytes after the last sample's
// end. So a scroll that is not a sample lies wholly within sampleBytes
// after the end of the sample before it, and a lookup scans at most
// sampleBytes and sampleScrolls scrolls (blockEnd); a long scroll or a
// long run of breaks is always behind a sample and never scanned.
//
// Dense, the index cost 28 bytes a scroll: the accepted PUT of issue 13's
// attack M4 (400 k one-byte scrolls) wrote and page-faulted a fresh 11 MB
// index each time, a third of its cost. Sparse, it holds at most one entry
// per scroll (scrolls of sampleBytes or more each have one) and at most
// one per sampleScrolls scrolls or sampleBytes bytes besides: 1.75 bytes
// a one-byte scroll. store.ScrollCost, what the quota charges a scroll,
// bounds it either way.
//
// An index never changes once built; readers share it without copies.
type index struct {
	e       []entry // the samples, in document (coordinate) order
	scrolls int64   // non-empty scrolls of the document
	bytes   int64   // their text bytes
}

// entry locates one sampled scroll of the base document.
type entry struct {
	c          phext.Coordinate
	start, end uint32
}

const (
	sampleScrolls = 16
	sampleBytes   = 512
)

// sampleCap is the most samples a document of n bytes and the given
// number of non-empty scrolls can have: each sample after the first
// follows sampleScrolls-1 unsampled scrolls or ends more than sampleBytes
// after the one before it.
func sampleCap(scrolls, n int) int {
	return min(scrolls, scrolls/sampleScrolls+n/sampleBytes+1)
}

// buildIndex scans doc into its index. scrolls is doc's number of
// non-empty scrolls when known (0: unknown): the samples are then
// allocated once. The error is the one phext.Scanner gives (an
// overflowing coordinate).
//
// It walks doc as the Scanner does (the same scrolls and coordinates: the
// index tests compare the two) but in one loop with the cursor in a local
// variable: each one-byte scroll of a PUT costs a few instructions instead
// of a Next call, which copies the whole coordinate and calls TextEnd
// (issue 13, M4: 400 k one-byte scrolls indexed for every accepted PUT).
func buildIndex(doc []byte, scrolls int) (index, error) {
	var x index
	if scrolls > 0 {
		x.e = make([]entry, 0, sampleCap(scrolls, len(doc)))
	}
	c := phext.Origin
	last, since := -1, 0 // the last sample's end; scrolls since it
	var n, text int
	for i := 0; i < len(doc); {
		if l := phext.LevelOf(doc[i]); l >= 0 {
			if l == phext.LevelScroll && c[l] < phext.MaxPart {
				c[l]++ // Advance's common case, inline
			} else if !c.Advance(l) {
				return index{}, &phext.OverflowError{Offset: i, Level: l}
			}
			i++
			continue
		}
		start := i
		if i++; i < len(doc) && !phext.IsBreak(doc[i]) {
			i = phext.TextEnd(doc, i)
		}
		n++
		text += i - start
		if last < 0 || since == sampleScrolls-1 || i-last > sampleBytes {
			x.e = append(x.e, entry{c: c, start: uint32(start), end: uint32(i)})
			last, since = i, 0
			continue
		}
		since++
	}
	x.scrolls, x.bytes = int64(n), int64(text)
	return x, nil
}

// indexDoc is buildIndex of a snapshot or logged document (named path in
// errors), checked for UTF-8 first when checkUTF8.
func indexDoc(doc []byte, path string, checkUTF8 bool, scrolls int) (index, error) {
	if checkUTF8 && !utf8.Valid(doc) {
		// SQ would load this as an empty phext and overwrite it on the next
		// write; we refuse instead of destroying data.
		return index{}, corruptErr(path, int64(utf8ValidUpTo(doc)), "snapshot is not valid UTF-8")
	}
	x, err := buildIndex(doc, scrolls)
	if err != nil {
		return index{}, overflowErr(path, err)
	}
	return x, nil
}

func utf8ValidUpTo(b []byte) int {
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return i
}

// sameScrolls reports whether doc holds exactly the scrolls of old at the
// same offsets, so that old's index is doc's: doc is a prefix of old and
// the rest of old is breaks only. The Scanner yields the same scrolls from
// the two (a scroll of doc ending at len(doc) is followed by a break in
// old, so it ends there too), and the samples depend on those alone. It
// costs a comparison that stops at the first differing byte.
func sameScrolls(doc, old []byte) bool {
	if len(doc) > len(old) || !bytes.Equal(doc, old[:len(doc)]) {
		return false
	}
	for _, b := range old[len(doc):] {
		if phext.LevelOf(b) < 0 {
			return false
		}
	}
	return true
}

// blockEnd is where the scan after sample k of doc (n bytes) may stop:
// every unsampled scroll after sample k ends by then, and the next
// sample's text starts no earlier.
func (x *index) blockEnd(k, n int) int {
	if k+1 < len(x.e) {
		n = int(x.e[k+1].start)
	}
	return min(n, int(x.e[k].end)+sampleBytes)
}

// find returns the text of the scroll at c of doc (indexed by x), nil
// when that scroll is empty. No allocation.
func (x *index) find(doc []byte, c phext.Coordinate) []byte {
	// A sample at c, or else the last one before c.
	lo, hi := 0, len(x.e)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch e := &x.e[m]; e.c.Compare(c) {
		case -1:
			lo = m + 1
		case 0:
			return doc[e.start:e.end:e.end]
		default:
			hi = m
		}
	}
	if lo == 0 {
		return nil
	}
	k := lo - 1
	e := &x.e[k]
	var sc phext.Scanner
	sc.ResetAt(doc[:x.blockEnd(k, len(doc))], int(e.end), e.c)
	for sc.Next() {
		switch sc.Coordinate().Compare(c) {
		case 0:
			return sc.Scroll()
		case 1:
			return nil
		}
	}
	return nil
}

// walk calls fn for every non-empty scroll of doc (indexed by x) in
// order, with views of doc.
func (x *index) walk(doc []byte, fn func(c phext.Coordinate, text []byte)) {
	var sc phext.Scanner
	for k := range x.e {
		e := &x.e[k]
		fn(e.c, doc[e.start:e.end:e.end])
		sc.ResetAt(doc[:x.blockEnd(k, len(doc))], int(e.end), e.c)
		for sc.Next() {
			fn(sc.Coordinate(), sc.Scroll())
		}
	}
}

// walkDoc calls fn for every non-empty scroll of base (indexed by x)
// under the overlays top and then mid (either may be nil), in coordinate
// order. A checkpoint calls it without locks on a frozen view.
func walkDoc(base []byte, x *index, top, mid map[phext.Coordinate][]byte, fn func(c phext.Coordinate, text []byte)) {
	if len(top)+len(mid) == 0 {
		x.walk(base, fn)
		return
	}
	keys := make([]phext.Coordinate, 0, len(top)+len(mid))
	for k := range top {
		keys = append(keys, k)
	}
	for k := range mid {
		if _, dup := top[k]; !dup {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, phext.Coordinate.Compare)
	j := 0
	// over emits the overlay's scroll at keys[j] (absent when deleted).
	over := func() {
		k := keys[j]
		j++
		v, ok := top[k]
		if !ok {
			v = mid[k]
		}
		if len(v) > 0 {
			fn(k, v)
		}
	}
	x.walk(base, func(c phext.Coordinate, text []byte) {
		for j < len(keys) && keys[j].Less(c) {
			over()
		}
		if j < len(keys) && keys[j] == c {
			over() // shadows the base scroll
			return
		}
		fn(c, text)
	})
	for j < len(keys) {
		over()
	}
}
