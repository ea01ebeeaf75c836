package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/phext/sq/phext"
)

// readModel is what the store must answer for a phext: its non-empty
// scrolls by coordinate, kept as a plain map (no index).
type readModel map[phext.Coordinate][]byte

func modelOf(doc []byte) readModel {
	m := readModel{}
	scrolls, _ := phext.Explode(doc)
	for _, s := range scrolls {
		m[s.Coord] = bytes.Clone(s.Text)
	}
	return m
}

func (m readModel) scrolls() []phext.Scroll {
	var out []phext.Scroll
	for c, v := range m {
		if len(v) > 0 {
			out = append(out, phext.Scroll{Coord: c, Text: v})
		}
	}
	slices.SortFunc(out, func(a, b phext.Scroll) int { return a.Coord.Compare(b.Coord) })
	return out
}

// probes are the coordinates a read is checked at: every scroll of m,
// their neighbours at every level (the same scroll number in the section,
// chapter … library before and after) and the extremes.
func (m readModel) probes() []phext.Coordinate {
	var max999 phext.Coordinate
	for i := range max999 {
		max999[i] = phext.MaxPart
	}
	out := []phext.Coordinate{phext.Origin, max999}
	for c := range m {
		out = append(out, c)
		for lv := range 9 {
			for _, d := range []int{-1, 1} {
				q := c
				q[lv] = uint16(int(q[lv]) + d)
				if q.Valid() {
					out = append(out, q)
				}
			}
		}
	}
	slices.SortFunc(out, phext.Coordinate.Compare)
	return slices.Compact(out)
}

// checkReads compares SELECT (both paths), GET, TOC, CHECKSUM and an
// empty DELTA of the phext with what m gives through the phext package.
func checkReads(t *testing.T, ten *Tenant, name []byte, m readModel, step string) {
	t.Helper()
	want := phext.Implode(m.scrolls())
	got, err := ten.AppendGet(nil, name)
	if err != nil {
		t.Fatalf("%s: get: %v", step, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: get differs: %s", step, firstDiff(got, want))
	}
	for i, c := range m.probes() {
		got, err := ten.AppendSelect(nil, name, c)
		if err != nil {
			t.Fatalf("%s: select %s: %v", step, c, err)
		}
		if !bytes.Equal(got, m[c]) {
			t.Fatalf("%s: select %s: %s", step, c, firstDiff(got, m[c]))
		}
		if got, ok := ten.TryAppendSelect(nil, name, c, 1<<30); ok && !bytes.Equal(got, m[c]) {
			t.Fatalf("%s: fast select %s: %s", step, c, firstDiff(got, m[c]))
		}
		if len(want) > 1024 && i%32 != 0 {
			continue // phext.Select scans from the start: sample it
		}
		if ref, _ := phext.Select(want, c); !bytes.Equal(ref, m[c]) {
			t.Fatalf("%s: phext.Select of GET %s: %s", step, c, firstDiff(ref, m[c]))
		}
	}
	wantTOC, err := phext.TextMap(want)
	if err == nil {
		if got, err := ten.AppendTOC(nil, name); err != nil || !bytes.Equal(got, wantTOC) {
			t.Fatalf("%s: toc (%v): %s", step, err, firstDiff(got, wantTOC))
		}
	}
	if got, err := ten.AppendChecksum(nil, name); err != nil || string(got) != phext.Checksum(want) {
		t.Fatalf("%s: checksum %s (%v), want %s", step, got, err, phext.Checksum(want))
	}
	wantDelta, _ := phext.Delta(m.scrolls(), nil)
	if got, err := ten.AppendDelta(nil, name, nil); err != nil || !bytes.Equal(got, wantDelta) {
		t.Fatalf("%s: delta (%v): %s", step, err, firstDiff(got, wantDelta))
	}
	n := 0
	err = ten.Walk(name, func(c phext.Coordinate, text []byte) error {
		if !bytes.Equal(text, m[c]) {
			t.Fatalf("%s: walk %s: %s", step, c, firstDiff(text, m[c]))
		}
		n++
		return nil
	})
	if err != nil || n != len(m.scrolls()) {
		t.Fatalf("%s: walk %d scrolls (%v), want %d", step, n, err, len(m.scrolls()))
	}
}

// storeReadsRun puts doc, then applies ops (4 bytes each: kind, probe,
// length, byte) and checks every read after each step against a plain
// map of the scrolls: the sparse index, the overlay, checkpoints
// (compactions), reopens (a snapshot indexed by a fresh mapping) and
// Puts must answer alike.
func storeReadsRun(t *testing.T, db *testDB, doc, ops []byte) bool {
	ten, name := db.ten, []byte("r")
	if _, err := ten.Put(name, doc); err != nil {
		return false
	}
	m := modelOf(doc)
	checkReads(t, ten, name, m, "put")
	for i := 0; i+4 <= len(ops) && i < 4*24; i += 4 {
		kind, pi, l, b := ops[i]%8, int(ops[i+1]), int(ops[i+2]), 'a'+ops[i+3]%26
		probes := m.probes()
		c := probes[pi%len(probes)]
		text := bytes.Repeat([]byte{b}, l%4*(1+l/4*40)) // 0..~1.3 KB
		var err error
		switch kind {
		case 0:
			if _, err = ten.Insert(name, c, text); err == nil {
				m[c] = append(bytes.Clone(m[c]), text...)
			}
		case 1:
			if _, err = ten.Update(name, c, text); err == nil {
				m[c] = text
			}
		case 2:
			if _, err = ten.Delete(name, c); err == nil {
				delete(m, c)
			}
		case 3, 4:
			err = ten.Compact(name)
		case 5:
			db.MustReopen()
			ten = db.ten
		case 6:
			// Put what GET returns with breaks around: the same scrolls.
			d, _ := ten.AppendGet(nil, name)
			d = append(append([]byte{}, d...), bytes.Repeat([]byte{phext.BreakOf(int(ops[i+3]) % 9)}, l%3)...)
			if _, err = ten.Put(name, d); err == nil {
				m = modelOf(d)
			}
		default:
			d := slices.Concat(doc[:min(len(doc), l*8)], []byte{phext.ScrollBreak}, text)
			if _, err = ten.Put(name, d); err == nil {
				m = modelOf(d)
			}
		}
		if err != nil && kind < 6 {
			t.Fatalf("op %d (kind %d at %s): %v", i/4, kind, c, err)
		}
		for k, v := range m {
			if len(v) == 0 {
				delete(m, k)
			}
		}
		checkReads(t, ten, name, m, "op "+string(rune('0'+kind)))
	}
	return true
}

// TestStoreReadsMatchModel runs storeReadsRun over the index test's
// documents (every sample rule, both sides) with random ops.
func TestStoreReadsMatchModel(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 5))
	db := MustOpen(t, &Options{Durability: DurabilityNo, FS: noSyncFS{}, CompactMinWAL: 1 << 40})
	for _, d := range append(indexDocs(r), edgeDocs()...) {
		ops := make([]byte, 4*16)
		for i := range ops {
			ops[i] = byte(r.IntN(256))
		}
		if !storeReadsRun(t, db, d, ops) {
			t.Fatalf("put of %d bytes refused", len(d))
		}
	}
}

