package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/phext/sq/phext"
)

func TestFrameSize(t *testing.T) {
	tests := []struct {
		name     string
		hdr      []byte
		maxFrame int
		want     int
		status   Status
	}{
		{name: "min", hdr: []byte{0, 0, 0, 6}, want: 10},
		{name: "below min", hdr: []byte{0, 0, 0, 5}, status: StatusBadFrame},
		{name: "zero", hdr: []byte{0, 0, 0, 0}, status: StatusBadFrame},
		{name: "short header", hdr: []byte{0, 0, 6}, status: StatusBadFrame},
		{name: "at limit", hdr: []byte{0, 0, 1, 0}, maxFrame: 256, want: 260},
		{name: "over limit", hdr: []byte{0, 0, 1, 1}, maxFrame: 256, status: StatusTooLarge},
		{name: "default limit ok", hdr: []byte{0x04, 0, 0, 0}, want: 4 + DefaultMaxFrame},
		{name: "default limit over", hdr: []byte{0x04, 0, 0, 1}, status: StatusTooLarge},
		{name: "max u32", hdr: []byte{0xff, 0xff, 0xff, 0xff}, status: StatusTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FrameSize(tc.hdr, tc.maxFrame)
			wantStatus(t, err, tc.status)
			if tc.status == StatusOK && got != tc.want {
				t.Fatalf("size %d, want %d", got, tc.want)
			}
		})
	}
}

