package phext

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Golden vectors of libphext 0.3.0 + SQ 0.5.6; see testdata/README.md.

type blob struct {
	Len    int     `json:"len"`
	Sha256 string  `json:"sha256"`
	B64    *string `json:"b64"`
	File   string  `json:"file"`
}

type result struct {
	Ok             json.RawMessage `json:"ok"`
	Panic          *string         `json:"panic"`
	Nonterminating bool            `json:"nonterminating"`
}

func (r result) isOK() bool { return r.Ok != nil }

// entry is a [coordinate, blob] pair.
type entry struct {
	Coord string
	Blob  blob
}

func (e *entry) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if err := json.Unmarshal(raw[0], &e.Coord); err != nil {
		return err
	}
	return json.Unmarshal(raw[1], &e.Blob)
}

type coordObj struct {
	Display string   `json:"display"`
	Valid   bool     `json:"valid"`
	Fields  []uint64 `json:"fields"`
}

type bufferCase struct {
	ID         string `json:"id"`
	HashOnly   bool   `json:"hash_only"`
	Input      blob   `json:"input"`
	UTF8Valid  bool   `json:"utf8_valid"`
	LossyText  *blob  `json:"lossy_text"`
	Phokens    result `json:"phokens"`
	Explode    result `json:"explode"`
	MapLen     int    `json:"map_len"`
	TextMap    result `json:"textmap"`
	Checksum   result `json:"checksum"`
	Manifest   result `json:"manifest"`
	Index      result `json:"index"`
	Normalize  result `json:"normalize"`
	Implode    result `json:"implode"`
	ImplodeRef result `json:"implode_ref"`
	SQChecksum result `json:"sq_checksum"`
	TOC        result `json:"toc"`
	Delta      []struct {
		Name    string `json:"name"`
		Request blob   `json:"request"`
		Output  result `json:"output"`
	} `json:"delta"`
}

func loadJSONL[T any](t *testing.T, name string) []T {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no cases", name)
	}
	return out
}

// bytesOf returns the blob's bytes; ok is false for hash-only blobs.
func bytesOf(t *testing.T, b blob) ([]byte, bool) {
	t.Helper()
	if b.File != "" {
		d, err := os.ReadFile(filepath.Join("testdata", b.File))
		if err != nil {
			t.Fatal(err)
		}
		checkBlob(t, "file", d, b)
		return d, true
	}
	if b.B64 == nil {
		return nil, false
	}
	d, err := base64.StdEncoding.DecodeString(*b.B64)
	if err != nil {
		t.Fatal(err)
	}
	return d, true
}

// checkBlob compares got with want by bytes, or by len+sha256 when the
// blob is hash-only.
func checkBlob(t *testing.T, what string, got []byte, want blob) {
	t.Helper()
	if want.B64 != nil {
		w, _ := base64.StdEncoding.DecodeString(*want.B64)
		if !bytes.Equal(got, w) {
			t.Errorf("%s:\n got %q\nwant %q", what, trunc(got), trunc(w))
		}
		return
	}
	sum := sha256.Sum256(got)
	if len(got) != want.Len || hex.EncodeToString(sum[:]) != want.Sha256 {
		t.Errorf("%s: got len %d sha %x, want len %d sha %s", what, len(got), sum, want.Len, want.Sha256)
	}
}

func trunc(b []byte) []byte {
	if len(b) > 300 {
		return b[:300]
	}
	return b
}

func okBlob(t *testing.T, r result) blob {
	t.Helper()
	var b blob
	if err := json.Unmarshal(r.Ok, &b); err != nil {
		t.Fatal(err)
	}
	return b
}

func okEntries(t *testing.T, r result) []entry {
	t.Helper()
	var es []entry
	if err := json.Unmarshal(r.Ok, &es); err != nil {
		t.Fatal(err)
	}
	return es
}

func okString(t *testing.T, r result) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(r.Ok, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// displayCoord reads a Display string, which may hold 0 or parts > 999.
func displayCoord(t *testing.T, s string) Coordinate {
	t.Helper()
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '/' })
	if len(parts) != 9 {
		t.Fatalf("bad display %q", s)
	}
	var c Coordinate
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v > 65535 {
			t.Fatalf("bad display %q", s)
		}
		c[i] = uint16(v)
	}
	return c
}

