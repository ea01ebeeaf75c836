package store

import (
	"sync/atomic"
	"time"
)

// The store's clock for the waits it times between two of its own
// readings (compactRetry, the retries of a failed checkpoint before an
// eviction): nanoseconds since the package loaded, on the monotonic clock
// (time.Since uses its argument's monotonic reading), never the wall
// clock, which steps (NTP, an operator's date). With wall-clock deadlines
// a step back of an hour held a phext's background compactions, or the
// checkpoint that lets the LRU close it, for that hour; a step forward
// ended every wait at once. Readings start at a second, so that 0 can mean
// "no wait".
var clockEpoch = time.Now().Add(-time.Second)

// clockSkew is added to every reading: 0 but in tests, which move the
// clock past a wait without sleeping through it.
var clockSkew atomic.Int64

// monoNow reads the store's clock.
func monoNow() int64 { return int64(time.Since(clockEpoch)) + clockSkew.Load() }
