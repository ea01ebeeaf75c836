package client

import (
	"bytes"
	"context"
	"testing"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// The fake server shares the machine's cores with the client, so these
// numbers measure the client path plus a minimal in-process server; the
// end-to-end numbers against the real server belong to the bench harness.

func benchConn(b *testing.B, opts ...Option) (*fakeServer, *Conn) {
	b.Helper()
	s := startFakeTB(b, nil)
	c, err := Dial(context.Background(), s.addr(), s.token, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return s, c
}

// BenchmarkDoSelect1K: one goroutine, one request in flight, 1 KiB scroll.
func BenchmarkDoSelect1K(b *testing.B) {
	_, c := benchConn(b)
	ctx := context.Background()
	text := bytes.Repeat([]byte("a"), 1024)
	if _, err := c.Update(ctx, "b", phext.Origin, text); err != nil {
		b.Fatal(err)
	}
	name := []byte("b")
	dst := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, out, err := c.Do(ctx, protocol.OpSelect, name, phext.Origin, nil, dst[:0])
		if err != nil || st != protocol.StatusOK || len(out) != len(text) {
			b.Fatal(st, err)
		}
	}
}

// BenchmarkDoInsertParallel: GOMAXPROCS×4 goroutines pipelining 64-byte
// INSERTs over one shared Conn.
func BenchmarkDoInsertParallel(b *testing.B) {
	_, c := benchConn(b)
	ctx := context.Background()
	text := bytes.Repeat([]byte("i"), 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]byte, 0, 64)
		name := []byte("par")
		for pb.Next() {
			if _, _, err := c.Do(ctx, protocol.OpUpdate, name, phext.Origin, text, dst[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRawPipelined16: RawConn with 16 SELECTs in flight.
func BenchmarkRawPipelined16(b *testing.B) {
	s := startFakeTB(b, nil)
	ctx := context.Background()
	rc, err := DialRaw(ctx, s.addr(), s.token)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	text := bytes.Repeat([]byte("r"), 1024)
	rc.Send(protocol.OpUpdate, nil, phext.Origin, text)
	rc.Flush()
	var resp protocol.Response
	if err := rc.Recv(&resp); err != nil {
		b.Fatal(err)
	}
	const depth = 16
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	inflight := 0
	for i := 0; i < b.N; i++ {
		for inflight < depth {
			rc.Send(protocol.OpSelect, nil, phext.Origin, nil)
			inflight++
		}
		rc.Flush()
		if err := rc.Recv(&resp); err != nil || len(resp.Body) != len(text) {
			b.Fatal(err)
		}
		inflight--
	}
	b.StopTimer()
	rc.Flush()
	for ; inflight > 0; inflight-- {
		rc.Recv(&resp)
	}
}
