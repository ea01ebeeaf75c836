package store

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
)

// TestSnapshotLimitRefusesWrites is issue 13's ">4 GiB phext" row with the
// map limit injected small: writes that could take the document past
// MaxSnapshot are refused with ErrTooLarge and change nothing, and the
// phext stays readable after compaction and reopen (on main the write went
// through, the compacted snapshot could not be mapped, and the phext never
// opened again).
func TestSnapshotLimitRefusesWrites(t *testing.T) {
	const limit = 64 << 10
	db := MustOpen(t, &Options{MaxSnapshot: limit, Durability: DurabilityNo})
	text := bytes.Repeat([]byte("x"), 1000)
	c := phext.Origin
	refused := 0
	for i := 0; i < 200 && refused == 0; i++ {
		c[8] = uint16(1 + i%999)
		c[7] = uint16(1 + i/999)
		before, _ := db.ten.AppendGet(nil, nil)
		_, err := db.ten.Insert(nil, c, text)
		switch {
		case err == nil:
		case errors.Is(err, ErrTooLarge):
			refused++
			after, _ := db.ten.AppendGet(nil, nil)
			if !bytes.Equal(before, after) {
				t.Fatalf("refused insert changed the phext")
			}
		default:
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	if refused == 0 {
		t.Fatalf("no write refused below a %d-byte limit", limit)
	}
	// The event loop's write path checks the same limit.
	c[8], c[7] = 3, 9
	w := Write{Kind: WriteInsert, Coord: c, Text: text}
	if _, ok := db.ten.TryWrite(&w, nil); !ok || !errors.Is(w.Err, ErrTooLarge) {
		t.Fatalf("TryWrite past the limit: ok %v, %v; want ErrTooLarge", ok, w.Err)
	}
	// A scroll far away costs thousands of break bytes: refused as well.
	far := phext.Coordinate{999, 999, 999, 999, 999, 999, 999, 999, 999}
	if _, err := db.ten.Update(nil, far, []byte("y")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("update far away near the limit: %v, want ErrTooLarge", err)
	}
	// A Put past the limit is refused whole.
	big := bytes.Repeat([]byte("z"), limit+1)
	if _, err := db.ten.Put([]byte("other"), big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("put past the limit: %v, want ErrTooLarge", err)
	}
	// Deletes and shrinking updates are always possible.
	c[8], c[7] = 1, 1
	if _, err := db.ten.Update(nil, c, []byte("small")); err != nil {
		t.Fatalf("shrinking update: %v", err)
	}
	if err := db.ten.Compact(nil); err != nil {
		t.Fatalf("compact: %v", err)
	}
	doc, err := db.ten.AppendGet(nil, nil)
	if err != nil || len(doc) > limit {
		t.Fatalf("get after compact: %d bytes, %v", len(doc), err)
	}
	db.MustReopen()
	// Room freed by the shrink is usable again (measured afresh).
	c[8], c[7] = 2, 1
	if _, err := db.ten.Update(nil, c, []byte("fits")); err != nil {
		t.Fatalf("write after freeing room: %v", err)
	}
}

// TestReadLimits: GET and TOC measure their reply under the lock and refuse
// one past Limit.Max before building it; Reserve sees the exact size.
func TestReadLimits(t *testing.T) {
	db := MustOpen(t, nil)
	doc := []byte("alpha\x17beta\x18gamma is a longer scroll than thirty-two bytes\x19")
	if _, err := db.ten.Put(nil, doc); err != nil {
		t.Fatal(err)
	}
	c := phext.Coordinate{2, 1, 1, 1, 1, 1, 1, 1, 5}
	if _, err := db.ten.Insert(nil, c, []byte("overlay")); err != nil {
		t.Fatal(err)
	}
	get, err := db.ten.AppendGet(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	toc, err := db.ten.AppendTOC(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	size, scrolls, err := db.ten.DocSize(nil)
	if err != nil || size != int64(len(get)) || scrolls != 4 {
		t.Fatalf("DocSize = %d, %d, %v; want %d, 4", size, scrolls, err, len(get))
	}
	tests := []struct {
		name string
		fn   func(Limit) ([]byte, error)
		want []byte
	}{
		{name: "get", fn: func(l Limit) ([]byte, error) { return db.ten.AppendGetLimit(nil, nil, l) }, want: get},
		{name: "toc", fn: func(l Limit) ([]byte, error) { return db.ten.AppendTOCLimit(nil, nil, l) }, want: toc},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.fn(Limit{Max: len(tc.want) - 1}); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("one byte over: %v, want ErrTooLarge", err)
			}
			var reserved int
			got, err := tc.fn(Limit{Max: len(tc.want), Reserve: func(n int) error { reserved += n; return nil }})
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("at the limit: %q, %v; want %q", got, err, tc.want)
			}
			if reserved != len(tc.want) || cap(got) > 2*len(tc.want) {
				t.Fatalf("reserved %d, cap %d; want %d and one allocation", reserved, cap(got), len(tc.want))
			}
			busy := errors.New("busy")
			if _, err := tc.fn(Limit{Reserve: func(int) error { return busy }}); err != busy {
				t.Fatalf("refusing Reserve: %v", err)
			}
		})
	}
}

