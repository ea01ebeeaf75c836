package store

import "testing"

// TestStatsCount: fsyncs and compactions are counted.
func TestStatsCount(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityAlways})
	before := db.Stats()
	if _, err := db.ten.Insert([]byte("s"), coord(1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	mid := db.Stats()
	if mid.Fsyncs <= before.Fsyncs {
		t.Fatalf("fsyncs %d → %d after an always-mode insert", before.Fsyncs, mid.Fsyncs)
	}
	if err := db.ten.Compact([]byte("s")); err != nil {
		t.Fatal(err)
	}
	after := db.Stats()
	if after.Compactions != mid.Compactions+1 || after.OpenPhexts < 1 {
		t.Fatalf("stats after compaction %+v (before %+v)", after, mid)
	}
}
