package server

import (
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
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

// authAnswer is a failed HELLO's delayed answer (authFail). Exactly one
// of three ends it, whichever stops its timer first (time.Timer.Stop is
// true once, and never after the timer fired): the timer (the answer goes
// out when due), Shutdown (it goes out now, answerAuthNow) or the
// connection's close (nothing to answer, releaseAuthRefusal).
type authAnswer struct {
	timer *time.Timer
	c     gnet.Conn
	reply []byte
}

// delayAuthAnswer sends reply on c and closes it after delay, or as soon
// as Shutdown begins. Loop only.
func (s *Server) delayAuthAnswer(cs *connState, c gnet.Conn, reply []byte, delay time.Duration) {
	s.waitAuthRefusal(cs)
	a := &authAnswer{c: c, reply: reply}
	s.authTimers.Add(1)
	a.timer = time.AfterFunc(delay, func() {
		if h := s.authFiredHook.Load(); h != nil {
			(*h)()
		}
		// Counted until the answer is handed to the loop (asyncPending):
		// an answer due as Shutdown begins has a timer that no longer
		// stops and may not have run yet; Shutdown waits for both
		// counts, so it still goes out before the engine closes c.
		s.sendAuthAnswer(a)
		s.authTimers.Add(-1)
	})
	cs.authAnswer.Store(a)
	// Shutdown sets draining before it looks for delayed answers
	// (answerAuthNow): one that began meanwhile is either seen there or
	// sees draining here.
	if s.draining.Load() {
		s.endAuthAnswer(a, true)
	}
}

// endAuthAnswer ends a's wait if its timer has not fired: it sends the
// answer now (send) or drops it. Any goroutine.
func (s *Server) endAuthAnswer(a *authAnswer, send bool) {
	if !a.timer.Stop() {
		return // fired, or ended by another
	}
	s.authTimers.Add(-1)
	if send {
		s.sendAuthAnswer(a)
	}
}

// sendAuthAnswer writes a's answer and closes its connection after it.
// Shutdown waits for it like for other replies (asyncPending) before the
// engine closes the connections. If the connection closes first, the
// AsyncWrite fails harmlessly. Any goroutine.
func (s *Server) sendAuthAnswer(a *authAnswer) {
	s.asyncPending.Add(1)
	err := a.c.AsyncWrite(a.reply, func(c gnet.Conn, _ error) error {
		s.asyncPending.Add(-1)
		if c != nil {
			c.Close()
		}
		return nil
	})
	if err != nil {
		s.asyncPending.Add(-1)
	}
}

// answerAuthNow sends every delayed failed-HELLO answer at once: Shutdown
// has begun, as for held refusals (Refusal.Wait) and the REST server's
// delayed 401s (AuthRefusal.Wait). Shutdown only, after draining is set.
func (s *Server) answerAuthNow() {
	for _, cs := range s.snapshotConns() {
		if a := cs.authAnswer.Load(); a != nil {
			s.endAuthAnswer(a, true)
		}
	}
}

// releaseAuthRefusal takes back the count of waitAuthRefusal, if any,
// when cs closes, and drops its delayed answer if that is still waiting
// (authAnswer). Loop only.
func (s *Server) releaseAuthRefusal(cs *connState) {
	if cs.authWaiting {
		cs.authWaiting = false
		s.authWaiting.Add(-1)
	}
	if a := cs.authAnswer.Swap(nil); a != nil {
		s.endAuthAnswer(a, false)
	}
}