// TestDecodeMalformed feeds every kind of malformed request and checks the
// status, and that the id is reported whenever the header was readable.
func TestDecodeMalformed(t *testing.T) {
	good := AppendRequest(nil, OpInsert, 77, []byte("notes"), c123, []byte("hello"))
	withByte := func(i int, b byte) []byte { g := bytes.Clone(good); g[i] = b; return g }
	bigName := AppendRequest(nil, OpSelect, 77, bytes.Repeat([]byte("a"), 65), c123, nil)
	zeroCoord := AppendRequest(nil, OpSelect, 77, nil, coord(1, 1, 1, 1, 0, 1, 1, 1, 1), nil)
	coord1000 := AppendRequest(nil, OpUpdate, 77, nil, coord(1, 1, 1, 1, 1, 1, 1, 1, 1000), []byte("x"))
	// s2 bomb: declares 1 GiB uncompressed.
	bomb := appendHeader(nil, uint8(OpPut), FlagCompressed, 77, 8)
	bomb = binary.BigEndian.AppendUint32(bomb, 1<<30)
	bomb = append(bomb, 0, 0, 0, 0)
	// A real s2 body that expands past a small limit.
	big := bytes.Repeat([]byte("z"), 8000)
	expand := AppendCompressedRequest(nil, OpPut, 77, nil, phext.Origin, big, CodecS2)
	expandZ := AppendCompressedRequest(nil, OpPut, 77, nil, phext.Origin, big, CodecZstd)
	// A compressed body whose declared size is smaller than its content.
	lying := bytes.Clone(expand)
	binary.BigEndian.PutUint32(lying[10:], 100)
	lyingZ := bytes.Clone(expandZ)
	binary.BigEndian.PutUint32(lyingZ[10:], 100)
	garbage := appendHeader(nil, uint8(OpPut), FlagCompressed, 77, 9)
	garbage = append(garbage, 0, 0, 0, 10, 0xde, 0xad, 0xbe, 0xef, 0x00)

	tests := []struct {
		name     string
		frame    []byte
		maxFrame int
		codec    uint8
		status   Status
		noID     bool // header unreadable: id cannot be reported
	}{
		{name: "ok", frame: good},
		{name: "shorter than header", frame: good[:9], status: StatusBadFrame, noID: true},
		{name: "length says more than given", frame: good[:len(good)-1], status: StatusBadFrame},
		{name: "length says less than given", frame: append(bytes.Clone(good), 'x'), status: StatusBadFrame},
		{name: "length below 6", frame: frameWith(good[:10], 5), status: StatusBadFrame},
		{name: "length over limit", frame: good, maxFrame: 20, status: StatusTooLarge},
		{name: "unknown flag bit 1", frame: withByte(5, 0x02), status: StatusBadFrame},
		{name: "unknown flag bit 7", frame: withByte(5, 0x80), status: StatusBadFrame},
		{name: "compressed without codec", frame: withByte(5, 0x01), status: StatusBadFrame},
		{name: "unknown opcode 0x20", frame: withByte(4, 0x20), status: StatusUnknownOp},
		{name: "reserved opcode 0x40", frame: withByte(4, 0x40), status: StatusUnknownOp},
		{name: "opcode 0", frame: withByte(4, 0x00), status: StatusUnknownOp},
		{name: "empty body", frame: appendHeader(nil, uint8(OpSelect), 0, 77, 0), status: StatusBadFrame},
		{name: "name too long", frame: bigName, status: StatusBadName},
		{name: "name bad byte", frame: withByte(11, '/'), status: StatusBadName},
		{name: "name starts with dot", frame: withByte(11, '.'), status: StatusBadName},
		{name: "name NUL", frame: withByte(12, 0), status: StatusBadName},
		{name: "name length past body", frame: withByte(10, 60), status: StatusBadFrame},
		{name: "truncated coordinate", frame: frameWith(good[:10+1+5+17], 6+1+5+17), status: StatusBadFrame},
		{name: "coordinate 0", frame: zeroCoord, status: StatusBadCoord},
		{name: "coordinate 1000", frame: coord1000, status: StatusBadCoord},
		{name: "compressed size bomb", frame: bomb, codec: CodecS2, status: StatusTooLarge},
		{name: "s2 expands past limit", frame: expand, codec: CodecS2, maxFrame: 4096, status: StatusTooLarge},
		{name: "zstd expands past limit", frame: expandZ, codec: CodecZstd, maxFrame: 4096, status: StatusTooLarge},
		{name: "s2 more than declared", frame: lying, codec: CodecS2, status: StatusBadFrame},
		{name: "zstd more than declared", frame: lyingZ, codec: CodecZstd, status: StatusBadFrame},
		{name: "s2 expanded ok", frame: expand, codec: CodecS2},
		{name: "zstd expanded ok", frame: expandZ, codec: CodecZstd},
		{name: "zstd frame read with s2", frame: expandZ, codec: CodecS2, status: StatusBadFrame},
		{name: "garbage s2", frame: garbage, codec: CodecS2, status: StatusBadFrame},
		{name: "garbage zstd", frame: garbage, codec: CodecZstd, status: StatusBadFrame},
		{name: "compressed body under 4 bytes", frame: append(appendHeader(nil, uint8(OpPut), 1, 77, 2), 0, 0), codec: CodecZstd, status: StatusBadFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decoder{MaxFrame: tc.maxFrame, Codec: tc.codec}
			var req Request
			err := d.Decode(tc.frame, &req)
			wantStatus(t, err, tc.status)
			if !tc.noID && req.ID != 77 {
				t.Fatalf("id %d, want 77 reported with the error", req.ID)
			}
			if tc.status != StatusOK && (req.Name != nil || req.Payload != nil) {
				t.Fatalf("views set on error: %+v", req)
			}
			if cap(d.scratch) > d.maxFrame() {
				t.Fatalf("scratch grew to %d, above max frame %d", cap(d.scratch), d.maxFrame())
			}
		})
	}
}

// TestDecodeIgnoresUnusedFields: ops that need no coordinate or name accept
// whatever the client put there, as the contract says the server ignores
// them.
func TestDecodeIgnoresUnusedFields(t *testing.T) {
	tests := []struct {
		name   string
		op     Op
		pname  string
		c      phext.Coordinate
		status Status
	}{
		{name: "PING zero coordinate", op: OpPing, c: phext.Coordinate{}},
		{name: "LIST bad name ignored", op: OpList, pname: "a/b", c: phext.Origin},
		{name: "GET zero coordinate", op: OpGet, c: phext.Coordinate{}},
		{name: "GET bad name", op: OpGet, pname: "a/b", c: phext.Origin, status: StatusBadName},
		{name: "DELETE zero coordinate", op: OpDelete, c: phext.Coordinate{}, status: StatusBadCoord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			var req Request
			err := d.Decode(AppendRequest(nil, tc.op, 5, []byte(tc.pname), tc.c, nil), &req)
			wantStatus(t, err, tc.status)
			if req.Op != tc.op || req.ID != 5 {
				t.Fatalf("header %v/%d", req.Op, req.ID)
			}
		})
	}
}

