package protocol

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/phext/sq/phext"
)

// Allocation budgets for the hot path: per-request decode and encode must
// not allocate (STYLE 13). A failure here means a view escaped or a buffer
// is no longer reused.
func TestAllocBudgets(t *testing.T) {
	kib := bytes.Repeat([]byte("x"), 1024)
	name := []byte("notes")
	sel := AppendRequest(nil, OpSelect, 1, name, c123, nil)
	ins := AppendRequest(nil, OpInsert, 2, name, c123, kib)
	resp := AppendResponse(nil, 1, StatusOK, kib)
	hello := AppendHello(nil, 1, []byte("pmb-v1-001-abc"), 3)
	compressed := AppendCompressedResponse(nil, 1, StatusOK, bytes.Repeat(kib, 8), CodecS2)
	buf := make([]byte, 0, 4096)
	poolBudget := 0.0
	if raceEnabled {
		// Under -race sync.Pool drops items on purpose and Get may miss,
		// so a pooled buffer can cost its struct and its slice.
		poolBudget = 2
	}
	var d Decoder
	var req Request
	var r Response
	dc := Decoder{Codec: CodecS2}
	insCopy := bytes.Clone(ins)
	var rebased Request
	_ = d.Decode(ins, &rebased)
	tests := []struct {
		name string
		max  float64
		fn   func()
	}{
		{name: "decode SELECT", fn: func() { _ = d.Decode(sel, &req) }},
		{name: "decode INSERT 1KiB", fn: func() { _ = d.Decode(ins, &req) }},
		{name: "decode response 1KiB", fn: func() { _ = d.DecodeResponse(resp, &r) }},
		{name: "decode HELLO", fn: func() { _, _, _ = DecodeHello(hello) }},
		{name: "decode s2 response (warm scratch)", fn: func() { _ = dc.DecodeResponse(compressed, &r) }},
		{name: "encode SELECT", fn: func() { buf = AppendRequest(buf[:0], OpSelect, 1, name, c123, nil) }},
		{name: "encode INSERT 1KiB", fn: func() { buf = AppendRequest(buf[:0], OpInsert, 2, name, c123, kib) }},
		{name: "encode response 1KiB", fn: func() { buf = AppendResponse(buf[:0], 1, StatusOK, kib) }},
		{name: "encode response header", fn: func() { buf = AppendResponseHeader(buf[:0], 1, StatusOK, 1024) }},
		{name: "encode small response via compressed path", fn: func() {
			buf = AppendCompressedResponse(buf[:0], 1, StatusOK, kib, CodecZstd)
		}},
		{name: "FrameSize", fn: func() { _, _ = FrameSize(ins, 0) }},
		{name: "Rebase INSERT 1KiB", fn: func() { rebased.Rebase(insCopy) }},
		{name: "pooled buffer", max: poolBudget, fn: func() {
			b := GetBuffer()
			b.B = AppendRequest(b.B, OpInsert, 2, name, phext.Origin, kib)
			PutBuffer(b)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn() // warm up scratch and pools
			if n := testing.AllocsPerRun(200, tc.fn); n > tc.max {
				t.Fatalf("%v allocs per run, budget %v", n, tc.max)
			}
		})
	}
}

// TestDecompressionMemoryBound sends small frames that claim or expand to a
// large size and checks that the decoder allocates no more than its max
// frame, whatever the codec.
func TestDecompressionMemoryBound(t *testing.T) {
	const maxFrame = 64 << 10
	huge := bytes.Repeat([]byte{'a'}, 16<<20) // compresses to a few KiB
	tests := []struct {
		name  string
		codec uint8
	}{
		{name: "zstd", codec: CodecZstd},
		{name: "s2", codec: CodecS2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame := AppendCompressedResponse(nil, 1, StatusOK, huge, tc.codec)
			if len(frame) > 2<<20 {
				t.Fatalf("test frame not small: %d", len(frame))
			}
			// The same data with a lying declared size under the limit.
			lying := bytes.Clone(frame)
			binary.BigEndian.PutUint32(lying[HeaderSize:], 1000)
			for _, c := range []struct {
				name  string
				frame []byte
				want  Status
			}{
				{name: "declared too large", frame: frame, want: StatusTooLarge},
				{name: "declared small, expands", frame: lying, want: StatusBadFrame},
			} {
				d := Decoder{MaxFrame: len(frame) + 1<<10, Codec: tc.codec}
				var r Response
				for range ZstdStreams() + 1 {
					_ = d.DecodeResponse(c.frame, &r) // warm the codec's own state (every pooled decoder)
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i := 0; i < 10; i++ {
					err := d.DecodeResponse(c.frame, &r)
					wantStatus(t, err, c.want)
				}
				runtime.ReadMemStats(&after)
				if grew := after.TotalAlloc - before.TotalAlloc; grew > 2*maxFrame {
					t.Fatalf("%s: decoding 10 bombs allocated %d bytes, bound %d", c.name, grew, 2*maxFrame)
				}
			}
		})
	}
}

