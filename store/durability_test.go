package store

import (
	"github.com/phext/sq/internal/sqtest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countFS counts fsyncs of WAL files.
type countFS struct {
	faultFS
	walSyncs atomic.Int64
}

func newCountFS() *countFS {
	c := &countFS{}
	c.fail = func(op, path string) error {
		if op == "sync" && strings.HasSuffix(path, logSuffix) {
			c.walSyncs.Add(1)
		}
		return nil
	}
	return c
}

func TestDurabilityModes(t *testing.T) {
	t.Run("always shares fsyncs", func(t *testing.T) {
		cfs := newCountFS()
		db := MustOpen(t, &Options{FS: &cfs.faultFS, Durability: DurabilityAlways})
		if _, err := db.ten.Insert([]byte("d"), coord(1), []byte("x")); err != nil {
			t.Fatal(err)
		}
		base := cfs.walSyncs.Load()
		const writers, each = 16, 20
		var wg sync.WaitGroup
		for g := 0; g < writers; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if _, err := db.ten.Insert([]byte("d"), coord(uint16(g+2)), []byte("x")); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		n := cfs.walSyncs.Load() - base
		if n < 1 || n >= writers*each {
			t.Errorf("%d fsyncs for %d writes", n, writers*each)
		}
		t.Logf("%d fsyncs for %d writes", n, writers*each)
	})
	t.Run("everysec fsyncs in the background", func(t *testing.T) {
		cfs := newCountFS()
		db := MustOpen(t, &Options{FS: &cfs.faultFS, Durability: DurabilityEverySec, SyncInterval: 20 * time.Millisecond})
		if _, err := db.ten.Insert([]byte("d"), coord(1), []byte("x")); err != nil {
			t.Fatal(err)
		}
		base := cfs.walSyncs.Load()
		if _, err := db.ten.Insert([]byte("d"), coord(1), []byte("y")); err != nil {
			t.Fatal(err)
		}
		sqtest.CheckFor(t, 5*time.Second, "a log fsync", func() bool { return cfs.walSyncs.Load() > base })
		sqtest.CheckFor(t, 5*time.Second, "the log to be clean", func() bool { return !db.wlog.dirty() })
	})
	t.Run("tenant override", func(t *testing.T) {
		cfs := newCountFS()
		db := MustOpen(t, &Options{FS: &cfs.faultFS, Durability: DurabilityNo})
		ten, err := db.AddTenant(TenantConfig{Name: "t2", DataDir: db.root + "/t2", Durability: DurabilityAlways})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ten.Insert([]byte("d"), coord(1), []byte("x")); err != nil {
			t.Fatal(err)
		}
		base := cfs.walSyncs.Load()
		if _, err := ten.Insert([]byte("d"), coord(1), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if cfs.walSyncs.Load() != base+1 {
			t.Errorf("always tenant in a no store: %d fsyncs", cfs.walSyncs.Load()-base)
		}
		if err := db.ten.Sync(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCompactOnOverlayCopies: small inserts into big unchanged scrolls copy
// them into memory; that counts towards the compaction threshold even
// though the WAL stays small.
func TestCompactOnOverlayCopies(t *testing.T) {
	db := MustOpen(t, &Options{CompactMinWAL: 1024})
	big := strings.Repeat("b", 10000)
	doc := big + "\x17" + big + "\x17" + big
	if err := os.WriteFile(filepath.Join(db.dir(), "big.phext"), []byte(doc), 0o640); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := db.ten.Insert([]byte("big"), coord(uint16(i)), []byte("!")); err != nil {
			t.Fatal(err)
		}
	}
	// The second insert passes the threshold (20,000 copied bytes > half
	// the 30,002-byte base); the background compaction may run before or
	// after the third.
	sqtest.CheckFor(t, 10*time.Second, "the background compaction", func() bool {
		return strings.Count(string(fileBytes(t, filepath.Join(db.dir(), "big.phext"))), "!") >= 2
	})
	if got, want := mustGet(t, db.ten, "big"), big+"!\x17"+big+"!\x17"+big+"!"; got != want {
		t.Fatal("wrong state")
	}
}

// TestSharedLogFsyncs: with 500 tenants writing in everysec mode the log is
// fsynced at most once per syncer round (one fsync a second for the whole
// store, where per-phext WALs cost one per dirty WAL: 500), counted through
// the FS seam rather than timed; and in always mode concurrent writers of
// different tenants share fsyncs.
func TestSharedLogFsyncs(t *testing.T) {
	t.Run("everysec, 500 tenants", func(t *testing.T) {
		cfs := newCountFS()
		db := MustOpen(t, &Options{FS: &cfs.faultFS, Durability: DurabilityEverySec, SyncInterval: 5 * time.Millisecond, MaxOpenPhexts: 1024})
		const tenants = 500
		ts := make([]*Tenant, tenants)
		for i := range ts {
			var err error
			ts[i], err = db.AddTenant(TenantConfig{Name: "e" + itoa(int64(i)), DataDir: filepath.Join(db.root, "e"+itoa(int64(i)))})
			if err != nil {
				t.Fatal(err)
			}
		}
		base, rounds0 := cfs.walSyncs.Load(), db.syncRounds.Load()
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < 3; k++ {
					for i := g; i < tenants; i += 8 {
						if _, err := ts[i].Insert([]byte("d"), coord(uint16(k+1)), []byte("x")); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		// Let the syncer make it durable, then count.
		sqtest.CheckFor(t, 30*time.Second, "the log to be clean", func() bool { return !db.wlog.dirty() })
		fsyncs, rounds := cfs.walSyncs.Load()-base, db.syncRounds.Load()-rounds0
		t.Logf("%d log fsyncs in %d syncer rounds for %d writes of %d tenants", fsyncs, rounds, 3*tenants, tenants)
		if fsyncs < 1 || fsyncs > int64(rounds)+1 {
			t.Errorf("%d log fsyncs in %d syncer rounds: want at most one per round", fsyncs, rounds)
		}
	})
	t.Run("always, writers of many tenants share fsyncs", func(t *testing.T) {
		cfs := newCountFS()
		db := MustOpen(t, &Options{FS: &cfs.faultFS, Durability: DurabilityAlways})
		const tenants, each = 32, 20
		ts := make([]*Tenant, tenants)
		for i := range ts {
			var err error
			ts[i], err = db.AddTenant(TenantConfig{Name: "a" + itoa(int64(i)), DataDir: filepath.Join(db.root, "a"+itoa(int64(i)))})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ts[i].Insert([]byte("d"), coord(1), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		base := cfs.walSyncs.Load()
		var wg sync.WaitGroup
		for i := range ts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < each; k++ {
					if _, err := ts[i].Insert([]byte("d"), coord(2), []byte("y")); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		n := cfs.walSyncs.Load() - base
		t.Logf("%d log fsyncs for %d always-mode writes of %d tenants", n, tenants*each, tenants)
		if n < 1 || n >= tenants*each {
			t.Errorf("%d fsyncs for %d writes: not shared", n, tenants*each)
		}
	})
}
