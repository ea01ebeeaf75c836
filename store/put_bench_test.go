package store

import (
	"errors"
	"testing"

	"github.com/phext/sq/internal/sqtest"
)

// BenchmarkPutTinyScrolls: issue 13's M4 round in the store, a tenant with
// a 30 MiB quota (durability no, no compaction): a Put of 400 k one-byte
// scrolls (accepted) and one of 30 M (60 MB, refused with ErrQuota);
// "400k-counted" is the accepted one as the server runs it, PutCounted
// with the check the event loop finished while the document arrived.
func BenchmarkPutTinyScrolls(b *testing.B) {
	for _, bc := range []struct {
		name    string
		scrolls int
		refused bool
		counted bool
	}{
		{name: "400k-accepted", scrolls: 400_000},
		{name: "400k-counted", scrolls: 400_000, counted: true},
		{name: "30M-refused", scrolls: 30_000_000, refused: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := &testDB{tb: b, root: b.TempDir(), quota: 30 << 20}
			db.opts.Durability = DurabilityNo
			db.opts.CompactMinWAL = 1 << 40
			db.open()
			b.Cleanup(func() { db.Close() })
			doc := sqtest.TinyScrolls(bc.scrolls)
			var chk *PutCheck
			if bc.counted {
				chk = countIn(db.ten, doc, 64<<10)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				_, err := db.ten.PutCounted([]byte("dots"), doc, chk)
				if bc.refused != errors.Is(err, ErrQuota) || !bc.refused && err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadTinyScrolls: reads of a phext of 400 k one-byte scrolls
// (BenchmarkPutTinyScrolls' document), applied from a Put ("put") and
// from its snapshot after a compaction ("snapshot"): a SELECT of every
// scroll in turn (each costs a search and, sparse, a scan of at most
// sampleScrolls scrolls), a CHECKSUM (a walk of every scroll) and the
// compaction itself (a walk into the file, an index of the new mapping).
func BenchmarkReadTinyScrolls(b *testing.B) {
	const n = 400_000
	doc, coords := tinyScrolls(n)
	name := []byte("dots")
	for _, from := range []string{"put", "snapshot"} {
		db := &testDB{tb: b, root: b.TempDir()}
		db.opts.Durability = DurabilityNo
		db.opts.CompactMinWAL = 1 << 40
		db.open()
		if _, err := db.ten.Put(name, doc); err != nil {
			b.Fatal(err)
		}
		if from == "snapshot" {
			if err := db.ten.Compact(name); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(from+"/select", func(b *testing.B) {
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				var err error
				if buf, err = db.ten.AppendSelect(buf[:0], name, coords[i]); err != nil || len(buf) != 1 {
					b.Fatal(len(buf), err)
				}
				if i++; i == n {
					i = 0
				}
			}
		})
		b.Run(from+"/checksum", func(b *testing.B) {
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				var err error
				if buf, err = db.ten.AppendChecksum(buf[:0], name); err != nil {
					b.Fatal(err)
				}
			}
		})
		if from == "snapshot" {
			b.Run("compact", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(doc)))
				i := 0
				for b.Loop() {
					b.StopTimer()
					if _, err := db.ten.Update(name, coords[i], []byte("y")); err != nil {
						b.Fatal(err)
					}
					i = (i + 7919) % n
					b.StartTimer()
					if err := db.ten.Compact(name); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		db.Close()
	}
}
