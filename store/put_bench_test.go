package store

import (
	"errors"
	"testing"

	"github.com/phext/sq/internal/sqtest"
)

// BenchmarkPutTinyScrolls: issue 13's M4 round in the store, a tenant with
// a 30 MiB quota (durability no, no compaction): a Put of 400 k one-byte
// scrolls (accepted) and one of 30 M (60 MB, refused with ErrQuota).
func BenchmarkPutTinyScrolls(b *testing.B) {
	for _, bc := range []struct {
		name    string
		scrolls int
		refused bool
	}{
		{name: "400k-accepted", scrolls: 400_000},
		{name: "30M-refused", scrolls: 30_000_000, refused: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := &testDB{tb: b, root: b.TempDir(), quota: 30 << 20}
			db.opts.Durability = DurabilityNo
			db.opts.CompactMinWAL = 1 << 40
			db.open()
			b.Cleanup(func() { db.Close() })
			doc := sqtest.TinyScrolls(bc.scrolls)
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				_, err := db.ten.Put([]byte("dots"), doc)
				if bc.refused != errors.Is(err, ErrQuota) || !bc.refused && err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
