package server_test

// Max-size frames from many connections at once: memory stays bounded.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// TestMaxFramesFromManyConns: many connections each send frames of the
// maximum size at once. The server's memory must stay within the documented
// bound. Per connection it holds at most: the frame being received (gnet's
// inbound buffer, whose capacity doubles: ≤ 2 × MaxFrame), the frames queued for its worker (≤
// max(MaxFrame, 1 MiB) bytes, the lead's queue bound), the write being
// executed (≤ MaxFrame), its copy in the commit log's group buffer with
// that buffer's append growth (≤ 2 × MaxFrame) and replies not yet
// written (small here; ≤ MaxOutbound); the store holds what was written. So
//
//	heap ≤ conns × (5 × MaxFrame + max(MaxFrame, 1 MiB) + reply) + stored data
//
// as long as a client does not pipeline further ahead than that (see
// TestInboundBoundedWhenBlocked for one that does).
func TestMaxFramesFromManyConns(t *testing.T) {
	const maxFrame = 1 * mib
	conns := pick(16, 128)
	const perConn = 2
	h := startHostile(t, hostileOpts{opts: server.Options{MaxFrame: maxFrame},
		durability: store.DurabilityNo})
	payload := bytes.Repeat([]byte("m"), maxFrame-protocol.HeaderSize-1-18-4)
	cs := make([]*pconn, conns)
	for i := range cs {
		cs[i] = h.dial(t, "mallory")
	}
	debug.SetGCPercent(10)
	defer debug.SetGCPercent(100)
	// One oversized frame shared by every connection (its id does not
	// matter: the reply's id is read from its header).
	over := protocol.AppendRequest(nil, protocol.OpUpdate, 0, []byte("big"), c9(1), append(bytes.Clone(payload), "xxxxxxxx"...))
	heap0 := heapNow()
	hs := sampleHeap(5 * time.Millisecond)
	var wg sync.WaitGroup
	var okN, tooLarge atomic.Int64
	errs := make(chan error, conns)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() {
				for j := 0; j < perConn; j++ {
					// One scroll per connection: the stored data is
					// conns × MaxFrame.
					if err := c.send(protocol.OpUpdate, "big", c9(uint16(i+1)), payload); err != nil {
						return
					}
				}
				// One frame over the limit: TOO_LARGE, then closed.
				c.nc.Write(over)
			}()
			for j := 0; j <= perConn; j++ {
				r, err := c.recv(60 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("conn %d reply %d: %v", i, j, err)
					return
				}
				switch r.Status {
				case protocol.StatusOK:
					okN.Add(1)
				case protocol.StatusTooLarge:
					tooLarge.Add(1)
				default:
					errs <- fmt.Errorf("conn %d: status %v %s", i, r.Status, r.Body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	peak := hs.finish()
	server := uint64(conns) * (3*maxFrame + max(maxFrame, mib) + 4096)
	stored := uint64(conns) * maxFrame
	// The shared commit log copies each queued write into its group's
	// buffer (≤ one frame per connection in flight) and grows that buffer
	// by append, leaving as much again in garbage until the next GC.
	logGroup := 2 * uint64(conns) * maxFrame
	client := uint64(conns)*maxFrame + 2*maxFrame // this process encodes the frames too
	bound := server + stored + logGroup + client
	t.Logf("%d connections × %d frames of %d B + 1 oversized: %d OK, %d TOO_LARGE; heap %.1f MiB before, peak %.1f MiB (+%.0f MiB); bound: server %.0f + stored %.0f + log group %.0f + test client %.0f = %.0f MiB",
		conns, perConn, maxFrame, okN.Load(), tooLarge.Load(), float64(heap0)/mib, float64(peak)/mib, float64(peak-heap0)/mib,
		float64(server)/mib, float64(stored)/mib, float64(logGroup)/mib, float64(client)/mib, float64(bound)/mib)
	if okN.Load() != int64(conns*perConn) || tooLarge.Load() != int64(conns) {
		t.Errorf("want %d OK and %d TOO_LARGE", conns*perConn, conns)
	}
	// HeapInuse also counts garbage not yet collected: up to GOGC (10 %
	// here) of the live heap.
	if peak > heap0+bound+bound/10+32*mib {
		t.Errorf("peak heap %.1f MiB is over the bound (+10 %% GC slack)", float64(peak)/mib)
	}
}

// TestFatalReplySurvivesTrailingBytes: a client whose oversized frame is
// still arriving when the server answers TOO_LARGE and closes must still
// read the replies sent before it and the TOO_LARGE itself: the server
// stops reading and lingers until the bytes stop (closing a socket with
// bytes arriving makes the kernel reset it, and the client's kernel then
// drops the replies it has not read).
func TestFatalReplySurvivesTrailingBytes(t *testing.T) {
	const maxFrame = 64 << 10
	h := startHostile(t, hostileOpts{opts: server.Options{MaxFrame: maxFrame},
		durability: store.DurabilityNo})
	c := h.dial(t, "mallory")
	if err := c.send(protocol.OpUpdate, "doc", c9(1), []byte("kept")); err != nil {
		t.Fatal(err)
	}
	over := protocol.AppendRequest(nil, protocol.OpUpdate, 99, []byte("doc"), c9(2), bytes.Repeat([]byte("o"), 2*maxFrame))
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(over[:4096]); err != nil {
		t.Fatal(err)
	}
	// Keep sending the body after the server has answered, without
	// reading yet.
	for off := 4096; off < len(over) && off < 4096+40*1024; off += 1024 {
		time.Sleep(10 * time.Millisecond)
		if _, err := c.nc.Write(over[off : off+1024]); err != nil {
			break // the server closed: what it sent must still be readable
		}
	}
	want := []protocol.Status{protocol.StatusOK, protocol.StatusTooLarge}
	for i, st := range want {
		r, err := c.recv(10 * time.Second)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if r.Status != st {
			t.Fatalf("reply %d: status %v (%s), want %v", i, r.Status, r.Body, st)
		}
	}
	if !c.closedWithin(5 * time.Second) {
		t.Fatal("connection not closed after the TOO_LARGE reply")
	}
}