// TestRoundTripRequests encodes every operation, plain and compressed with
// both codecs, and decodes it back.
func TestRoundTripRequests(t *testing.T) {
	big := []byte(strings.Repeat("the quick brown fox ", 400)) // 8000 B, compressible
	for _, op := range AllOps {
		if op == OpHello {
			continue
		}
		for _, codec := range []uint8{CodecNone, CodecZstd, CodecS2} {
			for _, payload := range [][]byte{nil, []byte("small"), big} {
				t.Run(op.String()+"/"+codecName(codec)+"/"+sizeName(payload), func(t *testing.T) {
					name := []byte("lib-1.notes")
					frame := AppendCompressedRequest(nil, op, 0xCAFEBABE, name, c123, payload, codec)
					wantCompressed := codec != CodecNone && len(payload) >= CompressThreshold
					if got := frame[5]&FlagCompressed != 0; got != wantCompressed {
						t.Fatalf("compressed=%v, want %v", got, wantCompressed)
					}
					if wantCompressed && len(frame) >= len(payload) {
						t.Fatalf("compressed frame %d bytes for %d payload", len(frame), len(payload))
					}
					d := Decoder{Codec: codec}
					var req Request
					if err := d.Decode(frame, &req); err != nil {
						t.Fatal(err)
					}
					if req.Op != op || req.ID != 0xCAFEBABE || !bytes.Equal(req.Name, name) ||
						req.Coord != c123 || !bytes.Equal(req.Payload, payload) {
						t.Fatalf("decoded %+v", req)
					}
				})
			}
		}
	}
}

// TestRebase: a request decoded from one buffer and re-pointed at a copy
// of the frame reads the same fields, all from the copy: the original
// buffer can be overwritten (an event loop queues a copy of its frame for
// a worker, with the decoding it made).
func TestRebase(t *testing.T) {
	kib := bytes.Repeat([]byte("k"), 1024)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{name: "select", frame: AppendRequest(nil, OpSelect, 1, []byte("lib-1.notes"), c123, nil)},
		{name: "default phext", frame: AppendRequest(nil, OpPing, 2, nil, c123, nil)},
		{name: "insert 1KiB", frame: AppendRequest(nil, OpInsert, 3, []byte("n"), c123, kib)},
		{name: "max name", frame: AppendRequest(nil, OpUpdate, 4, bytes.Repeat([]byte("n"), phext.MaxNameLen), c123, []byte("x"))},
		{name: "hello", frame: AppendHello(nil, 5, []byte("pmb-v1-001-abc"), 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(tc.frame)
			var d Decoder
			var want, req Request
			if err := d.Decode(bytes.Clone(tc.frame), &want); err != nil {
				t.Fatal(err)
			}
			if err := d.Decode(orig, &req); err != nil {
				t.Fatal(err)
			}
			cp := bytes.Clone(orig)
			req.Rebase(cp)
			for i := range orig {
				orig[i] = 0xEE // the loop's buffer, reused
			}
			if req.Op != want.Op || req.Flags != want.Flags || req.ID != want.ID || req.Coord != want.Coord ||
				!bytes.Equal(req.Name, want.Name) || !bytes.Equal(req.Payload, want.Payload) {
				t.Fatalf("rebased %+v, want %+v", req, want)
			}
			for _, v := range [][]byte{req.Name, req.Payload} {
				if len(v) > 0 && !within(v, cp) {
					t.Fatalf("a view of %d bytes is not in the copy", len(v))
				}
			}
		})
	}
}

// within reports whether v is a subslice of b.
func within(v, b []byte) bool {
	for i := range b {
		if &b[i] == &v[0] {
			return len(b)-i >= len(v)
		}
	}
	return false
}