// naiveOverflow walks buf byte by byte like the reference and returns the
// offset of the first break that would take a part past 999, or -1.
func naiveOverflow(buf []byte) int {
	var c [9]int
	for i := range c {
		c[i] = 1
	}
	for off, b := range buf {
		l := LevelOf(b)
		if l < 0 {
			continue
		}
		if c[l] >= 999 {
			return off
		}
		c[l]++
		for k := l + 1; k < 9; k++ {
			c[k] = 1
		}
	}
	return -1
}

// modelTOCLine is an independent statement of the summary rule, used where
// the reference panics: cut at 32 bytes, at '\n' or at a break, backing off
// to a character boundary.
func modelTOCLine(c string, text []byte) string {
	n := len(text)
	if i := bytes.IndexFunc(text, func(r rune) bool { return r == '\n' || (r < 0x20 && IsBreak(byte(r))) }); i >= 0 {
		n = i
	}
	if n > 32 {
		n = 32
		for n > 0 && !isBoundary(text, n) {
			n--
		}
	}
	s := "* " + c + ": " + string(text[:n])
	if n < len(text) {
		s += "..."
	}
	return s + "\n"
}

func isBoundary(b []byte, n int) bool { return n >= len(b) || b[n] < 0x80 || b[n] >= 0xC0 }

func expectOverflow(t *testing.T, what string, err error, at int) {
	t.Helper()
	var oe *OverflowError
	if !errors.Is(err, ErrOverflow) || !errors.As(err, &oe) {
		t.Errorf("%s: err = %v, want overflow", what, err)
		return
	}
	if oe.Offset != at {
		t.Errorf("%s: overflow offset %d, want %d", what, oe.Offset, at)
	}
}

