package protocol

import (
	"testing"

	"github.com/phext/sq/phext"
)

func TestDecodeWatchErrors(t *testing.T) {
	good := AppendWatchPayload(nil, 1, 3, WatchFrom, 9)
	tests := []struct {
		name    string
		payload []byte
		c       phext.Coordinate
		want    Status
	}{
		{name: "short", payload: good[:13], c: phext.Origin, want: StatusBadFrame},
		{name: "depth", payload: AppendWatchPayload(nil, 1, 10, 0, 0), c: phext.Origin, want: StatusBadFrame},
		{name: "flags", payload: AppendWatchPayload(nil, 1, 0, 4, 0), c: phext.Origin, want: StatusBadFrame},
		{name: "prefix part 0", payload: good, c: phext.Coordinate{1, 0, 1, 1, 1, 1, 1, 1, 1}, want: StatusBadCoord},
		{name: "prefix part 1000", payload: good, c: phext.Coordinate{1, 1, 1000, 1, 1, 1, 1, 1, 1}, want: StatusBadCoord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeWatch(tc.payload, tc.c)
			wantStatus(t, err, tc.want)
		})
	}
	// Parts past the depth are ignored, even when out of range.
	w, err := DecodeWatch(good, phext.Coordinate{2, 3, 4, 0, 0, 0, 0, 0, 0})
	if err != nil || w.Prefix != (phext.Coordinate{2, 3, 4}) {
		t.Fatalf("%+v %v", w, err)
	}
}

// TestDecodeEventEverySplit: every truncation of an event body is refused,
// never read past its end.
func TestDecodeEventEverySplit(t *testing.T) {
	frames := [][]byte{
		AppendChangeEvent(nil, 1, 2, 2, []byte("n"), phext.Origin, 3, []byte(phext.Checksum([]byte("abc"))), TextHere, []byte("abc")),
		AppendChangeEvent(nil, 1, 2, 4, nil, phext.Origin, 3, nil, TextNone, nil),
		AppendResyncEvent(nil, 1, 2, ResyncGap, false),
	}
	for _, f := range frames {
		body := f[HeaderSize:]
		var ev Event
		if err := DecodeEvent(body, &ev); err != nil {
			t.Fatal(err)
		}
		minOK := len(body)
		if ev.Kind == EventChange && ev.TextAt == TextHere {
			minOK = len(body) - len(ev.Text)
		}
		for i := 0; i < minOK; i++ {
			if err := DecodeEvent(body[:i], &ev); err == nil {
				t.Fatalf("body cut at %d of %d decoded", i, len(body))
			}
		}
	}
	var ev Event
	bad := AppendResyncEvent(nil, 1, 2, ResyncGap, false)
	bad[HeaderSize] = 9
	if err := DecodeEvent(bad[HeaderSize:], &ev); err == nil {
		t.Fatal("unknown kind decoded")
	}
}

// FuzzDecodeEvent: any body decodes or is refused, never read past its
// end; what decodes re-encodes to the same body.
func FuzzDecodeEvent(f *testing.F) {
	for _, fr := range [][]byte{
		AppendChangeEvent(nil, 1, 2, ChangeUpdate, []byte("n"), phext.Origin, 3, []byte(phext.Checksum([]byte("abc"))), TextHere, []byte("abc")),
		AppendChangeEvent(nil, 1, 2, ChangePut, nil, phext.Origin, 3, nil, TextNone, nil),
		AppendResyncEvent(nil, 1, 2, ResyncGap, true),
	} {
		f.Add(fr[HeaderSize:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var ev Event
		if err := DecodeEvent(body, &ev); err != nil {
			if StatusOf(err) != StatusBadFrame {
				t.Fatalf("status %v: %v", StatusOf(err), err)
			}
			return
		}
		var re []byte
		if ev.Kind == EventResync {
			re = AppendResyncEvent(nil, ev.Sub, ev.Pos, ev.Reason, ev.Ended)
			if body[14] > 1 {
				return // any non-zero ended byte reads as true
			}
		} else {
			re = AppendChangeEvent(nil, ev.Sub, ev.Pos, ev.Op, ev.Phext, ev.Coord, ev.Len, ev.Sum, ev.TextAt, ev.Text)
		}
		if string(re[HeaderSize:]) != string(body[:len(re)-HeaderSize]) {
			t.Fatalf("re-encoded %x, body %x", re[HeaderSize:], body)
		}
	})
}