// FuzzStoreReads: any document and any sequence of writes, compactions,
// reopens and Puts reads back as a plain map of its scrolls says.
func FuzzStoreReads(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, d := range append(indexDocs(r), edgeDocs()...) {
		if len(d) > 2048 {
			continue
		}
		ops := make([]byte, 4*8)
		for i := range ops {
			ops[i] = byte(r.IntN(256))
		}
		f.Add(d, ops)
	}
	f.Fuzz(func(t *testing.T, doc, ops []byte) {
		if len(doc) > 2048 || len(ops) > 4*8 {
			return // each input must run in well under a second
		}
		db := MustOpen(t, &Options{Durability: DurabilityNo, FS: noSyncFS{}, CompactMinWAL: 1 << 40})
		storeReadsRun(t, db, doc, ops)
	})
}

// firstDiff describes where got and want part (short, for long documents).
func firstDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("%d bytes, want %d; first difference at %d: %q vs %q", len(got), len(want), i, got[i:min(len(got), i+16)], want[i:min(len(want), i+16)])
}

// TestSparseLookupAllocatesNothing: a SELECT that scans from a sample to
// its scroll (and one that finds nothing) allocates nothing, from a Put's
// document and from a mapped snapshot, on both read paths.
func TestSparseLookupAllocatesNothing(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityEverySec, CompactMinWAL: 1 << 40})
	ten, name := db.ten, []byte("tiny")
	if _, err := ten.Put(name, tinyDoc('x', 3000)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 64)
	for _, stage := range []string{"put", "mapped"} {
		if stage == "mapped" {
			if err := ten.Compact(name); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []phext.Coordinate{coord(1, 15), coord(2, 999), coord(3, 999)} {
			if a := testing.AllocsPerRun(100, func() { buf, _ = ten.AppendSelect(buf[:0], name, c) }); a != 0 {
				t.Errorf("%s: AppendSelect %s: %v allocs", stage, c, a)
			}
			if a := testing.AllocsPerRun(100, func() { buf, _ = ten.TryAppendSelect(buf[:0], name, c, 100) }); a != 0 {
				t.Errorf("%s: TryAppendSelect %s: %v allocs", stage, c, a)
			}
		}
	}
}

