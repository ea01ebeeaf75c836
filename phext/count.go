package phext

import "encoding/binary"

// Count tallies the non-empty scrolls of a document and their text bytes,
// fed to it in pieces of any size (Add), without following coordinates:
// it is what Scanner yields (its number of scrolls and the sum of End −
// Start) for every document Scanner accepts, at a fraction of the cost
// (no coordinate is kept), and it never allocates. A caller that only
// needs a size, e.g. to refuse a document over a quota before parsing it,
// can stop as soon as the tally says enough. The zero value is an empty
// tally at the start of a document.
type Count struct {
	// Scrolls is the number of non-empty scrolls seen so far; a scroll
	// cut between two pieces counts once.
	Scrolls int64
	// Text is the number of text (non-delimiter) bytes seen so far.
	Text   int64
	inText bool // the last byte added was text
}

// textOf maps a byte to 1 for text and 0 for a delimiter.
var textOf = func() (t [256]uint8) {
	for i := range t {
		if levelOf[i] == 0 {
			t[i] = 1
		}
	}
	return t
}()

// Add counts b, the next piece of the document.
func (n *Count) Add(b []byte) {
	var prev uint8
	if n.inText {
		prev = 1
	}
	var scrolls, text int64
	i := 0
	for i < len(b) {
		// Sixteen bytes at a time while none is below 0x20 (every
		// delimiter is): long scrolls cost a SWAR test per 16 bytes.
		if i+16 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			y := binary.LittleEndian.Uint64(b[i+8:])
			if ((x-0x20*lsb)&^x|(y-0x20*lsb)&^y)&msb == 0 {
				scrolls += int64(prev ^ 1)
				prev = 1
				text += 16
				i += 16
				continue
			}
			// Tiny scrolls: branch-free over the word's bytes.
			for _, c := range b[i : i+8] {
				t := textOf[c]
				scrolls += int64(t &^ prev)
				text += int64(t)
				prev = t
			}
			i += 8
			continue
		}
		t := textOf[b[i]]
		scrolls += int64(t &^ prev)
		text += int64(t)
		prev = t
		i++
	}
	n.Scrolls += scrolls
	n.Text += text
	n.inText = prev == 1
}
