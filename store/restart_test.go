package store_test

// Restart tests of the reliability suite (issue 9): the store is closed,
// its files are damaged the way a bad disk, an operator or a crash would,
// and a fresh Store is opened on them. Each case checks that the damage is
// reported clearly (an error naming the file, and the offset where there is
// one), that only the damaged phext or tenant is unavailable, and that the
// damaged files are left exactly as they were for an operator.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/store"
)

// fill writes phexts "a" and "b" of the victim and "a" of the bystander,
// with a compaction in between so that the snapshot of "a" has content and
// its WAL holds records naming that snapshot.
func fill(t *testing.T, p *pair) {
	t.Helper()
	for _, ten := range []*store.Tenant{p.victim, p.bystander} {
		for i, name := range []string{"a", "b"} {
			if _, err := ten.Put([]byte(name), []byte("first scroll\x17second scroll\x18third ü")); err != nil {
				t.Fatal(err)
			}
			if err := ten.Compact([]byte(name)); err != nil {
				t.Fatal(err)
			}
			for j := 0; j < 5; j++ {
				if _, err := ten.Insert([]byte(name), c9(uint16(2+j), uint16(1+i)), []byte("logged record")); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// stopKeepingLog stops the store like kill -9 (store.Crash): the commit
// log keeps every record (a clean Close would fold them into the
// snapshots and empty it).
func stopKeepingLog(t *testing.T, p *pair) {
	t.Helper()
	if err := p.victim.Sync(); err != nil {
		t.Fatal(err)
	}
	store.Crash(p.s)
	p.s = nil
}

// logFile returns the only commit log file of p.
func (p *pair) logFile(t *testing.T) string {
	t.Helper()
	fs := p.logFiles()
	if len(fs) != 1 {
		t.Fatalf("log files: %q", fs)
	}
	return fs[0]
}

// firstRecordOf returns the offset of the first data record of phext name
// of the tenant whose data dir is dir.
func (p *pair) firstRecordOf(t *testing.T, dir, name string) int {
	t.Helper()
	offs := store.LogRecords(p.logFile(t), dir, name)
	if len(offs) == 0 {
		t.Fatalf("no record of %s/%s in the log", dir, name)
	}
	return int(offs[0])
}

func TestRestartDamage(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, p *pair, dir string) // dir = the victim's data dir
		// want is the error opening phext "a" must match; nil means the
		// damage is not detectable and "a" opens.
		want    error
		msgHas  []string
		logHas  string // a log line the reopen must write, "" = none required
		skipBug string
	}{
		{
			name: "corrupt log record of the phext (its head intact)",
			damage: func(t *testing.T, p *pair, dir string) {
				off := p.firstRecordOf(t, dir, "a")
				flipAt(t, p.logFile(t), off+store.LogRecHeader+40) // in its payload
			},
			want:   store.ErrCorrupt,
			msgHas: []string{"-w.log", "offset ", "CRC"},
		},
		{
			name: "truncated snapshot with log records",
			damage: func(t *testing.T, _ *pair, dir string) {
				truncateHalf(t, filepath.Join(dir, "a.phext"))
			},
			want:   store.ErrCorrupt,
			msgHas: []string{"a.phext", "checkpoint record"},
		},
		{
			name: "truncated snapshot inside a UTF-8 sequence",
			damage: func(t *testing.T, _ *pair, dir string) {
				path := filepath.Join(dir, "a.phext")
				b, _ := os.ReadFile(path)
				i := bytes.Index(b, []byte("ü"))
				if err := os.WriteFile(path, b[:i+1], 0o640); err != nil {
					t.Fatal(err)
				}
			},
			want:   store.ErrCorrupt,
			msgHas: []string{"a.phext", "UTF-8"},
		},
		{
			name: "snapshot not valid UTF-8",
			damage: func(t *testing.T, _ *pair, dir string) {
				path := filepath.Join(dir, "a.phext")
				b, _ := os.ReadFile(path)
				b[2] = 0xff
				if err := os.WriteFile(path, b, 0o640); err != nil {
					t.Fatal(err)
				}
			},
			want:   store.ErrCorrupt,
			msgHas: []string{"a.phext", "offset 2", "UTF-8"},
		},
		{
			name: "log record with a delimiter in its text (CRCs recomputed)",
			damage: func(t *testing.T, p *pair, dir string) {
				// A record that checks but carries text no writer could
				// have logged: replay refuses it instead of applying it.
				path := p.logFile(t)
				b, _ := os.ReadFile(path)
				var off, i int
				for _, o := range store.LogRecords(path, dir, "a") {
					end := int(o) + store.LogRecHeader + int(binary.BigEndian.Uint32(b[o:]))
					if k := bytes.Index(b[o:end], []byte("logged record")); k >= 0 {
						off, i = int(o), int(o)+k
						break
					}
				}
				b[i] = 0x17
				store.FixLogRecordCRCs(b, off)
				if err := os.WriteFile(path, b, 0o640); err != nil {
					t.Fatal(err)
				}
			},
			want:   store.ErrCorrupt,
			msgHas: []string{"-w.log", "offset ", "scroll"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skipBug != "" && os.Getenv("SQ_RELIABILITY_BUGS") == "" {
				t.Skip(tc.skipBug)
			}
			var lb logBuf
			p := openPair(t, store.Options{Durability: store.DurabilityAlways, Logger: lb.logger()})
			fill(t, p)
			wantB := get(t, p.victim, "b")
			wantBy := get(t, p.bystander, "a")
			stopKeepingLog(t, p)
			vdir := p.dir("victim")
			tc.damage(t, p, vdir)
			damaged := dirBytes(t, vdir, "a.phext")
			p.open()

			_, err := p.victim.AppendGet(nil, []byte("a"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("open damaged phext: err = %v, want %v", err, tc.want)
			}
			for _, s := range tc.msgHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			// Writes are refused too and touch nothing.
			if _, err := p.victim.Insert([]byte("a"), c9(9), []byte("x")); !errors.Is(err, tc.want) {
				t.Errorf("insert into damaged phext: %v", err)
			}
			if _, err := p.victim.Put([]byte("a"), []byte("overwrite")); !errors.Is(err, tc.want) {
				t.Errorf("put over damaged phext: %v", err)
			}
			if err := p.victim.Compact([]byte("a")); !errors.Is(err, tc.want) {
				t.Errorf("compact damaged phext: %v", err)
			}
			// Only that phext is unavailable.
			if got := get(t, p.victim, "b"); got != wantB {
				t.Errorf("other phext of the tenant: %q want %q", got, wantB)
			}
			if _, err := p.victim.Insert([]byte("b"), c9(1), []byte(" more")); err != nil {
				t.Errorf("write to the other phext: %v", err)
			}
			if got := get(t, p.bystander, "a"); got != wantBy {
				t.Errorf("other tenant: %q want %q", got, wantBy)
			}
			if names, err := p.victim.List(); err != nil || len(names) != 2 {
				t.Errorf("list: %q %v", names, err)
			}
			// The damaged files are left for an operator, byte for byte.
			p.reopen()
			if after := dirBytes(t, vdir, "a.phext"); !equalFiles(damaged, after) {
				t.Error("the damaged files were changed")
			}
		})
	}
}

// TestRestartTruncatedSnapshotEmptyLog: a snapshot cut short after a clean
// Close (the commit log holds nothing of it). The store cannot tell this
// from an operator replacing the file with another phext tool, so it
// serves the shorter document; but the loss should not be silent.
func TestRestartTruncatedSnapshotEmptyLog(t *testing.T) {
	var lb logBuf
	p := openPair(t, store.Options{Durability: store.DurabilityAlways, Logger: lb.logger()})
	if _, err := p.victim.Put([]byte("a"), []byte("first scroll\x17second scroll\x17third")); err != nil {
		t.Fatal(err)
	}
	p.reopen() // Close checkpoints: the snapshot is full, the log empty
	if err := p.s.Close(); err != nil {
		t.Fatal(err)
	}
	p.s = nil
	path := filepath.Join(p.dir("victim"), "a.phext")
	truncateHalf(t, path)
	p.open()
	got := get(t, p.victim, "a")
	t.Logf("served after truncation: %q", got)
	if !strings.Contains(lb.String(), "a.phext") {
		if os.Getenv("SQ_RELIABILITY_BUGS") == "" {
			t.Skip("BUG: a snapshot damaged while the commit log holds nothing of it (after a clean Close) is served silently: nothing records its identity outside the file (see RELIABILITY.md)")
		}
		t.Fatalf("no log line names the snapshot whose size/hash no longer match its WAL header; log:\n%s", lb.String())
	}
}

// TestRestartDataDirGone: a tenant's data dir that disappears (an unmounted
// volume, an operator's rm -r) must not take the other tenants down.
func TestRestartDataDirGone(t *testing.T) {
	t.Run("while running", func(t *testing.T) {
		p := openPair(t, store.Options{Durability: store.DurabilityAlways})
		fill(t, p)
		if err := os.RemoveAll(p.dir("victim")); err != nil {
			t.Fatal(err)
		}
		// A phext not open yet cannot be created: a clear error naming
		// the path, nothing acknowledged.
		_, err := p.victim.Insert([]byte("new"), c9(1), []byte("x"))
		if !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), filepath.Join(p.dir("victim"), "new.phext")) {
			t.Errorf("write to a new phext in a vanished dir: %v", err)
		}
		if _, err := p.victim.List(); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("list of a vanished dir: %v", err)
		}
		// The other tenant does not notice.
		if _, err := p.bystander.Insert([]byte("a"), c9(1), []byte(" fine")); err != nil {
			t.Fatal(err)
		}
		if err := p.bystander.Compact([]byte("a")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("at restart", func(t *testing.T) {
		p := openPair(t, store.Options{Durability: store.DurabilityAlways})
		fill(t, p)
		wantBy := get(t, p.bystander, "a")
		if err := p.s.Close(); err != nil {
			t.Fatal(err)
		}
		p.s = nil
		if err := os.RemoveAll(p.dir("victim")); err != nil {
			t.Fatal(err)
		}
		p.open() // AddTenant recreates the dir (a new tenant looks the same)
		names, err := p.victim.List()
		if err != nil || len(names) != 0 {
			t.Fatalf("victim after its dir vanished: %q %v", names, err)
		}
		if got := get(t, p.bystander, "a"); got != wantBy {
			t.Fatalf("bystander: %q", got)
		}
	})
}

// TestTwoTenantsOneDir: two tenants pointed at one data dir would write the
// same WAL through two independent pfiles and corrupt it. The server's config
// validation refuses such a config; the store must refuse it too.
func TestTwoTenantsOneDir(t *testing.T) {
	s, err := store.Open(&store.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	if _, err := s.AddTenant(store.TenantConfig{Name: "one", DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	_, err = s.AddTenant(store.TenantConfig{Name: "two", DataDir: dir + "/."})
	if err == nil {
		if os.Getenv("SQ_RELIABILITY_BUGS") == "" {
			t.Skip("BUG: store.AddTenant (store/store.go) accepts a second tenant on a data dir another tenant already uses (see RELIABILITY.md)")
		}
		t.Fatal("a second tenant on the same data dir was accepted")
	}
	if !strings.Contains(err.Error(), "one") {
		t.Errorf("error should name the tenant that owns the dir: %v", err)
	}
	// The same dir through a symbolic link.
	alias := filepath.Join(t.TempDir(), "alias")
	must(t, os.Symlink(dir, alias))
	if _, err := s.AddTenant(store.TenantConfig{Name: "three", DataDir: alias}); err == nil {
		t.Error("a tenant on a symlink to another tenant's data dir was accepted")
	}
	// The first tenant is untouched.
	one := s.Tenant("one")
	if _, err := one.Insert(nil, c9(1), []byte("still fine")); err != nil {
		t.Fatal(err)
	}
}

func flipAt(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off >= len(b) {
		t.Fatalf("%s has %d bytes, cannot flip offset %d", path, len(b), off)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

func truncateHalf(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// dirBytes returns the bytes of every file of dir whose name starts with
// prefix.
func dirBytes(t *testing.T, dir, prefix string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+".") || e.Name() == prefix {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = b
		}
	}
	return m
}

func equalFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// lossyFS simulates a power loss: it tracks, for every file written through
// it, how many bytes were fsynced, and crash copies the data dir as a disk
// would hold it after a power cut (the synced bytes, plus a random part of
// the unsynced tail: a torn write). Renames and truncates count as durable
// at once (the store fsyncs the directory after renames). The bookkeeping
// follows a file across renames while it is open (the store renames a new
// WAL over the old one and keeps writing through the same descriptor).
type lossyFS struct {
	mu       sync.RWMutex            // crash takes it exclusively: no I/O meanwhile
	open     map[string][]*lossyFile // path → files open under that name (lossyBook)
	synced   map[string]int64        // path → bytes known durable
	size     map[string]int64        // path → current size
	lastSync map[string]time.Time    // path → time of its last successful fsync
	maxGap   map[string]time.Duration
}

func newLossyFS() *lossyFS {
	return &lossyFS{synced: map[string]int64{}, size: map[string]int64{}, open: map[string][]*lossyFile{},
		lastSync: map[string]time.Time{}, maxGap: map[string]time.Duration{}}
}

type lossyFile struct {
	*os.File
	fs   *lossyFS
	path string // the file's current name (lossyBook)
}

func (f *lossyFS) OpenFile(name string, flag int, perm os.FileMode) (store.File, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fl, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		fi, _ := fl.Stat()
		f.set(name, func() {
			if _, ok := f.size[name]; !ok || flag&os.O_TRUNC != 0 {
				f.size[name] = fi.Size()
				if flag&(os.O_TRUNC|os.O_CREATE) != 0 && fi.Size() == 0 {
					f.synced[name] = 0
				} else if _, ok := f.synced[name]; !ok {
					f.synced[name] = fi.Size()
				}
			}
		})
	}
	lf := &lossyFile{File: fl, fs: f, path: name}
	f.set(name, func() { f.open[name] = append(f.open[name], lf) })
	return lf, nil
}

func (f *lossyFile) Close() error {
	f.fs.set("", func() {
		l := f.fs.open[f.path]
		if i := slices.Index(l, f); i >= 0 {
			f.fs.open[f.path] = slices.Delete(l, i, i+1)
		}
	})
	return f.File.Close()
}

// set runs fn under the bookkeeping lock (a plain mutex inside the RW one).
var lossyBook sync.Mutex

func (f *lossyFS) set(_ string, fn func()) {
	lossyBook.Lock()
	fn()
	lossyBook.Unlock()
}

func (f *lossyFile) Write(p []byte) (int, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	n, err := f.File.Write(p)
	f.fs.set("", func() { f.fs.size[f.path] += int64(n) })
	return n, err
}

func (f *lossyFile) Sync() error {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	t0 := time.Now()
	err := f.File.Sync()
	if err == nil {
		f.fs.set("", func() {
			f.fs.synced[f.path] = f.fs.size[f.path]
			if last, ok := f.fs.lastSync[f.path]; ok && t0.Sub(last) > f.fs.maxGap[f.path] {
				f.fs.maxGap[f.path] = t0.Sub(last)
			}
			f.fs.lastSync[f.path] = time.Now()
		})
	}
	return err
}

func (f *lossyFile) Truncate(n int64) error {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	err := f.File.Truncate(n)
	if err == nil {
		f.fs.set("", func() {
			f.fs.size[f.path] = n
			f.fs.synced[f.path] = min(f.fs.synced[f.path], n)
		})
	}
	return err
}

func (f *lossyFS) Rename(o, n string) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	err := os.Rename(o, n)
	if err == nil {
		f.set(n, func() {
			f.size[n], f.synced[n] = f.size[o], f.synced[o]
			delete(f.size, o)
			delete(f.synced, o)
			for _, lf := range f.open[o] {
				lf.path = n
			}
			f.open[n] = append(f.open[n][:0], f.open[o]...)
			delete(f.open, o)
		})
	}
	return err
}

func (f *lossyFS) Remove(name string) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	err := os.Remove(name)
	f.set(name, func() { delete(f.size, name); delete(f.synced, name) })
	return err
}

func (f *lossyFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

func (f *lossyFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// crashAll copies each {src, dst} pair of directories as one power cut
// would leave them (all at the same instant).
func (f *lossyFS) crashAll(t testing.TB, rng *rand.Rand, dirs ...[2]string) (dropped int64) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range dirs {
		dropped += f.crash(t, d[0], d[1], rng)
	}
	return dropped
}

// crash copies src to dst as a power cut would leave it (f.mu held).
func (f *lossyFS) crash(t testing.TB, src, dst string, rng *rand.Rand) (dropped int64) {
	t.Helper()
	must(t, os.MkdirAll(dst, 0o750))
	ents, err := os.ReadDir(src)
	must(t, err)
	for _, e := range ents {
		p := filepath.Join(src, e.Name())
		b, err := os.ReadFile(p)
		must(t, err)
		lossyBook.Lock()
		syn, tracked := f.synced[p]
		lossyBook.Unlock()
		if tracked && syn < int64(len(b)) {
			keep := syn // half the time every unsynced byte is lost
			if rng.IntN(2) == 0 {
				keep += rng.Int64N(int64(len(b)) - syn + 1) // a torn write
			}
			dropped += int64(len(b)) - keep
			b = b[:keep]
		}
		must(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o640))
	}
	return dropped
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPowerLoss cuts the power (simulated by lossyFS) under a concurrent
// write load at random moments and checks what a restart finds: in always
// mode every acknowledged write, in everysec mode every write acknowledged
// more than the loss window before the cut (the largest window observed is
// reported; target ≤ 1.5 s); never a partial record. Short form: 2 cuts per
// mode; SQ_RELIABILITY=long: 50.
func TestPowerLoss(t *testing.T) {
	cuts := 2
	if os.Getenv("SQ_RELIABILITY") == "long" {
		cuts = 50
	}
	// "everysec-loops": half the writers write as event loops do (a round
	// of one write, TryApply and Flush, on two loop logs; the worker path
	// when declined), beside blocking writers of the same phexts, so a
	// phext's records spread over three logs fsynced independently.
	for _, tc := range []struct {
		mode  store.Durability
		loops bool
	}{{store.DurabilityAlways, false}, {store.DurabilityEverySec, false}, {store.DurabilityEverySec, true}} {
		mode, loops := tc.mode, tc.loops
		name := mode.String()
		if loops {
			name += "-loops"
		}
		t.Run(name, func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			rng := rand.New(rand.NewPCG(seed, 1))
			var maxWindow, maxSyncGap time.Duration
			var acked, lost, dropped int64
			var loopAcks atomic.Int64
			for cut := 0; cut < cuts; cut++ {
				lfs := newLossyFS()
				root := t.TempDir()
				// Small WALs compact often in always mode (cuts land in
				// compactions); everysec keeps the default so that its
				// loss window is not hidden by compaction fsyncs.
				minWAL := int64(64 << 10)
				if mode == store.DurabilityEverySec {
					minWAL = 0
				}
				live, logDir := filepath.Join(root, "live"), filepath.Join(root, "log")
				loopLogs := 0
				if loops {
					loopLogs = 2
				}
				s, err := store.Open(&store.Options{Durability: mode, FS: lfs, CompactMinWAL: minWAL, Logger: quiet(),
					LogDir: logDir, LogRotateBytes: 256 << 10, LoopLogs: loopLogs})
				must(t, err)
				ten, err := s.AddTenant(store.TenantConfig{Name: "p", DataDir: live})
				must(t, err)
				const writers = 8
				acks := make([][]time.Time, writers)
				var stop atomic.Bool
				var wg sync.WaitGroup
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var r store.LoopRound
						r.SetLoop(w % 2)
						onLoop := loops && w%4 < 2
						for i := 0; !stop.Load(); i++ {
							// Two phexts, so compactions run while the
							// power is cut.
							name := []byte{byte('a' + w%2)}
							text := []byte(strconv.Itoa(i) + ";")
							if onLoop {
								wr := store.Write{Kind: store.WriteInsert, Name: name, Coord: c9(uint16(w + 1)), Text: text}
								ok, _ := ten.TryApply(&r, &wr)
								if err := r.Flush(); err != nil || wr.Err != nil {
									return
								}
								if ok {
									acks[w] = append(acks[w], time.Now())
									loopAcks.Add(1)
									continue
								}
							}
							if _, err := ten.Insert(name, c9(uint16(w+1)), text); err != nil {
								return
							}
							acks[w] = append(acks[w], time.Now())
						}
					}()
				}
				time.Sleep(time.Duration(1200+rng.IntN(1500)) * time.Millisecond)
				cutAt := time.Now()
				dropped += lfs.crashAll(t, rng, [2]string{live, filepath.Join(root, "after-live")},
					[2]string{logDir, filepath.Join(root, "after-log")})
				lossyBook.Lock()
				for p, g := range lfs.maxGap {
					if strings.HasSuffix(p, ".log") && g > maxSyncGap {
						maxSyncGap = g
					}
				}
				for p, last := range lfs.lastSync {
					if strings.HasSuffix(p, ".log") && cutAt.Sub(last) > maxSyncGap {
						maxSyncGap = cutAt.Sub(last)
					}
				}
				lossyBook.Unlock()
				stop.Store(true)
				wg.Wait()
				store.Crash(s)
				// Restart on what the disk held, at the same paths (the
				// log names data dirs by absolute path).
				must(t, os.RemoveAll(live))
				must(t, os.RemoveAll(logDir))
				must(t, os.Rename(filepath.Join(root, "after-live"), live))
				must(t, os.Rename(filepath.Join(root, "after-log"), logDir))
				s2, err := store.Open(&store.Options{Logger: quiet(), LogDir: logDir})
				must(t, err)
				ten2, err := s2.AddTenant(store.TenantConfig{Name: "p", DataDir: live})
				must(t, err)
				for w := 0; w < writers; w++ {
					got, err := ten2.AppendSelect(nil, []byte{byte('a' + w%2)}, c9(uint16(w+1)))
					if err != nil {
						t.Fatalf("cut %d (seed %d): unreadable after the power cut: %v", cut, seed, err)
					}
					k := 0
					for rest := got; len(rest) > 0; k++ {
						tok := []byte(strconv.Itoa(k) + ";")
						if !bytes.HasPrefix(rest, tok) {
							t.Fatalf("cut %d writer %d: partial or out-of-order record after token %d: %q", cut, w, k, rest[:min(len(rest), 20)])
						}
						rest = rest[len(tok):]
					}
					// acks[w] may hold acknowledgements after the cut:
					// only those before it count.
					n := 0
					for n < len(acks[w]) && acks[w][n].Before(cutAt) {
						n++
					}
					acked += int64(n)
					if k < n {
						lost += int64(n - k)
						if win := cutAt.Sub(acks[w][k]); win > maxWindow {
							maxWindow = win
						}
					}
				}
				s2.Close()
			}
			t.Logf("%s: %d power cuts (seed %d): %d writes acknowledged before the cuts, %d lost, %d unsynced bytes dropped, largest loss window %v; longest time the log went without fsync %v",
				mode, cuts, seed, acked, lost, dropped, maxWindow.Round(time.Millisecond), maxSyncGap.Round(time.Millisecond))
			if loops && loopAcks.Load() == 0 {
				t.Error("no write was taken on a loop")
			}
			if mode == store.DurabilityAlways && lost > 0 {
				t.Errorf("always mode lost %d acknowledged writes", lost)
			}
			// The target (≤ 1.5 s) is asserted in the long form,
			// which `make reliability` runs without -race; under the race
			// detector the syncer is starved enough to miss it (2.2 s
			// measured), so the short form only catches a syncer that
			// stopped.
			limit := 3 * time.Second
			if os.Getenv("SQ_RELIABILITY") == "long" {
				limit = 1500 * time.Millisecond
			}
			if maxWindow > limit {
				t.Errorf("largest loss window %v (limit %v)", maxWindow, limit)
			}
		})
	}
}