func TestRoundTripResponses(t *testing.T) {
	big := []byte(strings.Repeat("scroll text ", 1000))
	random := make([]byte, 6000) // incompressible: must go out raw
	x := uint32(1)
	for i := range random {
		x = x*1664525 + 1013904223
		random[i] = byte(x >> 24)
	}
	tests := []struct {
		name           string
		st             Status
		body           []byte
		codec          uint8
		wantCompressed bool
	}{
		{name: "ok empty", st: StatusOK},
		{name: "ok small zstd", st: StatusOK, body: []byte("abc"), codec: CodecZstd},
		{name: "ok big none", st: StatusOK, body: big},
		{name: "ok big zstd", st: StatusOK, body: big, codec: CodecZstd, wantCompressed: true},
		{name: "ok big s2", st: StatusOK, body: big, codec: CodecS2, wantCompressed: true},
		{name: "random zstd raw", st: StatusOK, body: random, codec: CodecZstd},
		{name: "random s2 raw", st: StatusOK, body: random, codec: CodecS2},
		{name: "error", st: StatusQuota, body: []byte("over quota")},
		{name: "unknown status", st: Status(0x33), body: []byte("x")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("keep")
			frame := AppendCompressedResponse(bytes.Clone(prefix), 9, tc.st, tc.body, tc.codec)
			if !bytes.Equal(frame[:4], prefix) {
				t.Fatal("prefix overwritten")
			}
			frame = frame[4:]
			if got := frame[5] == FlagCompressed; got != tc.wantCompressed {
				t.Fatalf("compressed=%v, want %v", got, tc.wantCompressed)
			}
			d := Decoder{Codec: tc.codec}
			var resp Response
			if err := d.DecodeResponse(frame, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Status != tc.st || resp.ID != 9 || !bytes.Equal(resp.Body, tc.body) {
				t.Fatalf("decoded status %v id %d body %d bytes", resp.Status, resp.ID, len(resp.Body))
			}
			if !tc.wantCompressed {
				// The header-only encoder plus the body must give the same bytes.
				h := AppendResponseHeader(nil, 9, tc.st, len(tc.body))
				if !bytes.Equal(append(h, tc.body...), frame) {
					t.Fatal("AppendResponseHeader+body differs from the frame")
				}
			}
		})
	}
}