// TestZstdLargeWindowBound: a zstd frame declaring a large window (not
// single-segment, as another implementation may send) still decodes into
// the U-sized buffer only.
func TestZstdLargeWindowBound(t *testing.T) {
	enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(64<<20), zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte("a"), 16<<20)
	data := enc.EncodeAll(plain, nil)
	_ = enc.Close()
	tests := []struct {
		name     string
		declared uint32
		maxFrame int
		want     Status
	}{
		{name: "declared small, expands", declared: 1000, maxFrame: 1 << 20, want: StatusBadFrame},
		{name: "declared true size over limit", declared: 16 << 20, maxFrame: 1 << 20, want: StatusTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := appendHeader(nil, uint8(StatusOK), FlagCompressed, 1, 4+len(data))
			f = binary.BigEndian.AppendUint32(f, tc.declared)
			f = append(f, data...)
			d := Decoder{MaxFrame: tc.maxFrame, Codec: CodecZstd}
			var r Response
			_ = d.DecodeResponse(f, &r)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := d.DecodeResponse(f, &r)
			runtime.ReadMemStats(&after)
			wantStatus(t, err, tc.want)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(tc.maxFrame) {
				t.Fatalf("allocated %d bytes, above max frame %d", grew, tc.maxFrame)
			}
		})
	}
}

// TestDecompressDeclaredSizeBomb is issue 13's first attack: tiny
// compressed frames whose declared size U is the whole max frame and whose
// body is garbage (or a zstd header that claims the same size). Nothing may
// be allocated from U: the decoder refuses each frame having allocated a
// few KiB, not 64 MiB.
func TestDecompressDeclaredSizeBomb(t *testing.T) {
	const u = DefaultMaxFrame - minLength
	garbage := []byte("\x8f\x3a\x11garbage that decodes to nothing at all")
	// A zstd frame header: single segment, 4-byte content size = u.
	zhdr := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0}
	zhdr = binary.LittleEndian.AppendUint32(zhdr, u)
	zhdr = append(zhdr, garbage...)
	// An s2 block whose own length header also says u.
	s2hdr := binary.AppendUvarint(nil, u)
	s2hdr = append(s2hdr, garbage...)
	tests := []struct {
		name  string
		codec uint8
		body  []byte
	}{
		{name: "zstd garbage", codec: CodecZstd, body: garbage},
		{name: "zstd header claiming U", codec: CodecZstd, body: zhdr},
		{name: "s2 garbage", codec: CodecS2, body: garbage},
		{name: "s2 header claiming U", codec: CodecS2, body: s2hdr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := appendHeader(nil, uint8(OpSelect), FlagCompressed, 9, 4+len(tc.body))
			f = binary.BigEndian.AppendUint32(f, u)
			f = append(f, tc.body...)
			d := Decoder{Codec: tc.codec}
			var req Request
			for range ZstdStreams() + 1 {
				_ = d.Decode(f, &req) // warm the pooled decoders
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range 10 {
				err := d.Decode(f, &req)
				wantStatus(t, err, StatusBadFrame)
			}
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Fatalf("10 frames of %d bytes declaring %d allocated %d bytes", len(f), u, grew)
			}
		})
	}
}

