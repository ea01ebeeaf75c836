package store

import (
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/phext/sq/phext"
)

// bigEnabled: the 100 MB cases run only with SQ_BENCH_BIG=1.
func bigEnabled() bool { return os.Getenv("SQ_BENCH_BIG") == "1" }

var benchSizes = []struct {
	name string
	size int
	big  bool
}{
	{name: "1KB", size: 1 << 10},
	{name: "10MB", size: 10 << 20},
	{name: "100MB", size: 100 << 20, big: true},
}

// makeDoc writes a phext of about size bytes made of 1 KiB scrolls (999
// scrolls per section) and returns its coordinates.
func makeDoc(tb testing.TB, path string, size int) []phext.Coordinate {
	tb.Helper()
	text := make([]byte, 1000)
	for i := range text {
		text[i] = 'a' + byte(i%26)
	}
	doc := make([]byte, 0, size+size/1000+16)
	var coords []phext.Coordinate
	prev := phext.Origin
	c := phext.Origin
	for len(doc) < size {
		n := min(len(text), size-len(doc))
		doc = phext.AppendDelimiters(doc, prev, c)
		doc = append(doc, text[:n]...)
		coords = append(coords, c)
		prev = c
		if c[phext.LevelScroll] == phext.MaxPart {
			c.Advance(phext.LevelSection)
		} else {
			c.Advance(phext.LevelScroll)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	// fsync, so that the kernel's writeback of the new file does not run
	// during the timed loop.
	if _, err := f.Write(doc); err != nil {
		tb.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	return coords
}

func benchStore(b *testing.B, size int, d Durability) (*Store, *Tenant, []phext.Coordinate) {
	return benchStoreOpts(b, size, &Options{Durability: d})
}

func benchStoreOpts(b *testing.B, size int, o *Options) (*Store, *Tenant, []phext.Coordinate) {
	b.Helper()
	dir := b.TempDir()
	coords := makeDoc(b, filepath.Join(dir, "doc.phext"), size)
	o.Logger = discardLogger()
	s, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ten, err := s.AddTenant(TenantConfig{Name: "b", DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ten.AppendSelect(nil, []byte("doc"), phext.Origin); err != nil {
		b.Fatal(err)
	}
	return s, ten, coords
}

// BenchmarkInsert: one 64-byte INSERT (everysec) into a phext of 1 KB,
// 10 MB and 100 MB, cycling over 64 scrolls. The cost must not grow with
// the phext. Compaction is off here (see BenchmarkCompact).
func BenchmarkInsert(b *testing.B) {
	text := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			if sz.big && !bigEnabled() {
				b.Skip("set SQ_BENCH_BIG=1")
			}
			// Compaction is measured on its own (BenchmarkCompact); here it
			// would only add noise that depends on b.N.
			_, ten, coords := benchStoreOpts(b, sz.size, &Options{Durability: DurabilityEverySec, CompactMinWAL: 1 << 40})
			name := []byte("doc")
			// The same 64 coordinates in every case (existing scrolls in
			// the big phexts, new ones in the small), so only the size of
			// the phext differs.
			hot := make([]phext.Coordinate, 64)
			for k := range hot {
				hot[k] = coord(uint16(1 + k*13))
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := ten.Insert(name, hot[i%len(hot)], text); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// Round trip: the last write is visible.
			if _, err := ten.AppendSelect(nil, name, coords[0]); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkInsertParallel: concurrent 64-byte INSERTs into one phext; in
// always mode they share fsyncs (group commit).
func BenchmarkInsertParallel(b *testing.B) {
	text := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	for _, d := range []Durability{DurabilityEverySec, DurabilityAlways} {
		b.Run(d.String(), func(b *testing.B) {
			_, ten, _ := benchStore(b, 1<<20, d)
			name := []byte("doc")
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
			b.SetParallelism(16)
			var n atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := coord(uint16(n.Add(1)%999 + 1))
				for pb.Next() {
					if _, err := ten.Insert(name, c, text); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSelect: SELECT of a 1000-byte scroll from the mapping and from
// the overlay; 0 allocs/op.
func BenchmarkSelect(b *testing.B) {
	_, ten, coords := benchStore(b, 10<<20, DurabilityEverySec)
	name := []byte("doc")
	if _, err := ten.Update(name, coords[1], make1000()); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		c    phext.Coordinate
	}{
		{name: "mapped", c: coords[len(coords)/2]},
		{name: "overlay", c: coords[1]},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			b.SetBytes(1000)
			for i := 0; i < b.N; i++ {
				buf, _ = ten.AppendSelect(buf[:0], name, bc.c)
			}
			if len(buf) != 1000 {
				b.Fatalf("got %d bytes", len(buf))
			}
		})
	}
}

func make1000() []byte {
	t := make([]byte, 1000)
	for i := range t {
		t[i] = 'z'
	}
	return t
}

// BenchmarkCompact: one compaction of a 10 MB (100 MB) phext after a write;
// MB/s is the document size over the time.
func BenchmarkCompact(b *testing.B) {
	for _, sz := range benchSizes[1:] {
		b.Run(sz.name, func(b *testing.B) {
			if sz.big && !bigEnabled() {
				b.Skip("set SQ_BENCH_BIG=1")
			}
			_, ten, coords := benchStore(b, sz.size, DurabilityEverySec)
			name := []byte("doc")
			b.ReportAllocs()
			b.SetBytes(int64(sz.size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if _, err := ten.Insert(name, coords[i%len(coords)], []byte("x")); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := ten.Compact(name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen: open (mmap + UTF-8 check + index + snapshot hash) and
// replay of a 10 MB (100 MB) phext with 10,000 WAL records.
func BenchmarkOpen(b *testing.B) {
	for _, sz := range benchSizes[1:] {
		b.Run(sz.name, func(b *testing.B) {
			if sz.big && !bigEnabled() {
				b.Skip("set SQ_BENCH_BIG=1")
			}
			s, ten, coords := benchStore(b, sz.size, DurabilityNo)
			name := []byte("doc")
			for i := 0; i < 10000; i++ {
				if _, err := ten.Insert(name, coords[(i*7919)%len(coords)], []byte("replayed record")); err != nil {
					b.Fatal(err)
				}
			}
			dir := ten.dir
			if err := s.RemoveTenant("b"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(sz.size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t, err := s.AddTenant(TenantConfig{Name: "o" + strconv.Itoa(i), DataDir: dir})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := t.AppendSelect(nil, name, coords[0]); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.RemoveTenant("o" + strconv.Itoa(i))
				b.StartTimer()
			}
		})
	}
}
