package store

import (
	"testing"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
)

// BenchmarkDeleteTinyScrolls: DELETE of scrolls of a phext of 400 k
// one-byte scrolls held in its snapshot (the sparse index: each search
// scans up to sampleScrolls scrolls): "remove" is the delete's apply
// alone (pfile.remove under the write lock, its effect undone after
// each), "loop" an event loop's delete (Tenant.TryApply, a Flush every
// 16), "delete" the whole Tenant.Delete (durability no; the phext is put
// again, untimed, once every scroll was deleted).
func BenchmarkDeleteTinyScrolls(b *testing.B) {
	const n = 400_000
	doc, coords := tinyScrolls(n)
	name := []byte("dots")
	db := &testDB{tb: b, root: b.TempDir()}
	db.opts.Durability = DurabilityNo
	db.opts.CompactMinWAL = 1 << 40
	db.open()
	b.Cleanup(func() { db.Close() })
	load := func() {
		if _, err := db.ten.Put(name, doc); err != nil {
			b.Fatal(err)
		}
		if err := db.ten.Compact(name); err != nil {
			b.Fatal(err)
		}
	}
	load()
	b.Run("remove", func(b *testing.B) {
		p, err := db.ten.reader(name)
		if err != nil {
			b.Fatal(err)
		}
		p.mu.RUnlock()
		p.mu.Lock()
		defer p.mu.Unlock()
		scrolls, bytes := p.scrolls, p.bytes
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c := coords[i]
			if p.remove(c) != 1 {
				b.Fatal("scroll not found")
			}
			delete(p.ov, c)
			p.scrolls, p.bytes = scrolls, bytes
			if i++; i == n {
				i = 0
			}
		}
	})
	b.Run("loop", func(b *testing.B) {
		load() // b.Loop starts the timer afresh
		var r LoopRound
		r.SetLoop(1)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			w := Write{Kind: WriteDelete, Name: name, Coord: coords[i]}
			if ok, _ := db.ten.TryApply(&r, &w); !ok || w.N != 1 {
				_ = r.Flush()
				b.Fatal("declined or not found", ok, w.N, w.Err)
			}
			if i++; i%16 == 0 {
				if err := r.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			if i == n {
				b.StopTimer()
				load()
				i = 0
				b.StartTimer()
			}
		}
		if err := r.Flush(); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("delete", func(b *testing.B) {
		load()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if k, err := db.ten.Delete(name, coords[i]); err != nil || k != 1 {
				b.Fatal(k, err)
			}
			if i++; i == n {
				b.StopTimer()
				load()
				i = 0
				b.StartTimer()
			}
		}
	})
}

// tinyScrolls is a document of n one-byte scrolls (sqtest.TinyScrolls)
// and their coordinates in order.
func tinyScrolls(n int) ([]byte, []phext.Coordinate) {
	doc := sqtest.TinyScrolls(n)
	coords := make([]phext.Coordinate, 0, n)
	var sc phext.Scanner
	sc.Reset(doc)
	for sc.Next() {
		coords = append(coords, sc.Coordinate())
	}
	return doc, coords
}
