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
	text := watchText(nil, 3, 0, 1, time.Now().UnixNano())
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
