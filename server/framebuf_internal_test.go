package server

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// BenchmarkFrameReceive receives a 60 MiB frame as the event loop does:
// its buffer is made at the header (make, as before issue 13's second
// pass: "make" after the pages went back to the system, as the scavenger
// returns them, "make-resident" on pages a collection freed and kept; or
// newFrameBuf's mapping), then filled 64 KiB per read (gnet's read
// buffer) and given back. max-step-µs is the longest single step on
// the loop (the make, or one 64 KiB copy with the page faults it takes):
// what a good tenant's request on the same loop can wait for. The mapped
// buffer allocates nothing on the Go heap. Run with -benchtime=5x.
func BenchmarkFrameReceive(b *testing.B) {
	const size = 60<<20 + 100
	src := make([]byte, 64<<10)
	s := &Server{}
	for _, mode := range []string{"make", "make-resident", "mapped"} {
		b.Run(mode, func(b *testing.B) {
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
				if mode != "mapped" {
					buf = make([]byte, 0, size)
				} else {
					buf, _ = s.newFrameBuf(size)
				}
				maxStep = max(maxStep, time.Since(t0))
				for len(buf) < cap(buf) {
					t0 = time.Now()
					n := copy(buf[len(buf):cap(buf)], src)
					buf = buf[:len(buf)+n]
					maxStep = max(maxStep, time.Since(t0))
				}
				if mode == "mapped" {
					s.freeFrameBuf(buf)
				}
			}
			b.ReportMetric(float64(maxStep.Microseconds()), "max-step-µs")
		})
	}
}
