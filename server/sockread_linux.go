package server

import "golang.org/x/sys/unix"

// readSocket reads what the socket fd holds, at most max bytes, into the
// spare capacity of b and returns b extended by what it read. Only on the
// connection's event loop, and only when gnet holds none of the
// connection's bytes (those come first). A would-block, an end of stream
// or an error reads nothing: gnet's own next read of the socket meets
// them and handles them (it closes on an end or an error).
func readSocket(fd int, b []byte, max int) []byte {
	room := b[len(b):min(cap(b), len(b)+max)]
	if len(room) == 0 {
		return b
	}
	n, err := unix.Read(fd, room)
	if err != nil || n <= 0 {
		return b
	}
	return b[:len(b)+n]
}

// discardSocket drops up to n bytes the socket fd holds, and at most
// directRead, without copying them (recv with MSG_TRUNC, which TCP
// sockets take as "discard", tcp(7)) and returns how many it dropped.
// Same rules as readSocket.
//
// Why at most directRead: dropping is not free, the kernel frees every
// buffer of what it drops (~0.13 ms a MB here), and a TCP socket may hold
// up to tcp_rmem's maximum (32 MiB on this box's kernel). Issue 13's M4
// (an over-quota 60 MB PUT refused after its first MB, the rest dropped)
// made single calls of several MB, and a good tenant on the same loop
// waited that long for its round: p99 ~1.5 ms against 0.1–0.2 ms quiet
// (docs/RELIABILITY.md, M4 seventh pass). The caller drops the rest in
// later rounds, as it reads a large frame in directRead steps.
func discardSocket(fd int, n int) int {
	n = min(n, directRead)
	if n <= 0 {
		return 0
	}
	// No buffer (NULL): MSG_TRUNC on a TCP socket never writes one.
	r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), 0, uintptr(n),
		unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 || int(r) <= 0 {
		return 0
	}
	return int(r)
}
