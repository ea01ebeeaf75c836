package httpapi

import (
	"context"
	"net"
	"net/http"
	"syscall"
	"time"
)

// A delayed answer (a bad token's 401 past its address's budget, a held
// limit refusal) ends early when its client leaves. net/http ends a
// request's context at its connection's close only once the request's
// body has been read: until then it does not read the socket, so it sees
// no close. A departed client whose body was never read (a bad token's
// POST, a 413 for a body past the limit) kept its handler waiting the
// whole delay, and its place in Options.MaxConns. So while the request
// has a body, the wait also watches the socket itself: every leftPoll it
// asks the kernel, without reading, whether the peer has closed
// (peerClosed), one poll(2) a tick and a goroutine per waiting answer.

// leftPoll is how often a waiting answer's socket is checked for its
// client's close.
const leftPoll = 50 * time.Millisecond

type connKey struct{}

// withConn is the http.Server's ConnContext: requests carry their
// connection, for clientLeft.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// clientLeft returns a channel closed when r's client leaves: r's context
// ends, or, for a request with a body on a connection of StartOn's
// listener, its socket shows the peer's close. Call end once the wait is
// over; it stops the watch.
func clientLeft(r *http.Request) (left <-chan struct{}, end func()) {
	done := r.Context().Done()
	if r.ContentLength == 0 {
		return done, func() {} // no body: net/http watches the socket
	}
	fc, _ := r.Context().Value(connKey{}).(*frontConn)
	if fc == nil {
		return done, func() {}
	}
	sc, ok := fc.Conn.(syscall.Conn)
	if !ok {
		return done, func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return done, func() {}
	}
	gone, stop := make(chan struct{}), make(chan struct{})
	go func() {
		tick := time.NewTicker(leftPoll)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-done:
				close(gone)
				return
			case <-tick.C:
				if peerClosed(rc) {
					close(gone)
					return
				}
			}
		}
	}()
	return gone, func() { close(stop) }
}
