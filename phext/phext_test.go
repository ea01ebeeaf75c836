package phext

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestParseCoordinate(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   Coordinate
		strict bool // accepted by ParseCoordinate
		loose  bool // accepted by ToCoordinateLoose
	}{
		{name: "origin", in: "1.1.1/1.1.1/1.1.1", want: Origin, strict: true, loose: true},
		{name: "canonical", in: "9.8.7/6.5.4/3.2.1", want: Coordinate{9, 8, 7, 6, 5, 4, 3, 2, 1}, strict: true, loose: true},
		{name: "url form", in: "1.2.3;4.5.6;7.8.9", want: Coordinate{1, 2, 3, 4, 5, 6, 7, 8, 9}, strict: true, loose: true},
		{name: "mixed arms", in: "1.2.3;4.5.6/7.8.9", want: Coordinate{1, 2, 3, 4, 5, 6, 7, 8, 9}, strict: true, loose: true},
		{name: "max", in: "999.999.999/999.999.999/999.999.999", want: Coordinate{999, 999, 999, 999, 999, 999, 999, 999, 999}, strict: true, loose: true},
		{name: "leading zeros", in: "01.001.0001/1.1.1/1.1.1", want: Origin, strict: true, loose: true},
		{name: "all dots", in: "1.2.3.4.5.6.7.8.9", want: Coordinate{1, 2, 3, 4, 5, 6, 7, 8, 9}, loose: true},
		{name: "all slashes", in: "1/2/3/4/5/6/7/8/9", want: Coordinate{1, 2, 3, 4, 5, 6, 7, 8, 9}, loose: true},
		{name: "empty", in: ""},
		{name: "word", in: "HOME"},
		{name: "single number", in: "5"},
		{name: "eight parts", in: "1.2.3/4.5.6/7.8"},
		{name: "ten parts", in: "1.2.3/4.5.6/7.8.9/10"},
		{name: "zero", in: "1.1.1/1.1.1/1.1.0"},
		{name: "zeros", in: "0.0.0/0.0.0/0.0.0"},
		{name: "1000", in: "1.1.1/1.1.1/1.1.1000"},
		{name: "u32 wrap to 1", in: "1.1.1/1.1.1/1.1.4294967297"},
		{name: "trailing slash", in: "1.2.3/4.5.6/7.8.9/"},
		{name: "leading slash", in: "/1.2.3/4.5.6/7.8.9"},
		{name: "empty part", in: "1..3/4.5.6/7.8.9"},
		{name: "space", in: " 1.1.1/1.1.1/1.1.1"},
		{name: "plus", in: "+1.2.3/4.5.6/7.8.9"},
		{name: "dashes", in: "1-2-3/4-5-6/7-8-9"},
		{name: "percent", in: "1.2.3%2F4.5.6%2F7.8.9"},
		{name: "toc line", in: "* 1.2.3/4.5.6/7.8.9: x"},
		{name: "nul", in: "1.2.3/4.5.6/7.8.9\x00"},
		{name: "fullwidth", in: "１.２.３/４.５.６/７.８.９"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range []struct {
				name string
				ok   bool
				fn   func() (Coordinate, error)
			}{
				{name: "strict", ok: tt.strict, fn: func() (Coordinate, error) { return ParseCoordinate(tt.in) }},
				{name: "loose", ok: tt.loose, fn: func() (Coordinate, error) { return ToCoordinateLoose([]byte(tt.in)) }},
			} {
				c, err := p.fn()
				if p.ok {
					if err != nil || c != tt.want {
						t.Errorf("%s: got %v, %v; want %v", p.name, c, err, tt.want)
					}
					continue
				}
				if !errors.Is(err, ErrBadCoordinate) {
					t.Errorf("%s: got %v, %v; want ErrBadCoordinate", p.name, c, err)
				}
			}
		})
	}
}

func TestCoordinateStringRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		var c Coordinate
		for i := range c {
			c[i] = uint16(1 + r.IntN(MaxPart))
		}
		got, err := ParseCoordinate(c.String())
		if err != nil || got != c {
			t.Fatalf("ParseCoordinate(%s) = %v, %v", c, got, err)
		}
	}
}

// scanTextNaive is the obvious loop scanText must agree with.
func scanTextNaive(b []byte, i int) int {
	for ; i < len(b); i++ {
		if IsBreak(b[i]) {
			return i
		}
	}
	return len(b)
}

// TestScanTextEveryOffset puts every byte value at every offset of buffers
// around the 16-byte word size, so each SWAR lane and the tail loop see
// every delimiter and every near miss (0x00, 0x1B, 0x20, 0xFF).
func TestScanTextEveryOffset(t *testing.T) {
	for _, n := range []int{0, 1, 8, 15, 16, 17, 31, 33} {
		for _, fill := range []byte{'a', 0x1B, 0xFF, 0x20} {
			base := bytes.Repeat([]byte{fill}, n)
			if got, want := scanText(base, 0), scanTextNaive(base, 0); got != want {
				t.Fatalf("n=%d fill=%#x: got %d want %d", n, fill, got, want)
			}
			for pos := range n {
				for v := range 256 {
					b := slices.Clone(base)
					b[pos] = byte(v)
					for start := range min(n, 3) {
						if got, want := scanText(b, start), scanTextNaive(b, start); got != want {
							t.Fatalf("n=%d fill=%#x pos=%d v=%#x start=%d: got %d want %d", n, fill, pos, v, start, got, want)
						}
					}
				}
			}
		}
	}
}

func TestScannerRanges(t *testing.T) {
	buf := []byte("ab\x17\x17cd\x01\x1fef\n\x17\x17")
	var s Scanner
	s.Reset(buf)
	type got struct {
		c          string
		start, end int
		text       string
	}
	var gots []got
	for s.Next() {
		gots = append(gots, got{c: s.Coordinate().String(), start: s.Start(), end: s.End(), text: string(s.Scroll())})
	}
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	want := []got{
		{c: "1.1.1/1.1.1/1.1.1", start: 0, end: 2, text: "ab"},
		{c: "1.1.1/1.1.1/1.1.3", start: 4, end: 6, text: "cd"},
		{c: "2.2.1/1.1.1/1.1.1", start: 8, end: 11, text: "ef\n"},
	}
	if !slices.Equal(gots, want) {
		t.Fatalf("got %v want %v", gots, want)
	}
	if s.Next() {
		t.Fatal("Next after end")
	}
	// A zero Scanner yields nothing.
	var z Scanner
	if z.Next() || z.Err() != nil {
		t.Fatal("zero scanner yielded")
	}
}

func TestOverflowError(t *testing.T) {
	buf := append([]byte("a"), bytes.Repeat([]byte{ScrollBreak}, 998)...)
	buf = append(buf, 'b')
	if sc, err := Explode(buf); err != nil || len(sc) != 2 || sc[1].Coord[LevelScroll] != 999 {
		t.Fatalf("999 scrolls: %v %v", sc, err)
	}
	over := slices.Insert(slices.Clone(buf), 1, ScrollBreak)
	_, err := Explode(over)
	var oe *OverflowError
	if !errors.Is(err, ErrOverflow) || !errors.As(err, &oe) || oe.Offset != 999 || oe.Level != LevelScroll {
		t.Fatalf("err = %v (%+v)", err, oe)
	}
	if !strings.Contains(err.Error(), "offset 999") {
		t.Errorf("message %q does not name the offset", err)
	}
	// Trailing overflowing breaks are refused too (never a silent merge).
	_, err = Normalize(append(slices.Clone(buf), ScrollBreak))
	if !errors.Is(err, ErrOverflow) {
		t.Errorf("trailing overflow: %v", err)
	}
	dst := []byte("keep")
	dst, err = AppendNormalize(dst, over)
	if err == nil || string(dst) != "keep" {
		t.Errorf("AppendNormalize on error: %q %v", dst, err)
	}
}

