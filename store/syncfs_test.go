package store

import (
	"fmt"
	"github.com/phext/sq/internal/sqtest"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failSyncFS is the OS FS whose next SyncFS fails once armed.
type failSyncFS struct {
	osFS
	fail atomic.Bool
}

func (f *failSyncFS) SyncFS(dir File) error {
	if f.fail.Swap(false) {
		return syscall.EIO
	}
	return f.osFS.SyncFS(dir)
}

// manyTenants opens a store with n everysec tenants on one file system,
// each with a WAL holding one record, and waits until the syncer made them
// all durable.
func manyTenants(t *testing.T, fs FS, n int) (*Store, []*Tenant) {
	t.Helper()
	s, err := Open(&Options{Durability: DurabilityEverySec, SyncInterval: 5 * time.Millisecond, Logger: discardLogger(), FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	root := t.TempDir()
	ts := make([]*Tenant, n)
	for i := range ts {
		if ts[i], err = s.AddTenant(TenantConfig{Name: fmt.Sprint("t", i), DataDir: filepath.Join(root, fmt.Sprint("t", i))}); err != nil {
			t.Fatal(err)
		}
		if _, err := ts[i].Insert(nil, coord(1), []byte("created")); err != nil {
			t.Fatal(err)
		}
	}
	waitClean(t, ts)
	return s, ts
}

func waitClean(t *testing.T, ts []*Tenant) {
	t.Helper()
	sqtest.CheckFor(t, 30*time.Second, "every phext synced", func() bool {
		for _, ten := range ts {
			ten.mu.RLock()
			p := ten.files[""]
			ten.mu.RUnlock()
			if p == nil || p.dirty() {
				return false
			}
		}
		return true
	})
}

// TestSyncerOneSyncfsPerFileSystem: 40 tenants with dirty WALs on one file
// system cost the everysec syncer one syncfs per round, not 40 fsyncs
// (issue 14: 500 tenants writing made 500 fsyncs per second).
func TestSyncerOneSyncfsPerFileSystem(t *testing.T) {
	const n = 40
	s, ts := manyTenants(t, nil, n)
	before := s.Stats().Fsyncs
	for _, ten := range ts {
		if _, err := ten.Insert(nil, coord(2), []byte("dirty")); err != nil {
			t.Fatal(err)
		}
	}
	waitClean(t, ts)
	// The writes may straddle a round or two; never one fsync per WAL.
	if d := s.Stats().Fsyncs - before; d > 4 {
		t.Fatalf("%d fsyncs to make %d WALs durable, want one syncfs per round", d, n)
	}
}

// TestSyncfsFailureRewrites: a failed syncfs says nothing about which file
// lost pages, so every WAL it covered is suspect and each phext is
// rewritten from memory; the data stays and the phexts keep working.
func TestSyncfsFailureRewrites(t *testing.T) {
	const n = 8
	fs := &failSyncFS{}
	s, ts := manyTenants(t, fs, n)
	fs.fail.Store(true)
	for _, ten := range ts {
		if _, err := ten.Insert(nil, coord(2), []byte("acked")); err != nil {
			t.Fatal(err)
		}
	}
	sqtest.CheckFor(t, 30*time.Second, "the failing syncfs to be tried", func() bool { return !fs.fail.Load() })
	sqtest.CheckFor(t, 30*time.Second, "a WAL rewrite", func() bool { return s.Stats().Rewrites >= 1 })
	waitClean(t, ts)
	for i, ten := range ts {
		if _, err := ten.Insert(nil, coord(3), []byte("later")); err != nil {
			t.Fatalf("tenant %d: %v", i, err)
		}
		if got := mustGet(t, ten, ""); got != "created\x17acked\x17later" {
			t.Fatalf("tenant %d: %q", i, got)
		}
	}
}
