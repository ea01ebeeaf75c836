package config

import (
	"strconv"
	"unicode/utf8"
)

// decodeConfigFast decodes data as json.Decoder.Decode into a Config does,
// for the plain shape that `sq tenants gen`, WriteFile and hand
// editing produce: one object with the keys "tenants", "admin_token" and
// "metrics_token", each tenant an object of the keys "name", "data_dir",
// "quota_mb", "enabled" and "durability". encoding/json's reflection took
// 50 ms of a 10,000-tenant start; this walk takes a few.
//
// It reports ok false, and the caller decodes with encoding/json, on
// anything else: an unknown, repeated or differently cased key, a null, a
// string with an escape or a control byte or invalid UTF-8, a repeated
// token, a number strconv does not take as is, malformed JSON. So every
// error message, and every corner of encoding/json's behaviour (case-
// insensitive keys, the last of repeated keys, unknown keys skipped), stays
// encoding/json's; FuzzDecodeConfigFast checks that both agree whenever
// this one answers. Like json.Decoder.Decode it reads the first JSON value
// and ignores what follows it.
func decodeConfigFast(data []byte) (c Config, ok bool) {
	d := fastDec{b: data}
	if !d.expect('{') {
		return Config{}, false
	}
	var seen uint8
	for first := true; ; first = false {
		if d.peek() == '}' && first {
			d.i++
			break
		}
		key, ok := d.key()
		if !ok {
			return Config{}, false
		}
		var bit uint8
		switch string(key) {
		case "tenants":
			bit = 1
			if c.Tenants, ok = d.tenants(); !ok {
				return Config{}, false
			}
		case "admin_token":
			bit = 2
			c.AdminToken, ok = d.str()
		case "metrics_token":
			bit = 4
			c.MetricsToken, ok = d.str()
		default:
			return Config{}, false
		}
		if !ok || seen&bit != 0 {
			return Config{}, false
		}
		seen |= bit
		if !d.next() {
			break
		}
	}
	if d.err {
		return Config{}, false
	}
	return c, true
}

// fastDec is decodeConfigFast's cursor. err is set by next on a byte that
// is neither ',' nor '}'.
type fastDec struct {
	b   []byte
	i   int
	err bool
}

func (d *fastDec) skipSpace() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it (0 at the end).
func (d *fastDec) peek() byte {
	d.skipSpace()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *fastDec) expect(c byte) bool {
	if d.peek() != c {
		return false
	}
	d.i++
	return true
}

// next consumes the ',' or '}' after an object member: it reports whether
// another member follows, and sets err on anything else.
func (d *fastDec) next() bool {
	switch d.peek() {
	case ',':
		d.i++
		return true
	case '}':
		d.i++
		return false
	}
	d.err = true
	return false
}

// str reads a string without escapes, control bytes or invalid UTF-8.
func (d *fastDec) str() (string, bool) {
	b, ok := d.raw()
	return string(b), ok
}

// key is str for an object key: a view into the input (a switch on
// string(key) does not allocate).
func (d *fastDec) key() ([]byte, bool) {
	b, ok := d.raw()
	return b, ok && d.expect(':')
}

// raw reads a string as str does and returns a view of its bytes.
func (d *fastDec) raw() ([]byte, bool) {
	if !d.expect('"') {
		return nil, false
	}
	start, high := d.i, false
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if high && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			high = true
		}
	}
	return nil, false
}

// tenants reads the "tenants" object.
func (d *fastDec) tenants() (map[string]TenantEntry, bool) {
	if !d.expect('{') {
		return nil, false
	}
	// The entries of a generated config are about 110 bytes each.
	m := make(map[string]TenantEntry, min(len(d.b)/100+1, 1<<16))
	if d.peek() == '}' {
		d.i++
		return m, true
	}
	for {
		tok, ok := d.key()
		if !ok {
			return nil, false
		}
		e, ok := d.entry()
		if !ok {
			return nil, false
		}
		if _, dup := m[string(tok)]; dup {
			return nil, false
		}
		m[string(tok)] = e
		if !d.next() {
			return m, !d.err
		}
	}
}

// entry reads one tenant's object.
func (d *fastDec) entry() (e TenantEntry, ok bool) {
	if !d.expect('{') {
		return e, false
	}
	if d.peek() == '}' {
		d.i++
		return e, true
	}
	var seen uint8
	for {
		key, ok := d.key()
		if !ok {
			return e, false
		}
		var bit uint8
		switch string(key) {
		case "name":
			bit = 1
			e.Name, ok = d.str()
		case "data_dir":
			bit = 2
			e.DataDir, ok = d.str()
		case "quota_mb":
			bit = 4
			e.QuotaMB, ok = d.number()
		case "enabled":
			bit = 8
			var b bool
			if b, ok = d.boolean(); ok {
				e.Enabled = &b
			}
		case "durability":
			bit = 16
			e.Durability, ok = d.str()
		default:
			return e, false
		}
		if !ok || seen&bit != 0 {
			return e, false
		}
		seen |= bit
		if !d.next() {
			return e, !d.err
		}
	}
}

// boolean reads true or false; what follows must be a delimiter, which the
// caller's next checks.
func (d *fastDec) boolean() (bool, bool) {
	d.skipSpace()
	rest := d.b[d.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		d.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		d.i += 5
		return false, true
	}
	return false, false
}

// number reads a JSON number (-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?) and
// converts it as encoding/json does for a float64 field.
func (d *fastDec) number() (float64, bool) {
	d.skipSpace()
	start := d.i
	digits := func() int {
		n := 0
		for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	if d.i < len(d.b) && d.b[d.i] == '0' {
		d.i++
	} else if digits() == 0 {
		return 0, false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return 0, false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(string(d.b[start:d.i]), 64)
	return f, err == nil
}