func TestAppendTOCLine(t *testing.T) {
	a31 := strings.Repeat("a", 31)
	a30 := strings.Repeat("a", 30)
	tests := []struct {
		name string
		text string
		want string
	}{
		{name: "empty", text: "", want: "* 1.1.1/1.1.1/1.1.1: \n"},
		{name: "short", text: "hello", want: "* 1.1.1/1.1.1/1.1.1: hello\n"},
		{name: "32 exactly", text: a31 + "b", want: "* 1.1.1/1.1.1/1.1.1: " + a31 + "b\n"},
		{name: "33", text: a31 + "bc", want: "* 1.1.1/1.1.1/1.1.1: " + a31 + "b...\n"},
		{name: "newline", text: "ab\ncd", want: "* 1.1.1/1.1.1/1.1.1: ab...\n"},
		{name: "leading newline", text: "\nab", want: "* 1.1.1/1.1.1/1.1.1: ...\n"},
		{name: "2-byte split", text: a31 + "é", want: "* 1.1.1/1.1.1/1.1.1: " + a31 + "...\n"},
		{name: "3-byte split", text: a30 + "日本", want: "* 1.1.1/1.1.1/1.1.1: " + a30 + "...\n"},
		{name: "4-byte split", text: a30 + "🎉", want: "* 1.1.1/1.1.1/1.1.1: " + a30 + "...\n"},
		{name: "2-byte ends at 32", text: a30 + "é" + "x", want: "* 1.1.1/1.1.1/1.1.1: " + a30 + "é...\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(AppendTOCLine(nil, Origin, []byte(tt.text))); got != tt.want {
				t.Errorf("got %q want %q", got, tt.want)
			}
		})
	}
	if got := string(AppendTOC(nil, nil)); got != "* 1.1.1/1.1.1/1.1.1: \n" {
		t.Errorf("AppendTOC(empty) = %q", got)
	}
}

func TestDelta(t *testing.T) {
	doc := []byte("a\x17b\x18c")
	scrolls, err := Explode(doc)
	if err != nil {
		t.Fatal(err)
	}
	sa, sb := Checksum([]byte("a")), Checksum([]byte("b"))
	tests := []struct {
		name string
		req  string
		want string
	}{
		{name: "empty request", req: "", want: "a\x17b\x18c"},
		{name: "all right", req: "1.1.1/1.1.1/1.1.1: " + sa + "\n1.1.1/1.1.1/1.1.2: " + sb + "\n1.1.1/1.1.1/1.2.1: " + Checksum([]byte("c")) + "\n", want: ""},
		{name: "toc form crlf", req: "* 1.1.1/1.1.1/1.1.1: " + sa + "\r\n", want: "\x17b\x18c"},
		{name: "url form trailing field", req: "1.1.1;1.1.1;1.1.2: " + sb + ": x", want: "a\x18c"},
		{name: "later line wins", req: "1.1.1/1.1.1/1.1.1: " + sa + "\n1.1.1/1.1.1/1.1.1: ffff\n", want: "a\x17b\x18c"},
		{name: "wrong checksum", req: "1.1.1/1.1.1/1.1.1: ffff", want: "a\x17b\x18c"},
		{name: "missing", req: "1.1.1/1.1.1/1.1.1: " + sa + "\n1.1.1/1.1.1/1.1.3: 00", want: "\x17b\x17" + MissingMarker + "\x18c"},
		{name: "zero skipped", req: "0.1.1/1.1.1/1.1.1: 00", want: "a\x17b\x18c"},
		{name: "1000 skipped", req: "1.1.1/1.1.1/1.1.1000: 00", want: "a\x17b\x18c"},
		{name: "junk skipped", req: "junk: 00\nno separator", want: "a\x17b\x18c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Delta(scrolls, []byte(tt.req))
			if err != nil || string(got) != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestWhereErrors(t *testing.T) {
	if _, err := Where([]byte("x"), "md5", 1); !errors.Is(err, ErrBadAlgo) {
		t.Errorf("bad algo: %v", err)
	}
	if _, err := Where([]byte("x"), "xor", -1); !errors.Is(err, ErrBadLimit) {
		t.Errorf("negative limit: %v", err)
	}
}

func TestValidScroll(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "empty", in: "", want: true},
		{name: "text", in: "hello\nwörld\x1b\x00\t", want: true},
		{name: "scroll break", in: "a\x17b", want: false},
		{name: "library break late", in: strings.Repeat("x", 40) + "\x01", want: false},
		{name: "invalid utf8", in: "a\xffb", want: false},
		{name: "truncated", in: "\xe6\x97", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidScroll([]byte(tt.in)); got != tt.want {
				t.Errorf("got %v", got)
			}
		})
	}
}

