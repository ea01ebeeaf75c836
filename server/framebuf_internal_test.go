package server

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
	"unsafe"
)

// BenchmarkFrameReceive receives a 60 MiB frame as the event loop does:
// its buffer is made at the header (make, as before issue 13's second
// pass: "make" after the pages went back to the system, as the scavenger
// returns them, "make-resident" on pages a collection freed and kept;
// newFrameBuf's fresh mapping, "mapped"; or frameBuf's, "pooled", which
// from the second frame on is the first frame's mapping, kept idle by
// releaseFrameBuf), then filled 64 KiB per read (gnet's read buffer) and
// given back. max-step-µs is the longest single step on the loop (the
// make, or one 64 KiB copy with the page faults it takes): what a good
// tenant's request on the same loop can wait for. The mapped buffers
// allocate nothing on the Go heap. Run with -benchtime=5x.
func BenchmarkFrameReceive(b *testing.B) {
	const size = 60<<20 + 100
	src := make([]byte, 64<<10)
	for _, mode := range []string{"make", "make-resident", "mapped", "pooled"} {
		b.Run(mode, func(b *testing.B) {
			s := &Server{}
			s.mem.limit = -1
			s.frames = framePool{s: s, max: 1 << 30}
			b.Cleanup(func() { s.unmapFrames(s.frames.expire(0, true)) })
			b.ReportAllocs()
			b.SetBytes(size)
			var maxStep time.Duration
			for range b.N {
				b.StopTimer()
				if mode == "make-resident" {
					runtime.GC()
				} else {
					debug.FreeOSMemory()
				}
				b.StartTimer()
				t0 := time.Now()
				var buf []byte
				switch mode {
				case "mapped":
					buf, _ = s.newFrameBuf(size)
				case "pooled":
					buf, _ = s.frameBuf(&s.mem, size)
				default:
					buf = make([]byte, 0, size)
				}
				maxStep = max(maxStep, time.Since(t0))
				for len(buf) < cap(buf) {
					t0 = time.Now()
					n := copy(buf[len(buf):cap(buf)], src)
					buf = buf[:len(buf)+n]
					maxStep = max(maxStep, time.Since(t0))
				}
				switch mode {
				case "mapped":
					s.unmapFrameBuf(unsafe.Slice(unsafe.SliceData(buf), frameMapLen(size)))
				case "pooled":
					s.releaseFrameBuf(&s.mem, buf, bigFrameCost(size), false)
				}
			}
			b.ReportMetric(float64(maxStep.Microseconds()), "max-step-µs")
		})
	}
}
