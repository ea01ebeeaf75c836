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
		if op == "sync" && strings.HasSuffix(path, walExt) {
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
		sqtest.CheckFor(t, 5*time.Second, "a WAL fsync", func() bool { return cfs.walSyncs.Load() > base })
		p := db.ten.files["d"]
		sqtest.CheckFor(t, 5*time.Second, "the phext to be clean", func() bool { return !p.dirty() })
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
