package server

import (
	"sync/atomic"
	"time"
)

// The server's clock: nanoseconds since the process started, read on the
// monotonic clock (time.Since uses its argument's monotonic reading).
// Everything the server times between two of its own readings uses it,
// never the wall clock, which steps (NTP, an operator's date): the
// HELLO, frame, idle and linger timeouts, idle frame mappings, and the
// tenants' schedules of new connections and budgets of malformed frames.
// With wall-clock readings a step back left lingering connections open and
// a tenant's HELLOs refused until the wall clock caught up (an hour for a
// step of an hour); a step forward closed every connection with a frame
// under way or idle at once.
// Readings start at a second, so that 0 can mean "never" (partialSince).
var clockEpoch = time.Now().Add(-time.Second)

// clockSkew is added to every reading: 0 but in tests (SetClockSkew),
// which model a clock that disagrees with the timers.
var clockSkew atomic.Int64

// monoNow reads the server's clock.
func monoNow() int64 { return int64(time.Since(clockEpoch)) + clockSkew.Load() }
