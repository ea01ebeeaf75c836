package store

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/phext/sq/phext"
)

// recFeed records the changes published to it (copies of them).
type recFeed struct {
	mu sync.Mutex
	cs []Change
}

func (f *recFeed) Publish(c *Change) {
	cp := *c
	cp.Text = append([]byte(nil), c.Text...)
	f.mu.Lock()
	f.cs = append(f.cs, cp)
	f.mu.Unlock()
}

func (f *recFeed) all() []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Change(nil), f.cs...)
}

// watchedTenant opens a store whose tenant publishes its changes to a
// recording feed, and returns the position the feed starts after.
func watchedTenant(t *testing.T) (*testDB, *Tenant, *recFeed, uint64) {
	db := MustOpen(t, nil)
	f := &recFeed{}
	db.ten.SetFeed(f)
	return db, db.ten, f, db.ten.Position()
}

// of returns the changes of phext name published to f (an empty text as
// nil, as ReadChanges gives it).
func (f *recFeed) of(name string) []Change {
	var out []Change
	for _, c := range f.all() {
		if c.Phext == name {
			if len(c.Text) == 0 {
				c.Text = nil
			}
			out = append(out, c)
		}
	}
	return out
}

// checkReadChanges checks that ReadChanges of phext name from position
// from gives exactly want, complete up to the position now.
func checkReadChanges(t *testing.T, ten *Tenant, name string, from uint64, want []Change) {
	t.Helper()
	got, cut, err := ten.ReadChanges(name, from, 1<<20)
	if err != nil {
		t.Fatalf("ReadChanges from %d: %v", from, err)
	}
	if cut < ten.Position() {
		t.Errorf("cut %d below the position now %d", cut, ten.Position())
	}
	if len(got) != len(want) {
		t.Fatalf("from %d: %d changes, want %d:\n got %+v\nwant %+v", from, len(got), len(want), got, want)
	}
	for i := range want {
		if fmt.Sprintf("%+v", got[i]) != fmt.Sprintf("%+v", want[i]) {
			t.Errorf("from %d, change %d:\n got %+v (%q)\nwant %+v (%q)", from, i, got[i], got[i].Text, want[i], want[i].Text)
		}
	}
}