// TestDeltaLimitMatchesDelta: the store's delta (parsed outside the lock,
// texts copied out) answers exactly what phext.Delta answers on the same
// scrolls, and refuses a request whose parsed form does not fit.
func TestDeltaLimitMatchesDelta(t *testing.T) {
	db := MustOpen(t, nil)
	var scrolls []phext.Scroll
	for i := 1; i <= 50; i++ {
		c := phext.Coordinate{1, 1, 1, 1, 1, 1, 1, uint16(1 + i/10), uint16(i)}
		text := []byte(fmt.Sprintf("scroll %d", i))
		if _, err := db.ten.Update(nil, c, text); err != nil {
			t.Fatal(err)
		}
		scrolls = append(scrolls, phext.Scroll{Coord: c, Text: text})
	}
	var req []byte
	for i, sc := range scrolls {
		sum := phext.Checksum(sc.Text)
		if i%3 == 0 {
			sum = "stale"
		}
		req = fmt.Appendf(req, "%s: %s\n", sc.Coord, sum)
	}
	req = append(req, "7.7.7/1.1.1/1.1.1: missing\n1.1.1/1.1.1/1.2.2: x\n1.1.1/1.1.1/1.2.2: y"...)
	want, err := phext.Delta(scrolls, req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.ten.AppendDelta(nil, nil, req)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("delta:\n got  %q %v\n want %q", got, err, want)
	}
	if _, err := db.ten.AppendDeltaLimit(nil, nil, req, Limit{Max: len(want) - 1}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("delta over Max: %v", err)
	}
	if _, err := db.ten.AppendDeltaLimit(nil, nil, req, Limit{Max: 100}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("delta whose parsed request passes Max: %v", err)
	}
}

// TestDeltaDoesNotHoldLockAcrossRequest is issue 13's DELTA row: a delta
// request of many missing coordinates is parsed and answered without the
// phext's lock, so a writer waiting for that lock gets through while the
// delta is still working (on main the whole request was worked under the
// read lock and the writer waited for all of it).
func TestDeltaDoesNotHoldLockAcrossRequest(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo})
	if _, err := db.ten.Insert(nil, phext.Origin, []byte("doc")); err != nil {
		t.Fatal(err)
	}
	// ~3 MiB of distinct coordinates, none stored.
	var req []byte
	for i := 0; len(req) < 3<<20; i++ {
		req = fmt.Appendf(req, "%d.%d.1/1.1.1/1.1.%d: x\n", 1+i%999, 1+(i/999)%999, 1+(i/998001)%999)
	}
	p, err := db.ten.get(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var derr error
	go func() {
		defer close(done)
		_, derr = db.ten.AppendDelta(nil, nil, req)
	}()
	// Wait until the delta holds the read lock (or has finished without
	// ever being seen holding it), then write.
	locked := false
	for !locked {
		select {
		case <-done:
		default:
			if p.mu.TryLock() {
				p.mu.Unlock()
				runtime.Gosched()
				continue
			}
			locked = true
		}
		if !locked {
			break
		}
	}
	if !locked {
		return // the lock was held too briefly to be seen: nothing waited
	}
	var wg sync.WaitGroup
	wrote := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := db.ten.Insert(nil, phext.Origin, []byte("!")); err != nil {
			t.Error(err)
		}
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-done:
		select {
		case <-wrote:
			// Both finished: the write must not have been the later one.
			// (select picks randomly among ready cases)
		default:
			t.Fatalf("the writer waited for the whole delta")
		}
	}
	wg.Wait()
	<-done
	if derr != nil && !errors.Is(derr, ErrTooLarge) {
		t.Fatal(derr)
	}
}

