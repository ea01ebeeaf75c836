package server

import (
	"testing"
	"time"

	"github.com/phext/sq/protocol"
)

// TestRefuseRule: the refusal budget's rule (refusal.go) on its own. Only
// TOO_LARGE and QUOTA count; within the burst every answer goes out at
// once; past it an answer is held while the tenant's and the server's
// slots last, then answered at once with a close; Done gives the slot
// back. The admin is never counted, another tenant has its own budget, and
// a negative rate counts nothing.
func TestRefuseRule(t *testing.T) {
	defer SetMaxTenantHeld(2)()
	// maxHeldRefusals: 24/8 = 3 server-wide.
	s := &Server{opts: Options{RefusalRate: 0.001, RefusalBurst: 3, MaxConns: 24}}
	newT := func() *tenant { return &tenant{refusals: &refusals{}, pace: &pace{}} }
	mallory, bob := newT(), newT()

	for _, st := range []protocol.Status{protocol.StatusBusy, protocol.StatusBadName, protocol.StatusBadCoord,
		protocol.StatusAuth, protocol.StatusUnknownOp, protocol.StatusOK} {
		for range 10 {
			if f := s.refuse(mallory, false, st); f != (Refusal{}) {
				t.Fatalf("%v counted as a refusal: %+v", st, f)
			}
		}
	}
	for i, st := range []protocol.Status{protocol.StatusTooLarge, protocol.StatusQuota, protocol.StatusTooLarge} {
		if f := s.refuse(mallory, false, st); f != (Refusal{}) {
			t.Fatalf("refusal %d (%v) within the burst of 3: %+v, want at once", i, st, f)
		}
	}
	// The admin is never counted, past the budget or not.
	for range 10 {
		if f := s.refuse(mallory, true, protocol.StatusTooLarge); f != (Refusal{}) {
			t.Fatalf("admin's refusal: %+v, want at once", f)
		}
	}
	h1 := s.refuse(mallory, false, protocol.StatusQuota)
	h2 := s.refuse(mallory, false, protocol.StatusTooLarge)
	if h1.Hold != refusalHold || h2.Hold != refusalHold || h1.Close || h2.Close {
		t.Fatalf("past the burst: %+v %+v, want both held %v", h1, h2, refusalHold)
	}
	// The tenant's two slots are taken: answered at once, closing.
	if f := s.refuse(mallory, false, protocol.StatusTooLarge); !f.Close || f.Hold != 0 {
		t.Fatalf("past the tenant's held answers: %+v, want Close", f)
	}
	// bob has his own budget: his burst goes out at once.
	for i := range 3 {
		if f := s.refuse(bob, false, protocol.StatusTooLarge); f != (Refusal{}) {
			t.Fatalf("bob's refusal %d within his burst: %+v", i, f)
		}
	}
	// bob past his budget takes the server's third slot; a fourth
	// answer has none (server-wide bound) although bob has one left.
	b1 := s.refuse(bob, false, protocol.StatusTooLarge)
	if b1.Hold == 0 {
		t.Fatalf("bob past his budget: %+v, want held", b1)
	}
	if f := s.refuse(bob, false, protocol.StatusTooLarge); !f.Close {
		t.Fatalf("past the server's held answers (3): %+v, want Close", f)
	}
	if got := s.heldRefusals.Load(); got != 3 {
		t.Fatalf("server holds %d answers, want 3", got)
	}
	h1.Done()
	if f := s.refuse(mallory, false, protocol.StatusTooLarge); f.Hold == 0 {
		t.Fatalf("after a Done: %+v, want held again", f)
	} else {
		f.Done()
	}
	h2.Done()
	b1.Done()
	Refusal{}.Done() // no slot: a no-op
	if s.heldRefusals.Load() != 0 || mallory.refusals.held.Load() != 0 || bob.refusals.held.Load() != 0 {
		t.Fatalf("slots left taken: server %d mallory %d bob %d", s.heldRefusals.Load(), mallory.refusals.held.Load(), bob.refusals.held.Load())
	}
	if st := s.stats.refusalsHeld.Load(); st != 4 {
		t.Errorf("refusalsHeld %d, want 4", st)
	}
	if st := s.stats.refusalsClosed.Load(); st != 2 {
		t.Errorf("refusalsClosed %d, want 2", st)
	}

	off := &Server{opts: Options{RefusalRate: -1, RefusalBurst: 1, MaxConns: 24}}
	for range 100 {
		if f := off.refuse(mallory, false, protocol.StatusTooLarge); f != (Refusal{}) {
			t.Fatalf("RefusalRate < 0: %+v, want no budget", f)
		}
	}
}