// edgeDocs: the largest coordinate, full sections across chapters, scrolls
// ending exactly sampleBytes and sampleBytes+1 after a sample, leading
// breaks of every level and documents ending in runs of breaks.
func edgeDocs() [][]byte {
	var top []byte
	for lv := range 9 {
		top = append(top, bytes.Repeat([]byte{phext.BreakOf(lv)}, phext.MaxPart-1)...)
	}
	docs := [][]byte{
		append(slices.Clone(top), 'z'),
		append(append([]byte("a\x17"), top[:len(top)-1]...), "zz\x17"...),
		tinyDoc('t', 2*999+5),
		append(tinyDoc('e', 40), bytes.Repeat([]byte{phext.ScrollBreak}, 600)...),
	}
	for _, l := range []int{sampleBytes - 2, sampleBytes - 1, sampleBytes, sampleBytes + 1} {
		// A sample "a", then a scroll ending l bytes after it, then more.
		d := []byte("a\x17")
		d = append(d, bytes.Repeat([]byte{'b'}, l-1)...)
		for i := range 20 {
			d = append(d, phext.ScrollBreak, 'c'+byte(i%20))
		}
		docs = append(docs, d)
	}
	for lv := range 9 {
		b := phext.BreakOf(lv)
		docs = append(docs, []byte{b, 'x', b, b, 'y', b, b, b})
	}
	return docs
}

// TestReadChangesSparsePut: the changes read back after Puts of documents
// whose index is sparse (one-byte scrolls, scrolls around sampleBytes,
// runs of breaks) are those published: the Put's serialized document and
// checksum (docChange walks the logged document's index) and inserts onto
// unsampled scrolls of it (derived forwards from the Put's scrolls).
func TestReadChangesSparsePut(t *testing.T) {
	_, ten, f, head := watchedTenant(t)
	name := []byte("n")
	mustOK := mustWrite(t)
	for i, d := range append([][]byte{tinyDoc('x', 1200)}, edgeDocs()[2:]...) {
		mustOK(ten.Put(name, d))
		m := modelOf(d)
		pub := f.of("n")
		if g, want := pub[len(pub)-1], phext.Implode(m.scrolls()); g.Op != ChangePut || !bytes.Equal(g.Text, want) || string(g.Sum[:]) != phext.Checksum(want) {
			t.Fatalf("doc %d: put change %d: %s", i, g.Op, firstDiff(g.Text, want))
		}
		probes := m.probes()
		for j := 0; j < len(probes); j += 1 + len(probes)/7 {
			mustOK(ten.Insert(name, probes[j], []byte{'A' + byte(i%26)}))
		}
		mustOK(ten.Delete(name, probes[len(probes)/2]))
	}
	all := f.of("n")
	checkReadChanges(t, ten, "n", head, all)
	for i := range all {
		if all[i].Op == ChangePut {
			checkReadChanges(t, ten, "n", all[i].Pos, all[i+1:])
		}
	}
}