// TestPutTinyScrollsQuota is issue 13's PUT row: a document of 1-byte
// scrolls whose text fits the quota but whose index would be ~30 times
// it is refused with ErrQuota, and one that fits leaves live memory within
// a small multiple of the quota (on main the first was accepted).
func TestPutTinyScrollsQuota(t *testing.T) {
	const quota = 1 << 20
	db := &testDB{tb: t, root: t.TempDir(), quota: quota}
	db.opts.Durability = DurabilityNo
	db.open()
	t.Cleanup(func() { db.Close() })
	tiny := func(n int) []byte {
		var doc []byte
		for i := 0; i < n; i++ {
			doc = append(doc, 'x')
			if (i+1)%999 == 0 {
				doc = append(doc, phext.SectionBreak) // n < 999*999
			} else {
				doc = append(doc, phext.ScrollBreak)
			}
		}
		return doc
	}
	// 500,000 scrolls: half the quota in text, 14 MB of index.
	if _, err := db.ten.Put(nil, tiny(500_000)); !errors.Is(err, ErrQuota) {
		t.Fatalf("put of 500k 1-byte scrolls in a 1 MiB quota: %v, want ErrQuota", err)
	}
	if u, _ := db.ten.Usage(); u.Bytes != 0 {
		t.Fatalf("refused put left %d bytes", u.Bytes)
	}
	doc := tiny(15_000) // 15,000 × (1 + ScrollCost) < 1 MiB
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := db.ten.Put(nil, doc); err != nil {
		t.Fatalf("put within the quota: %v", err)
	}
	doc = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 3*quota {
		t.Fatalf("a put within a %d-byte quota holds %d bytes of heap", quota, grew)
	}
}

