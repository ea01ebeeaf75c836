package protocol

import (
	"bytes"
	"testing"

	"github.com/phext/sq/phext"
)

// fuzzMaxFrame keeps fuzz inputs cheap while still exercising the limit.
const fuzzMaxFrame = 1 << 16

// seedFrames are the frames the fuzzers start from: the golden frames and
// one of every op, plain and compressed.
func seedFrames() [][]byte {
	seeds := [][]byte{
		AppendHello(nil, 1, []byte("pmb-v1-001-token"), AcceptZstd|AcceptS2),
		AppendRequest(nil, OpPing, 2, nil, phext.Origin, nil),
		AppendRequest(nil, OpSelect, 3, []byte("notes"), c123, nil),
		AppendRequest(nil, OpInsert, 4, nil, c123, []byte("hello\nworld")),
		AppendRequest(nil, OpWhere, 5, nil, phext.Origin, AppendWherePayload(nil, WhereXor, 100, []byte("text"))),
		AppendError(nil, 6, StatusBadName, "bad name"),
		AppendHelloReply(nil, 7, &HelloReply{Version: 1, Codec: CodecS2, MaxFrame: fuzzMaxFrame,
			TenantName: "acme", ServerVersion: "sq", CompressThreshold: CompressThreshold, Ops: AllOps}),
	}
	big := bytes.Repeat([]byte("abc"), 2000)
	seeds = append(seeds,
		AppendCompressedRequest(nil, OpPut, 8, []byte("x"), phext.Origin, big, CodecS2),
		AppendCompressedRequest(nil, OpPut, 9, []byte("x"), phext.Origin, big, CodecZstd),
		AppendCompressedResponse(nil, 10, StatusOK, big, CodecS2),
		AppendCompressedResponse(nil, 11, StatusOK, big, CodecZstd),
	)
	for _, g := range goldenFrames {
		seeds = append(seeds, g.frame())
	}
	return seeds
}

// FuzzDecode treats the input as a connection's byte stream arriving in two
// chunks cut at split, and runs every decoder on each frame it delimits. The
// first byte picks the codec. Nothing may panic, no frame may be read past
// its end, scratch may never grow past the max frame, and every request that
// decodes must re-encode to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, s := range seedFrames() {
		for _, codec := range []byte{CodecNone, CodecZstd, CodecS2} {
			in := append([]byte{codec}, s...)
			// Seeds cut in two at every split point (STYLE 14).
			for split := 0; split <= len(in); split += 1 + len(in)/64 {
				f.Add(in, uint16(split))
			}
		}
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		if len(in) == 0 {
			return
		}
		codec, data := in[0]%3, in[1:]
		cut := int(split) % (len(data) + 1)
		s := stream{maxFrame: fuzzMaxFrame}
		d := Decoder{MaxFrame: fuzzMaxFrame, Codec: codec}
		for _, chunk := range [][]byte{data[:cut], data[cut:]} {
			s.buf = append(s.buf, chunk...)
			for {
				ev, frame, err := s.next()
				if ev == fatal {
					if StatusOf(err) != StatusBadFrame && StatusOf(err) != StatusTooLarge {
						t.Fatalf("FrameSize error with status %v: %v", StatusOf(err), err)
					}
					return
				}
				if ev == needMore {
					break
				}
				checkFrame(t, &d, frame)
			}
		}
	})
}

func checkFrame(t *testing.T, d *Decoder, frame []byte) {
	// A read past the frame would see these bytes: the capacity limit makes
	// such a read panic instead.
	frame = frame[:len(frame):len(frame)]
	orig := bytes.Clone(frame)
	var req Request
	err := d.Decode(frame, &req)
	if cap(d.scratch) > d.maxFrame() {
		t.Fatalf("scratch %d above max frame", cap(d.scratch))
	}
	if err != nil {
		if _, ok := err.(*Error); !ok {
			t.Fatalf("Decode returned %T, want *Error", err)
		}
		if req.ID != ParseHeader(frame).ID {
			t.Fatal("id not reported with the error")
		}
	} else if req.Op != OpHello && req.Flags == 0 {
		re := AppendRequest(nil, req.Op, req.ID, req.Name, req.Coord, req.Payload)
		if !bytes.Equal(re, frame) {
			t.Fatalf("re-encode differs:\n%x\n%x", re, frame)
		}
	}
	checkArriving(t, d, frame, &req, err)
	var resp Response
	if err := d.DecodeResponse(frame, &resp); err == nil && resp.Flags == 0 && !bytes.Equal(resp.Body, frame[HeaderSize:]) {
		t.Fatal("response body is not the frame's body")
	}
	if _, _, err := DecodeHello(frame); err != nil {
		if _, ok := err.(*Error); !ok {
			t.Fatalf("DecodeHello returned %T", err)
		}
	}
	_, _ = DecodeHelloReply(frame[HeaderSize:])
	_, _ = DecodeList(frame[HeaderSize:])
	_, _ = DecodeStatusInfo(frame[HeaderSize:])
	_, _, _, _ = DecodeWherePayload(frame[HeaderSize:])
	if !bytes.Equal(frame, orig) {
		t.Fatal("decoder modified its input")
	}
}

// checkArriving: DecodeArriving of the whole frame, and of its prefix up to
// its payload, says what Decode said of the whole (req, err) whenever it
// decides: the same status, or the same name and coordinate; and it
// decides for every uncompressed request frame that reaches its payload.
func checkArriving(t *testing.T, d *Decoder, frame []byte, req *Request, err error) {
	t.Helper()
	if len(frame) <= HeaderSize {
		return
	}
	off, named := PayloadOffset(frame[HeaderSize])
	for _, k := range []int{len(frame), min(off, len(frame))} {
		var a Request
		ok, aerr := d.DecodeArriving(frame[:k], len(frame), &a)
		want := frame[5]&FlagCompressed == 0 && (!named || k >= off)
		if ok != want {
			t.Fatalf("DecodeArriving of %d of %d bytes: ok %v, want %v", k, len(frame), ok, want)
		}
		if !ok {
			continue
		}
		if (aerr == nil) != (err == nil) || (aerr != nil && StatusOf(aerr) != StatusOf(err)) {
			t.Fatalf("DecodeArriving of %d of %d bytes: %v; Decode: %v", k, len(frame), aerr, err)
		}
		if err == nil && (!bytes.Equal(a.Name, req.Name) || a.Coord != req.Coord || a.ID != req.ID || a.Op != req.Op) {
			t.Fatalf("DecodeArriving of %d of %d bytes: %+v; Decode: %+v", k, len(frame), a, *req)
		}
	}
}
