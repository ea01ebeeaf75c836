package server

import (
	"sync"
	"time"
)

// authLimiter gives each IP address a budget of failed HELLOs per minute.
// Within budget a failure is answered at once; past it each further failure
// waits a little longer (up to maxAuthDelay), so guessing tokens from one
// address is slow while a mistyped token is not punished. It is called on
// the event loops and holds its mutex only for a map update.
type authLimiter struct {
	mu     sync.Mutex
	budget int
	byIP   map[string]*authBucket
}

type authBucket struct {
	windowStart time.Time
	failures    int
}

// authDelayStep is how much longer each failure past the budget waits.
// A variable for tests (SetAuthDelayStep).
var authDelayStep = 250 * time.Millisecond

const (
	authWindow    = time.Minute
	maxAuthDelay  = 5 * time.Second
	maxAuthBucket = 100000 // tracked addresses before the table is reset
)

func (l *authLimiter) init(budget int) {
	l.budget = budget
	l.byIP = make(map[string]*authBucket)
}

// fail records a failure from ip and returns how long to wait before
// answering it.
func (l *authLimiter) fail(ip string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.byIP[ip]
	if b == nil {
		if len(l.byIP) >= maxAuthBucket {
			l.byIP = make(map[string]*authBucket)
		}
		b = &authBucket{windowStart: now}
		l.byIP[ip] = b
	}
	if now.Sub(b.windowStart) > authWindow {
		b.windowStart, b.failures = now, 0
	}
	b.failures++
	over := b.failures - l.budget
	if over <= 0 {
		return 0
	}
	d := time.Duration(over) * authDelayStep
	if d > maxAuthDelay {
		d = maxAuthDelay
	}
	return d
}

// sweep forgets addresses whose window has passed.
func (l *authLimiter) sweep(now time.Time) {
	l.mu.Lock()
	for ip, b := range l.byIP {
		if now.Sub(b.windowStart) > authWindow {
			delete(l.byIP, ip)
		}
	}
	l.mu.Unlock()
}

// A delayed answer keeps its connection open (it counts against MaxConns)
// until it is due, up to maxAuthDelay. Dialers of bad tokens would hold
// as many open connections as they dial, taking --max-conns from every
// tenant; so delayed auth refusals take the server-wide slots of waiting
// refusals that refusals at a tenant's connection limit take
// (Server.refusing, at most MaxConns/refusalShare, pace.go), and past
// that bound a failure is answered at once: CPU, not other tenants'
// connections.

// waitAuthRefusal takes a slot of a waiting refusal for cs's delayed
// answer to a failed HELLO, or reports false when none is free (answer
// at once). OnClose gives it back (releaseAuthRefusal). Loop only.
func (s *Server) waitAuthRefusal(cs *connState) bool {
	if !s.takeAuthWait() {
		return false
	}
	cs.authWaiting = true
	return true
}

// takeAuthWait takes one of the server-wide slots of waiting refusals for
// a delayed answer to a failed authentication (a HELLO, or a REST token:
// Server.AuthRefused), or reports false when none is free. Any goroutine.
func (s *Server) takeAuthWait() bool {
	if s.refusing.Add(1) > s.opts.maxRefusals() {
		s.refusing.Add(-1)
		return false
	}
	return true
}

// releaseAuthRefusal gives back the slot cs took in waitAuthRefusal, if
// any, when it closes. Loop only.
func (s *Server) releaseAuthRefusal(cs *connState) {
	if cs.authWaiting {
		cs.authWaiting = false
		s.refusing.Add(-1)
	}
}