// TestDecompressLarge round-trips bodies larger than a zstd window and the
// decoder's first growth step, for both codecs, and checks the scratch
// never grows past the declared size.
func TestDecompressLarge(t *testing.T) {
	plain := make([]byte, 9<<20+123)
	for i := range plain {
		plain[i] = byte('a' + (i*7+i/1000)%26)
	}
	for _, codec := range []uint8{CodecZstd, CodecS2} {
		f := AppendCompressedRequest(nil, OpPut, 5, nil, phext.Origin, plain, codec)
		if f[5]&FlagCompressed == 0 {
			t.Fatalf("codec %d: body not compressed", codec)
		}
		d := Decoder{MaxFrame: 16 << 20, Codec: codec}
		var req Request
		if err := d.Decode(f, &req); err != nil {
			t.Fatalf("codec %d: %v", codec, err)
		}
		if !bytes.Equal(req.Payload, plain) {
			t.Fatalf("codec %d: payload differs", codec)
		}
		if cap(d.scratch) > 1+phext.MaxNameLen+CoordSize+len(plain) {
			t.Fatalf("codec %d: scratch %d above the declared size", codec, cap(d.scratch))
		}
	}
}

// TestS2ProducesMatchesDecoder: the dry walk that admits s2 bodies counts
// exactly what the decoder produces, for every s2 encoder (the better and
// best ones emit repeat codes).
func TestS2ProducesMatchesDecoder(t *testing.T) {
	encoders := []struct {
		name string
		fn   func(dst, src []byte) []byte
	}{
		{name: "default", fn: s2.Encode},
		{name: "better", fn: s2.EncodeBetter},
		{name: "best", fn: s2.EncodeBest},
	}
	inputs := [][]byte{
		nil,
		[]byte("a"),
		bytes.Repeat([]byte("abc"), 100000),
		bytes.Repeat([]byte{0}, 1<<20),
	}
	mixed := make([]byte, 300000)
	for i := range mixed {
		mixed[i] = byte((i * i / 7) ^ (i >> 5))
	}
	inputs = append(inputs, mixed)
	for _, e := range encoders {
		for i, in := range inputs {
			enc := e.fn(nil, in)
			hl := uvarintLen(enc)
			got, ok := s2Produces(enc[hl:], len(in))
			if !ok || got != len(in) {
				t.Fatalf("%s input %d: walk says %d ok=%v, want %d", e.name, i, got, ok, len(in))
			}
			if _, ok := s2Produces(enc[hl:], len(in)-1); ok && len(in) > 0 {
				t.Fatalf("%s input %d: walk ignores its max", e.name, i)
			}
		}
	}
}

// countingBudget is a Budget with a fixed size.
type countingBudget struct{ used, limit int }

func (b *countingBudget) Reserve(n int) bool {
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}
func (b *countingBudget) Release(n int) { b.used -= n }

// TestDecoderBudget: decompression buffers are charged to the Decoder's
// Budget before they grow; a refusal is StatusBusy, and dropping the
// scratch returns the charge.
func TestDecoderBudget(t *testing.T) {
	plain := bytes.Repeat([]byte("budget "), 300<<10) // 2.1 MiB
	for _, codec := range []uint8{CodecZstd, CodecS2} {
		f := AppendCompressedRequest(nil, OpPut, 5, nil, phext.Origin, plain, codec)
		small := &countingBudget{limit: 1 << 20}
		d := Decoder{Codec: codec, Budget: small}
		var req Request
		wantStatus(t, d.Decode(f, &req), StatusBusy)
		big := &countingBudget{limit: 8 << 20}
		d = Decoder{Codec: codec, Budget: big}
		if err := d.Decode(f, &req); err != nil || !bytes.Equal(req.Payload, plain) {
			t.Fatalf("codec %d: %v", codec, err)
		}
		if big.used < len(plain) || big.used > 2*len(plain)+minGrow {
			t.Fatalf("codec %d: charged %d for a %d-byte body", codec, big.used, len(plain))
		}
		d.Release()
		if big.used != 0 {
			t.Fatalf("codec %d: %d still charged after Release", codec, big.used)
		}
	}
}
