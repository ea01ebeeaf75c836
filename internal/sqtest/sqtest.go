// Package sqtest holds the helpers that the tests of several packages share
// (bbolt's internal/btesting is the model). Only _test.go files import it;
// it is internal, so nothing outside this module can.
package sqtest

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// pollEvery is how often CheckFor and CheckForErr test their condition.
const pollEvery = 5 * time.Millisecond

// CheckFor polls cond until it returns true, and fails t when within passes
// first, naming what it waited for. Tests wait for a state with it instead
// of sleeping a guessed time (STYLE 16).
func CheckFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(pollEvery)
	}
}

// CheckForErr is CheckFor for a condition that says why it does not hold
// yet: it polls cond until it returns nil, and fails t with cond's last
// error when within passes first.
func CheckForErr(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(pollEvery)
	}
}

// LogBuffer is a log destination that goroutines may write concurrently
// (a slog handler over a server that logs from loops and workers) while
// the test reads what was written.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ClosedWithin reports whether the peer closes nc (EOF or reset) within d,
// reading and dropping whatever it sends first (replies before the close
// do not matter). It sets nc's read deadline.
func ClosedWithin(nc net.Conn, d time.Duration) bool {
	nc.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := nc.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}
