package server

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapFrame maps size bytes of private anonymous memory, readable and
// writable, asking for transparent huge pages (MADV_HUGEPAGE; the
// default THP mode, "madvise", uses them only where asked). MmapPtr,
// unlike unix.Mmap, keeps no table of mappings (and takes no lock).
//
// Huge pages because a page fault is what filling fresh memory costs: on
// the project's VM 4 KiB faults run at ~250 MB/s (~15 µs each: 240 ms
// for 60 MiB, whether a make clears the pages or the frame's bytes are
// copied into them), 2 MiB ones at 7–11 GB/s once the host backs the
// memory (5–9 ms for 60 MiB, the slowest 64 KiB copy 0.2–0.5 ms).
// Without THP the mapping still works, with 4 KiB pages.
func mapFrame(size int) ([]byte, error) {
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	b := unsafe.Slice((*byte)(p), size)
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // EINVAL without THP: 4 KiB pages
	return b, nil
}

// unmapFrame unmaps b (a whole mapping from mapFrame) and reports that
// its memory went back to the system. Every slice into b must be dead.
//
// munmap can fail with ENOMEM: frames mapped next to each other merge
// into one mapping of the kernel's, so unmapping one between two others
// splits it in two, which the kernel refuses once the process is at
// vm.max_map_count. That is no reason for the server to die (it was a
// panic, in a worker: every tenant lost): the frame's pages are then
// given back with MADV_DONTNEED, which changes no mapping, its address
// range (no memory) stays mapped, and err says so.
func unmapFrame(b []byte) (unmapped bool, err error) {
	if err = unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b))); err == nil {
		return true, nil
	}
	if derr := unix.Madvise(b, unix.MADV_DONTNEED); derr != nil {
		return false, err // the pages stay: nothing else to do with them
	}
	return true, err
}