func TestVectorsBuffers(t *testing.T) {
	cases := loadJSONL[bufferCase](t, "buffers.jsonl")
	if len(cases) != 69 {
		t.Fatalf("got %d buffer cases, want 69", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.ID, func(t *testing.T) {
			in, ok := bytesOf(t, tc.Input)
			if !ok {
				t.Fatalf("input has no bytes")
			}
			checkBlob(t, "input", in, tc.Input)
			x := in
			if !tc.UTF8Valid {
				x = LossyUTF8(in)
				checkBlob(t, "lossy_text", x, *tc.LossyText)
			} else if !bytes.Equal(LossyUTF8(in), in) {
				t.Errorf("LossyUTF8 changed valid input")
			}

			// The saturating tokenizer (used by Where) is the reference's.
			var toks []entry
			_ = phokens(x, true, func(c Coordinate, text []byte) {
				toks = append(toks, entry{Coord: c.String(), Blob: blob{Len: len(text)}})
				sum := sha256.Sum256(text)
				toks[len(toks)-1].Blob.Sha256 = hex.EncodeToString(sum[:])
			})
			want := okEntries(t, tc.Phokens)
			if len(toks) != len(want) {
				t.Fatalf("saturating phokens: %d tokens, want %d", len(toks), len(want))
			}
			for i := range want {
				if toks[i].Coord != want[i].Coord || toks[i].Blob.Len != want[i].Blob.Len || toks[i].Blob.Sha256 != want[i].Blob.Sha256 {
					t.Fatalf("saturating phoken %d: got %v want %v", i, toks[i], want[i])
				}
			}

			if got := Checksum(x); got != okString(t, tc.Checksum) {
				t.Errorf("Checksum = %s, want %s", got, okString(t, tc.Checksum))
			}

			if at := naiveOverflow(x); at >= 0 {
				// The reference saturates here; we refuse.
				_, err := Explode(x)
				expectOverflow(t, "Explode", err, at)
				_, err = Normalize(x)
				expectOverflow(t, "Normalize", err, at)
				_, err = TextMap(x)
				expectOverflow(t, "TextMap", err, at)
				_, err = Manifest(x)
				expectOverflow(t, "Manifest", err, at)
				_, err = Index(x)
				expectOverflow(t, "Index", err, at)
				return
			}

			// Explode = reference explode without its empty entries.
			scrolls, err := Explode(x)
			if err != nil {
				t.Fatal(err)
			}
			ex := okEntries(t, tc.Explode)
			if len(ex) != tc.MapLen {
				t.Fatalf("map_len %d != %d entries", tc.MapLen, len(ex))
			}
			var nonEmpty []entry
			for _, e := range ex {
				if e.Blob.Len > 0 {
					nonEmpty = append(nonEmpty, e)
				}
			}
			if len(scrolls) != len(nonEmpty) {
				t.Fatalf("Explode: %d scrolls, want %d", len(scrolls), len(nonEmpty))
			}
			for i, e := range nonEmpty {
				if scrolls[i].Coord.String() != e.Coord {
					t.Fatalf("scroll %d at %s, want %s", i, scrolls[i].Coord, e.Coord)
				}
				checkBlob(t, "scroll "+e.Coord, scrolls[i].Text, e.Blob)
				if i > 0 && !scrolls[i-1].Coord.Less(scrolls[i].Coord) {
					t.Fatalf("scrolls not strictly increasing at %d", i)
				}
			}

			// Select finds the scrolls (a sample of them:
			// each Select rescans the buffer).
			samples := 64
			if tc.HashOnly {
				samples = 4 // megabytes each; keep -race runs short
			}
			step := max(1, len(scrolls)/samples)
			for i, sc := range scrolls {
				if i%step != 0 && i != len(scrolls)-1 {
					continue
				}
				got, err := Select(x, sc.Coord)
				if err != nil || !bytes.Equal(got, sc.Text) {
					t.Fatalf("Select(%s) = %q, %v", sc.Coord, trunc(got), err)
				}
			}

			norm, err := Normalize(x)
			if err != nil {
				t.Fatal(err)
			}
			checkBlob(t, "Normalize", norm, okBlob(t, tc.Normalize))
			imp := Implode(scrolls)
			checkBlob(t, "Implode vs implode_ref", imp, okBlob(t, tc.ImplodeRef))
			checkBlob(t, "Implode vs implode", imp, okBlob(t, tc.Implode))
			if got := Checksum(imp); got != okString(t, tc.SQChecksum) {
				t.Errorf("sq_checksum = %s, want %s", got, okString(t, tc.SQChecksum))
			}
			man, err := Manifest(x)
			if err != nil {
				t.Fatal(err)
			}
			checkBlob(t, "Manifest", man, okBlob(t, tc.Manifest))
			idx, err := Index(x)
			if err != nil {
				t.Fatal(err)
			}
			checkBlob(t, "Index", idx, okBlob(t, tc.Index))

			tm, err := TextMap(x)
			if err != nil {
				t.Fatal(err)
			}
			toc := AppendTOC(nil, scrolls)
			if tc.TextMap.isOK() {
				checkBlob(t, "TextMap", tm, okBlob(t, tc.TextMap))
			} else {
				// Reference panics on a split character: check our rule.
				var model strings.Builder
				var s Scanner
				s.Reset(x)
				for s.Next() {
					model.WriteString(modelTOCLine(s.Coordinate().String(), s.Scroll()))
				}
				if c, ok := s.tail(); ok {
					model.WriteString(modelTOCLine(c.String(), nil))
				}
				if string(tm) != model.String() {
					t.Errorf("TextMap (reference panics) = %q, want %q", trunc(tm), trunc([]byte(model.String())))
				}
				if tc.TextMap.Panic == nil {
					t.Errorf("textmap: neither ok nor panic")
				}
			}
			if tc.TOC.isOK() {
				checkBlob(t, "TOC", toc, okBlob(t, tc.TOC))
			} else {
				var model strings.Builder
				for _, sc := range scrolls {
					model.WriteString(modelTOCLine(sc.Coord.String(), sc.Text))
				}
				if string(toc) != model.String() {
					t.Errorf("TOC (reference panics) = %q, want %q", trunc(toc), trunc([]byte(model.String())))
				}
			}
			if !utf8ValidLines(tm) || !utf8ValidLines(toc) {
				t.Errorf("TOC not valid UTF-8")
			}

			// SQ's in-memory map keeps the reference's empty token.
			all, err := ExplodeRef(x)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != len(ex) {
				t.Fatalf("ExplodeRef: %d entries, want %d", len(all), len(ex))
			}
			for i, e := range ex {
				if all[i].Coord.String() != e.Coord {
					t.Fatalf("ExplodeRef %d at %s, want %s", i, all[i].Coord, e.Coord)
				}
				checkBlob(t, "ExplodeRef "+e.Coord, all[i].Text, e.Blob)
			}
			if len(tc.Delta) != 4 {
				t.Fatalf("%d delta cases", len(tc.Delta))
			}
			for _, d := range tc.Delta {
				req, ok := bytesOf(t, d.Request)
				if !ok {
					t.Fatalf("delta %s: request has no bytes", d.Name)
				}
				got, err := Delta(all, req)
				if err != nil {
					t.Fatalf("Delta %s: %v", d.Name, err)
				}
				if d.Output.Nonterminating {
					// We skip the 1000 line: everything comes back.
					if !bytes.Equal(got, imp) {
						t.Errorf("Delta %s = %q, want the whole document", d.Name, trunc(got))
					}
					continue
				}
				checkBlob(t, "Delta "+d.Name, got, okBlob(t, d.Output))
			}
		})
	}
}

