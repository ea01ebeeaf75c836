package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/phext/sq/phext"
)

// indexDocs are documents that put scrolls on both sides of every sample
// rule: one-byte scrolls (sampleScrolls), scrolls around sampleBytes,
// scrolls longer than it, long runs of breaks (empty scrolls) and breaks
// at every level, at the start and at the end.
func indexDocs(r *rand.Rand) [][]byte {
	var docs [][]byte
	docs = append(docs, nil, []byte("a"), []byte("\x17\x17"), []byte("\x1f\x01a\x17"))
	for _, n := range []int{1, 15, 16, 17, 33, 999} {
		var d []byte
		for i := range n {
			if i > 0 {
				d = append(d, phext.ScrollBreak)
			}
			d = append(d, 'a'+byte(i%26))
		}
		docs = append(docs, d)
	}
	for len(docs) < 50 {
		var d []byte
		n := 1 + r.IntN(200)
		for range n {
			// breaks: mostly one scroll break, sometimes runs and higher levels
			switch r.IntN(6) {
			case 0:
				for range 1 + r.IntN(600) {
					d = append(d, phext.ScrollBreak)
				}
			case 1:
				d = append(d, phext.BreakOf(r.IntN(9)))
			default:
				d = append(d, phext.ScrollBreak)
			}
			var l int
			switch r.IntN(5) {
			case 0:
				l = 0
			case 1:
				l = sampleBytes - 2 + r.IntN(5)
			case 2:
				l = r.IntN(3 * sampleBytes)
			default:
				l = 1 + r.IntN(8)
			}
			for range l {
				d = append(d, 'a'+byte(r.IntN(26)))
			}
		}
		if _, err := buildIndex(d, 0); err == nil { // else a part passed 999
			docs = append(docs, d)
		}
	}
	return docs
}

// TestIndexFindsEveryScroll: for every document, the sparse index walks
// exactly the scrolls the Scanner yields, finds each of them, finds
// nothing at the coordinates between and around them, and never scans
// more than its bound from a sample.
func TestIndexFindsEveryScroll(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 4))
	for di, doc := range indexDocs(r) {
		x, err := buildIndex(doc, 0)
		if err != nil {
			t.Fatalf("doc %d: %v", di, err)
		}
		if msg := indexInvariant(doc, &x); msg != "" {
			t.Fatalf("doc %d: %s", di, msg)
		}
		// Sized from the count, the samples are allocated once.
		y, _ := buildIndex(doc, int(x.scrolls))
		if cap(y.e) < len(y.e) || (x.scrolls > 0 && cap(y.e) != sampleCap(int(x.scrolls), len(doc))) {
			t.Fatalf("doc %d: samples %d cap %d, bound %d", di, len(y.e), cap(y.e), sampleCap(int(x.scrolls), len(doc)))
		}
		present := map[phext.Coordinate][]byte{}
		var sc phext.Scanner
		sc.Reset(doc)
		for sc.Next() {
			present[sc.Coordinate()] = sc.Scroll()
		}
		// Every unsampled scroll lies within sampleBytes after the end of
		// the sample before it, and at most sampleScrolls-1 follow one.
		k, since := -1, 0
		sc.Reset(doc)
		for sc.Next() {
			if k+1 < len(x.e) && x.e[k+1].c == sc.Coordinate() {
				k, since = k+1, 0
				continue
			}
			since++
			if k < 0 || since >= sampleScrolls || sc.End()-int(x.e[k].end) > sampleBytes {
				t.Fatalf("doc %d: scroll %s is %d bytes / %d scrolls after its sample", di, sc.Coordinate(), sc.End()-int(x.e[max(k, 0)].end), since)
			}
		}
		// Coordinates around the present ones.
		for c := range present {
			for _, d := range []int{-1, 1} {
				for lv := range 9 {
					q := c
					q[lv] = uint16(int(q[lv]) + d)
					if !q.Valid() {
						continue
					}
					if got, want := x.find(doc, q), present[q]; !bytes.Equal(got, want) || (want == nil) != (got == nil) {
						t.Fatalf("doc %d: find %s = %q, want %q", di, q, got, want)
					}
				}
			}
		}
		if got := x.find(doc, phext.Origin); !bytes.Equal(got, present[phext.Origin]) {
			t.Fatalf("doc %d: find origin = %q", di, got)
		}
	}
}

