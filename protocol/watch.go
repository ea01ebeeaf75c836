package protocol

import (
	"encoding/binary"
	"strconv"

	"github.com/phext/sq/phext"
)

// The change feed (WATCH, UNWATCH and event frames; docs/PROTOCOL.md §2.10).

// EventID is the request id of every event frame. A client that watches
// must not use it for requests: a WATCH sent with it is refused
// (BAD_FRAME), and a frame carrying it is never a reply.
const EventID uint32 = 0xFFFFFFFF

// WATCH payload flags.
const (
	WatchText uint8 = 1 // events carry the scroll's new text
	WatchFrom uint8 = 2 // start after the position in the payload; else now
)

// WatchPayloadSize is the size of a WATCH payload.
const WatchPayloadSize = 4 + 1 + 1 + 8

// Watch is a decoded WATCH request payload (plus the prefix taken from the
// request's coordinate).
type Watch struct {
	Sub    uint32 // subscription id chosen by the client; events carry it
	Depth  uint8  // how many leading coordinate parts form the prefix (0..9)
	Flags  uint8  // WatchText | WatchFrom
	From   uint64 // last position the client saw (with WatchFrom)
	Prefix phext.Coordinate
}

// AppendWatchPayload appends a WATCH payload: u32 sub, u8 depth, u8 flags,
// u64 from.
func AppendWatchPayload(dst []byte, sub uint32, depth, flags uint8, from uint64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, sub)
	dst = append(dst, depth, flags)
	return binary.BigEndian.AppendUint64(dst, from)
}

// DecodeWatch reads a WATCH payload; c is the request's coordinate, whose
// first Depth parts are the prefix (they must be 1..999; the rest are
// ignored). A short payload, a depth above 9 or an unknown flag is
// StatusBadFrame; a bad prefix part StatusBadCoord.
func DecodeWatch(payload []byte, c phext.Coordinate) (Watch, error) {
	var w Watch
	if len(payload) < WatchPayloadSize {
		return w, errn(StatusBadFrame, "WATCH payload needs 14 bytes, have", uint64(len(payload)))
	}
	w.Sub = binary.BigEndian.Uint32(payload)
	w.Depth, w.Flags = payload[4], payload[5]
	w.From = binary.BigEndian.Uint64(payload[6:])
	if w.Depth > 9 {
		return w, errn(StatusBadFrame, "WATCH prefix depth above 9:", uint64(w.Depth))
	}
	if w.Flags&^(WatchText|WatchFrom) != 0 {
		return w, errn(StatusBadFrame, "unknown WATCH flags", uint64(w.Flags))
	}
	for i := 0; i < int(w.Depth); i++ {
		if c[i] < 1 || c[i] > phext.MaxPart {
			return w, badCoordError(c)
		}
		w.Prefix[i] = c[i]
	}
	return w, nil
}

// AppendUnwatchPayload appends an UNWATCH payload: u32 sub.
func AppendUnwatchPayload(dst []byte, sub uint32) []byte {
	return binary.BigEndian.AppendUint32(dst, sub)
}

// DecodeUnwatch reads an UNWATCH payload.
func DecodeUnwatch(payload []byte) (uint32, error) {
	if len(payload) < 4 {
		return 0, errn(StatusBadFrame, "UNWATCH payload needs 4 bytes, have", uint64(len(payload)))
	}
	return binary.BigEndian.Uint32(payload), nil
}

// Change ops of a change event (its byte at body offset 13).
const (
	ChangeInsert  uint8 = 1
	ChangeUpdate  uint8 = 2 // empty text: the scroll was removed
	ChangeDelete  uint8 = 3
	ChangePut     uint8 = 4 // the whole phext replaced
	ChangeCompact uint8 = 5 // a rewrite of the whole phext; handle as put
)

// ChangeOpName names a change op as the feed's clients print it ("insert",
// "update", "delete", "put", "compact"; "op<N>" for an unknown one).
func ChangeOpName(op uint8) string {
	switch op {
	case ChangeInsert:
		return "insert"
	case ChangeUpdate:
		return "update"
	case ChangeDelete:
		return "delete"
	case ChangePut:
		return "put"
	case ChangeCompact:
		return "compact"
	}
	return "op" + strconv.Itoa(int(op))
}

// Event kinds (first body byte of an event frame).
const (
	EventChange uint8 = 1
	EventResync uint8 = 2
)

// Resync reasons.
const (
	ResyncGap  uint8 = 1 // the changes after `from` are no longer held
	ResyncSlow uint8 = 2 // the watcher fell behind; its subscription ended
	ResyncGone uint8 = 3 // the server ended the subscription (tenant reload, shutdown)
)

// Text states of a change event.
const (
	TextNone    uint8 = 0 // not asked for, or the change has none (delete, put)
	TextHere    uint8 = 1 // the rest of the body is the scroll's new text
	TextOmitted uint8 = 2 // the text is above MaxEventText: SELECT it
)

// MaxEventText is the largest scroll text an event carries.
const MaxEventText = 64 << 10

