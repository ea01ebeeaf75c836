package store

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/phext/sq/phext"
)

// deleteModel is the document a test expects: scroll texts by coordinate.
type deleteModel map[phext.Coordinate]string

// doc serializes m as GET does.
func (m deleteModel) doc() string {
	keys := slices.SortedFunc(maps.Keys(m), phext.Coordinate.Compare)
	var b []byte
	prev := phext.Origin
	for _, c := range keys {
		b = phext.AppendDelimiters(b, prev, c)
		b = append(b, m[c]...)
		prev = c
	}
	return string(b)
}

// deleteModelDoc is a document of n scrolls whose lengths straddle the
// sparse index's sample rules (index.go: a sample every sampleScrolls
// scrolls or sampleBytes bytes, and every long scroll), with breaks of
// every level between them, and its model.
func deleteModelDoc(rng *rand.Rand, n int) ([]byte, deleteModel) {
	m := deleteModel{}
	c := phext.Origin
	for i := range n {
		if i > 0 {
			// Mostly the next scroll, sometimes a skip or a higher break.
			lvl := 8
			switch r := rng.IntN(20); {
			case r < 2:
				lvl = rng.IntN(8)
			case r < 4:
				c[8] += uint16(rng.IntN(3))
			}
			if c[lvl] >= 990 {
				lvl = 0 // keep the coordinate inside 1..999
			}
			c[lvl]++
			for k := lvl + 1; k < 9; k++ {
				c[k] = 1
			}
		}
		var size int
		switch rng.IntN(6) {
		case 0:
			size = 1
		case 1:
			size = 1 + rng.IntN(40)
		case 2:
			size = sampleBytes - 2 + rng.IntN(5)
		case 3:
			size = sampleBytes + rng.IntN(300)
		default:
			size = 1 + rng.IntN(8)
		}
		m[c] = strings.Repeat(string(rune('a'+i%26)), size)
	}
	return []byte(m.doc()), m
}