func TestLossyUTF8(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "valid", in: "héllo", want: "héllo"},
		{name: "truncated 3-byte", in: "\xe6\x97", want: "\uFFFD"},
		{name: "two bad bytes", in: "\xff\xfe", want: "\uFFFD\uFFFD"},
		{name: "surrogate", in: "\xed\xa0\x80", want: "\uFFFD\uFFFD\uFFFD"},
		{name: "overlong", in: "\xc0\xaf", want: "\uFFFD\uFFFD"},
		{name: "bad then ascii", in: "\xe6\x97a", want: "\uFFFDa"},
		{name: "4-byte truncated", in: "\xf0\x9f\x8e", want: "\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(LossyUTF8([]byte(tt.in))); got != tt.want {
				t.Errorf("got %q want %q", got, tt.want)
			}
		})
	}
}

// randomScrolls returns n sorted scrolls at valid, increasing coordinates.
func randomScrolls(r *rand.Rand, n int) []Scroll {
	c := Origin
	var out []Scroll
	for range n {
		text := []byte(strings.Repeat(string(rune('a'+r.IntN(26))), 1+r.IntN(20)))
		out = append(out, Scroll{Coord: c, Text: text})
		// Advance at a random level by a random amount, within 999.
		l := r.IntN(9)
		if r.IntN(3) > 0 {
			l = LevelScroll
		}
		for range 1 + r.IntN(3) {
			if !c.Advance(l) {
				break
			}
		}
		for k := l + 1; k < 9; k++ {
			c[k] = uint16(1 + r.IntN(4))
		}
		if !out[len(out)-1].Coord.Less(c) {
			break
		}
	}
	return out
}

func TestImplodeExplodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 300 {
		m := randomScrolls(r, 1+r.IntN(50))
		doc := Implode(m)
		back, err := Explode(doc)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !slices.EqualFunc(m, back, func(a, b Scroll) bool { return a.Coord == b.Coord && bytes.Equal(a.Text, b.Text) }) {
			t.Fatalf("case %d: round trip differs", i)
		}
		n, _ := Normalize(doc)
		if !bytes.Equal(n, doc) {
			t.Fatalf("case %d: implode output not normal", i)
		}
	}
}