// TestWriteTinyScrollsQuota is open issue 7 of issue 13: INSERT and UPDATE
// of many new 1-byte scrolls were charged their text only, so a 1 MiB
// quota let a tenant hold ~100 bytes of overlay and index per quota byte.
// Every write path now charges a scroll's memory cost (ScrollCost) with
// its text, so filling the quota with tiny scrolls holds live heap within
// a small multiple of the quota, and deleting them gives the quota back.
func TestWriteTinyScrollsQuota(t *testing.T) {
	const quota = 1 << 20
	for _, kind := range []WriteKind{WriteInsert, WriteUpdate} {
		t.Run(map[WriteKind]string{WriteInsert: "insert", WriteUpdate: "update"}[kind], func(t *testing.T) {
			db := &testDB{tb: t, root: t.TempDir(), quota: quota}
			db.opts.Durability = DurabilityNo
			db.opts.CompactMinWAL = 1 << 40 // keep every scroll in the overlay: the costly form
			db.open()
			t.Cleanup(func() { db.Close() })
			name := []byte("tiny")
			coord := func(i int) phext.Coordinate {
				return phext.Coordinate{1, 1, 1, 1, 1, 1, uint16(1 + i/(999*999)), uint16(1 + i/999%999), uint16(1 + i%999)}
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			// Old code: every one of maxTry writes is accepted (1 quota byte
			// each), ~100 MiB of heap.
			const maxTry = 1 << 20
			ws := make([]Write, 0, 1024)
			accepted := 0
			for i := 0; i < maxTry; {
				ws = ws[:0]
				for j := 0; j < cap(ws) && i < maxTry; j, i = j+1, i+1 {
					ws = append(ws, Write{Kind: kind, Name: name, Coord: coord(i), Text: []byte("x")})
				}
				db.ten.WriteMany(ws)
				full := false
				for _, w := range ws {
					switch {
					case w.Err == nil:
						accepted++
					case errors.Is(w.Err, ErrQuota):
						full = true
					default:
						t.Fatalf("write: %v", w.Err)
					}
				}
				if full {
					break
				}
			}
			ws = nil
			runtime.GC()
			runtime.ReadMemStats(&after)
			grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("%d 1-byte scrolls accepted in a %d-byte quota; heap +%d bytes (%.2f per quota byte)",
				accepted, quota, grew, float64(grew)/quota)
			if grew > 3*quota {
				t.Fatalf("%d tiny scrolls in a %d-byte quota hold %d bytes of heap (> 3 × quota)", accepted, quota, grew)
			}
			u, _ := db.ten.Usage()
			if u.Bytes > quota {
				t.Fatalf("usage %d bytes is over the quota %d", u.Bytes, quota)
			}
			// Deleting a scroll returns its whole charge.
			if _, err := db.ten.Delete(name, coord(0)); err != nil {
				t.Fatal(err)
			}
			if u2, _ := db.ten.Usage(); u.Bytes-u2.Bytes != 1+ScrollCost {
				t.Fatalf("delete of a 1-byte scroll freed %d quota bytes, want %d", u.Bytes-u2.Bytes, 1+ScrollCost)
			}
		})
	}
}

// TestPutOverQuotaRefusedFirst: a Put whose document is charged more than
// the whole quota is refused with ErrQuota after counting a quota's worth
// of it, before it is validated or parsed (issue 13, M4: a 60 MB document
// of 30 M one-byte scrolls was checked for UTF-8 and scanned whole to be
// refused). The document here ends in a byte that is not UTF-8: the old
// order answered ErrBadScroll, so the refusal had read the whole document.
// The refusal allocates next to nothing, and the stored phext is unchanged.
func TestPutOverQuotaRefusedFirst(t *testing.T) {
	const quota = 1 << 20
	db := &testDB{tb: t, root: t.TempDir(), quota: quota}
	db.opts.Durability = DurabilityNo
	db.open()
	t.Cleanup(func() { db.Close() })
	name := []byte("dots")
	small := sqtest.TinyScrolls(1000)
	if _, err := db.ten.Put(name, small); err != nil {
		t.Fatal(err)
	}
	before, _ := db.ten.Usage()
	doc := append(sqtest.TinyScrolls(2_000_000), 0xFF) // 4 MB, ~130 MiB charged
	var err error
	allocs := testing.AllocsPerRun(20, func() { _, err = db.ten.Put(name, doc) })
	if !errors.Is(err, ErrQuota) {
		t.Fatalf("put of 2 M one-byte scrolls in a 1 MiB quota: %v, want ErrQuota", err)
	}
	if allocs > 10 {
		t.Errorf("a refused put made %.0f allocations", allocs)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	db.ten.Put(name, doc)
	runtime.ReadMemStats(&m1)
	if b := m1.TotalAlloc - m0.TotalAlloc; b > 4<<10 {
		t.Errorf("a refused put allocated %d bytes", b)
	}
	got, err := db.ten.AppendGet(nil, name)
	if err != nil || !bytes.Equal(got, small[:len(small)-1]) && !bytes.Equal(got, small) {
		t.Fatalf("stored phext after the refusals: %d bytes, %v; want the %d of before", len(got), err, len(small))
	}
	if after, _ := db.ten.Usage(); after.Bytes != before.Bytes {
		t.Fatalf("usage %d after the refusals, %d before", after.Bytes, before.Bytes)
	}
}

// TestPutCheckPieces: PutCheck, fed a document in pieces of any size,
// refuses it once the part fed is charged more than the quota, and with
// a scroll cut between pieces counts it once (the same verdict as a
// document fed whole); without a quota it never refuses.
func TestPutCheckPieces(t *testing.T) {
	const quota = 1 << 20
	db := &testDB{tb: t, root: t.TempDir(), quota: quota}
	db.opts.Durability = DurabilityNo
	db.open()
	t.Cleanup(func() { db.Close() })
	// 8,000 scrolls of 100 bytes: 800,000 + 8,000 × ScrollCost = 1,312,000
	// bytes charged, over the quota only in the last fifth.
	doc := bytes.Repeat(append(bytes.Repeat([]byte("y"), 100), phext.ScrollBreak), 8000)
	over := 0 // the prefix length past which the charge passes the quota
	for n := 0; n < 8000; n++ {
		if docCharge(int64(100*(n+1)), int64(n+1)) > quota {
			over = n*101 + 1 + (quota - int(docCharge(int64(100*n), int64(n+1))))
			break
		}
	}
	for _, piece := range []int{1, 7, 101, 4096, 1 << 20} {
		c := db.ten.PutCheck()
		if !c.Active() {
			t.Fatal("no quota")
		}
		fed := 0
		var err error
		for fed < len(doc) && err == nil {
			n := min(piece, len(doc)-fed)
			err = c.Add(doc[fed : fed+n])
			fed += n
		}
		if !errors.Is(err, ErrQuota) || fed < over || fed-piece >= over {
			t.Fatalf("pieces of %d: refused after %d bytes (%v), want once %d bytes are in", piece, fed, err, over)
		}
	}
	free := &testDB{tb: t, root: t.TempDir()}
	free.opts.Durability = DurabilityNo
	free.open()
	t.Cleanup(func() { free.Close() })
	c := free.ten.PutCheck()
	if c.Active() || c.Add(doc) != nil {
		t.Fatal("a check without a quota refuses")
	}
}

// countIn feeds doc to a fresh check of ten in pieces of the given sizes
// (cycled), as a server counts a document while it arrives.
func countIn(ten *Tenant, doc []byte, pieces ...int) *PutCheck {
	c := ten.PutCheck()
	for off, i := 0, 0; off < len(doc); i++ {
		n := min(pieces[i%len(pieces)], len(doc)-off)
		c.Add(doc[off : off+n])
		off += n
	}
	return &c
}

// TestPutCountedSameAnswer: PutCounted with the finished check of a server
// that counted the document as it arrived answers exactly what Put
// answers (count, error text, usage and stored phext), at the quota's
// boundary, for bad names, every break level and bad documents; and when
// the quota was lowered after the count, or the check is of another length
// or has no quota, it counts again and still answers as Put (issue 13, M4).
func TestPutCountedSameAnswer(t *testing.T) {
	const quota = 1 << 20
	scrolls := func(text, n int) []byte { // n scrolls of text bytes each
		return bytes.Repeat(append(bytes.Repeat([]byte("y"), text), phext.ScrollBreak), n)
	}
	// 1,000-byte scrolls charge 1,064: the quota holds 985 of them and
	// 584 bytes more.
	exact := append(scrolls(1000, 985), bytes.Repeat([]byte("z"), quota-985*1064-ScrollCost)...)
	breaks := []byte("a\x17b\x18c\x19d\x1ae\x1cf\x1dg\x1eh\x1fi\x01j\x17\x17\x18k")
	for _, tc := range []struct {
		name   string
		phext  string
		doc    []byte
		pieces []int
		quota  int64 // the quota when the store runs the Put; 0: as counted
		cut    int   // bytes the check misses at the document's end
		want   error
	}{
		{name: "exactly the quota", phext: "q", doc: exact, pieces: []int{65536}},
		{name: "one byte over the quota", phext: "q", doc: append(bytes.Clone(exact), 'z'), pieces: []int{65536}, want: ErrQuota},
		{name: "over by a scroll cut between pieces", phext: "q", doc: scrolls(1000, 1000), pieces: []int{1, 999, 4096}, want: ErrQuota},
		{name: "bad name", phext: "../x", doc: scrolls(10, 10), pieces: []int{7}, want: ErrBadName},
		{name: "every break", phext: "b", doc: breaks, pieces: []int{1, 2, 3}},
		{name: "bad UTF-8", phext: "u", doc: append(scrolls(10, 10), 0xFF), pieces: []int{5}, want: ErrBadScroll},
		{name: "coordinate overflow", phext: "o", doc: bytes.Repeat([]byte{'x', phext.ScrollBreak}, 1000), pieces: []int{64}, want: ErrOverflow},
		{name: "quota lowered after the count", phext: "q", doc: exact, pieces: []int{65536}, quota: quota / 2, want: ErrQuota},
		{name: "check of another length", phext: "q", doc: append(bytes.Clone(exact), 'z'), pieces: []int{65536}, cut: 1, want: ErrQuota},
		{name: "within, check of another length", phext: "q", doc: scrolls(100, 100), pieces: []int{64}, cut: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dbs [2]*testDB
			for i := range dbs {
				dbs[i] = &testDB{tb: t, root: t.TempDir(), quota: quota}
				dbs[i].opts.Durability = DurabilityNo
				dbs[i].open()
				t.Cleanup(func() { dbs[i].Close() })
			}
			put, counted := dbs[0].ten, dbs[1].ten
			c := countIn(counted, tc.doc[:len(tc.doc)-tc.cut], tc.pieces...)
			if tc.quota != 0 {
				put.quota.Store(tc.quota)
				counted.quota.Store(tc.quota)
			}
			n0, err0 := put.Put([]byte(tc.phext), tc.doc)
			n1, err1 := counted.PutCounted([]byte(tc.phext), tc.doc, c)
			if !errors.Is(err0, tc.want) || tc.want == nil && err0 != nil {
				t.Fatalf("Put: %v, want %v", err0, tc.want)
			}
			if n0 != n1 || fmt.Sprint(err0) != fmt.Sprint(err1) {
				t.Fatalf("PutCounted answered %d, %v; Put %d, %v", n1, err1, n0, err0)
			}
			u0, _ := put.Usage()
			u1, _ := counted.Usage()
			if u0 != u1 {
				t.Fatalf("usage after PutCounted %+v, after Put %+v", u1, u0)
			}
			if err0 == nil {
				g0, _ := put.AppendGet(nil, []byte(tc.phext))
				g1, _ := counted.AppendGet(nil, []byte(tc.phext))
				if !bytes.Equal(g0, g1) {
					t.Fatalf("stored %d bytes after PutCounted, %d after Put", len(g1), len(g0))
				}
			}
		})
	}
	t.Run("no quota", func(t *testing.T) {
		db := &testDB{tb: t, root: t.TempDir()}
		db.opts.Durability = DurabilityNo
		db.open()
		t.Cleanup(func() { db.Close() })
		c := countIn(db.ten, breaks, 3)
		if n, err := db.ten.PutCounted([]byte("b"), breaks, c); err != nil || n != 11 {
			t.Fatalf("PutCounted without a quota: %d, %v; want 11 scrolls", n, err)
		}
	})
}

// TestPutCountedCountsOnce: PutCounted takes the count of a check that
// saw the whole document and does not count the document again. The check
// handed over here counted other bytes of the same length, charged one
// byte under the quota where the document is charged one over (a caller
// must not do that), so the answer shows whose count the store used.
func TestPutCountedCountsOnce(t *testing.T) {
	doc := []byte("abcd") // 1 scroll, 4 text bytes
	quota := docCharge(4, 1) - 1
	db := &testDB{tb: t, root: t.TempDir(), quota: quota}
	db.opts.Durability = DurabilityNo
	db.open()
	t.Cleanup(func() { db.Close() })
	if _, err := db.ten.Put([]byte("once"), doc); !errors.Is(err, ErrQuota) {
		t.Fatalf("Put of a document charged one byte over the quota: %v, want ErrQuota", err)
	}
	other := countIn(db.ten, []byte{'a', 'b', 0x17, 0x17}, 4) // 1 scroll, 2 text bytes
	if _, err := db.ten.PutCounted([]byte("once"), doc, other); err != nil {
		t.Fatalf("PutCounted with a check charged under the quota: %v; the store counted the document again", err)
	}
}
