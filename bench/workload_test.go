package bench

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Mix
		wantErr bool
	}{
		{name: "default", in: "select=80,update=15,insert=4,delete=1", want: DefaultMix},
		{name: "spaces-and-case", in: " SELECT = 1 , delete=2 ", want: Mix{OpSelect: 1, OpDelete: 2}},
		{name: "reads-only", in: "select=100", want: Mix{OpSelect: 100}},
		{name: "unknown-op", in: "select=1,get=2", wantErr: true},
		{name: "no-equals", in: "select", wantErr: true},
		{name: "negative", in: "select=-1", wantErr: true},
		{name: "twice", in: "select=1,select=2", wantErr: true},
		{name: "all-zero", in: "select=0", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMix(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrUsage) {
					t.Fatalf("err = %v, want ErrUsage", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
			again, err := ParseMix(got.String())
			if err != nil || again != got {
				t.Fatalf("String round trip: %q → %v, %v", got.String(), again, err)
			}
		})
	}
}

func TestMixTable(t *testing.T) {
	tests := []struct {
		name string
		mix  Mix
	}{
		{name: "default", mix: DefaultMix},
		{name: "tiny-weight-kept", mix: Mix{OpSelect: 100000, OpDelete: 1}},
		{name: "even", mix: Mix{1, 1, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab := tc.mix.table()
			var n [numOps]int
			for _, k := range tab {
				n[k]++
			}
			tot := tc.mix.total()
			for k, w := range tc.mix {
				if w > 0 && n[k] == 0 {
					t.Errorf("%s has weight %d but no table entry", OpKind(k), w)
				}
				if w == 0 && n[k] > 0 {
					t.Errorf("%s has no weight but %d entries", OpKind(k), n[k])
				}
				want := float64(w) / float64(tot) * 1024
				if d := float64(n[k]) - want; w > 0 && (d > 3 && d > want*0.01) {
					t.Errorf("%s: %d entries, want ≈ %.1f", OpKind(k), n[k], want)
				}
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    SizeRange
		wantErr bool
	}{
		{name: "kib", in: "1KiB", want: SizeRange{1024, 1024}},
		{name: "plain", in: "512", want: SizeRange{512, 512}},
		{name: "bytes", in: "100B", want: SizeRange{100, 100}},
		{name: "kb-decimal", in: "4KB", want: SizeRange{4000, 4000}},
		{name: "mib", in: "1MiB", want: SizeRange{1 << 20, 1 << 20}},
		{name: "k-short", in: "2k", want: SizeRange{2048, 2048}},
		{name: "range", in: "512B-4KiB", want: SizeRange{512, 4096}},
		{name: "fraction", in: "1.5KiB", want: SizeRange{1536, 1536}},
		{name: "zero", in: "0", wantErr: true},
		{name: "reversed", in: "4KiB-1KiB", wantErr: true},
		{name: "too-big", in: "1GiB", wantErr: true},
		{name: "unit-only", in: "KiB", wantErr: true},
		{name: "bad-unit", in: "3parsecs", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrUsage) {
					t.Fatalf("err = %v, want ErrUsage", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		name string
		in   int64
		want string
	}{
		{name: "bytes", in: 100, want: "100B"},
		{name: "kib", in: 1024, want: "1KiB"},
		{name: "fraction", in: 1536, want: "1.5KiB"},
		{name: "mib", in: 3 << 20, want: "3MiB"},
		{name: "big-odd", in: 24684092 << 10, want: "23.5GiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FormatBytes(tc.in); got != tc.want {
				t.Fatalf("FormatBytes(%d) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestPoolSegments(t *testing.T) {
	p := newPool(1<<16, 9)
	for _, b := range p {
		if b < 0x20 || b > 0x7e {
			t.Fatalf("pool byte %#x is not printable ASCII", b)
		}
	}
	segs := []segment{{off: 10, n: 100}, {off: 500, n: 5}, {off: 7, n: 8}}
	var doc []byte
	for _, s := range segs {
		doc = p.appendSegment(doc, 42, s)
	}
	if len(doc) != 113 {
		t.Fatalf("len = %d", len(doc))
	}
	if !p.matches(doc, 42, segs) {
		t.Fatal("document does not match its own segments")
	}
	if p.matches(doc, 43, segs) {
		t.Fatal("another tenant's document matches")
	}
	if p.matches(doc[:len(doc)-1], 42, segs) || p.matches(append(doc, 'x'), 42, segs) {
		t.Fatal("short or long document matches")
	}
	bad := append([]byte(nil), doc...)
	bad[50] ^= 1
	if p.matches(bad, 42, segs) {
		t.Fatal("corrupted document matches")
	}
	if got := foreignTag(doc, 42); got != -1 {
		t.Fatalf("foreignTag on own doc = %d", got)
	}
	other := p.appendSegment(append([]byte(nil), doc...), 7, segment{off: 0, n: 20})
	if got := foreignTag(other, 42); got != 7 {
		t.Fatalf("foreignTag = %d, want 7", got)
	}
}

func TestRESPReplies(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		ok       bool
		body     string
		count    int64
		hasCount bool
		wantErr  bool
	}{
		{name: "simple", in: "+OK\r\n", ok: true},
		{name: "error", in: "-ERR nope\r\n", ok: false},
		{name: "int", in: ":42\r\n", ok: true, count: 42, hasCount: true},
		{name: "bulk", in: "$5\r\nhello\r\n", ok: true, body: "hello"},
		{name: "nil", in: "$-1\r\n", ok: true, body: ""},
		{name: "bad-kind", in: "?x\r\n", wantErr: true},
		{name: "bad-int", in: ":x\r\n", wantErr: true},
		{name: "bad-bulk-len", in: "$-5\r\n", wantErr: true},
		{name: "short-bulk", in: "$10\r\nabc", wantErr: true},
		{name: "no-cr", in: "+OK\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &respWire{br: bufio.NewReader(bytes.NewReader([]byte(tc.in))), fifo: make([]OpKind, 4), n: 1}
			var a answer
			err := w.recv(&a)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error for %q", tc.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.ok != tc.ok || string(a.body) != tc.body || a.count != tc.count || a.hasCount != tc.hasCount {
				t.Fatalf("got %+v", a)
			}
		})
	}
}

func FuzzRESPReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w := &respWire{br: bufio.NewReader(bytes.NewReader(b)), fifo: make([]OpKind, 4), n: 1}
		var a answer
		if err := w.recv(&a); err == nil && a.body != nil && len(a.body) > len(b) {
			t.Fatalf("body longer than input")
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1KiB", "512B-4KiB", "1.5M", "0", "-", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseSize(s)
		if err != nil {
			return
		}
		if r.Min < 1 || r.Max < r.Min || r.Max > 32<<20 {
			t.Fatalf("ParseSize(%q) = %v accepted", s, r)
		}
	})
}

func FuzzParseMix(f *testing.F) {
	f.Add("select=80,update=15,insert=4,delete=1")
	f.Add("delete=1")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMix(s)
		if err != nil {
			return
		}
		if m.total() <= 0 {
			t.Fatalf("ParseMix(%q) accepted a zero mix", s)
		}
		m2, err := ParseMix(m.String())
		if err != nil || m2 != m {
			t.Fatalf("round trip of %q: %v %v", s, m2, err)
		}
	})
}
