package store

import (
	"errors"
	"testing"

	"github.com/phext/sq/phext"
)

// TestTryAppendSelect: the never-waiting SELECT answers only for open,
// unlocked phexts and short scrolls, and never allocates.
func TestTryAppendSelect(t *testing.T) {
	db := MustOpen(t, nil)
	ten := db.ten
	name := []byte("fast")
	bad := phext.Origin
	bad[0] = 0
	if _, ok := ten.TryAppendSelect(nil, name, coord(1), 100); ok {
		t.Fatal("answered for a phext that is not open")
	}
	if _, err := ten.Insert(name, coord(1), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		pname  []byte
		c      phext.Coordinate
		maxLen int
		want   string
		ok     bool
	}{
		{name: "open phext", pname: name, c: coord(1), maxLen: 100, want: "hello", ok: true},
		{name: "absent scroll", pname: name, c: coord(2), maxLen: 100, want: "", ok: true},
		{name: "too long", pname: name, c: coord(1), maxLen: 4, ok: false},
		{name: "bad name", pname: []byte("../x"), c: coord(1), maxLen: 100, ok: false},
		{name: "bad coord", pname: name, c: bad, maxLen: 100, ok: false},
		{name: "other phext", pname: []byte("other"), c: coord(1), maxLen: 100, ok: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ten.TryAppendSelect(nil, tc.pname, tc.c, tc.maxLen)
			if ok != tc.ok || (ok && string(got) != tc.want) {
				t.Fatalf("got %q %v, want %q %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	// A held write lock makes it give up instead of waiting.
	p := ten.files["fast"]
	p.mu.Lock()
	_, ok := ten.TryAppendSelect(nil, name, coord(1), 100)
	p.mu.Unlock()
	if ok {
		t.Error("answered while the phext was write-locked")
	}
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(200, func() { buf, _ = ten.TryAppendSelect(buf[:0], name, coord(1), 100) })
	if allocs != 0 {
		t.Errorf("%v allocs", allocs)
	}
}

// TestTryWrite: the never-waiting write gives the blocking methods'
// results, is logged before it is visible (a reopen replays it), and
// declines, changing nothing, whenever it would have to wait.
func TestTryWrite(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityEverySec})
	ten := db.ten
	name := []byte("w")
	w := Write{Kind: WriteInsert, Name: name, Coord: coord(1), Text: []byte("x")}
	if _, ok := ten.TryWrite(&w, nil); ok {
		t.Fatal("wrote to a phext that is not open (its files need creating)")
	}
	if _, err := ten.Insert(name, coord(1), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	bad := phext.Origin
	bad[0] = 0
	cases := []struct {
		name string
		w    Write
		n    int
		err  error
	}{
		{name: "insert", w: Write{Kind: WriteInsert, Name: name, Coord: coord(1), Text: []byte(" world")}, n: 6},
		{name: "update", w: Write{Kind: WriteUpdate, Name: name, Coord: coord(2), Text: []byte("two")}, n: 3},
		{name: "delete present", w: Write{Kind: WriteDelete, Name: name, Coord: coord(2)}, n: 3},
		{name: "delete absent", w: Write{Kind: WriteDelete, Name: name, Coord: coord(3)}, n: 0},
		{name: "bad scroll", w: Write{Kind: WriteUpdate, Name: name, Coord: coord(4), Text: []byte("a\x17b")}, err: ErrBadScroll},
		{name: "bad coord", w: Write{Kind: WriteUpdate, Name: name, Coord: bad, Text: []byte("a")}, err: ErrBadCoord},
		{name: "bad name", w: Write{Kind: WriteUpdate, Name: []byte("../x"), Coord: coord(1), Text: []byte("a")}, err: ErrBadName},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.w
			if _, ok := ten.TryWrite(&w, nil); !ok {
				t.Fatal("declined")
			}
			if w.N != tc.n || !errors.Is(w.Err, tc.err) {
				t.Fatalf("got %d %v, want %d %v", w.N, w.Err, tc.n, tc.err)
			}
		})
	}
	if got := mustGet(t, ten, "w"); got != "hello world" {
		t.Fatalf("got %q", got)
	}

	// Declines: each leaves the state exactly as it was.
	p := ten.files["w"]
	decline := func(what string) {
		t.Helper()
		w := Write{Kind: WriteUpdate, Name: name, Coord: coord(1), Text: []byte("no")}
		if _, ok := ten.TryWrite(&w, nil); ok {
			t.Fatalf("wrote while %s", what)
		}
		if got := mustGet(t, ten, "w"); got != "hello world" {
			t.Fatalf("state changed while %s: %q", what, got)
		}
	}
	p.mu.RLock()
	w = Write{Kind: WriteUpdate, Name: name, Coord: coord(1), Text: []byte("no")}
	_, ok := ten.TryWrite(&w, nil)
	p.mu.RUnlock()
	if ok {
		t.Fatal("wrote while a reader held the phext")
	}
	p.fmu.Lock()
	w = Write{Kind: WriteUpdate, Name: name, Coord: coord(1), Text: []byte("no")}
	_, ok = ten.TryWrite(&w, nil)
	p.fmu.Unlock()
	if ok {
		t.Fatal("wrote while the WAL lock (compaction, group commit) was held")
	}
	p.qmu.Lock()
	p.flushing = true
	p.qmu.Unlock()
	decline("a group commit was running")
	p.qmu.Lock()
	p.flushing = false
	p.qmu.Unlock()
	decline2 := Write{Kind: WriteUpdate, Name: name, Coord: coord(1), Text: make([]byte, MaxLoopWrite+1)}
	if _, ok := ten.TryWrite(&decline2, nil); ok {
		t.Fatal("wrote a text above MaxLoopWrite")
	}
	if _, err := db.AddTenant(TenantConfig{Name: "t1", DataDir: db.dir(), Durability: DurabilityAlways}); err != nil {
		t.Fatal(err)
	}
	decline("the tenant is in mode always")
	if ten.LoopWrites() {
		t.Fatal("LoopWrites in mode always (a loop would decode writes TryApply declines)")
	}
	if _, err := db.AddTenant(TenantConfig{Name: "t1", DataDir: db.dir(), Durability: DurabilityEverySec}); err != nil {
		t.Fatal(err)
	}
	if !ten.LoopWrites() {
		t.Fatal("no LoopWrites in mode everysec")
	}

	// Quota: refused as the blocking Insert would be.
	if _, err := db.AddTenant(TenantConfig{Name: "t1", DataDir: db.dir(), QuotaBytes: 12}); err != nil {
		t.Fatal(err)
	}
	w = Write{Kind: WriteInsert, Name: name, Coord: coord(5), Text: []byte("too much")}
	if _, ok := ten.TryWrite(&w, nil); !ok || !errors.Is(w.Err, ErrQuota) {
		t.Fatalf("over quota: ok %v err %v", ok, w.Err)
	}
	if _, err := db.AddTenant(TenantConfig{Name: "t1", DataDir: db.dir()}); err != nil {
		t.Fatal(err)
	}

	// No allocation once the scroll is in the overlay and the buffer has room.
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(200, func() {
		w := Write{Kind: WriteUpdate, Name: name, Coord: coord(1), Text: []byte("hello world")}
		buf, _ = ten.TryWrite(&w, buf)
	})
	if allocs != 0 {
		t.Errorf("%v allocs per TryWrite", allocs)
	}
	db.MustReopen()
	if got := mustGet(t, db.ten, "w"); got != "hello world" {
		t.Fatalf("after reopen got %q", got)
	}
}
