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
	d := time.Duration(over) * 250 * time.Millisecond
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