// mustWrite returns a check for a write's result.
func mustWrite(t *testing.T) func(int, error) {
	return func(_ int, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestFeedPublishesEveryPath: the worker path (Insert, Update, Delete,
// Put, WriteMany) and the loop path (TryWrite) each publish once per
// committed change, in order, with the scroll's new length, checksum and
// text; refused writes and no-op deletes publish nothing.
func TestFeedPublishesEveryPath(t *testing.T) {
	_, ten, f, head := watchedTenant(t)
	name := []byte("n")
	mustOK := mustWrite(t)
	mustOK(ten.Insert(name, coord(1), []byte("ab")))
	mustOK(ten.Insert(name, coord(1), []byte("cd")))
	mustOK(ten.Update(name, coord(2), []byte("x")))
	mustOK(ten.Delete(name, coord(2)))
	mustOK(ten.Delete(name, coord(7)))                                    // absent: nothing committed
	if _, err := ten.Insert(name, coord(1), []byte("\x17")); err == nil { // refused
		t.Fatal("bad scroll accepted")
	}
	w := Write{Kind: WriteUpdate, Name: name, Coord: coord(3), Text: []byte("loop")}
	if _, ok := ten.TryWrite(&w, nil); !ok || w.Err != nil {
		t.Fatalf("TryWrite ok %v err %v", ok, w.Err)
	}
	ws := []Write{{Kind: WriteInsert, Name: name, Coord: coord(4), Text: []byte("m1")},
		{Kind: WriteInsert, Name: name, Coord: coord(4), Text: []byte("m2")}}
	ten.WriteMany(ws)
	mustOK(ten.Put([]byte("other"), []byte("p1\x17p2")))

	type want struct {
		phext string
		op    ChangeOp
		c     phext.Coordinate
		text  string
		len   int64
	}
	wants := []want{
		{"n", ChangeInsert, coord(1), "ab", 2},
		{"n", ChangeInsert, coord(1), "abcd", 4},
		{"n", ChangeUpdate, coord(2), "x", 1},
		{"n", ChangeDelete, coord(2), "", 0},
		{"n", ChangeUpdate, coord(3), "loop", 4},
		{"n", ChangeInsert, coord(4), "m1", 2},
		{"n", ChangeInsert, coord(4), "m1m2", 4},
		// A put carries the serialized phext (GET's answer) and its
		// checksum (CHECKSUM's answer); len counts scroll bytes.
		{"other", ChangePut, phext.Origin, "p1\x17p2", 4},
	}
	got := f.all()
	if len(got) != len(wants) {
		t.Fatalf("got %d changes, want %d: %+v", len(got), len(wants), got)
	}
	last := head
	for i, w := range wants {
		g := got[i]
		if g.Phext != w.phext || g.Op != w.op || g.Coord != w.c || string(g.Text) != w.text || g.Len != w.len {
			t.Errorf("change %d: got %d %q %v %q len %d, want %d %q %v %q len %d", i,
				g.Op, g.Phext, g.Coord, g.Text, g.Len, w.op, w.phext, w.c, w.text, w.len)
		}
		if g.Pos <= last {
			t.Errorf("change %d: position %d not above %d", i, g.Pos, last)
		}
		last = g.Pos
		if sum := phext.Checksum([]byte(w.text)); !g.HasSum || string(g.Sum[:]) != sum {
			t.Errorf("change %d: checksum %q, want %q", i, g.Sum[:], sum)
		}
	}
	if ten.Position() != last {
		t.Errorf("Position %d, last published %d", ten.Position(), last)
	}
	docSum, err := ten.AppendChecksum(nil, []byte("other"))
	if err != nil || string(got[len(got)-1].Sum[:]) != string(docSum) {
		t.Errorf("put checksum %q, CHECKSUM says %q (%v)", got[len(got)-1].Sum[:], docSum, err)
	}

	// A document above MaxDocText: its checksum, no text (omitted).
	big := bytes.Repeat(append(bytes.Repeat([]byte("x"), 4095), '\x17'), MaxDocText/4096+1)
	mustOK(ten.Put([]byte("big"), big))
	got = f.all()
	g := got[len(got)-1]
	docSum, _ = ten.AppendChecksum(nil, []byte("big"))
	if g.Op != ChangePut || g.Text != nil || !g.TextOmitted || !g.HasSum || string(g.Sum[:]) != string(docSum) ||
		g.Len != int64(4095*(MaxDocText/4096+1)) {
		t.Errorf("big put: op %d, %d text bytes, omitted %v, checksum %q (CHECKSUM %q), len %d", g.Op, len(g.Text), g.TextOmitted, g.Sum[:], docSum, g.Len)
	}
}

// TestFeedOffCostsNothing: without a feed no position is drawn (so no
// change is built or hashed) and the loop's write path stays free of
// allocations; after SetFeed(nil) publishing stops.
func TestFeedOffCostsNothing(t *testing.T) {
	db := MustOpen(t, nil)
	ten := db.ten
	name := []byte("z")
	if _, err := ten.Insert(name, coord(1), []byte("seed")); err != nil {
		t.Fatal(err)
	}
	f := &recFeed{}
	ten.SetFeed(f)
	ten.SetFeed(nil)
	head := ten.Position()
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(200, func() {
		w := Write{Kind: WriteUpdate, Name: name, Coord: coord(1), Text: []byte("hello world")}
		buf, _ = ten.TryWrite(&w, buf)
	})
	if allocs != 0 {
		t.Errorf("%v allocs per unwatched TryWrite", allocs)
	}
	if _, err := ten.Update(name, coord(2), []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Positions are LSNs: unwatched writes draw them too (they are logged).
	if ten.Position() <= head || len(f.all()) != 0 {
		t.Errorf("unwatched writes: positions %d -> %d, published %d", head, ten.Position(), len(f.all()))
	}
}

// TestFeedPositionsGrowAcrossReopen: positions of a new run are above
// every position of the previous one.
func TestFeedPositionsGrowAcrossReopen(t *testing.T) {
	db := MustOpen(t, nil)
	f := &recFeed{}
	db.ten.SetFeed(f)
	for i := 0; i < 100; i++ {
		if _, err := db.ten.Insert([]byte("r"), coord(1), []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	before := db.ten.Position()
	db.MustReopen()
	f2 := &recFeed{}
	db.ten.SetFeed(f2)
	if _, err := db.ten.Insert([]byte("r"), coord(1), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if got := f2.all(); len(got) != 1 || got[0].Pos <= before {
		t.Fatalf("after reopen: %+v, before %d", got, before)
	}
}

// TestFeedConcurrentPerPhextOrder: concurrent writers to several phexts;
// each phext's changes arrive in position order and each insert's new
// length grows by exactly its text (apply order == publish order).
func TestFeedConcurrentPerPhextOrder(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo})
	f := &recFeed{}
	db.ten.SetFeed(f)
	const writers, per = 4, 50
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			name := []byte{'p', byte('0' + w%2)}
			for i := 0; i < per; i++ {
				if i%2 == 0 {
					ws := Write{Kind: WriteInsert, Name: name, Coord: coord(1), Text: []byte("x")}
					if _, ok := db.ten.TryWrite(&ws, nil); ok {
						continue
					}
				}
				if _, err := db.ten.Insert(name, coord(1), []byte("x")); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	last := map[string]uint64{}
	lens := map[string]int64{}
	for _, c := range f.all() {
		if c.Pos <= last[c.Phext] {
			t.Fatalf("phext %q: position %d after %d", c.Phext, c.Pos, last[c.Phext])
		}
		last[c.Phext] = c.Pos
		if c.Len != lens[c.Phext]+1 {
			t.Fatalf("phext %q: len %d after %d", c.Phext, c.Len, lens[c.Phext])
		}
		lens[c.Phext] = c.Len
	}
	if lens["p0"]+lens["p1"] != writers*per {
		t.Fatalf("lens %v, want %d in all", lens, writers*per)
	}
}

// TestReadChanges: the changes read back from the commit log are the
// changes the feed was given (position, op, coordinate, length, checksum,
// text), for every write path and from any position; an insert's state is
// derived forwards from an earlier record of its scroll or backwards from
// the phext's state now; what cannot be vouched for is ErrNotInLog.
func TestReadChanges(t *testing.T) {
	db, ten, f, head := watchedTenant(t)
	name := []byte("n")
	mustOK := mustWrite(t)
	mustOK(ten.Insert(name, coord(1), []byte("a")))
	mustOK(ten.Insert(name, coord(1), []byte("b")))
	mustOK(ten.Update(name, coord(2), []byte("x")))
	mustOK(ten.Insert(name, coord(2), []byte("y")))
	mustOK(ten.Insert([]byte("other"), coord(2), []byte("not n")))
	mustOK(ten.Delete(name, coord(1)))
	mustOK(ten.Insert(name, coord(1), []byte("z")))
	mustOK(ten.Put(name, []byte("p1\x17p2\x17\x17")))
	mustOK(ten.Insert(name, coord(1), []byte("q"))) // onto the put's scroll
	w := Write{Kind: WriteUpdate, Name: name, Coord: coord(3), Text: []byte("loop")}
	if _, ok := ten.TryWrite(&w, nil); !ok || w.Err != nil {
		t.Fatalf("TryWrite ok %v err %v", ok, w.Err)
	}
	ten.WriteMany([]Write{{Kind: WriteInsert, Name: name, Coord: coord(4), Text: []byte("m1")},
		{Kind: WriteInsert, Name: name, Coord: coord(4), Text: []byte("m2")}})

	published := func() []Change { return f.of("n") }
	check := func(from uint64, want []Change) {
		t.Helper()
		checkReadChanges(t, ten, "n", from, want)
	}
	all := published()
	if len(all) != 11 {
		t.Fatalf("published %d changes of n", len(all))
	}
	check(head, all)
	for i := range all {
		check(all[i].Pos, all[i+1:])
	}

	// A new generation, the old one dropped (the phext checkpointed): the
	// changes before it are gone; inserts on scrolls the new generation has
	// no earlier record of come from the state now.
	if err := db.rotate(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ten.ReadChanges("n", head, 1<<20); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("from before the dropped generation: %v, want ErrNotInLog", err)
	}
	mark := ten.Position()
	mustOK(ten.Insert(name, coord(1), []byte("r")))
	mustOK(ten.Insert(name, coord(1), []byte("s")))
	mustOK(ten.Insert(name, coord(4), []byte("m3")))
	check(mark, published()[len(all):])

	// An insert followed by an update of the same scroll, nothing before
	// it in the log: its state cannot be derived.
	mustOK(ten.Update(name, coord(1), []byte("u")))
	if _, _, err := ten.ReadChanges("n", mark, 1<<20); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("underivable insert: %v, want ErrNotInLog", err)
	}
	after := published()
	check(after[len(after)-2].Pos, after[len(after)-1:]) // from after it: fine

	// Bounded: the phext's records above maxBytes.
	if _, _, err := ten.ReadChanges("n", mark, 100); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("maxBytes 100: %v, want ErrNotInLog", err)
	}
}
