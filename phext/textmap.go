package phext

import (
	"encoding/hex"
	"strconv"

	"github.com/zeebo/xxh3"
)

// ChecksumLen is the length of a checksum in hex digits.
const ChecksumLen = 32

// SummaryLen is the longest summary a TOC line shows, in bytes.
const SummaryLen = 32

// Checksum returns the xxh3-128 (seed 0) of b as 32 lowercase hex digits,
// high 64 bits first, zero padded: libphext's checksum. The empty input
// gives "99aa06d3014798d86001c324468d497f".
func Checksum(b []byte) string {
	var a [ChecksumLen]byte
	return string(AppendChecksum(a[:0], b))
}

// AppendChecksum appends Checksum(b) to dst without allocating (beyond
// growing dst).
func AppendChecksum(dst, b []byte) []byte {
	sum := xxh3.Hash128(b).Bytes()
	return hex.AppendEncode(dst, sum[:])
}

// AppendTOCLine appends one line of a table of contents (libphext textmap)
// to dst: "* " + coordinate + ": " + summary + "\n". The summary is text up
// to its first line feed or break byte, at most SummaryLen bytes, followed
// by "..." when it is shorter than text.
//
// Where the 32-byte cut would split a multi-byte UTF-8 character the
// reference panics; we cut back to the end of the last whole character
// before byte 32 instead (and add "...").
//
// SQ's toc of a stored phext is these lines for its sorted non-empty
// scrolls, or, when it has none, the single line for Origin with empty text
// ("* 1.1.1/1.1.1/1.1.1: \n"); AppendTOC does exactly that.
func AppendTOCLine(dst []byte, c Coordinate, text []byte) []byte {
	dst = append(dst, '*', ' ')
	dst = c.AppendText(dst)
	dst = append(dst, ':', ' ')
	n := summaryLen(text)
	dst = append(dst, text[:n]...)
	if n < len(text) {
		dst = append(dst, "..."...)
	}
	return append(dst, '\n')
}

// TOCLineLen returns len(AppendTOCLine(nil, c, text)) without building it,
// so a caller can size a table of contents before allocating it.
func TOCLineLen(c Coordinate, text []byte) int {
	var buf [64]byte
	n := summaryLen(text)
	l := 2 + len(c.AppendText(buf[:0])) + 2 + n + 1
	if n < len(text) {
		l += 3
	}
	return l
}

// summaryLen returns how many bytes of text a toc line shows.
func summaryLen(text []byte) int {
	n := 0
	for n < len(text) && n < SummaryLen && text[n] != '\n' && levelOf[text[n]] == 0 {
		n++
	}
	if n == SummaryLen && n < len(text) {
		// A UTF-8 continuation byte at the cut means a split character.
		for n > 0 && text[n]&0xC0 == 0x80 {
			n--
		}
	}
	return n
}

// AppendTOC appends SQ's toc of a stored phext made of scrolls (sorted,
// valid coordinates): a line per non-empty scroll, or the origin line with
// empty text when there is none. This equals libphext
// textmap(implode_ref(scrolls)).
func AppendTOC(dst []byte, scrolls []Scroll) []byte {
	found := false
	for i := range scrolls {
		if len(scrolls[i].Text) == 0 {
			continue
		}
		found = true
		dst = AppendTOCLine(dst, scrolls[i].Coord, scrolls[i].Text)
	}
	if !found {
		dst = AppendTOCLine(dst, Origin, nil)
	}
	return dst
}

// TextMap returns libphext's textmap of buf: one AppendTOCLine line per
// token of the reference tokenizer, which means the non-empty scrolls in
// order, plus an empty-text line for the origin when buf has no text, or
// for the coordinate after the first of two or more trailing breaks. (SQ's
// toc of a loaded file has no such trailing line; see AppendTOC.) A part
// past MaxPart gives an *OverflowError.
func TextMap(buf []byte) ([]byte, error) {
	var out []byte
	err := phokens(buf, false, func(c Coordinate, text []byte) {
		out = AppendTOCLine(out, c, text)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Manifest returns libphext's manifest of buf: the document with every
// token's text (empty tokens included, see TextMap) replaced by its
// Checksum, written with minimal breaks. A part past MaxPart gives an
// *OverflowError.
func Manifest(buf []byte) ([]byte, error) {
	var out []byte
	prev := Origin
	err := phokens(buf, false, func(c Coordinate, text []byte) {
		out = AppendDelimiters(out, prev, c)
		out = AppendChecksum(out, text)
		prev = c
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Index returns libphext's index of buf: the document with every token's
// text (empty tokens included, see TextMap) replaced by the decimal byte
// offset where that token starts in Normalize(buf) (empty trailing tokens
// count the breaks that would lead to them), written with minimal breaks.
// A part past MaxPart gives an *OverflowError.
func Index(buf []byte) ([]byte, error) {
	var out []byte
	prev := Origin
	off := 0
	err := phokens(buf, false, func(c Coordinate, text []byte) {
		off += DelimitersLen(prev, c)
		out = AppendDelimiters(out, prev, c)
		out = strconv.AppendInt(out, int64(off), 10)
		off += len(text)
		prev = c
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
