package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	// Open created the commit log; only AddTenant's work counts below.
	fs.mkdirs.Store(0)
	fs.opens.Store(0)
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

// TestAddTenantsBatch: AddTenants, whose stats run in parallel, keeps every
// check of AddTenant one by one and its order: a second tenant on a data
// dir through a symlink, a data dir that is a file and a bad config are
// refused with AddTenant's error; the tenants before the failing one are
// added, no tenant after it is, and no data dir is created for one after it.
func TestAddTenantsBatch(t *testing.T) {
	const n = 2000 // well past lookupParallelMin × the goroutines
	root := fastTempDir(t)
	cfgs := func(tag string) []TenantConfig {
		out := make([]TenantConfig, n)
		for i := range out {
			out[i] = TenantConfig{Name: fmt.Sprint(tag, i), DataDir: filepath.Join(root, tag, fmt.Sprint(i))}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		bad     int // index of the refused config
		plant   func(t *testing.T, cs []TenantConfig)
		wantErr string
		unnamed bool // AddTenant's error does not name the tenant
	}{
		{name: "symlink alias", bad: 1500, wantErr: "is already used by tenant", plant: func(t *testing.T, cs []TenantConfig) {
			if err := os.MkdirAll(filepath.Dir(cs[0].DataDir), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(cs[700].DataDir, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(cs[700].DataDir, cs[1500].DataDir); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "file", bad: 999, wantErr: "is not a directory", plant: func(t *testing.T, cs []TenantConfig) {
			if err := os.MkdirAll(filepath.Dir(cs[0].DataDir), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cs[999].DataDir, nil, 0o640); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "bad config", bad: 1200, wantErr: "negative quota", unnamed: true, plant: func(t *testing.T, cs []TenantConfig) {
			cs[1200].QuotaBytes = -1
		}},
		{name: "taken by an earlier call", bad: 3, wantErr: "is already used by tenant", plant: func(t *testing.T, cs []TenantConfig) {
			cs[3].DataDir = filepath.Join(root, "first") + "/."
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(&Options{Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.AddTenant(TenantConfig{Name: "first", DataDir: filepath.Join(root, "first")}); err != nil {
				t.Fatal(err)
			}
			cs := cfgs(strings.ReplaceAll(tc.name, " ", "-"))
			tc.plant(t, cs)
			ts, err := s.AddTenants(cs)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !tc.unnamed && !strings.Contains(err.Error(), cs[tc.bad].Name+":") {
				t.Fatalf("AddTenants: %v, want the error of %s (%q)", err, cs[tc.bad].Name, tc.wantErr)
			}
			if one := s.Tenant(cs[0].Name); one == nil {
				t.Fatal("AddTenants did not add the first tenant")
			} else if _, err1 := s.AddTenant(cs[tc.bad]); err1 == nil || err1.Error() != err.Error() {
				t.Errorf("AddTenants' error %q differs from AddTenant's %q", err, err1)
			}
			if len(ts) != tc.bad {
				t.Fatalf("AddTenants returned %d tenants, want the %d before the refused one", len(ts), tc.bad)
			}
			for i, tn := range ts {
				if tn != s.Tenant(cs[i].Name) {
					t.Fatalf("tenant %d returned is not the one registered", i)
				}
			}
			for _, c := range cs[tc.bad+1:] {
				if s.Tenant(c.Name) != nil {
					t.Fatalf("%s, after the refused tenant, was added", c.Name)
				}
				if _, err := os.Lstat(c.DataDir); err == nil && c.Name != cs[700].Name {
					t.Fatalf("the data dir of %s, after the refused tenant, was created", c.Name)
				}
			}
		})
	}
	// A clean batch adds all, with one identity lookup each, and finds the
	// dirs that existed.
	s, err := Open(&Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cs := cfgs("clean")
	if err := os.MkdirAll(cs[10].DataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	ts, err := s.AddTenants(cs)
	if err != nil || len(ts) != n {
		t.Fatalf("AddTenants: %d tenants, %v", len(ts), err)
	}
	if ts[10].CreatedDir() || !ts[11].CreatedDir() {
		t.Errorf("CreatedDir: existing dir %v, missing dir %v", ts[10].CreatedDir(), ts[11].CreatedDir())
	}
	if s.dirProbes != n {
		t.Errorf("%d identity lookups for %d tenants", s.dirProbes, n)
	}
	// Again: the same names update in place.
	cs[5].QuotaBytes = 7
	ts2, err := s.AddTenants(cs)
	if err != nil || ts2[5] != ts[5] || ts[5].quota.Load() != 7 {
		t.Errorf("adding the names again: %v, same tenant %v, quota %d", err, ts2[5] == ts[5], ts[5].quota.Load())
	}
}

// TestLRUVictimFromSpare: while a background eviction batch runs, an opener
// past the cap takes its victim from the rest of the batch's sorted set,
// oldest first, skipping phexts used, picked or closed since the sort; once
// that list is used up one new sort serves the next openers (a scan of the
// open set per open was a fifth of the server's CPU at 10,000 tenants with
// a cap of 5,000).
func TestLRUVictimFromSpare(t *testing.T) {
	const n, capN = 200, 160
	s, err := Open(&Options{Logger: discardLogger(), MaxOpenPhexts: capN, Durability: DurabilityNo})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ten, err := s.AddTenant(TenantConfig{Name: "t", DataDir: filepath.Join(fastTempDir(t), "t")})
	if err != nil {
		t.Fatal(err)
	}
	// Synthetic open phexts, never opened on disk: only the LRU
	// bookkeeping is under test.
	ps := make([]*pfile, n)
	s.lmu.Lock()
	defer s.lmu.Unlock()
	for i := range ps {
		ps[i] = newPfile(ten, fmt.Sprint("p", i))
		ps[i].state.Store(stateReady)
		ps[i].lastUse.Store(uint64(1000 + i))
		s.open[ps[i]] = struct{}{}
	}
	opener := ps[n-1]
	victims := s.lruBatch(opener, n-capN)
	if len(victims) != n-capN {
		t.Fatalf("batch of %d, want %d", len(victims), n-capN)
	}
	for i, v := range victims {
		if v != ps[i] {
			t.Fatalf("batch victim %d is %s, want the oldest, %s", i, v.key, ps[i].key)
		}
		v.victim = true
	}
	ps[40].lastUse.Store(5000)      // used since the sort
	ps[41].victim = true            // picked by another opener
	ps[42].state.Store(stateClosed) // closed meanwhile
	delete(s.open, ps[43])
	pick := func(want int) {
		t.Helper()
		if v := s.lruVictim(opener); v != ps[want] {
			t.Fatalf("victim %v, want %s", v, ps[want].key)
		}
		ps[want].victim = true
	}
	for _, want := range []int{44, 45, 46} {
		pick(want)
	}
	if s.lruScans != 1 {
		t.Fatalf("%d sorts of the open set, want the batch's one", s.lruScans)
	}
	// Past the list: one new sort serves the next openers, still least
	// recently used first (ps[40] was used: it comes last).
	s.spare = nil
	pick(47)
	pick(48)
	if s.lruScans != 2 {
		t.Fatalf("%d sorts of the open set, want 2", s.lruScans)
	}
	for i := 49; i < n-1; i++ {
		pick(i)
	}
	pick(40)
	if v := s.lruVictim(opener); v != nil || s.lruScans != 3 {
		t.Fatalf("victim %v with every phext picked (%d sorts)", v, s.lruScans)
	}
	for _, p := range ps {
		delete(s.open, p)
	}
}
