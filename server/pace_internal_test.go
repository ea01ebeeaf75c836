package server

import (
	"math"
	"testing"
	"time"
)

// TestScheduleArithmeticSaturates: the HELLO schedule and the budgets of
// malformed frames and limit refusals follow one rule for extreme flag
// values (pace.go, budgetInterval and budgetDepth). A burst too large for burst×interval
// to fit an int64 (--hello-burst 1e18 at 250/s) admits every HELLO at
// once and still lets a bad-frame penalty push the next one back; a rate
// so small that its interval does not fit (--refusal-rate 1e-30) refills
// nothing, so its burst is all a tenant gets. The old code wrapped: the
// HELLO schedule's depth of burst 2^62 came out 0 (every HELLO past the
// first waited), and the tiny rate's interval came out negative (every
// refusal admitted).
func TestScheduleArithmeticSaturates(t *testing.T) {
	now := monoNow()
	for _, burst := range []int{1 << 62, math.MaxInt} {
		var p pace
		for i := range 3 {
			if wait, ok := p.admitHello(now, 250, burst, 5*time.Second); wait != 0 || !ok {
				t.Fatalf("burst %d: HELLO %d waits %v (ok %v), want at once", burst, i, wait, ok)
			}
		}
		p.penalize(now, 250, burst)
		if wait, ok := p.admitHello(now, 250, burst, 5*time.Second); wait < badFramePenalty || !ok {
			t.Errorf("burst %d: after a penalty the next HELLO waits %v (ok %v), want ≥ %v", burst, wait, ok, badFramePenalty)
		}
	}
	for _, rate := range []float64{1e-30, 1e-12} {
		var r refusals
		for i := range 2 {
			if r.over(now, rate, 2) || !r.admit(now, rate, 2) {
				t.Fatalf("rate %g: refusal %d within the burst of 2 refused", rate, i)
			}
		}
		if r.admit(now+int64(time.Hour), rate, 2) || !r.over(now+int64(time.Hour), rate, 2) {
			t.Errorf("rate %g: a third refusal an hour later admitted, want past the budget", rate)
		}
	}
}