// Event is a decoded event frame.
type Event struct {
	Kind   uint8
	Sub    uint32
	Pos    uint64
	Op     uint8            // change: 1 insert, 2 update, 3 delete, 4 put, 5 compact
	Phext  []byte           // change: view into the frame
	Coord  phext.Coordinate // change
	Len    uint64           // change: the scroll's new length (put: the phext's text bytes)
	Sum    []byte           // change: 32 hex chars, or empty (put)
	TextAt uint8            // change: TextNone, TextHere or TextOmitted
	Text   []byte           // change: view into the frame
	Reason uint8            // resync: ResyncGap, ResyncSlow or ResyncGone
	Ended  bool             // resync: the subscription is gone (WATCH again)
}

// ChangeEventSize is the frame size of a change event with a name of
// nameLen bytes, a checksum of sumLen bytes and text of textLen bytes.
func ChangeEventSize(nameLen, sumLen, textLen int) int {
	return HeaderSize + 13 + 1 + 1 + nameLen + 18 + 8 + 1 + sumLen + 1 + textLen
}

// AppendChangeEvent appends a change event frame. textAt says whether text
// follows (TextHere) or why not.
func AppendChangeEvent(dst []byte, sub uint32, pos uint64, op uint8, name []byte, c phext.Coordinate,
	n uint64, sum []byte, textAt uint8, text []byte) []byte {
	if textAt != TextHere {
		text = nil
	}
	dst = appendHeader(dst, uint8(StatusOK), 0, EventID, ChangeEventSize(len(name), len(sum), len(text))-HeaderSize)
	dst = append(dst, EventChange)
	dst = binary.BigEndian.AppendUint32(dst, sub)
	dst = binary.BigEndian.AppendUint64(dst, pos)
	dst = append(dst, op, byte(len(name)))
	dst = append(dst, name...)
	dst = AppendCoordinate(dst, c)
	dst = binary.BigEndian.AppendUint64(dst, n)
	dst = append(dst, byte(len(sum)))
	dst = append(dst, sum...)
	dst = append(dst, textAt)
	return append(dst, text...)
}

// ResyncEventSize is the frame size of a resync event.
const ResyncEventSize = HeaderSize + 13 + 2

// AppendResyncEvent appends a resync event frame: the client reads the
// phext again (DELTA or GET) and then follows from pos; ended means the
// subscription is gone and must be made again (WATCH from pos).
func AppendResyncEvent(dst []byte, sub uint32, pos uint64, reason uint8, ended bool) []byte {
	dst = appendHeader(dst, uint8(StatusOK), 0, EventID, ResyncEventSize-HeaderSize)
	dst = append(dst, EventResync)
	dst = binary.BigEndian.AppendUint32(dst, sub)
	dst = binary.BigEndian.AppendUint64(dst, pos)
	e := byte(0)
	if ended {
		e = 1
	}
	return append(dst, reason, e)
}

// IsEvent reports whether a response frame (decoded by DecodeResponse) is
// an event rather than a reply.
func IsEvent(r *Response) bool { return r.ID == EventID && r.Status == StatusOK && r.Flags == 0 }

// DecodeEvent reads an event body; the slices are views into body. An
// unknown kind or a truncated body is StatusBadFrame.
func DecodeEvent(body []byte, ev *Event) error {
	*ev = Event{}
	if len(body) < 13 {
		return errn(StatusBadFrame, "event body too short:", uint64(len(body)))
	}
	ev.Kind = body[0]
	ev.Sub = binary.BigEndian.Uint32(body[1:])
	ev.Pos = binary.BigEndian.Uint64(body[5:])
	b := body[13:]
	switch ev.Kind {
	case EventResync:
		if len(b) < 2 {
			return errn(StatusBadFrame, "resync event too short:", uint64(len(body)))
		}
		ev.Reason, ev.Ended = b[0], b[1] != 0
		return nil
	case EventChange:
	default:
		return errn(StatusBadFrame, "unknown event kind", uint64(ev.Kind))
	}
	if len(b) < 2 {
		return errn(StatusBadFrame, "change event too short:", uint64(len(body)))
	}
	ev.Op = b[0]
	nl := int(b[1])
	b = b[2:]
	if len(b) < nl+18+8+1 {
		return errn(StatusBadFrame, "change event too short:", uint64(len(body)))
	}
	ev.Phext = b[:nl]
	b = b[nl:]
	for i := range ev.Coord {
		ev.Coord[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	b = b[18:]
	ev.Len = binary.BigEndian.Uint64(b)
	sl := int(b[8])
	b = b[9:]
	if len(b) < sl+1 {
		return errn(StatusBadFrame, "change event too short:", uint64(len(body)))
	}
	ev.Sum = b[:sl]
	ev.TextAt = b[sl]
	ev.Text = b[sl+1:]
	if ev.TextAt != TextHere && len(ev.Text) != 0 {
		return errn(StatusBadFrame, "change event has text without text state 1:", uint64(ev.TextAt))
	}
	return nil
}