func utf8ValidLines(b []byte) bool { return string(LossyUTF8(b)) == string(b) }

type coordCase struct {
	ID        string  `json:"id"`
	Input     blob    `json:"input"`
	UTF8Valid bool    `json:"utf8_valid"`
	ToCoord   result  `json:"to_coordinate"`
	Checked   *result `json:"to_coordinate_overflow_checked"`
	TryFrom   struct {
		Ok *coordObj `json:"ok"`
	} `json:"try_from"`
}

var (
	strictRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+[/;][0-9]+\.[0-9]+\.[0-9]+[/;][0-9]+\.[0-9]+\.[0-9]+$`)
	looseRE  = regexp.MustCompile(`^[0-9]+([./;][0-9]+){8}$`)
)

// inRange reports whether every number in s is 1..999.
func inRange(s string) bool {
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		p = strings.TrimLeft(p, "0")
		if p == "" || len(p) > 3 {
			return false
		}
	}
	return true
}

func TestVectorsCoordinates(t *testing.T) {
	cases := loadJSONL[coordCase](t, "coordinates.jsonl")
	if len(cases) != 82 {
		t.Fatalf("got %d coordinate cases, want 82", len(cases))
	}
	var accepted []string
	for _, tc := range cases {
		t.Run(tc.ID, func(t *testing.T) {
			in, _ := bytesOf(t, tc.Input)
			var ref coordObj
			if err := json.Unmarshal(tc.ToCoord.Ok, &ref); err != nil {
				t.Fatal(err)
			}
			wantLoose := looseRE.Match(in) && inRange(string(in))
			wantStrict := strictRE.Match(in) && inRange(string(in))
			for _, p := range []struct {
				name  string
				parse func() (Coordinate, error)
				want  bool
			}{
				{name: "loose", parse: func() (Coordinate, error) { return ToCoordinateLoose(in) }, want: wantLoose},
				{name: "strict", parse: func() (Coordinate, error) { return ParseCoordinate(string(in)) }, want: wantStrict},
			} {
				c, err := p.parse()
				if (err == nil) != p.want {
					t.Fatalf("%s: err = %v, want accepted=%v", p.name, err, p.want)
				}
				if err != nil {
					if !errors.Is(err, ErrBadCoordinate) {
						t.Errorf("%s: error %v does not wrap ErrBadCoordinate", p.name, err)
					}
					continue
				}
				// Accepted text reads exactly as the reference reads it.
				if !ref.Valid || tc.Checked != nil || c.String() != ref.Display || !c.Valid() {
					t.Errorf("%s: got %s, reference %s (valid %v)", p.name, c, ref.Display, ref.Valid)
				}
				for i, f := range ref.Fields {
					if uint64(c[i]) != f {
						t.Errorf("%s: field %d = %d, want %d", p.name, i, c[i], f)
					}
				}
				if p.name == "strict" && tc.TryFrom.Ok != nil && tc.TryFrom.Ok.Display != c.String() {
					t.Errorf("strict: got %s, try_from %s", c, tc.TryFrom.Ok.Display)
				}
				if p.name == "strict" {
					accepted = append(accepted, tc.ID)
				}
			}
		})
	}
	// Guard the regexps themselves: these forms must be accepted.
	for _, id := range []string{"canonical-origin", "semicolons", "mixed-slash-semicolon", "leading-zeros", "all-999", "semicolon-url-form"} {
		if !slices.Contains(accepted, id) {
			t.Errorf("%s not accepted by ParseCoordinate", id)
		}
	}
}

type whereCase struct {
	ID       string `json:"id"`
	Input    blob   `json:"input"`
	Xor100   whereR `json:"xor_100"`
	Xor1     whereR `json:"xor_1"`
	Xor0     whereR `json:"xor_0"`
	Checksum whereR `json:"checksum"`
}

type whereR struct {
	Ok      coordObj `json:"ok"`
	Message string   `json:"message"`
}

func TestVectorsWhere(t *testing.T) {
	cases := loadJSONL[whereCase](t, "where.jsonl")
	if len(cases) != 21 {
		t.Fatalf("got %d where cases, want 21", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.ID, func(t *testing.T) {
			in, _ := bytesOf(t, tc.Input)
			for _, w := range []struct {
				algo  string
				limit int
				want  whereR
			}{
				{algo: "xor", limit: 100, want: tc.Xor100},
				{algo: "xor", limit: 1, want: tc.Xor1},
				{algo: "xor", limit: 0, want: tc.Xor0},
				{algo: "checksum", limit: 100, want: tc.Checksum},
			} {
				c, err := Where(in, w.algo, w.limit)
				if err != nil {
					t.Fatal(err)
				}
				if c.String() != w.want.Ok.Display {
					t.Errorf("%s/%d = %s, want %s", w.algo, w.limit, c, w.want.Ok.Display)
				}
				if c.Valid() != (w.want.Ok.Valid && !slices.Contains(w.want.Ok.Fields, 1000)) {
					t.Errorf("%s/%d: Valid = %v", w.algo, w.limit, c.Valid())
				}
				if got := WhereMessage(c, w.algo, w.limit); got != w.want.Message {
					t.Errorf("message %q, want %q", got, w.want.Message)
				}
			}
		})
	}
}

type mapCase struct {
	ID         string  `json:"id"`
	Map        []entry `json:"map"`
	Implode    result  `json:"implode"`
	ImplodeRef result  `json:"implode_ref"`
	Reexplode  result  `json:"reexplode_implode_ref"`
	TOC        result  `json:"toc"`
	SQChecksum result  `json:"sq_checksum"`
}

func TestVectorsMaps(t *testing.T) {
	cases := loadJSONL[mapCase](t, "maps.jsonl")
	if len(cases) != 16 {
		t.Fatalf("got %d map cases, want 16", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.ID, func(t *testing.T) {
			var m []Scroll
			allValid := true
			for _, e := range tc.Map {
				b, _ := bytesOf(t, e.Blob)
				c := displayCoord(t, e.Coord)
				allValid = allValid && c.Valid()
				m = append(m, Scroll{Coord: c, Text: b})
			}
			if !slices.IsSortedFunc(m, func(a, b Scroll) int { return a.Coord.Compare(b.Coord) }) {
				t.Fatal("map not sorted")
			}
			imp := Implode(m)
			checkBlob(t, "implode_ref", imp, okBlob(t, tc.ImplodeRef))
			if tc.Implode.isOK() && allValid && !slices.ContainsFunc(m, func(s Scroll) bool { return len(s.Text) == 0 }) {
				checkBlob(t, "implode", imp, okBlob(t, tc.Implode))
			}
			if got := Checksum(imp); got != okString(t, tc.SQChecksum) {
				t.Errorf("sq_checksum %s, want %s", got, okString(t, tc.SQChecksum))
			}
			if at := naiveOverflow(imp); at >= 0 {
				_, err := Explode(imp)
				expectOverflow(t, "Explode", err, at)
				_, err = TextMap(imp)
				expectOverflow(t, "TextMap", err, at)
				return
			}
			back, err := Explode(imp)
			if err != nil {
				t.Fatal(err)
			}
			var want []entry
			for _, e := range okEntries(t, tc.Reexplode) {
				if e.Blob.Len > 0 {
					want = append(want, e)
				}
			}
			if len(back) != len(want) {
				t.Fatalf("re-explode: %d scrolls, want %d", len(back), len(want))
			}
			for i := range want {
				if back[i].Coord.String() != want[i].Coord {
					t.Errorf("re-explode %d at %s, want %s", i, back[i].Coord, want[i].Coord)
				}
				checkBlob(t, "re-explode", back[i].Text, want[i].Blob)
			}
			tm, err := TextMap(imp)
			if err != nil {
				t.Fatal(err)
			}
			checkBlob(t, "toc", tm, okBlob(t, tc.TOC))
			if allValid && ValidScrolls(m) {
				checkBlob(t, "AppendTOC", AppendTOC(nil, m), okBlob(t, tc.TOC))
			}
		})
	}
}

// ValidScrolls reports whether every scroll text is ValidScroll.
func ValidScrolls(m []Scroll) bool {
	for _, s := range m {
		if !ValidScroll(s.Text) {
			return false
		}
	}
	return true
}