// TestKeptIndexWhileWriting (run it under -race): the first compaction
// after a Put (which keeps the Put's index when nothing was written since)
// races inserts onto unsampled scrolls of the Put's document and readers
// of them. A reader never sees a scroll shrink, and at the end every
// scroll holds its writer's inserts, also after a reopen.
func TestKeptIndexWhileWriting(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo, FS: noSyncFS{}, CompactMinWAL: 1 << 40})
	ten, name := db.ten, []byte("k")
	const writers, rounds = 3, 6
	// Writer w appends to scrolls 2+w, 20+w, 40+w of section 1: none is
	// the document's first scroll, most are unsampled.
	cs := func(w int) []phext.Coordinate {
		return []phext.Coordinate{coord(1, uint16(2+w)), coord(1, uint16(20+w)), coord(1, uint16(40+w))}
	}
	for round := range rounds {
		if _, err := ten.Put(name, tinyDoc('x', 100)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var stop atomic.Bool
		errs := make(chan error, writers+2)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					for _, c := range cs(w) {
						if _, err := ten.Insert(name, c, []byte("w")); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
		var rg sync.WaitGroup
		rg.Add(1)
		go func() {
			defer rg.Done()
			last := map[phext.Coordinate]int{}
			var buf []byte
			for !stop.Load() {
				for w := range writers {
					for _, c := range cs(w) {
						var err error
						if buf, err = ten.AppendSelect(buf[:0], name, c); err != nil {
							errs <- err
							return
						}
						if len(buf) < last[c] || buf[0] != 'x' || bytes.Count(buf, []byte("w")) != len(buf)-1 {
							errs <- fmt.Errorf("round %d: SELECT %s = %q after %d bytes", round, c, buf, last[c])
							return
						}
						last[c] = len(buf)
					}
				}
			}
		}()
		if round%2 == 0 {
			// The compaction may start before any insert: then it keeps
			// the Put's index, while the inserts go to the new overlay.
			if err := ten.Compact(name); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		if err := ten.Compact(name); err != nil {
			t.Fatal(err)
		}
		stop.Store(true)
		rg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if round == rounds-1 {
			db.MustReopen()
			ten = db.ten
		}
		want := modelOf(tinyDoc('x', 100))
		for w := range writers {
			for _, c := range cs(w) {
				want[c] = append([]byte("x"), bytes.Repeat([]byte("w"), 20)...)
			}
		}
		checkReads(t, ten, name, want, fmt.Sprintf("round %d", round))
	}
}

// FuzzIndexProbes: the sparse index's find agrees with a full scan
// (Explode, and phext.Select at some) at every scroll of any document, at each scroll's
// neighbours on every level and at the extremes; walk yields Explode.
func FuzzIndexProbes(f *testing.F) {
	for _, d := range append(indexDocs(rand.New(rand.NewPCG(3, 4))), edgeDocs()...) {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		x, err := buildIndex(doc, 0)
		if err != nil {
			return
		}
		want, _ := phext.Explode(doc)
		i := 0
		x.walk(doc, func(c phext.Coordinate, text []byte) {
			if i >= len(want) || want[i].Coord != c || !bytes.Equal(want[i].Text, text) {
				t.Fatalf("walk differs at scroll %d (%s)", i, c)
			}
			i++
		})
		if i != len(want) {
			t.Fatalf("walk yields %d scrolls, Explode %d", i, len(want))
		}
		m := modelOf(doc) // a full scan, once
		for i, c := range m.probes() {
			ref := m[c]
			if i%64 == 0 {
				ref, _ = phext.Select(doc, c) // the same, from a scan of its own
			}
			if got := x.find(doc, c); !bytes.Equal(got, ref) || (got == nil) != (ref == nil) {
				t.Fatalf("find %s = %q, full scan %q", c, got, ref)
			}
		}
	})
}

// TestReplaySparsePut: after a crash (kill -9: the Put and the inserts
// after it are in the log only) the store replays what was acknowledged:
// the Put's document indexed afresh by apply, the inserts onto its
// unsampled scrolls on top.
func TestReplaySparsePut(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo, FS: noSyncFS{}, CompactMinWAL: 1 << 40})
	name := []byte("crash")
	for i, d := range append([][]byte{tinyDoc('x', 1500)}, edgeDocs()...) {
		ten := db.ten
		if _, err := ten.Put(name, d); err != nil {
			t.Fatal(err)
		}
		m := modelOf(d)
		probes := m.probes()
		for j := 0; j < len(probes); j += 1 + len(probes)/11 {
			c := probes[j]
			if _, err := ten.Insert(name, c, []byte{'A' + byte(i%26)}); err != nil {
				t.Fatal(err)
			}
			m[c] = append(bytes.Clone(m[c]), 'A'+byte(i%26))
		}
		if err := ten.Sync(); err != nil {
			t.Fatal(err)
		}
		Crash(db.Store)
		db.open()
		checkReads(t, db.ten, name, m, fmt.Sprintf("doc %d replayed", i))
	}
}

