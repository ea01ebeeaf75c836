package server_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// TestDirectReadChunks: pipelined PING / UPDATE / SELECT around frames of
// 1-4 MiB (one past hugeFrame) and 70 KiB, written in chunks of random
// sizes (in the first round in 1-20-byte chunks near every MiB boundary of
// the stream)
// with random short pauses, are all answered in order with their contents
// intact: a large frame's bytes reach its buffer in order whether gnet
// read them (its 64 KiB reads, c.Read) or the loop read the socket
// straight into the frame (readSocket), and the next frame is parsed
// from the right byte, with idle frame mappings reused (4eb68a0). Seeded:
// the chunking is the same every run; only how the kernel splits it
// between reads varies. Written in review of 4eb68a0 (review13d).
func TestDirectReadChunks(t *testing.T) {
	h := startHostile(t, hostileOpts{durability: store.DurabilityNo,
		opts: server.Options{MaxFrame: 8 * mib, MaxClientMemory: 64 * mib, MaxClientMemoryPerTenant: 64 * mib}})
	c := h.dial(t, "mallory")
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 3 {
		var batch []byte
		var want [][]byte
		id := uint32(1)
		for k := range 4 {
			size := []int{mib + rng.IntN(mib), 70 << 10, 4*mib + 7, 1 * mib}[k]
			p := bytes.Repeat([]byte{byte('a' + (round+k)%26)}, size)
			batch = protocol.AppendRequest(batch, protocol.OpPing, id, nil, phext.Origin, nil)
			id++
			want = append(want, nil)
			batch = protocol.AppendRequest(batch, protocol.OpUpdate, id, []byte("x"), c9(uint16(k+1)), p)
			id++
			want = append(want, nil)
			batch = protocol.AppendRequest(batch, protocol.OpSelect, id, []byte("x"), c9(uint16(k+1)), nil)
			id++
			want = append(want, p)
		}
		wr := rand.New(rand.NewPCG(uint64(round), 3))
		written := make(chan error, 1)
		go func(b []byte) {
			c.nc.SetWriteDeadline(time.Now().Add(60 * time.Second))
			sent := 0
			for len(b) > 0 {
				n := min(len(b), 1+wr.IntN(3*mib/2))
				if round%3 == 0 && sent%mib < 300 {
					n = min(len(b), 1+wr.IntN(20))
				}
				if _, err := c.nc.Write(b[:n]); err != nil {
					written <- err
					return
				}
				sent += n
				b = b[n:]
				if wr.IntN(4) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			written <- nil
		}(batch)
		for i := range want {
			r, err := c.recv(30 * time.Second)
			if err != nil || r.Status != protocol.StatusOK || r.ID != uint32(i+1) {
				t.Fatalf("round %d reply %d: %v %v id %d %s", round, i+1, err, r.Status, r.ID, r.Body[:min(len(r.Body), 100)])
			}
			if want[i] != nil && !bytes.Equal(r.Body, want[i]) {
				t.Fatalf("round %d reply %d: body of %d bytes differs", round, i+1, len(r.Body))
			}
		}
		if err := <-written; err != nil {
			t.Fatalf("round %d: write: %v", round, err)
		}
	}
}
