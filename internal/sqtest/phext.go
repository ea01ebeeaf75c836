package sqtest

import "github.com/phext/sq/phext"

// TinyScrolls is a document of n one-byte scrolls, a section break after
// every 999th and a chapter break after every 998,001st (so every
// coordinate stays within the format's 999), the document of issue 13's
// PUT attack (M4) that the store, protocol and figures tests send.
func TinyScrolls(n int) []byte {
	d := make([]byte, 0, 2*n)
	for i := range n {
		d = append(d, 'x')
		switch {
		case (i+1)%998001 == 0:
			d = append(d, phext.ChapterBreak)
		case (i+1)%999 == 0:
			d = append(d, phext.SectionBreak)
		default:
			d = append(d, phext.ScrollBreak)
		}
	}
	return d
}
