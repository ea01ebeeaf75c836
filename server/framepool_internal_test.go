package server

import "testing"

// TestFramePoolPutKeepsOldWhenNewDoesNotFit: when the pool is full and a
// new mapping would push the server budget over its limit, the pool keeps
// the mappings it holds and refuses only the new one. Before, it let the
// oldest go to make room, then refused the new one for the budget: both
// were unmapped, and the idle memory was lost for nothing.
func TestFramePoolPutKeepsOldWhenNewDoesNotFit(t *testing.T) {
	const unit = 1 << 20
	s := &Server{}
	s.mem.limit = 4 * unit
	s.frames = framePool{s: s, max: 3 * unit}
	if !s.mem.tryReserve(2 * unit) { // a frame being received
		t.Fatal("reservation refused")
	}
	a, b := make([]byte, unit), make([]byte, unit)
	for _, m := range [][]byte{a, b} {
		if kept, drop := s.frames.put(m, nil); !kept || len(drop) != 0 {
			t.Fatalf("put into room: kept %v, %d dropped", kept, len(drop))
		}
	}
	// 2 MiB more: the pool (3) makes room by letting a go, but the budget
	// (2 reserved + 1 idle + 2) would be over 4.
	kept, drop := s.frames.put(make([]byte, 2*unit), nil)
	if kept || len(drop) != 0 {
		t.Fatalf("put over the budget: kept %v, %d dropped, want refused with nothing dropped", kept, len(drop))
	}
	if got := s.frames.bytes.Load(); got != 2*unit {
		t.Fatalf("pool holds %d bytes, want a and b (%d)", got, 2*unit)
	}
	if got := s.mem.used.Load(); got != 4*unit {
		t.Fatalf("budget used %d, want %d", got, 4*unit)
	}
	// With the reservation gone it fits: a goes, the new one stays.
	s.mem.releaseUnmapped(2 * unit)
	kept, drop = s.frames.put(make([]byte, 2*unit), nil)
	if !kept || len(drop) != 1 || &drop[0][0] != &a[0] {
		t.Fatalf("put with room: kept %v, %d dropped, want kept with a dropped", kept, len(drop))
	}
	if got, used := s.frames.bytes.Load(), s.mem.used.Load(); got != 3*unit || used != 3*unit {
		t.Fatalf("pool %d bytes, budget used %d, want %d both", got, used, 3*unit)
	}
}

// TestFramesReusedCountsOnlyReceived: FramesReused counts a frame received
// into an idle mapping, not a mapping taken out of the pool for a frame
// whose reservation is then refused (the mapping goes back to the pool).
func TestFramesReusedCountsOnlyReceived(t *testing.T) {
	const size = 2 << 20
	s := &Server{}
	s.mem.limit = 64 << 20
	s.frames = framePool{s: s, max: 16 << 20}
	s.mem.spare = &s.frames
	if kept, _ := s.frames.put(make([]byte, frameMapLen(size)), nil); !kept {
		t.Fatal("the pool refused an idle mapping")
	}
	small := &memBudget{limit: size / 2, parent: &s.mem} // a share the frame does not fit
	if _, ok := s.frameBuf(small, size); ok {
		t.Fatal("a frame over its share was reserved")
	}
	if n := s.frames.reused.Load(); n != 0 {
		t.Fatalf("FramesReused %d after a refused reservation, want 0", n)
	}
	if s.frames.bytes.Load() != int64(frameMapLen(size)) {
		t.Fatal("the mapping did not go back to the pool")
	}
	share := &memBudget{limit: 16 << 20, parent: &s.mem}
	b, ok := s.frameBuf(share, size)
	if !ok || cap(b) != size {
		t.Fatalf("frame refused (%v) or of capacity %d", ok, cap(b))
	}
	if n := s.frames.reused.Load(); n != 1 {
		t.Fatalf("FramesReused %d after a frame received into an idle mapping, want 1", n)
	}
	share.releaseUnmapped(bigFrameCost(size))
}
