package server_test

import (
	"bytes"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// heapAllocs is the bytes the Go heap has allocated since the process
// started (cumulative).
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestLargeFrameMapped is row M2's loop stall (issue 13): a large frame's
// buffer was a make of its whole size on the event loop that read its
// header, and make zeroes it in one step (50–55 ms for 60 MiB in the
// trace of four 60 MiB DELTAs, every connection of that loop waiting). A
// frame of at least a MiB is now received into memory mapped for it
// alone: while half of a 12 MiB UPDATE has arrived the Go heap has
// allocated far less than the frame (on the old code: at least its 12
// MiB), the mapping is counted, whole huge pages (so the kernel can back
// all of it with them) and charged as such, the update is stored intact
// (the store copied it before the mapping went), and once it is answered
// the mapping is gone and the budget back to 0; a frame cut off by a
// close is unmapped too. Without the idle pool (FramePool -1): with it an
// answered frame's mapping stays for the next one, which
// TestFramePoolReusesMapping asserts.
func TestLargeFrameMapped(t *testing.T) {
	const maxFrame = 16 * mib
	h := startHostile(t, hostileOpts{durability: store.DurabilityNo,
		opts: server.Options{MaxFrame: maxFrame, MaxClientMemory: 64 * mib, MaxClientMemoryPerTenant: 64 * mib, FramePool: -1}})
	c := h.dial(t, "mallory")
	payload := bytes.Repeat([]byte("0123456789abcdef"), 12*mib/16)
	frame := protocol.AppendRequest(nil, protocol.OpUpdate, 1, []byte("big"), c9(1), payload)
	half := len(frame) / 2
	const hugePage = 2 * mib
	mapped := int64((len(frame) + hugePage - 1) / hugePage * hugePage)

	before := heapAllocs()
	if _, err := c.nc.Write(frame[:half]); err != nil {
		t.Fatal(err)
	}
	sqtest.CheckFor(t, 10*time.Second, "the frame reserved at its header", func() bool {
		return h.srv.Memory().Used >= mapped
	})
	// Received into its buffer, not only reserved: gnet's read buffer is
	// 64 KiB, so a moment for the inbound buffer to drain is enough.
	time.Sleep(100 * time.Millisecond)
	grew := heapAllocs() - before
	if m := h.srv.Memory(); m.FrameBytesMapped != mapped || m.Used < mapped {
		t.Errorf("%d bytes mapped and %d charged while a %d-byte frame arrives, want %d (whole huge pages)",
			m.FrameBytesMapped, m.Used, len(frame), mapped)
	}
	t.Logf("half of a %d MiB frame received: Go heap allocated %d KiB meanwhile", len(frame)/mib, grew>>10)
	if grew >= uint64(len(frame))/4 {
		t.Fatalf("the Go heap allocated %d KiB while half of a %d KiB frame arrived: the frame is on the heap", grew>>10, len(frame)>>10)
	}
	if _, err := c.nc.Write(frame[half:]); err != nil {
		t.Fatal(err)
	}
	if r, err := c.recv(30 * time.Second); err != nil || r.Status != protocol.StatusOK {
		t.Fatalf("UPDATE: %v %v %s", err, r.Status, r.Body)
	}
	if got := c.must(t, protocol.StatusOK, protocol.OpSelect, "big", c9(1), nil); !bytes.Equal(got, payload) {
		t.Fatalf("SELECT after the frame was unmapped: %d bytes, want the %d written", len(got), len(payload))
	}
	m := h.srv.Memory()
	if m.FramesMapped != 1 || m.FrameBytesMapped != 0 {
		t.Fatalf("after the UPDATE: %d frames mapped, %d bytes still mapped; want 1 and 0", m.FramesMapped, m.FrameBytesMapped)
	}
	sqtest.CheckFor(t, 10*time.Second, "the budget freed", func() bool { return h.srv.Memory().Used == 0 })

	// Cut off mid-frame: the connection's close unmaps what arrived.
	c2 := h.dial(t, "mallory")
	if _, err := c2.nc.Write(frame[:half]); err != nil {
		t.Fatal(err)
	}
	sqtest.CheckFor(t, 10*time.Second, "the second frame mapped", func() bool {
		return h.srv.Memory().FrameBytesMapped == mapped
	})
	c2.nc.Close()
	sqtest.CheckFor(t, 10*time.Second, "the cut-off frame unmapped and its reservation released", func() bool {
		m := h.srv.Memory()
		return m.FrameBytesMapped == 0 && m.Used == 0 && m.FramesMapped == 2
	})
	// A small large frame (below a MiB) stays on the heap.
	small := bytes.Repeat([]byte("s"), 200<<10)
	c.must(t, protocol.StatusOK, protocol.OpUpdate, "big", c9(2), small)
	if m := h.srv.Memory(); m.FramesMapped != 2 {
		t.Fatalf("a 200 KiB frame was mapped (%d mapped in all)", m.FramesMapped)
	}
}

// TestMappedFramesBounded: each frame of a MiB or more is a mapping of its
// own, and mappings count against vm.max_map_count, half of which the
// store may take for open phexts; the memory budget bounds them only to
// MaxClientMemory / 1 MiB (none without a budget). Past maxMappedFrames
// (1 here) a large frame is answered BUSY, as when its mmap fails: nothing
// is mapped for it, its reservation goes back (the budget holds the one
// mapped frame only), and once that frame is answered and unmapped the
// same request is mapped and served. Without the idle pool (FramePool
// -1), which would keep the answered frame's mapping for the next frame;
// an idle mapping counts against maxMappedFrames too
// (TestIdleFrameGivesWayAtMapLimit).
func TestMappedFramesBounded(t *testing.T) {
	t.Cleanup(server.SetMaxMappedFrames(1))
	h := startHostile(t, hostileOpts{durability: store.DurabilityNo,
		opts: server.Options{MaxFrame: 8 * mib, MaxClientMemory: 64 * mib, MaxClientMemoryPerTenant: 64 * mib, FramePool: -1}})
	a := h.dial(t, "mallory")
	b := h.dial(t, "mallory")
	payload := bytes.Repeat([]byte("0123456789abcdef"), 2*mib/16)
	frame := protocol.AppendRequest(nil, protocol.OpUpdate, 99, []byte("big"), c9(1), payload)
	half := len(frame) / 2
	if _, err := a.nc.Write(frame[:half]); err != nil {
		t.Fatal(err)
	}
	sqtest.CheckFor(t, 10*time.Second, "a's frame mapped", func() bool {
		return h.srv.Memory().FrameBytesMapped == int64(len(frame))
	})
	if r, err := b.do(protocol.OpUpdate, "big", c9(2), payload); err != nil || r.Status != protocol.StatusBusy {
		t.Fatalf("a second large frame while one is mapped (the most): %v %v %.80s, want BUSY", err, r.Status, r.Body)
	}
	if m := h.srv.Memory(); m.FramesMapped != 1 || m.FrameBytesMapped != int64(len(frame)) {
		t.Fatalf("after the BUSY: %d frames mapped, %d bytes mapped; want 1 and %d", m.FramesMapped, m.FrameBytesMapped, len(frame))
	}
	if _, err := a.nc.Write(frame[half:]); err != nil {
		t.Fatal(err)
	}
	if r, err := a.recv(30 * time.Second); err != nil || r.Status != protocol.StatusOK {
		t.Fatalf("a's UPDATE: %v %v %s", err, r.Status, r.Body)
	}
	b.must(t, protocol.StatusOK, protocol.OpUpdate, "big", c9(2), payload)
	for _, c := range []uint16{1, 2} {
		if got := b.must(t, protocol.StatusOK, protocol.OpSelect, "big", c9(c), nil); !bytes.Equal(got, payload) {
			t.Fatalf("scroll %d: %d bytes, want the %d written", c, len(got), len(payload))
		}
	}
	sqtest.CheckFor(t, 10*time.Second, "every frame unmapped and the budget freed", func() bool {
		m := h.srv.Memory()
		return m.FramesMapped == 2 && m.FrameBytesMapped == 0 && m.Used == 0
	})
}