// TestRefusalWeight: what a refused frame weighs in its tenant's budget
// (refusalWeight): TOO_LARGE and QUOTA one plus one a MiB of the frame,
// a large frame's BUSY (body dropped) one a MiB, a small frame's BUSY and
// the other statuses nothing; and a weight books that many refusals at
// once (admitBudgetN), one above the burst weighing the burst, so that
// it still fits an unused budget and never wraps the schedule.
func TestRefusalWeight(t *testing.T) {
	for _, c := range []struct {
		name   string
		status protocol.Status
		size   int
		want   int64
	}{
		{name: "small TOO_LARGE", status: protocol.StatusTooLarge, size: 46, want: 1},
		{name: "60 MiB TOO_LARGE", status: protocol.StatusTooLarge, size: 60 << 20, want: 61},
		{name: "3 MiB QUOTA", status: protocol.StatusQuota, size: 3<<20 + 100, want: 4},
		{name: "60 MiB BUSY", status: protocol.StatusBusy, size: 60 << 20, want: 60},
		{name: "small BUSY", status: protocol.StatusBusy, size: bigFrame, want: 0},
		{name: "large BAD_NAME", status: protocol.StatusBadName, size: 60 << 20, want: 0},
		{name: "large OK", status: protocol.StatusOK, size: 60 << 20, want: 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := refusalWeight(c.status, c.size); got != c.want {
				t.Errorf("refusalWeight(%v, %d) = %d, want %d", c.status, c.size, got, c.want)
			}
		})
	}
	now := monoNow()
	var r refusals
	if !r.admitN(now, 0.001, 10, 4) || !r.admitN(now, 0.001, 10, 6) {
		t.Fatal("4 + 6 within a burst of 10 refused")
	}
	if r.admitN(now, 0.001, 10, 1) {
		t.Fatal("an eleventh refusal admitted in a burst of 10")
	}
	for _, n := range []int64{11, 1 << 40, 1<<63 - 1} {
		var fresh refusals
		if !fresh.admitN(now, 0.001, 10, n) {
			t.Errorf("weight %d refused by an unused budget of 10", n)
		}
		if fresh.admitN(now, 0.001, 10, 1) {
			t.Errorf("after weight %d (the whole burst) one more admitted", n)
		}
		if tat := fresh.tat.Load(); tat < now || tat > now+budgetDepth(10, budgetInterval(0.001)) {
			t.Errorf("weight %d booked the schedule at %d, want within [now, now+depth]", n, tat-now)
		}
	}
}

// TestHeavyRefusalsPaced: answers past the budget that weigh more than
// one (large frames', refusalWeight) wait until the budget has room for
// their weight, at least refusalHold, and book it, so that several held
// at once leave one after another at the budget's rate, not all after one
// hold. One the budget has no room for within maxRefusalHold (half the
// frame timeout) goes out at once with its connection closed and books
// nothing (it used to wait that long unbooked: one such answer a
// maxRefusalHold per connection, whatever the budget). Answers of weight
// one keep the plain hold.
func TestHeavyRefusalsPaced(t *testing.T) {
	defer func(d time.Duration) { refusalHold = d }(refusalHold)
	refusalHold = time.Second
	// 1 refusal a second, a burst of 4: a weight of 4 is 4 s of it. Holds
	// are only computed here, never waited: seconds leave the schedule
	// (which runs on the clock between the calls) 1 s of slack for a test
	// goroutine descheduled on a loaded box; a rate of 10 with 50 ms did
	// not.
	s := &Server{opts: Options{RefusalRate: 1, RefusalBurst: 4, MaxConns: 800, FrameTimeout: 20 * time.Second}}
	m := &tenant{refusals: &refusals{}, pace: &pace{}}
	if f := s.refuseN(m, false, 4); f != (Refusal{}) {
		t.Fatalf("within the burst: %+v, want at once", f)
	}
	near := func(got, want time.Duration) bool { return got > want-time.Second && got <= want }
	var hs []Refusal
	for i, want := range []time.Duration{4 * time.Second, 8 * time.Second} {
		f := s.refuseN(m, false, 4)
		hs = append(hs, f)
		if !near(f.Hold, want) || f.Close {
			t.Errorf("heavy answer %d past the budget: hold %v close %v, want a hold of about %v", i, f.Hold, f.Close, want)
		}
	}
	// The next would wait about 12 s, past the 10 s cap.
	for i := range 2 {
		if f := s.refuseN(m, false, 4); f != (Refusal{Close: true}) {
			t.Errorf("heavy answer %d past the cap: %+v, want Close", i, f)
		}
	}
	if st := s.stats.refusalsClosed.Load(); st != 2 {
		t.Errorf("refusals closed: %d, want 2", st)
	}
	if n := m.refusals.held.Load(); n != 2 {
		t.Errorf("%d answers hold slots, want the 2 held", n)
	}
	// The closed ones booked nothing: a plain answer now waits the plain
	// hold, and the budget's schedule ends where the second left it.
	if f := s.refuseN(m, false, 1); f.Hold != refusalHold {
		t.Errorf("a light answer behind them: hold %v, want %v", f.Hold, refusalHold)
	} else {
		hs = append(hs, f)
	}
	if ahead := time.Duration(m.refusals.tat.Load() - monoNow()); ahead > 12*time.Second {
		t.Errorf("the schedule is %v ahead, want at most 12 s (burst 4 s + two bookings)", ahead)
	}
	for _, f := range hs {
		f.Done()
	}
	if n := s.heldRefusals.Load(); n != 0 {
		t.Errorf("%d server-wide slots still taken", n)
	}
}
