package server

// Large frames are received into a buffer of their own (conn.go), sized
// at the frame's header and reserved in the memory budget first. For a
// frame of mappedFrame bytes or more that buffer is anonymous memory
// mapped for it alone (framebuf_linux.go) instead of a make on the Go
// heap, and unmapped once the frame is answered (issue 13, a good
// tenant's latency under attack):
//
//   - a make of a large []byte zeroes it before returning, in one step on
//     the event loop that read the header: the execution trace of row M2
//     (4 connections × 60 MiB DELTAs) showed 50–55 ms inside
//     mallocgcLarge's memclr for one frame (its pages had been returned
//     to the OS by the scavenger and were faulted back in by the clear;
//     ~6 ms when they were resident), and every connection of that loop
//     waited for it;
//   - a mapping costs one mmap call (no page is touched); its pages are
//     faulted in, zeroed by the kernel, as the frame's bytes are copied
//     into them, 64 KiB per read (gnet's read buffer), so the cost is
//     spread over the reads that deliver the frame;
//   - munmap gives the pages back at once: a mapped frame is never heap
//     garbage, so it neither waits for a collection nor counts as
//     uncollected garbage in the budget (budget.go, freed), and the
//     collections the budget starts (each with its stop-the-world
//     pauses) are no longer driven by large frames.
//
// The one rule a mapped frame adds: nothing may use a slice into it after
// it is released (releaseFrame). Every request path already copies what
// it keeps (the store clones texts and documents, the change feed copies
// event texts, replies are appended into their own buffers), which the
// frames packed into a connection's reused arena depend on too.

// mappedFrame is the size from which a large frame is received into
// mapped memory; below it a make zeroes at most 1 MiB (≤ ~1 ms even on
// pages faulted in by the clear).
const mappedFrame = 1 << 20

// From hugeFrame on, a frame's mapping is rounded up to whole huge pages
// (hugePage). The kernel aligns an anonymous mapping to 2 MiB only when
// its length is a multiple of 2 MiB; an unaligned one leaves up to 2 MiB
// at each end in 4 KiB pages (~500 faults, ~7 ms here, for a 60 MiB
// frame: 58 of its 60 MiB were huge pages, against all of them rounded).
// The budget charges the rounded length (bigFrameCost): at most 2 MiB
// over the frame's size, and from 4 MiB on at most half of it.
const (
	hugePage  = 2 << 20
	hugeFrame = 4 << 20
)

// frameMapLen is the length of the memory a frame of size bytes is
// received into.
func frameMapLen(size int) int {
	if size >= hugeFrame {
		return (size + hugePage - 1) &^ (hugePage - 1)
	}
	return size
}

// maxMappedFrames bounds the frames mapped at once. Each mapping is one of
// the process's vm.max_map_count (65,530 by default), of which the store
// takes up to half for its open phexts (store.Options.MaxOpenPhexts) and
// the Go runtime and the commit log need theirs; a mapping refused there
// fails a phext's open for every tenant, and the Go runtime dies when its
// own mmap is refused. The memory budget alone bounds mapped frames only
// to MaxClientMemory / mappedFrame (1,024 by default, but 32,768 with a
// 32 GiB budget, and none without a budget), so past this count a large
// frame is answered BUSY, as when the mmap fails. A var for tests.
var maxMappedFrames int64 = 4096

// frameBuf reserves a large frame of size bytes in mem and returns the
// buffer (length 0, capacity size) it is received into: an idle mapping
// of its mapped length when the pool has one (framepool.go), else a new
// one (or, below mappedFrame, a make). ok is false when the budget refused
// it or memory could not be mapped (or maxMappedFrames are mapped
// already); nothing is reserved or allocated then, and the caller answers
// BUSY. On the event loop: it never unmaps.
func (s *Server) frameBuf(mem *memBudget, size int) (b []byte, ok bool) {
	cost := bigFrameCost(size)
	if size >= mappedFrame {
		// Taken out of the pool (and its bytes out of the budget) before
		// the reservation, which could otherwise evict this very mapping
		// to make room for itself.
		if m := s.frames.take(frameMapLen(size)); m != nil {
			if mem.tryReserve(cost) {
				s.frames.reused.Add(1)
				return m[:0:size], true
			}
			s.idleOrUnmap(m, true)
			return nil, false
		}
	}
	if !mem.tryReserve(cost) {
		return nil, false
	}
	if b, ok = s.newFrameBuf(size); !ok {
		// Nothing was allocated: no garbage to collect.
		mem.releaseUnmapped(cost)
	}
	return b, ok
}

// newFrameBuf returns a new buffer (length 0, capacity size) for a large
// frame of size bytes. ok is false when memory could not be mapped (or
// maxMappedFrames are mapped already); nothing was allocated then.
func (s *Server) newFrameBuf(size int) (b []byte, ok bool) {
	if size < mappedFrame {
		return make([]byte, 0, size), true
	}
	if s.stats.framesMappedNow.Add(1) > maxMappedFrames {
		s.stats.framesMappedNow.Add(-1)
		// Idle mappings count too: let the oldest go (unmapped by a
		// goroutine), so that a later frame finds the room.
		s.frames.evict(1)
		return nil, false
	}
	n := frameMapLen(size)
	b, err := mapFrame(n)
	if err != nil {
		s.stats.framesMappedNow.Add(-1)
		s.log.Warn("cannot map memory for a large frame", "bytes", n, "err", err)
		return nil, false
	}
	s.stats.framesMapped.Add(1)
	s.stats.frameBytesMapped.Add(int64(n))
	return b[:0:size], true
}

// unmapFrameBuf unmaps b, a whole mapping from newFrameBuf (off the event
// loops: the work is in proportion to its resident pages). The caller
// holds no other slice into it.
func (s *Server) unmapFrameBuf(b []byte) {
	unmapped, err := unmapFrame(b)
	if err != nil {
		s.log.Warn("cannot unmap a large frame's memory: its pages are released, its address range stays mapped", "bytes", len(b), "err", err)
	}
	if !unmapped {
		// Heap memory where frames are not mapped (framebuf_other.go):
		// garbage the budget counts until a collection (budget.go).
		s.mem.freed(int64(len(b)))
	}
	s.stats.frameBytesMapped.Add(-int64(len(b)))
	s.stats.framesMappedNow.Add(-1)
}
