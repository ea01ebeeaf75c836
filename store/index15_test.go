package store

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/phext/sq/phext"
)

// adversarialDocs (review15b) are documents at the edges of buildIndex's
// own walk: every part's overflow (999 breaks and one more, with and
// without text between, at the start and the end), breaks at every offset
// of the Scanner's 16-byte text step, control bytes that are not breaks,
// invalid UTF-8, and random strings of those.
func adversarialDocs(r *rand.Rand) [][]byte {
	var docs [][]byte
	for lv := range 9 {
		br := phext.BreakOf(lv)
		for _, extra := range []int{0, 1, 2} {
			for _, text := range [][]byte{nil, []byte("x")} {
				d := append([]byte(nil), text...)
				for range phext.MaxPart - 1 + extra {
					d = append(d, br)
				}
				docs = append(docs, d, append(slices.Clone(d), 'y'), append(append(slices.Clone(d), 'y'), phext.ScrollBreak, 'z'))
			}
		}
		// A higher break resets the lower parts: 998 of this level, a
		// higher one, 998 again, then text.
		if lv > 0 {
			var d []byte
			for range 2 {
				for range phext.MaxPart - 1 {
					d = append(d, br)
				}
				d = append(d, 'a', phext.BreakOf(lv-1))
			}
			docs = append(docs, append(d, 'b'))
		}
	}
	for off := range 40 {
		for _, b := range []byte{phext.ScrollBreak, phext.LibraryBreak, '\n', 0, 0x1e, 0x7f, 0xff} {
			d := slices.Repeat([]byte("abcdefgh"), 6)
			d[off] = b
			docs = append(docs, d, d[:off+1], d[off:])
		}
	}
	alphabet := []byte{'a', 'b', '\n', '\t', 0, 0x1b, 0x1e, 0x7f, 0x80, 0xc3, 0xff}
	for lv := range 9 {
		alphabet = append(alphabet, phext.BreakOf(lv))
	}
	for range 300 {
		d := make([]byte, r.IntN(200))
		for i := range d {
			d[i] = alphabet[r.IntN(len(alphabet))]
		}
		docs = append(docs, d)
	}
	return docs
}

// goldenDocs are the phext package's golden vectors: every buffer of
// buffers.jsonl and the large inputs.
func goldenDocs(t *testing.T) [][]byte {
	t.Helper()
	dir := filepath.Join("..", "phext", "testdata")
	f, err := os.Open(filepath.Join(dir, "buffers.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var v struct {
			Input struct {
				B64 *string `json:"b64"`
			} `json:"input"`
		}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		if v.Input.B64 == nil {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(*v.Input.B64)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	ins, err := filepath.Glob(filepath.Join(dir, "inputs", "*.phext"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ins {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	if len(docs) < 20 {
		t.Fatalf("%d golden buffers", len(docs))
	}
	return docs
}

// TestBuildIndexMatchesScanner (review15b, ca20560): buildIndex's own walk
// gives exactly the Scanner-based build's index (samples, counts) and
// error (offset and level of the overflow) for the golden vectors, the
// index tests' documents and adversarial ones, sized or not.
func TestBuildIndexMatchesScanner(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 2))
	docs := append(goldenDocs(t), indexDocs(r)...)
	docs = append(docs, adversarialDocs(r)...)
	var errs int
	for i, doc := range docs {
		want, werr := scannerIndex(doc)
		for _, n := range []int{0, int(want.scrolls)} {
			got, err := buildIndex(doc, n)
			if !reflect.DeepEqual(err, werr) {
				t.Fatalf("doc %d (%d bytes): error %#v, the Scanner's %#v", i, len(doc), err, werr)
			}
			if !slices.Equal(got.e, want.e) || got.scrolls != want.scrolls || got.bytes != want.bytes {
				t.Fatalf("doc %d (%d bytes, sized %d): index %d samples %d scrolls %d bytes, the Scanner's %d %d %d",
					i, len(doc), n, len(got.e), got.scrolls, got.bytes, len(want.e), want.scrolls, want.bytes)
			}
		}
		if werr != nil {
			errs++
			if !errors.Is(werr, phext.ErrOverflow) {
				t.Fatalf("doc %d: %v", i, werr)
			}
		}
	}
	if errs == 0 {
		t.Fatal("no document overflows")
	}
}

// TestMappedIndexMatchesScanner (review15b, ca20560): a document PUT, then
// held in a mapped snapshot after a checkpoint, after a clean reopen and
// after a kill -9 whose replay applies the PUT, is indexed as the
// Scanner-based build indexes it (the invariant check compares with
// scannerIndex) and reads back whole.
func TestMappedIndexMatchesScanner(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 3))
	var docs [][]byte
	for _, d := range append(goldenDocs(t), adversarialDocs(r)...) {
		if _, err := scannerIndex(d); err == nil && len(d) < 3<<20 && utf8.Valid(d) {
			docs = append(docs, d)
		}
	}
	db := MustOpen(t, nil)
	canon := func() []byte {
		t.Helper()
		// What a GET returns: the document as the store serializes it.
		got, err := db.ten.AppendGet(nil, []byte("d"))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	step := max(len(docs)/12, 1)
	for i := 0; i < len(docs); i += step {
		doc := docs[i]
		if _, err := db.ten.Put([]byte("d"), doc); err != nil {
			t.Fatalf("doc %d: put: %v", i, err)
		}
		want := canon()
		if err := db.ten.Compact([]byte("d")); err != nil {
			t.Fatalf("doc %d: compact: %v", i, err)
		}
		db.check()
		db.MustReopen()
		if got := canon(); string(got) != string(want) {
			t.Fatalf("doc %d: after a checkpoint and reopen: %q, want %q", i, got, want)
		}
		// Replay: the next document only in the log, then kill -9.
		next := docs[(i+3)%len(docs)]
		if _, err := db.ten.Put([]byte("d"), next); err != nil {
			t.Fatalf("doc %d: put: %v", i, err)
		}
		want = canon()
		nd := reopenCrashed(t, db)
		nd.check()
		got, err := nd.ten.AppendGet(nil, []byte("d"))
		if err != nil || string(got) != string(want) {
			t.Fatalf("doc %d: after kill -9 and replay: %q (%v), want %q", i, got, err, want)
		}
		if err := nd.ten.Compact([]byte("d")); err != nil {
			t.Fatal(err)
		}
		nd.check()
		if err := nd.Close(); err != nil {
			t.Fatal(err)
		}
		db.open()
		db.check()
	}
}