// TestDeleteAgainstModel: DELETE on a phext held in a mapped snapshot
// (sparse index), an event loop's (TryApply) or a worker's, removes exactly the scroll named and reports its length,
// for the first and last scrolls, every sampled scroll and its neighbours,
// coordinates between, before and after the scrolls, deletes repeated, a
// delete followed by an insert or an update; during a checkpoint (the
// frozen overlay), after it, after a crash's replay of the log and after
// a clean reopen, the store holds the model's document.
func TestDeleteAgainstModel(t *testing.T) {
	for seed := range uint64(3) {
		t.Run("seed"+itoa(int64(seed)), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 14))
			db := MustOpen(t, &Options{Durability: DurabilityNo, FS: noSyncFS{}, CompactMinWAL: 1 << 40})
			name := []byte("d")
			doc, m := deleteModelDoc(rng, 400)
			if _, err := db.ten.Put(name, doc); err != nil {
				t.Fatal(err)
			}
			if err := db.ten.Compact(name); err != nil {
				t.Fatal(err)
			}

			// The targets: every sample, the scrolls just before and
			// after it, the first and last scrolls, and coordinates
			// where no scroll is.
			order := slices.SortedFunc(maps.Keys(m), phext.Coordinate.Compare)
			pos := map[phext.Coordinate]int{}
			for i, c := range order {
				pos[c] = i
			}
			p, err := db.ten.reader(name)
			if err != nil {
				t.Fatal(err)
			}
			if !p.mapped || len(p.index.e) < 20 || len(p.index.e) >= len(order) {
				p.mu.RUnlock()
				t.Fatalf("mapped %v, %d samples of %d scrolls: not a sparse index of a snapshot", p.mapped, len(p.index.e), len(order))
			}
			var targets []phext.Coordinate
			for _, e := range p.index.e {
				i := pos[e.c]
				for _, j := range []int{i - 1, i, i + 1} {
					if j >= 0 && j < len(order) {
						targets = append(targets, order[j])
					}
				}
			}
			p.mu.RUnlock()
			targets = append(targets, order[0], order[len(order)-1], order[len(order)-2])
			first, last := order[0], order[len(order)-1]
			before, after := first, last
			before[8] = 1
			before[7]-- // 0 only if first's section is 1: then none before
			after[8]++
			if before.Valid() && before.Less(first) {
				targets = append(targets, before)
			}
			targets = append(targets, after, coord(999, 999, 999))
			for range 40 {
				c := order[rng.IntN(len(order))]
				c[8]++ // often between two scrolls
				targets = append(targets, c)
			}
			rng.Shuffle(len(targets), func(i, j int) { targets[i], targets[j] = targets[j], targets[i] })

			check := func(when string) {
				t.Helper()
				for _, c := range append(slices.Clone(order), targets...) {
					if got := mustSelect(t, db.ten, "d", c); got != m[c] {
						t.Fatalf("%s: select %v: %d bytes, want %d", when, c, len(got), len(m[c]))
					}
				}
				if got, want := mustGet(t, db.ten, "d"), m.doc(); got != want {
					t.Fatalf("%s: the document differs from the model (%d bytes, want %d)", when, len(got), len(want))
				}
				db.check()
			}
			// Deletes alternate between an event loop's (TryApply, when
			// it takes the write) and the worker's (Tenant.Delete).
			var r LoopRound
			r.SetLoop(1)
			dels, loopDels := 0, 0
			del := func(c phext.Coordinate) {
				t.Helper()
				dels++
				if dels%2 == 0 {
					w := Write{Kind: WriteDelete, Name: name, Coord: c}
					ok, _ := db.ten.TryApply(&r, &w)
					if err := r.Flush(); err != nil {
						t.Fatal(err)
					}
					if ok {
						loopDels++
						if w.Err != nil || w.N != len(m[c]) {
							t.Fatalf("loop delete %v: %d, %v; want %d", c, w.N, w.Err, len(m[c]))
						}
						delete(m, c)
						return
					}
				}
				n, err := db.ten.Delete(name, c)
				if err != nil || n != len(m[c]) {
					t.Fatalf("delete %v: %d, %v; want %d", c, n, err, len(m[c]))
				}
				delete(m, c)
			}
			step := func(i int, c phext.Coordinate) {
				t.Helper()
				del(c)
				switch i % 7 {
				case 1:
					del(c) // again: absent now
				case 3:
					if _, err := db.ten.Insert(name, c, []byte("re")); err != nil {
						t.Fatal(err)
					}
					m[c] = "re"
				case 5:
					if _, err := db.ten.Update(name, c, []byte("new")); err != nil {
						t.Fatal(err)
					}
					m[c] = "new"
					del(c)
				}
			}
			half := len(targets) / 2
			for i, c := range targets[:half] {
				step(i, c)
			}
			check("after the first deletes")

			// Deletes while a checkpoint writes the document out: of
			// scrolls the frozen overlay holds and of base scrolls.
			ran := false
			checkpointHook = func(p *pfile) {
				if p.t != db.ten || ran {
					return
				}
				ran = true
				for i, c := range targets[half : half+half/2] {
					step(i, c)
				}
				for i, c := range targets[:10] {
					step(i, c) // deleted, reinserted, or updated before the freeze
				}
				check("during the checkpoint")
			}
			defer func() { checkpointHook = nil }()
			if err := db.ten.Compact(name); err != nil {
				t.Fatal(err)
			}
			checkpointHook = nil
			if !ran {
				t.Fatal("the checkpoint hook never ran")
			}
			check("after the checkpoint")

			for i, c := range targets[half+half/2:] {
				step(i, c)
			}
			check("after the last deletes")
			t.Logf("%d deletes, %d on the loop", dels, loopDels)
			if loopDels == 0 {
				t.Fatal("no delete went through an event loop's TryApply")
			}

			// The log replayed over the checkpoint's snapshot.
			if err := db.ten.Sync(); err != nil {
				t.Fatal(err)
			}
			Crash(db.Store)
			db.open()
			check("after a crash")
			for _, c := range order[:5] {
				step(3, c)
			}
			db.MustReopen()
			check("after a reopen")
		})
	}
}
