package protocol

import (
	"encoding/binary"
	"github.com/phext/sq/phext"
)

// Decoder decodes whole frames. One Decoder belongs to one connection (or
// one client) and is not safe for concurrent use; its zero value decodes
// uncompressed frames up to DefaultMaxFrame.
type Decoder struct {
	// MaxFrame is the largest accepted length field; ≤ 0 means
	// DefaultMaxFrame. A compressed body's declared uncompressed size must
	// also fit: U ≤ MaxFrame-6.
	MaxFrame int
	// Codec is the codec agreed in HELLO (CodecNone until then). A frame
	// with FlagCompressed and Codec == CodecNone is StatusBadFrame.
	Codec uint8

	// Budget, when set, is charged for the decompression buffer before it
	// grows (a server's memory budget summed over its connections). A
	// body whose buffer the budget refuses is StatusBusy.
	Budget Budget

	// scratch receives decompressed bodies; it is reused across frames and
	// dropped when it grew above maxKeptScratch.
	scratch []byte
	held    int // bytes of scratch charged to Budget
	// zsrc is the zstd decoder's input while it decodes a body.
	zsrc sliceReader
}

// Budget accounts memory that the peer's input makes a Decoder allocate.
// Reserve returns false when n more bytes do not fit (nothing is then
// reserved); Release returns n reserved bytes. Both are called from the
// Decoder's goroutine and must not block.
type Budget interface {
	Reserve(n int) bool
	Release(n int)
}

// maxKeptScratch is the largest scratch a Decoder keeps between frames.
const maxKeptScratch = 1 << 20

func (d *Decoder) maxFrame() int {
	if d.MaxFrame <= 0 {
		return DefaultMaxFrame
	}
	return d.MaxFrame
}

// Release drops the Decoder's decompression scratch (for idle connections)
// and returns its charge to the Budget.
func (d *Decoder) Release() { d.dropScratch() }

func (d *Decoder) dropScratch() {
	d.scratch = nil
	if d.held > 0 && d.Budget != nil {
		d.Budget.Release(d.held)
	}
	d.held = 0
}

// growScratch replaces d.scratch by a buffer of capacity n holding its
// first keep bytes, charging the growth to the Budget first.
func (d *Decoder) growScratch(keep, n int) bool {
	if d.Budget != nil {
		if !d.Budget.Reserve(n - d.held) {
			return false
		}
		d.held = n
	}
	nb := make([]byte, keep, n)
	copy(nb, d.scratch[:keep])
	d.scratch = nb
	return true
}

// header checks the parts of a frame common to both directions: at least a
// header, a length field that matches len(frame), the max frame, and the
// flag bits. It returns the header and the (decompressed) body. Once it has
// read the header, errors come back together with the header so callers can
// answer with the right id.
func (d *Decoder) header(frame []byte, bc *bodyCheck) (Header, []byte, bool, error) {
	return d.headerOf(frame, len(frame), bc)
}

// headerOf is header for a frame of size bytes of which frame holds the
// first len(frame) (at least its header; all of it when compressed).
func (d *Decoder) headerOf(frame []byte, size int, bc *bodyCheck) (Header, []byte, bool, error) {
	if len(frame) < HeaderSize {
		return Header{}, nil, false, errn(StatusBadFrame, "frame shorter than the header:", uint64(len(frame)))
	}
	// Drop a big scratch from the previous frame now that its views are
	// no longer in use (the caller started the next frame).
	if cap(d.scratch) > maxKeptScratch {
		d.dropScratch()
	}
	h := ParseHeader(frame)
	if uint64(h.Length) != uint64(size-4) {
		return h, nil, true, errn(StatusBadFrame, "length field disagrees with frame size:", uint64(h.Length))
	}
	max := d.maxFrame()
	if uint64(h.Length) > uint64(max) {
		return h, nil, true, errn(StatusTooLarge, "length above max frame:", uint64(h.Length))
	}
	if h.Flags&^FlagCompressed != 0 {
		return h, nil, true, errn(StatusBadFrame, "unknown flag bits:", uint64(h.Flags&^FlagCompressed))
	}
	body := frame[HeaderSize:]
	if h.Flags&FlagCompressed == 0 {
		return h, body, true, nil
	}
	if d.Codec == CodecNone {
		return h, nil, true, newError(StatusBadFrame, "compressed flag set but no codec agreed")
	}
	if bc != nil {
		bc.op = h.Op
	}
	out, err := d.decompress(body, max-minLength, bc)
	return h, out, true, err
}

