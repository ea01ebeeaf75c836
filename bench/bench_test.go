package bench

import (
	"context"
	"testing"
)

// BenchmarkConnStep is the load loop's own cost per operation (issue,
// model, verification, latency record) against an in-memory server.
func BenchmarkConnStep(b *testing.B) {
	t := &testing.T{}
	o := &Options{Addr: "mem", Tenants: 1, Pipeline: 16, Mix: DefaultMix, Size: SizeRange{1024, 1024}, Scrolls: 20}
	c := newTestConn(t, o, newMemWire(16))
	b.ReportAllocs()
	b.SetBytes(1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for c.n < len(c.ring) {
			c.issue(phaseRun, true)
		}
		if err := c.recvOne(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPoolMatches is the cost of verifying a 1 KiB SELECT answer.
func BenchmarkPoolMatches(b *testing.B) {
	p := newPool(1<<20, 1)
	segs := []segment{{off: 100, n: 1024}}
	doc := p.appendSegment(nil, 3, segs[0])
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for i := 0; i < b.N; i++ {
		if !p.matches(doc, 3, segs) {
			b.Fatal("no match")
		}
	}
}

// BenchmarkSQWireEcho is one SQ round trip (pipeline 16) through
// client.RawConn to the in-process echo server: generator plus network
// plus a do-nothing server, on this machine.
func BenchmarkSQWireEcho(b *testing.B) {
	e, err := StartEcho("127.0.0.1:0", 1024, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Stop()
	w, err := dialSQ(false, 0)(context.Background(), e.Addr(), "x")
	if err != nil {
		b.Fatal(err)
	}
	defer w.close()
	t := &testing.T{}
	o := &Options{Addr: e.Addr(), Tenants: 1, Pipeline: 16, NoVerify: true, Scrolls: 20}
	c := newTestConn(t, o, w)
	b.ReportAllocs()
	b.SetBytes(1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for c.n < len(c.ring) {
			c.issue(phaseRun, true)
		}
		if c.unflushed > 0 && (c.unflushed == c.n || 2*c.unflushed >= len(c.ring)) {
			if err := c.w.flush(); err != nil {
				b.Fatal(err)
			}
			c.unflushed = 0
		}
		if err := c.recvOne(); err != nil {
			b.Fatal(err)
		}
	}
	// End with the in-flight answers so the timer covers the round trips.
	for c.n > 0 {
		if c.unflushed > 0 {
			c.w.flush()
			c.unflushed = 0
		}
		if err := c.recvOne(); err != nil {
			b.Fatal(err)
		}
	}
}
