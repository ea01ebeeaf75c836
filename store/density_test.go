package store

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/phext/sq/phext"
)

// openCountFS counts the calls that reach the file system through the seam.
type openCountFS struct {
	osFS
	opens, mkdirs atomic.Int64
}

func (f *openCountFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f.opens.Add(1)
	return f.osFS.OpenFile(name, flag, perm)
}

func (f *openCountFS) MkdirAll(path string, perm os.FileMode) error {
	f.mkdirs.Add(1)
	return f.osFS.MkdirAll(path, perm)
}

// TestAddTenantsLinear: adding 10,000 tenants costs one data-dir identity
// lookup each (it was a comparison with every tenant already added:
// 50 million for 10,000) and opens no file: the case probe and the size
// scan wait for a tenant's first request.
func TestAddTenantsLinear(t *testing.T) {
	const n = 10000
	fs := &openCountFS{}
	s, err := Open(&Options{Logger: discardLogger(), FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	root := fastTempDir(t)
	// A twentieth of the dirs exist already; AddTenant creates the rest.
	for i := 0; i < n; i += 20 {
		if err := os.Mkdir(filepath.Join(root, fmt.Sprint(i)), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	created := 0
	for i := range n {
		tn, err := s.AddTenant(TenantConfig{Name: fmt.Sprint("t", i), DataDir: filepath.Join(root, fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		if tn.CreatedDir() {
			created++
		}
	}
	s.mu.RLock()
	probes := s.dirProbes
	s.mu.RUnlock()
	if probes > n {
		t.Errorf("%d data-dir comparisons for %d tenants, want at most %d", probes, n, n)
	}
	if created != n-n/20 || fs.mkdirs.Load() != int64(created) {
		t.Errorf("created %d dirs with %d MkdirAll, want %d", created, fs.mkdirs.Load(), n-n/20)
	}
	if o := fs.opens.Load(); o != 0 {
		t.Errorf("AddTenant opened %d files; per-tenant work belongs to the first request", o)
	}
	// Duplicates are still found, and a removed tenant's dir is free again.
	if _, err := s.AddTenant(TenantConfig{Name: "dup", DataDir: filepath.Join(root, "7") + "/."}); err == nil {
		t.Error("a second tenant on t7's dir was accepted")
	}
	if err := s.RemoveTenant("t7"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddTenant(TenantConfig{Name: "dup", DataDir: filepath.Join(root, "7")}); err != nil {
		t.Errorf("the dir of a removed tenant stays taken: %v", err)
	}
	// Usage reads the dir (the quota sees files that were there before the
	// tenant was added) and writes nothing; the first request probes it.
	if err := os.WriteFile(filepath.Join(root, "20", "a.phext"), make([]byte, 100), 0o640); err != nil {
		t.Fatal(err)
	}
	tn := s.Tenant("t20")
	u, err := tn.Usage()
	if err != nil || u.Bytes != 100 || u.Phexts != 1 {
		t.Errorf("usage of a tenant with a 100-byte snapshot: %+v %v", u, err)
	}
	if o := fs.opens.Load(); o != 0 {
		t.Errorf("Usage opened %d files (the case probe writes one)", o)
	}
	if _, err := tn.AppendSelect(nil, []byte("a"), phext.Origin); err != nil {
		t.Fatal(err)
	}
	if o := fs.opens.Load(); o == 0 {
		t.Error("the first request of a tenant did not probe its dir for case folding")
	}
}

// fastTempDir is a temporary directory on tmpfs when the host has one
// (10,000 mkdirs and rmdirs on a busy journaled disk take seconds), else
// t.TempDir().
func fastTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "sq-store-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
