package store

import (
	"golang.org/x/sys/unix"
)

// mmapFile maps size bytes of fd read-only. A stray write through the
// returned slice faults instead of corrupting the snapshot.
func mmapFile(fd uintptr, size int) ([]byte, error) {
	return unix.Mmap(int(fd), 0, size, unix.PROT_READ, unix.MAP_SHARED)
}

// munmapFile unmaps b. Every slice into b must be dead before this call.
func munmapFile(b []byte) error {
	return unix.Munmap(b)
}

// noFollow is or-ed into every open of a phext file: a symbolic link planted
// in a data dir must not lead reads or writes outside it (open fails with
// ELOOP instead).
const noFollow = unix.O_NOFOLLOW