// FuzzIndex: any document the Scanner accepts is indexed so that walking
// and finding give exactly the Scanner's scrolls.
func FuzzIndex(f *testing.F) {
	for _, d := range indexDocs(rand.New(rand.NewPCG(1, 2)))[:12] {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		x, err := buildIndex(doc, 0)
		if _, werr := scannerIndex(doc); fmt.Sprint(err) != fmt.Sprint(werr) {
			t.Fatalf("buildIndex: %v, the Scanner: %v", err, werr)
		}
		if err != nil {
			return
		}
		if msg := indexInvariant(doc, &x); msg != "" {
			t.Fatal(msg)
		}
		if c, _ := phext.ParseCoordinate("1.1.1/1.1.1/1.1.2"); len(x.find(doc, c)) == 0 {
			var sc phext.Scanner
			sc.Reset(doc)
			for sc.Next() {
				if sc.Coordinate() == c {
					t.Fatal("find misses 1.1.1/1.1.1/1.1.2")
				}
			}
		}
	})
}

// TestIndexReadsWhilePutsReplace (run it under -race): Puts replace a
// phext of one-byte scrolls with another (each indexed sparsely, outside
// the locks) while readers SELECT, GET and CHECKSUM it and compactions
// re-index its snapshot. Every read sees one whole document: a GET is
// one of the two, a CHECKSUM one of their checksums, a SELECT one of the
// two texts at that coordinate, never a mix or a torn scroll.
func TestIndexReadsWhilePutsReplace(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo, CompactMinWAL: 1 << 40})
	ten := db.ten
	name := []byte("dots")
	docs := [2][]byte{tinyDoc('x', 3000), tinyDoc('y', 2500)}
	var sums [2][]byte
	for i, d := range docs {
		if _, err := ten.Put(name, d); err != nil {
			t.Fatal(err)
		}
		s, err := ten.AppendChecksum(nil, name)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = s
	}
	var stop atomic.Bool
	var rg sync.WaitGroup
	errs := make(chan error, 8)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for r := range 3 {
		rg.Add(1)
		go func() {
			defer rg.Done()
			var buf []byte
			for i := 0; !stop.Load(); i++ {
				var err error
				switch (r + i) % 3 {
				case 0:
					// Sections 1 and 2 are full in both documents.
					c := coord(uint16(1+i%2), uint16(1+i%999))
					if buf, err = ten.AppendSelect(buf[:0], name, c); err == nil && string(buf) != "x" && string(buf) != "y" {
						err = errors.New("SELECT " + c.String() + " = " + string(buf))
					}
				case 1:
					if buf, err = ten.AppendGet(buf[:0], name); err == nil && !bytes.Equal(buf, docs[0]) && !bytes.Equal(buf, docs[1]) {
						err = errors.New("GET is neither document")
					}
				default:
					if buf, err = ten.AppendChecksum(buf[:0], name); err == nil && !bytes.Equal(buf, sums[0]) && !bytes.Equal(buf, sums[1]) {
						err = errors.New("CHECKSUM is neither document's")
					}
				}
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	for i := range 60 {
		var err error
		if i%5 == 4 {
			err = ten.Compact(name)
		} else {
			_, err = ten.Put(name, docs[i%2])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// tinyDoc is n one-byte scrolls of text b, 999 a section (as GET returns
// it: no trailing break).
func tinyDoc(b byte, n int) []byte {
	var d []byte
	for i := range n {
		if i > 0 {
			if i%999 == 0 {
				d = append(d, phext.SectionBreak)
			} else {
				d = append(d, phext.ScrollBreak)
			}
		}
		d = append(d, b)
	}
	return d
}

// TestSameScrolls: a document has another's index exactly when it is a
// prefix of it followed by breaks only.
func TestSameScrolls(t *testing.T) {
	for _, c := range []struct {
		doc, old string
		want     bool
	}{
		{"", "", true},
		{"a\x1fb", "a\x1fb", true},
		{"a\x1fb", "a\x1fb\x1f", true},
		{"a\x1fb", "a\x1fb\x1f\x01\x17", true},
		{"", "\x1f\x1f", true},
		{"a\x1fb", "a\x1fbc", false},     // b is longer in old
		{"a\x1fb", "a\x1fb\x1fc", false}, // old has one more scroll
		{"a\x1fb", "a\x1fx", false},
		{"a\x1fb\x1f", "a\x1fb", false},
		{"\x1fa", "a", false},
	} {
		if got := sameScrolls([]byte(c.doc), []byte(c.old)); got != c.want {
			t.Errorf("sameScrolls(%q, %q) = %v", c.doc, c.old, got)
		}
		if c.want {
			x, _ := buildIndex([]byte(c.doc), 0)
			y, _ := buildIndex([]byte(c.old), 0)
			if !slices.Equal(x.e, y.e) || x.scrolls != y.scrolls || x.bytes != y.bytes {
				t.Errorf("%q, %q: indexes differ", c.doc, c.old)
			}
		}
	}
}

// TestCheckpointKeepsPutIndex: the checkpoint after a Put (nothing written
// since) maps the document it wrote with the Put's index, not a new scan
// (the Put's document ends in a break the snapshot drops); after a write
// it indexes the new snapshot. The index is checked against a fresh build
// each time (pfileInvariant).
func TestCheckpointKeepsPutIndex(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo, CompactMinWAL: 1 << 40})
	name := []byte("dots")
	doc := append(tinyDoc('x', 5000), phext.ScrollBreak)
	if _, err := db.ten.Put(name, doc); err != nil {
		t.Fatal(err)
	}
	p := db.ten.files["dots"]
	samples := func() *entry {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if msg := pfileInvariant(p); msg != "" {
			t.Fatal(msg)
		}
		return &p.index.e[0]
	}
	put := samples()
	if err := db.ten.Compact(name); err != nil {
		t.Fatal(err)
	}
	p.mu.RLock()
	mapped, size := p.mapped, len(p.base)
	p.mu.RUnlock()
	if !mapped || size != len(doc)-1 {
		t.Fatalf("after the checkpoint: mapped %v, %d bytes; want the document less its last break", mapped, size)
	}
	if samples() != put {
		t.Fatal("the checkpoint re-indexed an unchanged document")
	}
	if _, err := db.ten.Update(name, coord(3, 7), []byte("yy")); err != nil {
		t.Fatal(err)
	}
	if err := db.ten.Compact(name); err != nil {
		t.Fatal(err)
	}
	if samples() == put {
		t.Fatal("the checkpoint kept the index of a changed document")
	}
	if got, err := db.ten.AppendSelect(nil, name, coord(3, 7)); err != nil || string(got) != "yy" {
		t.Fatalf("SELECT 3.7 = %q, %v", got, err)
	}
}

// BenchmarkBuildIndex: the index of issue 13's accepted PUT (400 k
// one-byte scrolls), which Put builds for every such document, and of a
// MiB of 4 KiB scrolls.
func BenchmarkBuildIndex(b *testing.B) {
	long := bytes.Repeat(append(bytes.Repeat([]byte("y"), 4096), phext.ScrollBreak), 256)
	for _, bc := range []struct {
		name string
		doc  []byte
	}{
		{name: "400k-1B", doc: tinyDoc('x', 400_000)},
		{name: "256x4KiB", doc: long},
	} {
		b.Run(bc.name, func(b *testing.B) {
			x, err := buildIndex(bc.doc, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.doc)))
			for b.Loop() {
				if _, err := buildIndex(bc.doc, int(x.scrolls)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
