package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/phext/sq/phext"
)

// stream mimics a connection's inbound buffer: bytes arrive in chunks and
// complete frames are taken off the front, the way the server's OnTraffic
// does with Peek/Discard.
type stream struct {
	buf      []byte
	maxFrame int
}

// event is what stream.next reports.
type event int

const (
	needMore event = iota
	gotFrame
	fatal // the stream cannot be delimited: close the connection
)

// next returns the next complete frame, needMore, or fatal with the error.
func (s *stream) next() (event, []byte, error) {
	if len(s.buf) < 4 {
		return needMore, nil, nil
	}
	size, err := FrameSize(s.buf, s.maxFrame)
	if err != nil {
		return fatal, nil, err
	}
	if len(s.buf) < size {
		return needMore, nil, nil
	}
	f := s.buf[:size:size]
	s.buf = s.buf[size:]
	return gotFrame, f, nil
}

func coord(parts ...uint16) phext.Coordinate {
	var c phext.Coordinate
	copy(c[:], parts)
	return c
}

var c123 = coord(1, 2, 3, 4, 5, 6, 7, 8, 9)

// frameWith returns f with its length field rewritten to n.
func frameWith(f []byte, n uint32) []byte {
	g := bytes.Clone(f)
	binary.BigEndian.PutUint32(g, n)
	return g
}

func wantStatus(t *testing.T, err error, want Status) {
	t.Helper()
	if want == StatusOK {
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want *Error with %v", err, err, want)
	}
	if pe.Status != want {
		t.Fatalf("status %v (%v), want %v", pe.Status, err, want)
	}
}
