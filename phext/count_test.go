package phext

import (
	"math/rand/v2"
	"testing"
)

// scanCount is what Count must tally: Scanner's scrolls and text bytes
// (ok is false when Scanner refuses the document).
func scanCount(doc []byte) (scrolls, text int64, ok bool) {
	var s Scanner
	s.Reset(doc)
	for s.Next() {
		scrolls++
		text += int64(s.End() - s.Start())
	}
	return scrolls, text, s.Err() == nil
}

// checkCount compares Count over doc, whole and cut at cut, with Scanner.
func checkCount(t *testing.T, doc []byte, cuts ...int) {
	t.Helper()
	scrolls, text, ok := scanCount(doc)
	if !ok {
		return // Count does not follow coordinates; Scanner refused it
	}
	for _, cut := range cuts {
		var n Count
		n.Add(doc[:cut])
		n.Add(doc[cut:])
		if n.Scrolls != scrolls || n.Text != text {
			t.Fatalf("doc %q cut at %d: Count %d scrolls, %d text bytes; Scanner %d, %d", doc, cut, n.Scrolls, n.Text, scrolls, text)
		}
	}
}

// tinyDoc is n one-byte scrolls, a section break every 999 and a chapter
// break every 998,001 (the shape of the PUT attack of issue 13).
func tinyDoc(n int) []byte {
	d := make([]byte, 0, 2*n)
	for i := 0; i < n; i++ {
		d = append(d, 'x')
		switch {
		case (i+1)%998001 == 0:
			d = append(d, ChapterBreak)
		case (i+1)%999 == 0:
			d = append(d, SectionBreak)
		default:
			d = append(d, ScrollBreak)
		}
	}
	return d
}

func TestCountMatchesScanner(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 13))
	// Bytes drawn from every class: delimiters, other control bytes
	// (line feed, tab: text), ASCII and the bytes of multi-byte runes.
	alphabet := []byte{ScrollBreak, SectionBreak, ChapterBreak, BookBreak, VolumeBreak,
		CollectionBreak, SeriesBreak, ShelfBreak, LibraryBreak, '\n', '\t', 0x1B, 0x00, 'a', ' ', 0xC3, 0xA9}
	for i := range 2000 {
		doc := make([]byte, r.IntN(40))
		for j := range doc {
			if i%2 == 0 {
				doc[j] = alphabet[r.IntN(len(alphabet))]
			} else {
				doc[j] = alphabet[9+r.IntN(len(alphabet)-9)] // long text runs, few breaks
				if r.IntN(12) == 0 {
					doc[j] = ScrollBreak
				}
			}
		}
		cuts := make([]int, len(doc)+1)
		for k := range cuts {
			cuts[k] = k
		}
		checkCount(t, doc, cuts...)
	}
	checkCount(t, genDoc(1<<20, 3), 0, 1, 7, 8, 9, 1<<19, 1<<20)
	checkCount(t, tinyDoc(100_000), 0, 1, 2, 3, 4095, 100_000)
}

// FuzzCount cuts each input in two and compares Count with Scanner.
func FuzzCount(f *testing.F) {
	for _, s := range seedInputs(f, "buffers.jsonl", "input") {
		f.Add(s, uint16(len(s)/2))
	}
	f.Add(tinyDoc(100), uint16(17))
	f.Fuzz(func(t *testing.T, doc []byte, cut uint16) {
		checkCount(t, doc, int(cut)%(len(doc)+1))
	})
}

// BenchmarkCount: Count over 10 MB of ordinary scrolls (64..4095 bytes) and
// over 10 MB of one-byte scrolls, against Scanner's count of the same.
func BenchmarkCount(b *testing.B) {
	for _, bc := range []struct {
		name string
		doc  []byte
	}{
		{name: "scrolls-10MB", doc: doc10M()},
		{name: "1-byte-scrolls-10MB", doc: tinyDoc(5 << 20)},
	} {
		b.Run(bc.name+"/Count", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.doc)))
			for b.Loop() {
				var n Count
				n.Add(bc.doc)
				if n.Scrolls == 0 {
					b.Fatal("no scrolls")
				}
			}
		})
		b.Run(bc.name+"/Scanner", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.doc)))
			for b.Loop() {
				if n, _, ok := scanCount(bc.doc); n == 0 || !ok {
					b.Fatal("no scrolls")
				}
			}
		})
	}
}
