package server

import (
	"math"
	"testing"
)

// TestRefusalBudgetHugeBurst: a burst so large that burst×interval does
// not fit an int64 (--refusal-burst 1e12 at 50/s) is a budget that is
// never exhausted, not one that refuses everything.
func TestRefusalBudgetHugeBurst(t *testing.T) {
	now := monoNow()
	for _, burst := range []int{1 << 40, 1e12, math.MaxInt} {
		var r refusals
		if r.over(now, 50, burst) || !r.admit(now, 50, burst) {
			t.Errorf("burst %d: the first refusal is past the budget", burst)
		}
	}
}