// TestVectorsSelect puts every reference buffer the store accepts, the
// three large ones included (about 2,000 scrolls around 500 bytes: both
// sides of sampleBytes), and checks SELECT at every coordinate of the
// reference's explode (and each one's neighbours: empty unless in it),
// GET and CHECKSUM (implode_ref, sq_checksum): after the Put (its heap
// index), after a compaction (the Put's index kept) and after a reopen (a
// fresh index of the mapping).
func TestVectorsSelect(t *testing.T) {
	f, err := os.Open("../phext/testdata/buffers.jsonl")
	if err != nil {
		t.Skip("no vectors:", err)
	}
	defer f.Close()
	type hblob struct {
		Len    int    `json:"len"`
		SHA256 string `json:"sha256"`
		B64    string `json:"b64"`
		File   string `json:"file"`
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	db := MustOpen(t, &Options{Durability: DurabilityNo, FS: noSyncFS{}, CompactMinWAL: 1 << 40})
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	checked, large := 0, 0
	for sc.Scan() {
		var v struct {
			ID         string                            `json:"id"`
			Input      hblob                             `json:"input"`
			UTF8       bool                              `json:"utf8_valid"`
			Explode    struct{ OK [][2]json.RawMessage } `json:"explode"`
			ImplodeRef struct{ OK *hblob }               `json:"implode_ref"`
			SQChecksum struct{ OK string }               `json:"sq_checksum"`
		}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		if !v.UTF8 || v.Explode.OK == nil || v.ImplodeRef.OK == nil {
			continue
		}
		in, _ := base64.StdEncoding.DecodeString(v.Input.B64)
		if v.Input.File != "" {
			if in, err = os.ReadFile(filepath.Join("../phext/testdata", v.Input.File)); err != nil {
				t.Fatal(err)
			}
		}
		if sum(in) != v.Input.SHA256 {
			t.Fatalf("%s: input does not match its sha256", v.ID)
		}
		name := []byte("v")
		if _, err := db.ten.Put(name, in); err != nil {
			if errors.Is(err, ErrOverflow) {
				continue // a saturating input: refused
			}
			t.Fatalf("%s: %v", v.ID, err)
		}
		want := map[phext.Coordinate]hblob{}
		for _, e := range v.Explode.OK {
			var cs string
			var b hblob
			json.Unmarshal(e[0], &cs)
			json.Unmarshal(e[1], &b)
			c, err := phext.ParseCoordinate(cs)
			if err != nil {
				t.Fatalf("%s: %s: %v", v.ID, cs, err)
			}
			if b.Len > 0 {
				want[c] = b
			}
		}
		for _, stage := range []string{"put", "compacted", "reopened"} {
			switch stage {
			case "compacted":
				if err := db.ten.Compact(name); err != nil {
					t.Fatal(err)
				}
			case "reopened":
				db.MustReopen()
			}
			ten := db.ten
			got, err := ten.AppendGet(nil, name)
			if err != nil || len(got) != v.ImplodeRef.OK.Len || sum(got) != v.ImplodeRef.OK.SHA256 {
				t.Fatalf("%s %s: GET %d bytes (%v), want implode_ref's %d", v.ID, stage, len(got), err, v.ImplodeRef.OK.Len)
			}
			if got, err := ten.AppendChecksum(nil, name); err != nil || string(got) != v.SQChecksum.OK {
				t.Fatalf("%s %s: CHECKSUM %s (%v), want %s", v.ID, stage, got, err, v.SQChecksum.OK)
			}
			probes := readModel{}
			for c := range want {
				probes[c] = nil
			}
			for _, c := range probes.probes() {
				got, err := ten.AppendSelect(nil, name, c)
				w, ok := want[c]
				if err != nil || (ok && (len(got) != w.Len || sum(got) != w.SHA256)) || (!ok && len(got) != 0) {
					t.Fatalf("%s %s: SELECT %s: %d bytes (%v), want %d", v.ID, stage, c, len(got), err, w.Len)
				}
			}
		}
		checked++
		if v.Input.File != "" {
			large++
		}
	}
	if checked < 40 || large != 3 {
		t.Errorf("%d vectors checked (%d large), want at least 40 (3)", checked, large)
	}
}

// TestCheckpointAfterNoopWrites: writes after a Put that change nothing
// (an empty insert, an update to the same text, a delete of an empty
// scroll, an update then a delete of a scroll the Put left empty) leave
// the first compaction's index that of its snapshot, whether it keeps
// the Put's index or builds one.
func TestCheckpointAfterNoopWrites(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo, FS: noSyncFS{}, CompactMinWAL: 1 << 40})
	ten, name := db.ten, []byte("noop")
	doc := append(tinyDoc('x', 100), "\x17\x17\x18"...)
	unsampled := coord(1, 7)
	for i, write := range []func() error{
		func() error { _, err := ten.Insert(name, unsampled, nil); return err },
		func() error { _, err := ten.Update(name, unsampled, []byte("x")); return err },
		func() error { _, err := ten.Delete(name, coord(1, 500)); return err },
		func() error {
			if _, err := ten.Update(name, coord(1, 500), []byte("y")); err != nil {
				return err
			}
			_, err := ten.Delete(name, coord(1, 500))
			return err
		},
	} {
		if _, err := ten.Put(name, doc); err != nil {
			t.Fatal(err)
		}
		if err := write(); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if err := ten.Compact(name); err != nil {
			t.Fatal(err)
		}
		checkPfile(t, ten.files[string(name)])
		checkReads(t, ten, name, modelOf(doc), fmt.Sprintf("write %d", i))
	}
	db.MustReopen()
	checkReads(t, db.ten, name, modelOf(doc), "reopened")
}
