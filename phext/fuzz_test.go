package phext

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedInputs returns the small inputs of a vectors file (b64 blobs under
// 8 KiB), for fuzz seeds.
func seedInputs(f *testing.F, name, field string) [][]byte {
	f.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(line, &rec); err != nil {
			f.Fatal(err)
		}
		var b blob
		if err := json.Unmarshal(rec[field], &b); err != nil || b.B64 == nil || b.Len > 8<<10 {
			continue
		}
		d, err := base64.StdEncoding.DecodeString(*b.B64)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// FuzzExplodeImplode checks, for any buffer: the scanner agrees with the
// naive overflow walk; Normalize = Implode(Explode(x)); that result is a
// fixed point of Implode∘Explode; and no view function panics.
func FuzzExplodeImplode(f *testing.F) {
	for _, s := range seedInputs(f, "buffers.jsonl", "input") {
		f.Add(s)
	}
	for _, s := range seedInputs(f, "where.jsonl", "input") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, x []byte) {
		scrolls, err := Explode(x)
		at := naiveOverflow(x)
		if at >= 0 {
			var oe *OverflowError
			if !errors.As(err, &oe) || oe.Offset != at {
				t.Fatalf("overflow at %d: err %v", at, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range scrolls {
			if len(scrolls[i].Text) == 0 || bytes.ContainsFunc(scrolls[i].Text, func(r rune) bool { return r < 0x20 && IsBreak(byte(r)) }) {
				t.Fatalf("scroll %d empty or holds a break", i)
			}
			if i > 0 && !scrolls[i-1].Coord.Less(scrolls[i].Coord) {
				t.Fatalf("not increasing at %d", i)
			}
			if !scrolls[i].Coord.Valid() {
				t.Fatalf("invalid coordinate %v", scrolls[i].Coord)
			}
		}
		imp := Implode(scrolls)
		norm, err := Normalize(x)
		if err != nil || !bytes.Equal(norm, imp) {
			t.Fatalf("Normalize %q != Implode %q (%v)", norm, imp, err)
		}
		again, err := Explode(imp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(Implode(again), imp) {
			t.Fatal("implode(explode(x)) is not a fixed point")
		}
		if _, err := TextMap(x); err != nil {
			t.Fatal(err)
		}
		if _, err := Manifest(x); err != nil {
			t.Fatal(err)
		}
		if _, err := Index(x); err != nil {
			t.Fatal(err)
		}
		_ = AppendTOC(nil, scrolls)
		if _, err := Where(x, "xor", 1); err != nil {
			t.Fatal(err)
		}
		if len(scrolls) > 0 {
			if got, err := Select(x, scrolls[len(scrolls)/2].Coord); err != nil || !bytes.Equal(got, scrolls[len(scrolls)/2].Text) {
				t.Fatalf("Select: %q %v", got, err)
			}
		}
	})
}

// FuzzImplodeExplode builds a valid map from the fuzz input (a break byte
// moves to a later coordinate, other bytes are text; empty scrolls drop)
// and checks explode(implode(m)) == m, including at scroll 999.
func FuzzImplodeExplode(f *testing.F) {
	f.Add([]byte("a\x17b\x01c"), uint16(1))
	f.Add([]byte("x\x18\x18y\x1fz"), uint16(997))
	f.Add([]byte(""), uint16(999))
	f.Fuzz(func(t *testing.T, spec []byte, jump uint16) {
		var m []Scroll
		c := Origin
		c[LevelScroll] = 1 + jump%MaxPart
		var text []byte
		for _, b := range spec {
			l := LevelOf(b)
			if l < 0 {
				text = append(text, b)
				continue
			}
			if len(text) > 0 {
				m = append(m, Scroll{Coord: c, Text: text})
				text = nil
			}
			if !c.Advance(l) {
				break
			}
		}
		if len(text) > 0 {
			m = append(m, Scroll{Coord: c, Text: text})
		}
		doc := Implode(m)
		back, err := Explode(doc)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(m) {
			t.Fatalf("%d scrolls back, want %d", len(back), len(m))
		}
		for i := range m {
			if back[i].Coord != m[i].Coord || !bytes.Equal(back[i].Text, m[i].Text) {
				t.Fatalf("scroll %d: got %v %q want %v %q", i, back[i].Coord, back[i].Text, m[i].Coord, m[i].Text)
			}
		}
	})
}

// refToCoordinate is the reference's to_coordinate (release build: u32
// wrap-around), restated for the fuzz comparison.
func refToCoordinate(s []byte) [9]uint32 {
	c := [9]uint32{1, 1, 1, 1, 1, 1, 1, 1, 1}
	index, value, seen := 0, uint32(0), false
	for _, b := range s {
		switch {
		case b == '.' || b == '/' || b == ';':
			if index >= 1 && index <= 8 {
				c[index-1] = value
				index++
			}
			value = 0
		case b >= '0' && b <= '9':
			value = value*10 + uint32(b-'0')
			seen = true
			if index == 0 {
				index = 1
			}
		}
	}
	if seen {
		c[8] = value
	}
	return c
}

// FuzzParseCoordinate checks that whatever the parsers accept reads as the
// reference reads it, is valid, and round-trips through String.
func FuzzParseCoordinate(f *testing.F) {
	for _, s := range seedInputs(f, "coordinates.jsonl", "input") {
		f.Add(string(s))
	}
	f.Fuzz(func(t *testing.T, s string) {
		loose, lerr := ToCoordinateLoose([]byte(s))
		strict, serr := ParseCoordinate(s)
		if serr == nil && (lerr != nil || loose != strict) {
			t.Fatalf("strict accepts %q but loose gives %v %v", s, loose, lerr)
		}
		if lerr != nil {
			if !errors.Is(lerr, ErrBadCoordinate) {
				t.Fatalf("error %v not ErrBadCoordinate", lerr)
			}
			return
		}
		if !loose.Valid() {
			t.Fatalf("accepted invalid %v", loose)
		}
		ref := refToCoordinate([]byte(s))
		for i := range ref {
			if uint32(loose[i]) != ref[i] {
				t.Fatalf("%q: got %v, reference %v", s, loose, ref)
			}
		}
		if back, err := ParseCoordinate(loose.String()); err != nil || back != loose {
			t.Fatalf("round trip %v: %v %v", loose, back, err)
		}
		if strings.Count(s, ".") < 2 && serr == nil {
			t.Fatalf("strict accepted %q with too few dots", s)
		}
	})
}

// FuzzDelta runs Delta on a fuzzed document and request: it must not fail,
// and its output must read back as scrolls of the document or markers.
func FuzzDelta(f *testing.F) {
	f.Add([]byte("a\x17b"), []byte("1.1.1/1.1.1/1.1.1: 00\n1.1.1/1.1.1/1.1.5: x"))
	f.Add([]byte(""), []byte("* 2.1.1;1.1.1;1.1.1: 99aa06d3014798d86001c324468d497f\r\n"))
	f.Fuzz(func(t *testing.T, doc, req []byte) {
		scrolls, err := Explode(doc)
		if err != nil {
			return
		}
		out, err := Delta(scrolls, req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Explode(out)
		if err != nil {
			t.Fatalf("delta output does not explode: %v", err)
		}
		for _, s := range back {
			if string(s.Text) == MissingMarker {
				continue
			}
			if got, _ := Select(doc, s.Coord); !bytes.Equal(got, s.Text) {
				t.Fatalf("delta scroll at %v not from the document", s.Coord)
			}
		}
	})
}
