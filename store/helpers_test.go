package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/phext/sq/phext"
	"github.com/zeebo/xxh3"
)

// testDB is a Store with one tenant "t1" in a temp dir (STYLE 16).
type testDB struct {
	*Store
	tb     testing.TB
	root   string
	opts   Options
	ten    *Tenant
	quota  int64
	closed bool
}

// MustOpen opens a Store on t.TempDir() with one tenant and registers a
// cleanup that checks the invariants and closes it.
func MustOpen(tb testing.TB, opts *Options) *testDB {
	tb.Helper()
	db := &testDB{tb: tb, root: tb.TempDir()}
	if opts != nil {
		db.opts = *opts
	}
	db.open()
	tb.Cleanup(func() {
		if db.closed {
			return
		}
		db.check()
		if err := db.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return db
}

func (db *testDB) dir() string { return filepath.Join(db.root, "t1") }

func (db *testDB) open() {
	db.tb.Helper()
	o := db.opts
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	if o.LogDir == "" {
		o.LogDir = filepath.Join(db.root, "log")
	}
	if n, _ := strconv.Atoi(os.Getenv("SQ_TEST_LOOPLOGS")); n > 0 && o.LoopLogs == 0 {
		o.LoopLogs = n
	}
	s, err := Open(&o)
	if err != nil {
		db.tb.Fatalf("open: %v", err)
	}
	db.Store = s
	db.ten, err = s.AddTenant(TenantConfig{Name: "t1", DataDir: db.dir(), QuotaBytes: db.quota})
	if err != nil {
		db.tb.Fatalf("add tenant: %v", err)
	}
	db.closed = false
}

// MustReopen checks the invariants, closes the Store and opens it again on
// the same directory; the serialized state of every phext must survive.
func (db *testDB) MustReopen() {
	db.tb.Helper()
	db.check()
	before := db.snapshotAll()
	if err := db.Close(); err != nil {
		db.tb.Fatalf("close: %v", err)
	}
	db.open()
	after := db.snapshotAll()
	for name, doc := range before {
		if !bytes.Equal(after[name], doc) {
			db.tb.Fatalf("phext %q changed across reopen:\n before %q\n after  %q", name, doc, after[name])
		}
	}
}

// Close closes the store (idempotent for the cleanup).
func (db *testDB) Close() error {
	db.closed = true
	return db.Store.Close()
}

func (db *testDB) snapshotAll() map[string][]byte {
	db.tb.Helper()
	names, err := db.ten.List()
	if err != nil {
		db.tb.Fatalf("list: %v", err)
	}
	m := map[string][]byte{}
	for _, n := range names {
		doc, err := db.ten.AppendGet(nil, []byte(n))
		if err != nil {
			db.tb.Fatalf("get %q: %v", n, err)
		}
		m[n] = doc
	}
	return m
}

// check verifies the invariants of every open phext: counters match the
// state, the serialized document scans back to the same scrolls, and the
// index is sorted.
func (db *testDB) check() {
	db.tb.Helper()
	db.Store.mu.RLock()
	var ts []*Tenant
	for _, t := range db.Store.tenants {
		ts = append(ts, t)
	}
	db.Store.mu.RUnlock()
	for _, t := range ts {
		t.mu.RLock()
		var ps []*pfile
		for _, p := range t.files {
			ps = append(ps, p)
		}
		t.mu.RUnlock()
		for _, p := range ps {
			checkPfile(db.tb, p)
		}
	}
}

func checkPfile(tb testing.TB, p *pfile) {
	tb.Helper()
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.state.Load() != stateReady {
		return
	}
	if msg := pfileInvariant(p); msg != "" {
		tb.Errorf("%s: %s", p.path, msg)
	}
}

// pfileInvariant returns "" when p's state is consistent (read lock held).
func pfileInvariant(p *pfile) string {
	if msg := indexInvariant(p.base, &p.index); msg != "" {
		return msg
	}
	var n, b int64
	var doc []byte
	prev := phext.Origin
	var scrolls []phext.Scroll
	p.walk(func(c phext.Coordinate, text []byte) {
		n++
		b += int64(len(text))
		doc = phext.AppendDelimiters(doc, prev, c)
		doc = append(doc, text...)
		prev = c
		scrolls = append(scrolls, phext.Scroll{Coord: c, Text: text})
	})
	if n != p.scrolls || b != p.bytes {
		return "counters: scrolls " + itoa(p.scrolls) + " bytes " + itoa(p.bytes) + " but state has " + itoa(n) + "/" + itoa(b)
	}
	var sc phext.Scanner
	sc.Reset(doc)
	i := 0
	for sc.Next() {
		if i >= len(scrolls) || sc.Coordinate() != scrolls[i].Coord || !bytes.Equal(sc.Scroll(), scrolls[i].Text) {
			return "serialized document does not scan back"
		}
		i++
	}
	if sc.Err() != nil || i != len(scrolls) {
		return "serialized document does not scan back"
	}
	return ""
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func coord(parts ...uint16) phext.Coordinate {
	c := phext.Origin
	copy(c[9-len(parts):], parts)
	return c
}

func mustGet(tb testing.TB, ten *Tenant, name string) string {
	tb.Helper()
	doc, err := ten.AppendGet(nil, []byte(name))
	if err != nil {
		tb.Fatalf("get %q: %v", name, err)
	}
	return string(doc)
}

func mustSelect(tb testing.TB, ten *Tenant, name string, c phext.Coordinate) string {
	tb.Helper()
	b, err := ten.AppendSelect(nil, []byte(name), c)
	if err != nil {
		tb.Fatalf("select %q %v: %v", name, c, err)
	}
	return string(b)
}

func fileBytes(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	return b
}

func xxh3Hash(b []byte) uint64 { return xxh3.Hash(b) }

// noSyncFS is the OS without fsyncs, for tests that reopen a store many
// times and are about recovery logic, not durability (the disk's fsync
// latency would dominate them).
type noSyncFS struct{ osFS }

type noSyncFile struct{ File }

func (noSyncFile) Sync() error { return nil }

func (f noSyncFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fl, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return noSyncFile{fl}, nil
}

func (noSyncFS) SyncDir(string) error { return nil }

// OpenFSSync: no syncfs either.
func (noSyncFS) OpenFSSync(string) (FSSync, error) { return noFSSync{}, nil }

type noFSSync struct{}

func (noFSSync) Sync() error  { return nil }
func (noFSSync) Close() error { return nil }

// scannerIndex is buildIndex written with phext.Scanner, the rule
// buildIndex's own loop must follow: the same samples, counts and error.
func scannerIndex(doc []byte) (index, error) {
	var sc phext.Scanner
	sc.Reset(doc)
	var x index
	last, since := -1, 0
	for sc.Next() {
		start, end := sc.Start(), sc.End()
		x.scrolls++
		x.bytes += int64(end - start)
		if last < 0 || since == sampleScrolls-1 || end-last > sampleBytes {
			x.e = append(x.e, entry{c: sc.Coordinate(), start: uint32(start), end: uint32(end)})
			last, since = end, 0
			continue
		}
		since++
	}
	if err := sc.Err(); err != nil {
		return index{}, err
	}
	return x, nil
}

// indexInvariant returns "" when x is the index of doc: the samples and
// counts scannerIndex finds, and every scroll of doc found by find and
// walked by docIter, with its text.
func indexInvariant(doc []byte, x *index) string {
	want, err := scannerIndex(doc)
	if err != nil {
		return "index of a document that does not scan: " + err.Error()
	}
	if !slices.Equal(x.e, want.e) || x.scrolls != want.scrolls || x.bytes != want.bytes {
		return "index differs from the Scanner's"
	}
	var sc phext.Scanner
	sc.Reset(doc)
	msg := ""
	x.walk(doc, func(c phext.Coordinate, text []byte) {
		switch {
		case msg != "":
		case !sc.Next():
			msg = "index walk yields more than the document"
		case c != sc.Coordinate() || !bytes.Equal(text, sc.Scroll()) || cap(text) != len(text):
			msg = "index walk differs at " + sc.Coordinate().String()
		}
	})
	if msg == "" && sc.Next() {
		msg = "index walk misses " + sc.Coordinate().String()
	}
	for sc.Reset(doc); msg == "" && sc.Next(); {
		if got := x.find(doc, sc.Coordinate()); !bytes.Equal(got, sc.Scroll()) || cap(got) != len(got) {
			msg = "index find differs at " + sc.Coordinate().String()
		}
	}
	return msg
}