// Decode decodes one whole request frame (exactly 4+length bytes, as
// FrameSize delimited it) into req. Slices in req are views into frame or
// into d's scratch, valid until the next call on d or until frame's bytes
// are reused.
//
// Errors are *Error. Whenever the header was readable, req.Op, req.Flags and
// req.ID are set even on error, so the server can answer with that id; the
// other fields are then zero. Decode checks the flags, decompresses a
// compressed body (bounded by MaxFrame), and for the data operations checks
// the name (StatusBadName) and, for ops that address a scroll, the
// coordinate (StatusBadCoord). It does not look at scroll text.
// A well-formed frame with an unknown opcode returns StatusUnknownOp.
// A HELLO frame is returned with the whole body in Payload (see DecodeHello).
func (d *Decoder) Decode(frame []byte, req *Request) error {
	return d.decode(frame, req, nil)
}

// PayloadCheck sees a request's payload in pieces, in order, while a
// compressed body is being decompressed (DecodeChecked). Add returns a
// non-nil error to stop the decompression there. A server passes its
// quota check of a PUT's document (store.PutCheck), so that a compressed
// document over the quota is refused after about a quota's worth of it
// is decompressed, not after all of its declared size.
type PayloadCheck interface {
	Add(piece []byte) error
}

// DecodeChecked is Decode for a request whose payload check should see
// the payload while a compressed body is decompressed: check.Add is given
// the payload in pieces of about CheckChunk bytes as the decoder produces
// them, once the name and coordinate before the payload have passed
// Decode's checks, and its first error stops the decompression and is
// returned unchanged (not an *Error), with req's Name and Coord set (Name
// a view into d's scratch) and its Payload nil. The decompression buffer
// then holds only what was produced so far. An uncompressed frame's
// payload is not given to check (it is all in the frame already). A body
// whose name or coordinate Decode refuses (a name length above
// phext.MaxNameLen included) is decompressed whole, unchecked, and gets
// Decode's answer: the check changes only when a refusal comes, never
// which one.
func (d *Decoder) DecodeChecked(frame []byte, req *Request, check PayloadCheck) error {
	return d.decode(frame, req, check)
}

func (d *Decoder) decode(frame []byte, req *Request, check PayloadCheck) error {
	*req = Request{}
	var bc *bodyCheck
	if check != nil {
		bc = &bodyCheck{c: check, head: true}
	}
	h, body, ok, err := d.header(frame, bc)
	if ok {
		req.Op, req.Flags, req.ID = Op(h.Op), h.Flags, h.ID
	}
	if err != nil {
		if bc != nil && bc.named && bc.quit {
			// The check's refusal: the name and coordinate passed.
			req.Name, req.Coord = bc.name, bc.coord
		}
		return err
	}
	return decodeBody(h.Op, body, req)
}

// DecodeArriving decodes the request of an uncompressed frame of size
// bytes (as FrameSize delimited it) of which prefix, the first
// len(prefix) bytes, has arrived: it checks all that Decode checks of the
// whole frame but the rest of the payload, in Decode's order, so that a
// server that refuses the frame before the rest arrives (a PUT over its
// quota) answers what it would answer the whole frame with when that
// comes first. req.Payload is the part of the payload that arrived.
// ok=false, with nothing decoded, when prefix ends before the payload
// (Decode's checks could not all be made yet) or the frame is compressed
// (only its whole body can be decompressed).
func (d *Decoder) DecodeArriving(prefix []byte, size int, req *Request) (ok bool, err error) {
	*req = Request{}
	if len(prefix) < HeaderSize+1 || prefix[5]&FlagCompressed != 0 {
		return false, nil
	}
	if off, named := PayloadOffset(prefix[HeaderSize]); named && len(prefix) < off {
		return false, nil
	}
	h, body, _, err := d.headerOf(prefix, size, nil)
	req.Op, req.Flags, req.ID = Op(h.Op), h.Flags, h.ID
	if err != nil {
		return true, err
	}
	return true, decodeBody(h.Op, body, req)
}

