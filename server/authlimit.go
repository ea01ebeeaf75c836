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

// A delayed answer keeps its connection open (binary: it counts against
// MaxConns; REST: against the HTTP port's connection bound) until it is
// due, at most maxAuthDelay (binary: also at most helloMaxWait, half the
// HELLO timeout). Every failure past its address's budget waits, however
// many wait at once. They used to take the bounded slots of waiting
// refusals (Server.refusing, MaxConns/refusalShare, pace.go), and past
// that bound a failure was answered at once: one tokenless client filling
// the slots switched the delay off for every guesser on every address.
// Closing such a connection without an answer instead would not help: a
// valid token is answered at once, so an early close tells a guesser
// "wrong" as quickly as AUTH does. And the slots bought nothing: a waiting
// failure costs what a connection that sends no HELLO (REST: no complete
// request) costs, which anyone may hold for the whole HELLO timeout (REST:
// ReadHeaderTimeout), 10 s against at most 5 s here, counted against the
// same connection bound. Filling that bound with unauthenticated
// connections is the many-dialers case an address-level limit in front of
// the server handles (docs/OPERATIONS.md). The waiting failures are
// counted (Server.authWaiting, shown with the waiting refusals in
// sq_hello_refusals_waiting), not bounded.

// waitAuthRefusal counts cs's delayed answer to a failed HELLO among the
// waiting ones until it closes (releaseAuthRefusal). Loop only.
func (s *Server) waitAuthRefusal(cs *connState) {
	s.authWaiting.Add(1)
	cs.authWaiting = true
}

// releaseAuthRefusal takes back the count of waitAuthRefusal, if any,
// when cs closes, and stops the timer of its answer if it has not fired
// (authFail). Loop only.
func (s *Server) releaseAuthRefusal(cs *connState) {
	if cs.authWaiting {
		cs.authWaiting = false
		s.authWaiting.Add(-1)
	}
	if cs.authTimer != nil {
		if cs.authTimer.Stop() {
			s.authTimers.Add(-1)
		}
		cs.authTimer = nil
	}
}
