package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// OpKind is one of the operations a workload mixes.
type OpKind uint8

// The operations of a mix, in report order.
const (
	OpSelect OpKind = iota
	OpUpdate
	OpInsert
	OpDelete
	numOps
)

var opNames = [numOps]string{"select", "update", "insert", "delete"}

// String returns the mix name of k ("select", …).
func (k OpKind) String() string {
	if k < numOps {
		return opNames[k]
	}
	return "op(" + strconv.Itoa(int(k)) + ")"
}

// Mix is the weight of each operation; the generator picks an operation
// with probability weight/sum.
type Mix [numOps]int

// DefaultMix is the mixed scenario: 80 % reads.
var DefaultMix = Mix{OpSelect: 80, OpUpdate: 15, OpInsert: 4, OpDelete: 1}

// ParseMix parses "select=80,update=15,insert=4,delete=1". Missing
// operations get weight 0; the weights must sum to more than 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := [numOps]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return m, fmt.Errorf("%w: mix %q: %q is not op=weight", ErrUsage, s, part)
		}
		k := -1
		for i, n := range opNames {
			if strings.EqualFold(strings.TrimSpace(name), n) {
				k = i
			}
		}
		if k < 0 {
			return m, fmt.Errorf("%w: mix %q: unknown operation %q (select, update, insert, delete)", ErrUsage, s, name)
		}
		if seen[k] {
			return m, fmt.Errorf("%w: mix %q: %s given twice", ErrUsage, s, opNames[k])
		}
		seen[k] = true
		w, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || w < 0 || w > 1_000_000 {
			return m, fmt.Errorf("%w: mix %q: weight %q is not an integer in 0..1000000", ErrUsage, s, val)
		}
		m[k] = w
	}
	if m.total() == 0 {
		return m, fmt.Errorf("%w: mix %q: weights sum to 0", ErrUsage, s)
	}
	return m, nil
}

func (m Mix) total() int {
	t := 0
	for _, w := range m {
		t += w
	}
	return t
}

// String formats m as ParseMix reads it.
func (m Mix) String() string {
	var parts []string
	for k, w := range m {
		if w > 0 {
			parts = append(parts, opNames[k]+"="+strconv.Itoa(w))
		}
	}
	return strings.Join(parts, ",")
}

// table returns a 1024-entry lookup table: entry r%1024 is the operation
// for a random r. Weights are rounded to 1/1024; an operation with a
// weight > 0 keeps at least one entry.
func (m Mix) table() *[1024]OpKind {
	var t [1024]OpKind
	tot := m.total()
	n := [numOps]int{}
	sum := 0
	for k, w := range m {
		if w > 0 {
			n[k] = max(1, w*1024/tot)
			sum += n[k]
		}
	}
	// Give the rounding remainder to (or take it from) the heaviest op.
	heavy := 0
	for k := range m {
		if m[k] > m[heavy] {
			heavy = k
		}
	}
	n[heavy] += 1024 - sum
	i := 0
	for k := range n {
		for j := 0; j < n[k]; j++ {
			t[i] = OpKind(k)
			i++
		}
	}
	return &t
}

// SizeRange is the distribution of written text sizes: uniform in
// [Min, Max] bytes.
type SizeRange struct{ Min, Max int }

// ParseSize parses a size ("1KiB", "512", "1MiB", "4KB") or a range of two
// ("512B-4KiB"). Units: B, KB (1000), KiB or K (1024), MB, MiB or M, GiB.
func ParseSize(s string) (SizeRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parseBytes(lo)
	if err != nil {
		return SizeRange{}, fmt.Errorf("%w: size %q: %v", ErrUsage, s, err)
	}
	b := a
	if isRange {
		if b, err = parseBytes(hi); err != nil {
			return SizeRange{}, fmt.Errorf("%w: size %q: %v", ErrUsage, s, err)
		}
	}
	if a < 1 || b < a {
		return SizeRange{}, fmt.Errorf("%w: size %q: need 1 ≤ min ≤ max", ErrUsage, s)
	}
	if b > 32<<20 {
		return SizeRange{}, fmt.Errorf("%w: size %q: above 32 MiB", ErrUsage, s)
	}
	return SizeRange{a, b}, nil
}

// ParseByteSize parses one byte size with the units of ParseSize and no
// upper bound below 1 TiB (big-phext growth steps).
func ParseByteSize(s string) (int64, error) {
	n, err := parseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if n < 1 {
		return 0, fmt.Errorf("%w: size %q below 1 byte", ErrUsage, s)
	}
	return int64(n), nil
}