func TestAllocations(t *testing.T) {
	doc := genDoc(64<<10, 7)
	scrolls, err := Explode(doc)
	if err != nil {
		t.Fatal(err)
	}
	last := scrolls[len(scrolls)-1]
	dst := make([]byte, 0, 2*len(doc))
	var s Scanner
	checks := []struct {
		name string
		fn   func()
	}{
		{name: "Scanner", fn: func() {
			s.Reset(doc)
			for s.Next() {
			}
		}},
		{name: "Select", fn: func() { _, _ = Select(doc, last.Coord) }},
		{name: "AppendImplode", fn: func() { _ = AppendImplode(dst[:0], scrolls) }},
		{name: "AppendNormalize", fn: func() { _, _ = AppendNormalize(dst[:0], doc) }},
		{name: "AppendChecksum", fn: func() { _ = AppendChecksum(dst[:0], doc) }},
		{name: "AppendTOCLine", fn: func() { _ = AppendTOCLine(dst[:0], last.Coord, last.Text) }},
		{name: "AppendTOC", fn: func() { _ = AppendTOC(dst[:0], scrolls) }},
		{name: "ParseCoordinate", fn: func() { _, _ = ParseCoordinate("12.3.4/5.6.7/8.9.999") }},
		{name: "ToCoordinateLoose", fn: func() { _, _ = ToCoordinateLoose([]byte("12.3.4;5.6.7;8.9.999")) }},
		{name: "ValidScroll", fn: func() { _ = ValidScroll(last.Text) }},
		{name: "LossyUTF8 valid", fn: func() { _ = LossyUTF8(last.Text) }},
		{name: "Where checksum", fn: func() { _, _ = Where(last.Text, "checksum", 100) }},
		{name: "AppendWhereMessage", fn: func() { _ = AppendWhereMessage(dst[:0], last.Coord, "xor", 100) }},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(20, c.fn); n != 0 {
				t.Errorf("%v allocs per run, budget 0", n)
			}
		})
	}
}

// TestScannerEverySplit cuts documents at every byte: the scrolls of a
// prefix are the scrolls that start before the cut, the last one truncated.
func TestScannerEverySplit(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	docs := [][]byte{
		[]byte("a\x17b\x18c\x19d\x1ae\x1cf\x1dg\x1eh\x1fi\x01j"),
		[]byte("\x01\x1f\x18\x17A\x17B\x17\x17\n\x17\x17"),
		Implode(randomScrolls(r, 40)),
	}
	for di, doc := range docs {
		type span struct {
			c          Coordinate
			start, end int
		}
		var full []span
		var s Scanner
		s.Reset(doc)
		for s.Next() {
			full = append(full, span{c: s.Coordinate(), start: s.Start(), end: s.End()})
		}
		if s.Err() != nil {
			t.Fatal(s.Err())
		}
		for k := 0; k <= len(doc); k++ {
			var want []span
			for _, sp := range full {
				if sp.start < k {
					want = append(want, span{c: sp.c, start: sp.start, end: min(sp.end, k)})
				}
			}
			var got []span
			s.Reset(doc[:k])
			for s.Next() {
				got = append(got, span{c: s.Coordinate(), start: s.Start(), end: s.End()})
			}
			if s.Err() != nil || !slices.Equal(got, want) {
				t.Fatalf("doc %d cut %d: got %v (%v), want %v", di, k, got, s.Err(), want)
			}
		}
	}
}

// TestDeltaLimit: missing coordinates far apart cost thousands of break
// bytes each; DeltaLimit refuses an output past its limit instead of
// building it.
func TestDeltaLimit(t *testing.T) {
	var req []byte
	for i := 1; i <= 200; i++ {
		req = fmt.Appendf(req, "%d.999.999/999.999.999/999.999.999: x\n", i)
	}
	out, err := Delta(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 200*1000 {
		t.Fatalf("expected a large output, got %d bytes", len(out))
	}
	if _, err := DeltaLimit(nil, req, len(out)/2); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("DeltaLimit over the limit: err %v, want ErrTooLarge", err)
	}
	got, err := DeltaLimit(nil, req, len(out))
	if err != nil || !bytes.Equal(got, out) {
		t.Fatalf("DeltaLimit at the limit: %d bytes, err %v", len(got), err)
	}
}

