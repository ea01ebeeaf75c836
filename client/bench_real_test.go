package client_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// Benchmarks against the real server of TestMain (gnet, store with
// durability "no"), sharing the machine's cores with the client.

func realConn(b *testing.B) *client.Conn {
	b.Helper()
	c, err := client.Dial(context.Background(), addr, token)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkRealSelect1K: one request in flight, 1 KiB scroll.
func BenchmarkRealSelect1K(b *testing.B) {
	c := realConn(b)
	ctx := context.Background()
	text := bytes.Repeat([]byte("s"), 1024)
	if _, err := c.Update(ctx, "bench", phext.Origin, text); err != nil {
		b.Fatal(err)
	}
	name := []byte("bench")
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

// BenchmarkRealSelect1KShared: 16 goroutines pipelining over one Conn.
func BenchmarkRealSelect1KShared(b *testing.B) {
	c := realConn(b)
	ctx := context.Background()
	text := bytes.Repeat([]byte("s"), 1024)
	if _, err := c.Update(ctx, "bench", phext.Origin, text); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		name := []byte("bench")
		dst := make([]byte, 0, 2048)
		for pb.Next() {
			st, out, err := c.Do(ctx, protocol.OpSelect, name, phext.Origin, nil, dst[:0])
			if err != nil || st != protocol.StatusOK || len(out) != len(text) {
				b.Fatal(st, err)
			}
		}
	})
}

// BenchmarkRealRawSelect1KDepth16: RawConn, 16 SELECTs in flight.
func BenchmarkRealRawSelect1KDepth16(b *testing.B) {
	ctx := context.Background()
	rc, err := client.DialRaw(ctx, addr, token)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	text := bytes.Repeat([]byte("s"), 1024)
	name := []byte("bench")
	rc.Send(protocol.OpUpdate, name, phext.Origin, text)
	rc.Flush()
	var resp protocol.Response
	if err := rc.Recv(&resp); err != nil || resp.Status != protocol.StatusOK {
		b.Fatal(err, resp.Status)
	}
	const depth = 16
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	inflight := 0
	for i := 0; i < b.N; i++ {
		for inflight < depth {
			rc.Send(protocol.OpSelect, name, phext.Origin, nil)
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
