package protocol

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"testing"

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
				_ = d.DecodeResponse(c.frame, &r) // warm the codec's own state
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