func TestCheckScrollNamesByteAndOffset(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		off   int
		b     byte
		delim bool
		text  string
	}{
		{name: "scroll break", in: "ab\x17c", off: 2, b: 0x17, delim: true, text: "byte 0x17 (scroll break) at offset 2 is a phext delimiter"},
		{name: "library break", in: "\x01", off: 0, b: 0x01, delim: true, text: "byte 0x01 (library break) at offset 0"},
		{name: "delimiter before bad utf8", in: "\xff\x1e", off: 1, b: 0x1e, delim: true, text: "(series break) at offset 1"},
		{name: "bad utf8", in: "héllo\xc3", off: 6, b: 0xc3, text: "byte 0xC3 at offset 6 is not valid UTF-8"},
		{name: "surrogate", in: "a\xed\xa0\x80", off: 1, b: 0xed, text: "offset 1 is not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckScroll([]byte(tc.in))
			var se *ScrollError
			if !errors.As(err, &se) || !errors.Is(err, ErrBadScroll) {
				t.Fatalf("err = %v, want a *ScrollError", err)
			}
			if se.Offset != tc.off || se.Byte != tc.b || se.Delimiter != tc.delim {
				t.Fatalf("got %+v, want offset %d byte %#x delimiter %v", *se, tc.off, tc.b, tc.delim)
			}
			if !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "0x01, 0x17-0x1A, 0x1C-0x1F") {
				t.Fatalf("message %q lacks %q or the delimiter list", err, tc.text)
			}
		})
	}
	for _, ok := range []string{"", "plain", "héllo \uFFFD", "\x00\x1b\x7f"} {
		if err := CheckScroll([]byte(ok)); err != nil || !ValidScroll([]byte(ok)) {
			t.Fatalf("CheckScroll(%q) = %v", ok, err)
		}
	}
	if n := testing.AllocsPerRun(100, func() { CheckScroll([]byte("plain text")) }); n != 0 {
		t.Fatalf("CheckScroll of valid text allocates %v times", n)
	}
}

func TestCoordinateErrorsShowTheForm(t *testing.T) {
	for _, in := range []string{"1.2.3", "0.1.1/1.1.1/1.1.1", "1.1.1/1.1.1/1.1.1000", "a", "1.1.1.1.1.1.1.1.1", ""} {
		_, err := ParseCoordinate(in)
		if !errors.Is(err, ErrBadCoordinate) || !strings.Contains(err.Error(), "1.1.1/1.1.1/1.1.1") {
			t.Fatalf("ParseCoordinate(%q) = %v, want ErrBadCoordinate showing the form", in, err)
		}
	}
}

// TestScannerResetAt resumes a scan at every scroll's end, with the
// coordinate of that scroll: it yields exactly the scrolls after it, with
// the same coordinates and offsets, also when the buffer is cut anywhere
// after the resume point.
func TestScannerResetAt(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	docs := [][]byte{
		[]byte("a\x17b\x18c\x19d\x1ae\x1cf\x1dg\x1eh\x1fi\x01j"),
		[]byte("\x01\x1f\x18\x17A\x17B\x17\x17\n\x17\x17"),
		Implode(randomScrolls(r, 40)),
	}
	type span struct {
		c          Coordinate
		start, end int
	}
	for di, doc := range docs {
		var full []span
		var s Scanner
		s.Reset(doc)
		for s.Next() {
			full = append(full, span{c: s.Coordinate(), start: s.Start(), end: s.End()})
		}
		for i, from := range full {
			for k := from.end; k <= len(doc); k++ {
				var want []span
				for _, sp := range full[i+1:] {
					if sp.start < k {
						want = append(want, span{c: sp.c, start: sp.start, end: min(sp.end, k)})
					}
				}
				var got []span
				s.ResetAt(doc[:k], from.end, from.c)
				for s.Next() {
					got = append(got, span{c: s.Coordinate(), start: s.Start(), end: s.End()})
				}
				if s.Err() != nil || !slices.Equal(got, want) {
					t.Fatalf("doc %d from scroll %d cut %d: got %v (%v), want %v", di, i, k, got, s.Err(), want)
				}
			}
		}
	}
}
