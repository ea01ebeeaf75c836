package store

import (
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
)

// TestCompactRetryWaitsOnStoreClock: after a background compaction that a
// Put made useless, the phext's next one waits compactRetry on the store's
// monotonic clock (monoNow): none starts within the wait, one starts once
// that clock has passed it. (The wall clock, which steps, played no part:
// a wait kept as a wall-clock deadline lasted an extra hour after a step
// back of an hour. A test cannot step the host's wall clock, so it moves
// the store's clock instead.)
func TestCompactRetryWaitsOnStoreClock(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo, CompactMinWAL: 1 << 40})
	name := []byte("rewritten")
	if _, err := db.ten.Insert(name, coord(1, 1, 1, 1, 1, 1, 1, 1, 1), []byte("dirty")); err != nil {
		t.Fatal(err)
	}
	p, err := db.ten.get(name)
	if err != nil {
		t.Fatal(err)
	}
	// As compactAsync leaves it after errReplaced.
	p.compactWait.Store(monoNow() + int64(compactRetry))
	p.compactAsync()
	if p.compacting.Load() || db.Stats().Compactions != 0 {
		t.Fatal("a background compaction started within compactRetry of a useless one")
	}
	t.Cleanup(func() { clockSkew.Store(0) })
	clockSkew.Add(int64(compactRetry))
	p.compactAsync()
	sqtest.CheckFor(t, 10*time.Second, "the compaction once the wait passed", func() bool {
		return db.Stats().Compactions == 1 && !p.compacting.Load()
	})
	if w := p.compactWait.Load(); w != 0 {
		t.Errorf("wait %d left after a compaction that succeeded", w)
	}
}