func TestAppendErr(t *testing.T) {
	f := AppendErr(nil, 3, errors.New("disk on fire"))
	var d Decoder
	var r Response
	if err := d.DecodeResponse(f, &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusInternal || string(r.Body) != "disk on fire" {
		t.Fatalf("%v %q", r.Status, r.Body)
	}
	f = AppendErr(nil, 3, ErrBadName)
	if err := d.DecodeResponse(f, &r); err != nil || r.Status != StatusBadName {
		t.Fatalf("%v %v", r.Status, err)
	}
}

func TestErrorsIs(t *testing.T) {
	var d Decoder
	var req Request
	err := d.Decode(AppendRequest(nil, OpSelect, 1, []byte("a/b"), c123, nil), &req)
	if !errors.Is(err, ErrBadName) || errors.Is(err, ErrBadCoord) {
		t.Fatalf("errors.Is mismatch for %v", err)
	}
	if StatusOf(err) != StatusBadName || StatusOf(nil) != StatusOK || StatusOf(errors.New("x")) != StatusInternal {
		t.Fatal("StatusOf")
	}
}

// TestSplitPoints feeds a stream of frames byte by byte and at every split
// into two chunks: the reader reports need-more until a frame is complete,
// and the frames come out whole, in order, decoded as sent.
func TestSplitPoints(t *testing.T) {
	var all []byte
	all = AppendHello(all, 1, []byte("pmb-v1-001-token"), AcceptZstd|AcceptS2)
	all = AppendRequest(all, OpPing, 2, nil, phext.Origin, nil)
	all = AppendRequest(all, OpSelect, 3, []byte("notes"), c123, nil)
	all = AppendRequest(all, OpInsert, 4, nil, c123, []byte("hello\nworld"))
	all = AppendCompressedRequest(all, OpPut, 5, []byte("x"), phext.Origin, bytes.Repeat([]byte("ab"), 3000), CodecS2)
	const frames = 5

	check := func(t *testing.T, chunks [][]byte) {
		t.Helper()
		s := stream{}
		d := Decoder{Codec: CodecS2}
		var got []uint32
		for _, ch := range chunks {
			s.buf = append(s.buf, ch...)
			for {
				ev, f, err := s.next()
				if ev == fatal {
					t.Fatal(err)
				}
				if ev == needMore {
					break
				}
				var req Request
				if err := d.Decode(f, &req); err != nil {
					t.Fatalf("frame %d: %v", len(got), err)
				}
				got = append(got, req.ID)
			}
		}
		if len(got) != frames || len(s.buf) != 0 {
			t.Fatalf("got ids %v, %d bytes left", got, len(s.buf))
		}
		for i, id := range got {
			if id != uint32(i+1) {
				t.Fatalf("out of order: %v", got)
			}
		}
	}
	t.Run("byte by byte", func(t *testing.T) {
		chunks := make([][]byte, len(all))
		for i := range all {
			chunks[i] = all[i : i+1]
		}
		check(t, chunks)
	})
	t.Run("every split", func(t *testing.T) {
		for i := 0; i <= len(all); i++ {
			check(t, [][]byte{all[:i], all[i:]})
		}
	})
	t.Run("need more before complete", func(t *testing.T) {
		f := AppendRequest(nil, OpInsert, 4, []byte("n"), c123, []byte("payload"))
		for i := 0; i < len(f); i++ {
			s := stream{buf: bytes.Clone(f[:i])}
			if ev, _, err := s.next(); ev != needMore {
				t.Fatalf("at %d bytes: event %v err %v", i, ev, err)
			}
		}
	})
}

func codecName(c uint8) string {
	return [...]string{"none", "zstd", "s2"}[c]
}

func sizeName(p []byte) string {
	switch {
	case p == nil:
		return "empty"
	case len(p) < CompressThreshold:
		return "small"
	}
	return "big"
}

// TestPayloadOffset: the offset PayloadOffset gives from a frame's name
// length byte is where Decode's Payload starts, for every name length
// Decode accepts; longer names are not ok.
func TestPayloadOffset(t *testing.T) {
	var d Decoder
	for n := 0; n <= phext.MaxNameLen; n++ {
		frame := AppendRequest(nil, OpPut, 1, bytes.Repeat([]byte("n"), n), phext.Origin, []byte("payload"))
		var req Request
		if err := d.Decode(frame, &req); err != nil {
			t.Fatal(err)
		}
		off, ok := PayloadOffset(frame[HeaderSize])
		if !ok || &frame[off] != &req.Payload[0] {
			t.Fatalf("name of %d bytes: offset %d (ok %v), Decode's payload at %d", n, off, ok, len(frame)-len(req.Payload))
		}
	}
	if _, ok := PayloadOffset(phext.MaxNameLen + 1); ok {
		t.Fatal("a name above MaxNameLen is ok")
	}
}

// TestDecodeArrivingAgreesWithDecode: for every prefix of a request frame
// that reaches its payload, DecodeArriving returns what Decode returns of
// the whole frame (the status of its error, or the same name and
// coordinate and the payload's arrived part); for shorter prefixes and
// compressed frames it decides nothing.
func TestDecodeArrivingAgreesWithDecode(t *testing.T) {
	good := AppendRequest(nil, OpPut, 9, []byte("notes"), phext.Origin, []byte("some text\x17more"))
	flag := append([]byte(nil), good...)
	flag[5] |= 0x04
	badName := AppendRequest(nil, OpPut, 9, []byte("a/b"), phext.Origin, []byte("text"))
	longName := AppendRequest(nil, OpPut, 9, bytes.Repeat([]byte("n"), 65), phext.Origin, []byte("text"))
	badCoord := AppendRequest(nil, OpInsert, 9, []byte("notes"), phext.Coordinate{1, 1, 1, 1, 0, 1, 1, 1, 1}, []byte("text"))
	unknown := append([]byte(nil), good...)
	unknown[4] = 0x7E
	comp := append([]byte(nil), good...)
	comp[5] |= FlagCompressed
	for name, f := range map[string][]byte{"good": good, "flag": flag, "bad name": badName, "long name": longName,
		"bad coordinate": badCoord, "unknown op": unknown, "compressed": comp} {
		var d Decoder
		var whole, part Request
		werr := d.Decode(f, &whole)
		for k := 0; k <= len(f); k++ {
			ok, err := d.DecodeArriving(f[:k], len(f), &part)
			off, named := PayloadOffset(0)
			if k > HeaderSize {
				off, named = PayloadOffset(f[HeaderSize])
			}
			reach := k > HeaderSize && (!named || k >= off)
			if name == "compressed" {
				reach = false
			}
			if ok != reach {
				t.Fatalf("%s, %d of %d bytes: ok %v, want %v", name, k, len(f), ok, reach)
			}
			if !ok {
				continue
			}
			if (err == nil) != (werr == nil) || (err != nil && StatusOf(err) != StatusOf(werr)) {
				t.Fatalf("%s, %d of %d bytes: %v, Decode of the whole: %v", name, k, len(f), err, werr)
			}
			if err == nil && (!bytes.Equal(part.Name, whole.Name) || part.Coord != whole.Coord || part.ID != whole.ID ||
				!bytes.Equal(part.Payload, whole.Payload[:k-off])) {
				t.Fatalf("%s, %d of %d bytes: decoded %+v, want the whole's %+v", name, k, len(f), part, whole)
			}
		}
	}
}
