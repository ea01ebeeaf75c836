package bench

import (
	"testing"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

func TestParseWatchText(t *testing.T) {
	buf := watchText(nil, 499, 3, 123456, 1_795_000_000_123_456_789)
	ti, wi, s, ns, ok := parseWatchText(buf)
	if !ok || ti != 499 || wi != 3 || s != 123456 || ns != 1_795_000_000_123_456_789 {
		t.Fatalf("parseWatchText(%q) = %d %d %d %d %v", buf, ti, wi, s, ns, ok)
	}
	for _, bad := range []string{"", "1:2:3", "1:2:3:", ":1:2:3", "1:2:3:4:5", "1:x:3:4", "1:2:3:99999999999999999999"} {
		if _, _, _, _, ok := parseWatchText([]byte(bad)); ok {
			t.Errorf("parseWatchText(%q) accepted", bad)
		}
	}
	if a := testing.AllocsPerRun(100, func() { parseWatchText(buf) }); a != 0 {
		t.Errorf("parseWatchText allocates %v times", a)
	}
}

// TestLatRecorder: every sample reaches the shared histogram (batches
// merged when full and at flush), clamped to the histogram's range, and a
// recorder holds no more than its batch.
func TestLatRecorder(t *testing.T) {
	h := newSharedHist()
	a, b := latRecorder{h: h}, latRecorder{h: h}
	for i := range 1000 {
		a.add(int64(i % 7))
		b.add(1000)
	}
	if a.n >= len(a.buf) || b.n >= len(b.buf) {
		t.Fatalf("batch not merged when full: %d, %d", a.n, b.n)
	}
	a.flush()
	b.flush()
	if got := h.h.TotalCount(); got != 2000 {
		t.Fatalf("histogram holds %d samples, want 2000", got)
	}
	if got := h.h.Min(); got != histMin {
		t.Fatalf("min %d, want %d (0 clamped)", got, histMin)
	}
	if got := h.h.Max(); got < 1000 || got > 1001 {
		t.Fatalf("max %d, want 1000", got)
	}
}

// TestWatcherEvent: a watcher decodes and checks an event frame in place,
// allocating nothing (it runs for every event, on the machine measured).
func TestWatcherEvent(t *testing.T) {
	st := &watcherState{tenant: 3, lastSeq: []int64{0}, lat: latRecorder{h: newSharedHist()}}
	text := watchText(nil, 3, 0, 1, watchNow())
	frame := protocol.AppendChangeEvent(nil, 1, 10, protocol.ChangeUpdate, nil, phext.Origin, uint64(len(text)),
		[]byte(phext.Checksum(text)), protocol.TextHere, text)
	body := frame[protocol.HeaderSize:]
	if err := st.event(body); err != nil || st.err != nil || st.events != 1 || st.lastSeq[0] != 1 {
		t.Fatalf("event: %v, state err %v, events %d, seq %v", err, st.err, st.events, st.lastSeq)
	}
	st.lastSeq[0], st.lastPos = 0, 0
	if a := testing.AllocsPerRun(100, func() {
		st.lastSeq[0], st.lastPos = 0, 0
		_ = st.event(body)
	}); a != 0 {
		t.Errorf("a watcher's event allocates %v times", a)
	}
	if err := st.event(body[:5]); err == nil {
		t.Error("a truncated event body is accepted")
	}
}

// TestWatcherLatencyOnBenchClock: an event's latency is the bench's
// monotonic clock from the writer's send (the text carries watchNow) to
// the watcher, and its arrival the kernel's wall-clock stamp moved onto
// that clock by its age (monoStamp): an event sent 30 ms ago whose frame
// arrived 10 ms ago is 30 ms late and arrived after 20 ms, whatever the
// wall clock reads.
func TestWatcherLatencyOnBenchClock(t *testing.T) {
	st := &watcherState{tenant: 0, lastSeq: []int64{0}, lat: latRecorder{h: newSharedHist()}, arr: latRecorder{h: newSharedHist()}}
	// Both from one reading: taken apart, a pause of the test between
	// them (a loaded box) would add to the arrival, bounded to ±1 ms below.
	t0 := time.Now()
	sent := int64(t0.Sub(watchEpoch)) - int64(30*time.Millisecond)
	arrived := t0.UnixNano() - int64(10*time.Millisecond)
	st.observe(false, 1, watchText(nil, 0, 0, 1, sent), arrived)
	if st.err != nil || st.events != 1 {
		t.Fatalf("observe: %v, %d events", st.err, st.events)
	}
	st.lat.flush()
	st.arr.flush()
	// Up to a second more for a slow machine.
	if got := st.lat.h.h.Max(); got < 30_000 || got > 1_030_000 {
		t.Errorf("latency %d µs, want 30 ms", got)
	}
	if got := st.arr.h.h.Max(); got < 19_000 || got > 21_000 {
		t.Errorf("arrival %d µs, want 20 ms", got)
	}
	// A stamp read at a known instant lands where its age says.
	now := time.Now()
	if got, want := monoStamp(now, now.UnixNano()-5e6), int64(now.Sub(watchEpoch))-5e6; got != want {
		t.Errorf("monoStamp: %d, want %d", got, want)
	}
}