// decodeBody decodes the body of a request frame of opcode op (all of it,
// or at least through the coordinate when the name length is valid) into
// req, whose Op, Flags and ID are set: Decode's checks after the header.
func decodeBody(op uint8, body []byte, req *Request) error {
	info := &ops[op]
	if !info.known {
		return errn(StatusUnknownOp, "unknown opcode", uint64(op))
	}
	if Op(op) == OpHello {
		req.Payload = body
		return nil
	}
	if len(body) < 1 {
		return newError(StatusBadFrame, "empty body: need name length, name and coordinate")
	}
	n := int(body[0])
	if n > phext.MaxNameLen {
		return errn(StatusBadName, "name longer than 64 bytes:", uint64(n))
	}
	if len(body) < 1+n+CoordSize {
		return errn(StatusBadFrame, "body too short for name and coordinate:", uint64(len(body)))
	}
	name := body[1 : 1+n]
	if info.useName && !phext.ValidName(name) {
		return newError(StatusBadName, "phext name must match [A-Za-z0-9_-][A-Za-z0-9._-]*")
	}
	cb := body[1+n : 1+n+CoordSize]
	var c [9]uint16
	bad := false
	for i := range c {
		p := binary.BigEndian.Uint16(cb[2*i:])
		c[i] = p
		bad = bad || p < 1 || p > 999
	}
	if bad && info.useCoord {
		return badCoordError(c)
	}
	req.Name = name
	req.Coord = c
	req.Payload = body[1+n+CoordSize:]
	return nil
}

// PayloadOffset returns the offset in an uncompressed request frame of
// its payload, given the name length byte at offset HeaderSize (the
// frame's first byte after the header): what Decode skips before
// Payload. ok is false when that length is above phext.MaxNameLen, which
// Decode refuses. A server can find the payload of a large frame while
// the rest of it is still arriving.
func PayloadOffset(nameLen byte) (off int, ok bool) {
	return RequestSize(int(nameLen), 0), int(nameLen) <= phext.MaxNameLen
}

// Rebase re-points req's Name and Payload at frame, a byte-for-byte copy
// of the uncompressed request frame that Decode decoded into req without
// error, so that req outlives the bytes it was decoded from (an event loop
// decodes in the network library's buffer, then queues a copy for a
// worker). The other fields are values and stay as they are. It allocates
// nothing.
//
// It panics if frame is shorter than the layout req describes. Do not call
// it for a compressed frame: its views are in the Decoder's scratch, not
// in the frame.
func (req *Request) Rebase(frame []byte) {
	body := frame[HeaderSize:]
	if req.Op == OpHello {
		req.Payload = body
		return
	}
	n := len(req.Name)
	req.Name = body[1 : 1+n]
	req.Payload = body[1+n+CoordSize:]
}

// DecodeResponse decodes one whole response frame into resp, decompressing
// a compressed body into d's scratch. It accepts any status byte (a newer
// server may send codes this version does not name). Body is a view valid
// until the next call on d or until frame's bytes are reused. On error
// resp's header fields are set when the header was readable.
func (d *Decoder) DecodeResponse(frame []byte, resp *Response) error {
	*resp = Response{}
	h, body, ok, err := d.header(frame, nil)
	if ok {
		resp.Status, resp.Flags, resp.ID = Status(h.Op), h.Flags, h.ID
	}
	if err != nil {
		return err
	}
	resp.Body = body
	return nil
}
