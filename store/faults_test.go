package store_test

// Disk-fault tests of the reliability suite (issue 9): ENOSPC and EIO
// injected through the store's FS seam at each durable step (WAL append,
// WAL fsync, compaction temp file, rename, directory fsync). Every case
// checks four things: the writer sees the injected error (which the server
// maps to INTERNAL), the data reads exactly as before, another tenant of
// the same store keeps working while the fault persists, and after the fault
// clears the tenant writes again and a fresh Store opened on the same files
// holds exactly the acknowledged state (nothing that failed reappears).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/store"
)

// rule is one armed fault: op on a path containing match fails with err.
type rule struct {
	op    string // "open", "write", "sync", "truncate", "rename", "syncdir", "remove"
	match string // substring of the path
	err   error
	once  bool // disarm after the first hit
	after int  // let this many matching calls pass first
	hits  int  // how many times it fired
}

// faultyFS is a store.FS that fails the operations its rules name, for as
// long as they are armed. It is safe for concurrent use (the store's
// syncer and compaction goroutines call it too).
type faultyFS struct {
	mu    sync.Mutex
	rules []*rule
	trace []string // "op path" of every operation that did not fail
	gates []*gate
}

// gate blocks the first op ("sync" or "write") on a file whose path
// contains match until release is closed; entered is closed when that call
// arrived. A write that is gated also meets the armed rules after the gate.
type gate struct {
	op      string
	match   string
	used    bool
	entered chan struct{}
	release chan struct{}
}

func (f *faultyFS) gateSync(match string) *gate { return f.addGate("sync", match) }

func (f *faultyFS) gateWrite(match string) *gate { return f.addGate("write", match) }

func (f *faultyFS) addGate(op, match string) *gate {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := &gate{op: op, match: match, entered: make(chan struct{}), release: make(chan struct{})}
	f.gates = append(f.gates, g)
	return g
}

// wait holds an op on path at its gate, if one is armed for it.
func (f *faultyFS) wait(op, path string) {
	f.mu.Lock()
	var g *gate
	for _, x := range f.gates {
		if !x.used && x.op == op && strings.Contains(path, x.match) {
			x.used, g = true, x
			break
		}
	}
	f.mu.Unlock()
	if g != nil {
		close(g.entered)
		<-g.release
	}
}

// traced returns the operations recorded since the last resetTrace.
func (f *faultyFS) traced() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.trace...)
}

func (f *faultyFS) resetTrace() {
	f.mu.Lock()
	f.trace = nil
	f.mu.Unlock()
}

func (f *faultyFS) arm(op, match string, err error) *rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &rule{op: op, match: match, err: err}
	f.rules = append(f.rules, r)
	return r
}

// armOnce is arm for a fault that fires once.
func (f *faultyFS) armOnce(op, match string, err error) *rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &rule{op: op, match: match, err: err, once: true}
	f.rules = append(f.rules, r)
	return r
}

func (f *faultyFS) clear() {
	f.mu.Lock()
	f.rules = nil
	f.mu.Unlock()
}

func (f *faultyFS) hits(r *rule) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return r.hits
}

func (f *faultyFS) check(op, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.op == op && strings.Contains(path, r.match) && !(r.once && r.hits > 0) {
			if r.after > 0 {
				r.after--
				continue
			}
			r.hits++
			return &os.PathError{Op: op, Path: path, Err: r.err}
		}
	}
	f.trace = append(f.trace, op+" "+path)
	return nil
}

func (f *faultyFS) OpenFile(name string, flag int, perm os.FileMode) (store.File, error) {
	if err := f.check("open", name); err != nil {
		return nil, err
	}
	fl, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: fl, fs: f, path: name}, nil
}

func (f *faultyFS) Rename(o, n string) error {
	if err := f.check("rename", n); err != nil {
		return err
	}
	return os.Rename(o, n)
}

func (f *faultyFS) Remove(name string) error {
	if err := f.check("remove", name); err != nil {
		return err
	}
	return os.Remove(name)
}