var units = map[string]int{"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1000_000, "g": 1 << 30, "gib": 1 << 30, "gb": 1000_000_000}

func parseBytes(s string) (int, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mul, ok := units[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("%q is not a byte size (e.g. 1KiB, 512B, 4MiB)", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*float64(mul) > 1<<40 {
		return 0, fmt.Errorf("%q is not a byte size", s)
	}
	return int(f * float64(mul)), nil
}

// String formats r compactly ("1KiB" or "512B-4KiB").
func (r SizeRange) String() string {
	if r.Min == r.Max {
		return FormatBytes(int64(r.Min))
	}
	return FormatBytes(int64(r.Min)) + "-" + FormatBytes(int64(r.Max))
}

// FormatBytes formats n with the largest binary unit it reaches: whole
// multiples without decimals ("1KiB", "1MiB"), others with one ("1.5KiB").
func FormatBytes(n int64) string {
	units := []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}}
	for _, u := range units {
		if n >= 1<<u.shift || -n >= 1<<u.shift {
			if n%(1<<u.shift) == 0 {
				return strconv.FormatInt(n>>u.shift, 10) + u.name
			}
			return strconv.FormatFloat(float64(n)/float64(int64(1)<<u.shift), 'f', 1, 64) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// rng is xorshift64*: tiny, fast, and deterministic per connection.
type rng struct{ s uint64 }

func newRNG(seed uint64) rng {
	// splitmix64 step so that nearby seeds give unrelated streams.
	z := seed + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	if z == 0 {
		z = 1
	}
	return rng{z}
}

func (r *rng) next() uint64 {
	r.s ^= r.s >> 12
	r.s ^= r.s << 25
	r.s ^= r.s >> 27
	return r.s * 2685821657736338717
}

// intn returns a number in [0, n) (n > 0).
func (r *rng) intn(n int) int { return int((r.next() >> 1) % uint64(n)) }

// tagLen is the size of the tenant tag that starts every text written.
const tagLen = 8

// appendTag appends "T" + six digits of tenant + "|".
func appendTag(dst []byte, tenant int) []byte {
	var b [tagLen]byte
	b[0] = 'T'
	t := tenant % 1_000_000
	for i := 6; i >= 1; i-- {
		b[i] = byte('0' + t%10)
		t /= 10
	}
	b[7] = '|'
	return append(dst, b[:]...)
}

// pool is shared read-only random text that payloads are cut from: ASCII
// letters and digits, so valid UTF-8 without phext delimiters.
type pool []byte

func newPool(size int, seed uint64) pool {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,"
	r := newRNG(seed)
	p := make([]byte, size)
	// Ten 6-bit symbols per random word.
	for i := 0; i < len(p); {
		v := r.next()
		for j := 0; j < 10 && i < len(p); j++ {
			p[i] = alphabet[v&63]
			v >>= 6
			i++
		}
	}
	return p
}

// segment is one written text: the tag then n-tagLen bytes of the pool at
// off (only the first n bytes of the tag when n < tagLen).
type segment struct{ off, n uint32 }

// appendSegment appends the bytes of s for tenant.
func (p pool) appendSegment(dst []byte, tenant int, s segment) []byte {
	if s.n < tagLen {
		var t [tagLen]byte
		appendTag(t[:0], tenant)
		return append(dst, t[:s.n]...)
	}
	dst = appendTag(dst, tenant)
	return append(dst, p[s.off:s.off+s.n-tagLen]...)
}

// matches reports whether b is exactly the concatenation of segs.
func (p pool) matches(b []byte, tenant int, segs []segment) bool {
	var tag [tagLen]byte
	appendTag(tag[:0], tenant)
	for _, s := range segs {
		if uint32(len(b)) < s.n {
			return false
		}
		if s.n < tagLen {
			if string(b[:s.n]) != string(tag[:s.n]) {
				return false
			}
		} else if string(b[:tagLen]) != string(tag[:]) || string(b[tagLen:s.n]) != string(p[s.off:s.off+s.n-tagLen]) {
			return false
		}
		b = b[s.n:]
	}
	return len(b) == 0
}

// foreignTag returns the first tenant tag in b that is not tenant's, or -1.
func foreignTag(b []byte, tenant int) int {
	for i := 0; i+tagLen <= len(b); i++ {
		if b[i] != 'T' || b[i+7] != '|' {
			continue
		}
		t, ok := 0, true
		for _, c := range b[i+1 : i+7] {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			t = t*10 + int(c-'0')
		}
		if ok && t != tenant%1_000_000 {
			return t
		}
	}
	return -1
}
