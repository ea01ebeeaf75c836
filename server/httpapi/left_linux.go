package httpapi

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the peer of the socket rc has closed it (a
// FIN: POLLRDHUP, whatever unread data is still queued before it) or reset
// it, without reading from it.
func peerClosed(rc syscall.RawConn) bool {
	gone := false
	rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 {
			gone = p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return gone
}