func (f *faultyFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

func (f *faultyFS) SyncDir(dir string) error {
	if err := f.check("syncdir", dir); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type faultyFile struct {
	*os.File
	fs   *faultyFS
	path string
}

// Write fails like a full disk does: part of the buffer may land first.
func (f *faultyFile) Write(p []byte) (int, error) {
	f.fs.wait("write", f.path)
	if err := f.fs.check("write", f.path); err != nil {
		n, _ := f.File.Write(p[:len(p)/3])
		return n, err
	}
	return f.File.Write(p)
}

func (f *faultyFile) Sync() error {
	f.fs.wait("sync", f.path)
	if err := f.fs.check("sync", f.path); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultyFile) Truncate(n int64) error {
	if err := f.fs.check("truncate", f.path); err != nil {
		return err
	}
	return f.File.Truncate(n)
}

// logBuf is a concurrency-safe log sink for slog.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// pair is a Store with two tenants: "victim" (faults are aimed at its dir)
// and "bystander".
type pair struct {
	t         testing.TB
	root      string
	fs        *faultyFS
	opts      store.Options
	s         *store.Store
	victim    *store.Tenant
	bystander *store.Tenant
}

func openPair(t testing.TB, opts store.Options) *pair {
	t.Helper()
	p := &pair{t: t, root: t.TempDir(), fs: &faultyFS{}, opts: opts}
	p.open()
	t.Cleanup(func() {
		if p.s != nil {
			p.fs.clear()
			p.s.Close()
		}
	})
	return p
}

func (p *pair) open() {
	p.t.Helper()
	o := p.opts
	o.FS = p.fs
	if o.LogDir == "" {
		o.LogDir = p.dir("log")
	}
	if o.Logger == nil {
		o.Logger = quiet()
	}
	s, err := store.Open(&o)
	if err != nil {
		p.t.Fatal(err)
	}
	p.s = s
	if p.victim, err = s.AddTenant(store.TenantConfig{Name: "victim", DataDir: p.dir("victim")}); err != nil {
		p.t.Fatal(err)
	}
	if p.bystander, err = s.AddTenant(store.TenantConfig{Name: "bystander", DataDir: p.dir("bystander")}); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pair) dir(name string) string { return filepath.Join(p.root, name) }

// reopen closes the store (faults cleared) and opens a fresh one on the
// same directories.
func (p *pair) reopen() {
	p.t.Helper()
	p.fs.clear()
	if err := p.s.Close(); err != nil {
		p.t.Fatalf("close: %v", err)
	}
	p.s = nil
	p.open()
}

func c9(parts ...uint16) phext.Coordinate {
	c := phext.Origin
	copy(c[9-len(parts):], parts)
	return c
}

func get(t testing.TB, ten *store.Tenant, name string) string {
	t.Helper()
	b, err := ten.AppendGet(nil, []byte(name))
	if err != nil {
		t.Fatalf("get %s/%q: %v", ten.Name(), name, err)
	}
	return string(b)
}

// logMatch matches the commit log's files.
const logMatch = "-w.log"

// clientSentinels are the store errors the server maps to a client-side
// status; a disk fault must map to none of them (so it becomes INTERNAL),
// except ErrQuota which is also acceptable.
var clientSentinels = []error{store.ErrBadName, store.ErrBadCoord, store.ErrBadScroll, store.ErrTooLarge, store.ErrOverflow}

func TestDiskFaults(t *testing.T) {
	insert := func(ten *store.Tenant) error {
		_, err := ten.Insert([]byte("f"), c9(2), []byte("must not land"))
		return err
	}
	update := func(ten *store.Tenant) error {
		_, err := ten.Update([]byte("f"), c9(1), []byte("must not land"))
		return err
	}
	put := func(ten *store.Tenant) error {
		_, err := ten.Put([]byte("f"), []byte("must\x17not\x18land"))
		return err
	}
	del := func(ten *store.Tenant) error {
		_, err := ten.Delete([]byte("f"), c9(3))
		return err
	}
	compact := func(ten *store.Tenant) error { return ten.Compact([]byte("f")) }
	newPhext := func(ten *store.Tenant) error {
		_, err := ten.Insert([]byte("fresh"), c9(1), []byte("must not land"))
		return err
	}
	cases := []struct {
		name       string
		durability store.Durability
		op         string
		match      string
		err        error
		do         func(*store.Tenant) error
		// cutBackFails also fails the truncate that undoes a failed append.
		cutBackFails bool
		// retryMayPass: a retry after the phext was reopened may find
		// nothing to do (the first attempt's rename already happened).
		retryMayPass bool
	}{
		{name: "ENOSPC on log append (everysec)", durability: store.DurabilityEverySec, op: "write", match: logMatch, err: syscall.ENOSPC, do: insert},
		{name: "ENOSPC on log append (always)", durability: store.DurabilityAlways, op: "write", match: logMatch, err: syscall.ENOSPC, do: update},
		{name: "EIO on log append", durability: store.DurabilityAlways, op: "write", match: logMatch, err: syscall.EIO, do: del},
		{name: "ENOSPC on log append and on the cut-back", durability: store.DurabilityAlways, op: "write", match: logMatch, err: syscall.ENOSPC, do: put, cutBackFails: true},
		{name: "EIO on log fsync", durability: store.DurabilityAlways, op: "sync", match: logMatch, err: syscall.EIO, do: insert},
		{name: "ENOSPC on log fsync of a put", durability: store.DurabilityAlways, op: "sync", match: logMatch, err: syscall.ENOSPC, do: put},
		{name: "ENOSPC creating a new phext", durability: store.DurabilityAlways, op: "open", match: "fresh.phext", err: syscall.ENOSPC, do: newPhext},
		{name: "ENOSPC on compaction temp write", durability: store.DurabilityEverySec, op: "write", match: "f.phext.tmp", err: syscall.ENOSPC, do: compact},
		{name: "EIO on compaction temp fsync", durability: store.DurabilityEverySec, op: "sync", match: "f.phext.tmp", err: syscall.EIO, do: compact},
		{name: "EIO on checkpoint record fsync", durability: store.DurabilityEverySec, op: "sync", match: logMatch, err: syscall.EIO, do: compact},
		{name: "EIO on rename", durability: store.DurabilityEverySec, op: "rename", match: "f.phext", err: syscall.EIO, do: compact},
		{name: "ENOSPC on rename", durability: store.DurabilityAlways, op: "rename", match: "f.phext", err: syscall.ENOSPC, do: compact},
		{name: "EIO on dir fsync after rename", durability: store.DurabilityEverySec, op: "syncdir", match: "", err: syscall.EIO, do: compact, retryMayPass: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := openPair(t, store.Options{Durability: tc.durability})
			v, b := p.victim, p.bystander
			for i, ten := range []*store.Tenant{v, b} {
				if _, err := ten.Insert([]byte("f"), c9(1), []byte("kept one")); err != nil {
					t.Fatal(err)
				}
				if _, err := ten.Insert([]byte("f"), c9(3), []byte(fmt.Sprint("kept three ", i))); err != nil {
					t.Fatal(err)
				}
			}
			before := get(t, v, "f")
			beforeB := get(t, b, "f")
			// The commit log is shared by all tenants: its faults hit the
			// bystander too (as one AOF does in Redis); the snapshot
			// faults stay the victim's.
			shared := tc.match == logMatch
			target := filepath.Join("victim", tc.match)
			if shared {
				target = tc.match
			}
			r := p.fs.arm(tc.op, target, tc.err)
			if tc.cutBackFails {
				// The cut-back after the failed append fails once too, so
				// the log keeps the torn record until a new generation
				// replaces it.
				p.fs.arm("truncate", target, tc.err).once = true
			}
			// The fault persists: every attempt fails the same way and
			// changes nothing, while the bystander keeps working.
			for attempt := 0; attempt < 3; attempt++ {
				err := tc.do(v)
				if err == nil && attempt > 0 && tc.retryMayPass {
					// The phext was reopened and found nothing left to do.
				} else if !errors.Is(err, tc.err) {
					t.Fatalf("attempt %d: err = %v, want %v", attempt, err, tc.err)
				}
				for _, s := range clientSentinels {
					if errors.Is(err, s) {
						t.Fatalf("disk fault reported as %v (the client would not see INTERNAL)", s)
					}
				}
				if got := get(t, v, "f"); got != before {
					t.Fatalf("attempt %d: state changed under a fault:\n got  %q\n want %q", attempt, got, before)
				}
				if shared {
					if got := get(t, b, "f"); got != beforeB {
						t.Fatalf("attempt %d: bystander changed under a log fault: %q", attempt, got)
					}
					continue
				}
				if _, err := b.Insert([]byte("f"), c9(5), []byte("x")); err != nil {
					t.Fatalf("bystander write during the fault: %v", err)
				}
				if err := b.Compact([]byte("f")); err != nil {
					t.Fatalf("bystander compaction during the fault: %v", err)
				}
			}
			if p.fs.hits(r) == 0 {
				t.Fatal("the fault never fired")
			}
			if _, err := os.Stat(filepath.Join(p.dir("victim"), "f.phext.tmp")); !errors.Is(err, os.ErrNotExist) {
				t.Error("compaction temp file left behind")
			}
			// The fault clears: the tenant works again.
			p.fs.clear()
			if _, err := v.Insert([]byte("f"), c9(4), []byte("after")); err != nil {
				t.Fatalf("write after the fault cleared: %v", err)
			}
			if err := v.Compact([]byte("f")); err != nil {
				t.Fatalf("compaction after the fault cleared: %v", err)
			}
			if _, err := v.Insert([]byte("f"), c9(6), []byte("last")); err != nil {
				t.Fatal(err)
			}
			want := get(t, v, "f")
			wantB := get(t, b, "f")
			if !strings.HasPrefix(want, before) {
				t.Fatalf("acknowledged data lost: %q does not start with %q", want, before)
			}
			if strings.Contains(want, "must") || strings.Contains(wantB, "must") {
				t.Fatalf("a failed write is visible: %q", want)
			}
			// What the disk holds is what was acknowledged.
			p.reopen()
			if got := get(t, p.victim, "f"); got != want {
				t.Fatalf("after reopen:\n got  %q\n want %q", got, want)
			}
			if got := get(t, p.bystander, "f"); got != wantB {
				t.Fatalf("bystander after reopen:\n got  %q\n want %q", got, wantB)
			}
			if names, _ := p.victim.List(); strings.Contains(tc.name, "new phext") && len(names) != 1 {
				t.Errorf("phexts after a failed create: %q", names)
			}
		})
	}
}

// TestFsyncFailureNotDurable is the PostgreSQL fsync lesson: after an fsync
// fails, the engine must not later report the same data durable because a
// retried fsync succeeded (the kernel may have dropped the dirty pages). In
// always mode the write that saw the failed fsync is refused and its record
// is not replayed; in everysec mode the failed background fsync is logged and
// the phext is reopened (replayed from what the file holds) before the next
// use.
func TestFsyncFailureNotDurable(t *testing.T) {
	t.Run("always", func(t *testing.T) {
		p := openPair(t, store.Options{Durability: store.DurabilityAlways})
		v := p.victim
		if _, err := v.Insert([]byte("f"), c9(1), []byte("durable")); err != nil {
			t.Fatal(err)
		}
		p.fs.arm("sync", logMatch, syscall.EIO)
		if _, err := v.Insert([]byte("f"), c9(1), []byte(" lost")); !errors.Is(err, syscall.EIO) {
			t.Fatalf("err = %v", err)
		}
		// Until the repair succeeded (here: the fault persists), every
		// write is refused: the page cache is not trusted.
		if _, err := p.bystander.Insert([]byte("f"), c9(1), []byte("refused")); !errors.Is(err, syscall.EIO) {
			t.Fatalf("write while the log is suspect: err = %v", err)
		}
		p.fs.clear()
		// The next write succeeds, and its fsync must not carry the failed
		// record along with it.
		if _, err := v.Insert([]byte("f"), c9(2), []byte("next")); err != nil {
			t.Fatal(err)
		}
		if got := get(t, v, "f"); got != "durable\x17next" {
			t.Fatalf("got %q", got)
		}
		store.Quiesce(p.s)
		logs, _ := filepath.Glob(filepath.Join(p.dir("log"), "sq-*.log"))
		for _, fn := range logs {
			b, err := os.ReadFile(fn)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(" lost")) {
				t.Fatalf("log %s still holds the record whose fsync failed", fn)
			}
		}
		if len(logs) != 1 {
			t.Errorf("logs after the repair: %q (the old generation should be gone)", logs)
		}
		if st := p.s.Stats(); st.Rewrites == 0 {
			t.Error("no phext was checkpointed from memory after the failed fsync")
		}
		p.reopen()
		if got := get(t, p.victim, "f"); got != "durable\x17next" {
			t.Fatalf("after reopen got %q", got)
		}
	})
	t.Run("everysec", func(t *testing.T) {
		var lb logBuf
		p := openPair(t, store.Options{Durability: store.DurabilityEverySec, SyncInterval: 10 * time.Millisecond, Logger: lb.logger()})
		v := p.victim
		if _, err := v.Insert([]byte("f"), c9(1), []byte("acked")); err != nil {
			t.Fatal(err)
		}
		// The log is clean before the fault is armed, so the only fsync
		// that can hit it is the syncer's for the write that follows.
		if err := v.Sync(); err != nil {
			t.Fatal(err)
		}
		r := p.fs.armOnce("sync", logMatch, syscall.EIO)
		if _, err := v.Insert([]byte("f"), c9(3), []byte("more")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for p.fs.hits(r) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the everysec syncer never fsynced the dirty WAL")
			}
			time.Sleep(5 * time.Millisecond)
		}
		p.fs.clear()
		for !strings.Contains(lb.String(), "everysec fsync of the commit log failed") {
			if time.Now().After(deadline) {
				t.Fatalf("no log line for the failed fsync; log:\n%s", lb.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		// The state (with the write whose fsync failed, acknowledged
		// before it) was checkpointed from memory, and the phext keeps
		// working.
		if _, err := v.Insert([]byte("f"), c9(2), []byte("later")); err != nil {
			t.Fatal(err)
		}
		if err := v.Sync(); err != nil {
			t.Fatal(err)
		}
		if got := get(t, v, "f"); got != "acked\x17later\x17more" {
			t.Fatalf("got %q", got)
		}
		if st := p.s.Stats(); st.Rewrites == 0 {
			t.Error("no phext was checkpointed from memory after the failed fsync")
		}
		p.reopen()
		if got := get(t, p.victim, "f"); got != "acked\x17later\x17more" {
			t.Fatalf("after reopen got %q", got)
		}
		// The bystander never noticed.
		if _, err := p.bystander.Insert([]byte("f"), c9(1), []byte("fine")); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBackgroundCompactionFaults: writes keep being acknowledged (and stay
// durable) while every background compaction of the phext fails with
// ENOSPC, and the next compaction after the fault clears folds the WAL.
func TestBackgroundCompactionFaults(t *testing.T) {
	var lb logBuf
	p := openPair(t, store.Options{Durability: store.DurabilityAlways, CompactMinWAL: 512, Logger: lb.logger()})
	v := p.victim
	r := p.fs.arm("write", filepath.Join("victim", "f.phext.tmp"), syscall.ENOSPC)
	var want strings.Builder
	for i := 0; i < 200; i++ {
		tok := fmt.Sprintf("w%d;", i)
		if _, err := v.Insert([]byte("f"), c9(1), []byte(tok)); err != nil {
			t.Fatalf("write %d while compactions fail: %v", i, err)
		}
		want.WriteString(tok)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.fs.hits(r) == 0 || !strings.Contains(lb.String(), "background compaction failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed background compaction observed (hits %d); log:\n%s", p.fs.hits(r), lb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.fs.clear()
	n := p.s.Stats().Compactions
	if err := v.Compact([]byte("f")); err != nil {
		t.Fatal(err)
	}
	// A background compaction may have taken the work (the explicit one
	// then finds nothing to fold) and count it just after Compact returns.
	deadline = time.Now().Add(5 * time.Second)
	for p.s.Stats().Compactions <= n {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint after the fault cleared")
		}
		time.Sleep(time.Millisecond)
	}
	p.reopen()
	if got := get(t, p.victim, "f"); got != want.String() {
		t.Fatalf("after reopen: %d bytes, want %d", len(got), want.Len())
	}
}
