package phext

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// genDoc builds a deterministic document of about size bytes: scrolls of
// 64..4095 bytes of mixed ASCII and multi-byte text with occasional line
// feeds, separated mostly by scroll breaks and now and then by higher
// breaks, all within 999 per part.
func genDoc(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	words := []string{"lorem ", "ipsum ", "dolor ", "sit ", "amet ", "héllo ", "wörld ", "日本語 ", "🎉 ", "phext ", "scroll ", "\n"}
	doc := make([]byte, 0, size+8192)
	c := Origin
	for len(doc) < size {
		n := 64 + r.IntN(4032)
		for end := len(doc) + n; len(doc) < end; {
			doc = append(doc, words[r.IntN(len(words))]...)
		}
		l := LevelScroll
		if r.IntN(16) == 0 {
			l = LevelSection - r.IntN(8)
		}
		if !c.Advance(l) {
			l = LevelLibrary
			if !c.Advance(l) {
				break
			}
		}
		doc = append(doc, BreakOf(l))
	}
	return doc
}

var (
	bench10MOnce sync.Once
	bench10M     []byte
)

func doc10M() []byte {
	bench10MOnce.Do(func() { bench10M = genDoc(10<<20, 1) })
	return bench10M
}

func BenchmarkScan10MB(b *testing.B) {
	doc := doc10M()
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	var s Scanner
	n := 0
	for b.Loop() {
		s.Reset(doc)
		for s.Next() {
			n++
		}
		if s.Err() != nil {
			b.Fatal(s.Err())
		}
	}
	_ = n
}

// BenchmarkScanTinyScrolls: 400 k one-byte scrolls (issue 13's accepted
// PUT), each scroll's coordinate read: the per-scroll cost of the Scanner,
// which a store's sparse index pays for every scroll between its entries.
func BenchmarkScanTinyScrolls(b *testing.B) {
	doc := make([]byte, 0, 800_000)
	for i := range 400_000 {
		doc = append(doc, 'x')
		if (i+1)%999 == 0 {
			doc = append(doc, SectionBreak)
		} else {
			doc = append(doc, ScrollBreak)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	var s Scanner
	for b.Loop() {
		var last Coordinate
		for s.Reset(doc); s.Next(); {
			last = s.Coordinate()
		}
		if s.Err() != nil || last[LevelSection] != 401 {
			b.Fatal(s.Err(), last)
		}
	}
}

func BenchmarkSelectLast10MB(b *testing.B) {
	doc := doc10M()
	scrolls, err := Explode(doc)
	if err != nil {
		b.Fatal(err)
	}
	last := scrolls[len(scrolls)-1].Coord
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if t, _ := Select(doc, last); len(t) == 0 {
			b.Fatal("not found")
		}
	}
}

func BenchmarkExplode10MB(b *testing.B) {
	doc := doc10M()
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := Explode(doc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkImplode10MB(b *testing.B) {
	doc := doc10M()
	scrolls, _ := Explode(doc)
	dst := make([]byte, 0, len(doc))
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		dst = AppendImplode(dst[:0], scrolls)
	}
}

func BenchmarkNormalize10MB(b *testing.B) {
	doc := doc10M()
	dst := make([]byte, 0, len(doc))
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		dst, _ = AppendNormalize(dst[:0], doc)
	}
}

func BenchmarkChecksum10MB(b *testing.B) {
	doc := doc10M()
	var dst [ChecksumLen]byte
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		_ = AppendChecksum(dst[:0], doc)
	}
}

func BenchmarkChecksum1KB(b *testing.B) {
	doc := doc10M()[:1024]
	var dst [ChecksumLen]byte
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		_ = AppendChecksum(dst[:0], doc)
	}
}

func BenchmarkTOC10MB(b *testing.B) {
	doc := doc10M()
	scrolls, _ := Explode(doc)
	dst := make([]byte, 0, 1<<20)
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		dst = AppendTOC(dst[:0], scrolls)
	}
}

func BenchmarkValidScroll4KB(b *testing.B) {
	doc := doc10M()[:4096]
	n := scanText(doc, 0)
	doc = doc[:n]
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		_ = ValidScroll(doc)
	}
}

func BenchmarkParseCoordinate(b *testing.B) {
	const s = "12.345.6/7.89.1/23.4.567"
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := ParseCoordinate(s); err != nil {
			b.Fatal(err)
		}
	}
}
