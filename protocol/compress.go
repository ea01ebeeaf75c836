package protocol

import (
	"encoding/binary"
	"io"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/valyala/bytebufferpool"

	"github.com/phext/sq/internal/cpus"
)

// A compressed body (FlagCompressed set) is
//
//	u32 uncompressed size U | U bytes compressed with the agreed codec
//
// U is a claim, not a fact: the receiver checks U against its max frame but
// never allocates from it. zstd bodies are decoded as a stream into a
// buffer that grows only as the decoder produces bytes; s2 bodies (a block
// format that must be decoded whole) are first walked without writing, which
// proves how many bytes they produce, and only then decoded into a buffer of
// that size. A body that produces more or fewer than U bytes is refused.
// A request decoded with a PayloadCheck (DecodeChecked) is decompressed
// in steps of CheckChunk output bytes, s2 included (by a plain-Go block
// decoder that can stop between steps), and the check sees each step, so
// it can stop the decoding long before U bytes exist.

// zstdEnc is the process-wide encoder: EncodeAll is safe for concurrent use
// and pools its own per-call state (bounded by the concurrency option). It is
// built on first use so a process that never compresses pays nothing.
var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
)

func zstdInit() {
	zstdOnce.Do(func() {
		var err error
		zstdEnc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(cpus.N()),
			zstd.WithEncoderCRC(false),
			zstd.WithZeroFrames(true))
		if err != nil {
			panic("protocol: zstd encoder options: " + err.Error()) // constant options: cannot happen
		}
	})
}

// MaxZstdWindow is the largest zstd window (and single-segment frame) a
// decoder accepts: the 8 MiB the zstd format recommends every decoder
// support. A streaming decoder allocates its window when a frame starts,
// before it has produced anything, so the window is the one size taken
// from the sender; it is bounded here and the decoders that hold such
// windows are few (zstdStreams).
const MaxZstdWindow = 8 << 20

// zstdStreams bounds the streaming zstd decoders alive at once (each may
// hold a window of up to MaxZstdWindow): a decode waits for a free one, so
// their memory is fixed however many connections decompress.
var (
	zstdStreamsOnce sync.Once
	zstdStreams     chan *zstd.Decoder
)

// ZstdStreams is how many streaming zstd decoders the process keeps at
// most (cpus.N(), fixed at start), each holding up to MaxZstdWindow once
// built: what a caller that warms them all, or counts their memory, uses
// instead of runtime.GOMAXPROCS(0), which a process may change after
// start (sq host, server.Procs; go test -cpu).
func ZstdStreams() int { return cpus.N() }

func getZstdStream() *zstd.Decoder {
	zstdStreamsOnce.Do(func() {
		n := cpus.N()
		zstdStreams = make(chan *zstd.Decoder, n)
		for range n {
			zstdStreams <- nil // built on first use
		}
	})
	d := <-zstdStreams
	if d == nil {
		var err error
		d, err = zstd.NewReader(nil,
			// Concurrency 1 decodes synchronously, block by block, in
			// the caller's goroutine.
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxZstdWindow),
			// For streams this bounds the window of a single-segment
			// frame, which is its declared content size.
			zstd.WithDecoderMaxMemory(MaxZstdWindow))
		if err != nil {
			panic("protocol: zstd decoder options: " + err.Error())
		}
	}
	return d
}

func putZstdStream(d *zstd.Decoder) {
	_ = d.Reset(nil) // drop the reference to the input
	zstdStreams <- d
}

// sliceReader reads a byte slice. Unlike *bytes.Reader it has no Bytes
// method, which would make the zstd decoder decode it whole (DecodeAll)
// and allocate the frame's declared content size up front.
type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// ChooseCodec picks the codec a server answers in HELLO from the client's
// accept bits and the codecs the server allows (same bit layout): s2 first
// (cheaper on the event loop's workers), then zstd, else CodecNone.
func ChooseCodec(clientAccepts, serverAllows uint8) uint8 {
	both := clientAccepts & serverAllows
	switch {
	case both&AcceptS2 != 0:
		return CodecS2
	case both&AcceptZstd != 0:
		return CodecZstd
	}
	return CodecNone
}

// appendCompressed appends U (u32) and the compressed form of src to dst
// using codec. It returns ok=false when the codec is unknown or compression
// would not make the body smaller; dst's content past its original length is
// then garbage and the caller truncates it.
func appendCompressed(dst []byte, codec uint8, src []byte) ([]byte, bool) {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(src)))
	switch codec {
	case CodecZstd:
		zstdInit()
		dst = zstdEnc.EncodeAll(src, dst)
	case CodecS2:
		n := s2.MaxEncodedLen(len(src))
		if n < 0 {
			return dst, false
		}
		at := len(dst)
		dst = grow(dst, n)
		enc := s2.Encode(dst[at:at+n], src)
		dst = dst[:at+len(enc)]
	default:
		return dst, false
	}
	return dst, len(dst)-start < len(src)
}

// grow makes room for n more bytes in dst's capacity (length unchanged).
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	nd := make([]byte, len(dst), len(dst)+n+len(dst)/4)
	copy(nd, dst)
	return nd
}

// minGrow is the first capacity a decompression buffer grows to.
const minGrow = 64 << 10

// trustedRatio: an s2 body declaring at most this many times its own size
// (plus minGrow) is decoded without first proving its size.
const trustedRatio = 8

// DeclaredSize returns the uncompressed body size U that a compressed
// frame declares (the 4 bytes after its header), or 0 when the frame is
// too short to hold it. It is a claim, checked only by decoding.
func DeclaredSize(frame []byte) int {
	if len(frame) < HeaderSize+4 {
		return 0
	}
	return int(binary.BigEndian.Uint32(frame[HeaderSize:]))
}

// decompress decodes a compressed body src (u32 U + data) with d's codec
// into d.scratch. U must be ≤ limit; the buffer grows only as output is
// produced (zstd, or s2 with a check) or once its size is proven (s2),
// never to U on trust, and each growth is charged to d.Budget first. With
// chk set, the payload is given to its check as it is produced and the
// check's error stops the decoding. It returns the U decoded bytes (a
// view into d.scratch).
func (d *Decoder) decompress(src []byte, limit int, chk *bodyCheck) ([]byte, error) {
	if len(src) < 4 {
		return nil, newError(StatusBadFrame, "compressed body shorter than its 4-byte size")
	}
	u := binary.BigEndian.Uint32(src)
	if uint64(u) > uint64(limit) {
		return nil, errn(StatusTooLarge, "uncompressed size above limit: declared", uint64(u))
	}
	n := int(u)
	data := src[4:]
	switch d.Codec {
	case CodecZstd:
		return d.decompressZstd(data, n, chk)
	case CodecS2:
		dl, derr := s2.DecodedLen(data)
		if derr != nil {
			return nil, newError(StatusBadFrame, "s2: "+derr.Error())
		}
		if dl != n {
			return nil, errn(StatusBadFrame, "s2: decoded size differs from declared", uint64(n))
		}
		hl := uvarintLen(data)
		// The block's own length header is as much a claim as U. A claim
		// within trustedRatio times the bytes received (plus minGrow) is
		// bounded by what the peer really sent; a larger one is walked
		// element by element first (about the cost of decoding it), so a
		// garbage body is refused before anything is allocated.
		if n > trustedRatio*len(data)+minGrow {
			if got, ok := s2Produces(data[hl:], n); !ok || got != n {
				return nil, errn(StatusBadFrame, "s2: body does not produce its declared size", uint64(n))
			}
		}
		if chk != nil {
			return d.decompressS2Checked(data[hl:], n, chk)
		}
		if cap(d.scratch) < n && !d.growScratch(0, n) {
			return nil, errBudget
		}
		out, err := s2.Decode(d.scratch[:n], data)
		if err != nil {
			return nil, newError(StatusBadFrame, "s2: "+err.Error())
		}
		if len(out) != n {
			return nil, errn(StatusBadFrame, "decoded size differs from declared", uint64(n))
		}
		return out, nil
	}
	return nil, newError(StatusBadFrame, "compressed body but no codec agreed")
}

// CheckChunk is about how much output a checked decompression
// (DecodeChecked) produces between two calls of its check: past the point
// where the check refuses, at most this much more was decoded.
const CheckChunk = 64 << 10

// bodyCheck feeds the payload part of a request body being decompressed
// to a PayloadCheck: the body's first byte says how long the name is, and
// the name and coordinate after it are checked as Decode checks them
// (decodeBody) before any of the payload is fed, so that the check's
// refusal never hides one that Decode would make of the whole frame.
// When they fail, the check stops and the body is decoded to its end
// unchecked, as Decode decodes it: the frame's answer is then Decode's
// (BAD_FRAME for a body that does not decompress, else BAD_NAME or
// BAD_COORD), the same with a check as without one, that is with a quota
// as without.
type bodyCheck struct {
	c     PayloadCheck
	head  bool  // check the name and coordinate first (decode sets it)
	op    uint8 // the frame's opcode
	off   int   // the payload's offset in the body; 0 until known
	fed   int   // bytes of the body passed to c or skipped
	named bool  // name and coord hold what passed the check
	quit  bool  // c refused the payload
	name  []byte
	coord [9]uint16
}

// feed gives c what out, the body produced so far, holds past what was
// fed before; an error of the name or coordinate comes first, as Decode
// returns it.
func (b *bodyCheck) feed(out []byte) error {
	if b.c == nil || len(out) == 0 {
		return nil
	}
	if b.off == 0 {
		off, ok := PayloadOffset(out[0])
		if !ok {
			// Decode refuses this name; nothing to check.
			b.c = nil
			return nil
		}
		b.off = off - HeaderSize
		b.fed = b.off
	}
	if len(out) <= b.fed {
		return nil
	}
	if b.fed == b.off && b.head {
		var req Request
		if err := decodeBody(b.op, out, &req); err != nil {
			b.c = nil // Decode's error, once the whole body is decoded
			return nil
		}
		b.named, b.name, b.coord = true, req.Name, req.Coord
	}
	err := b.c.Add(out[b.fed:])
	b.fed = len(out)
	b.quit = err != nil
	return err
}

// ensure makes room in d.scratch, which holds out, for need more bytes,
// growing it (doubling what was produced, never past n) and charging the
// growth to the Budget first. It returns out, possibly moved.
func (d *Decoder) ensure(out []byte, need, n int) ([]byte, bool) {
	if cap(out)-len(out) >= need {
		return out, true
	}
	d.scratch = out
	if !d.growScratch(len(out), min(max(2*cap(out), minGrow, len(out)+need), n)) {
		return nil, false
	}
	return d.scratch, true
}

// decompressS2Checked decodes the elements of an s2 block src (after its
// length header) of n bytes into d.scratch, which grows only as output is
// produced, and gives chk the payload every CheckChunk bytes of output,
// splitting long literals and copies to do so: a check that refuses stops
// it after at most CheckChunk more bytes. It parses elements as
// s2Produces does (nextS2Elem); it is plain Go, slower than
// s2.Decode's assembly on long runs, and used only when a check can stop
// the decoding early.
func (d *Decoder) decompressS2Checked(src []byte, n int, chk *bodyCheck) ([]byte, error) {
	out := d.scratch[:0]
	next := CheckChunk // output length at which chk is fed next
	s, offset := 0, 0
	for s < len(src) {
		e, ok := nextS2Elem(src, s, offset, len(out), n)
		if !ok {
			return nil, errS2Corrupt
		}
		s, offset = e.next, e.offset
		lit, length := e.lit, e.length
		// Write the element in steps that end at the next check point.
		for length > 0 {
			step := min(length, next-len(out))
			if out, ok = d.ensure(out, step, n); !ok {
				return nil, errBudget
			}
			at := len(out)
			out = out[:at+step]
			if lit {
				copy(out[at:], src[s:s+step])
				s += step
			} else {
				// An overlapping copy repeats the last offset bytes:
				// each pass copies all written since from, which
				// doubles, so a run of one short pattern takes a
				// few memmoves, not one per byte.
				from := at - offset
				for w := at; w < len(out); {
					w += copy(out[w:], out[from:w])
				}
			}
			length -= step
			if len(out) == next {
				if err := chk.feed(out); err != nil {
					d.scratch = out
					return nil, err
				}
				next += CheckChunk
			}
		}
	}
	d.scratch = out
	if len(out) != n {
		return nil, errn(StatusBadFrame, "decoded size differs from declared", uint64(n))
	}
	if err := chk.feed(out); err != nil {
		return nil, err
	}
	return out, nil
}

// errS2Corrupt answers an s2 body that breaks the block format.
var errS2Corrupt = newError(StatusBadFrame, "s2: corrupt input")

// errBudget answers a body whose decompression buffer the Budget refused.
var errBudget = newError(StatusBusy, "decompressing this body would pass the server's memory budget; retry later")

// decompressZstd stream-decodes data into d.scratch, growing it (at most
// to n) as the decoder produces bytes, and checks that exactly n come out.
// With chk set it reads at most CheckChunk bytes at a time and gives chk
// the payload after each read.
func (d *Decoder) decompressZstd(data []byte, n int, chk *bodyCheck) ([]byte, error) {
	zd := getZstdStream()
	defer putZstdStream(zd)
	// The reader lives in d, so a decode allocates nothing for it.
	d.zsrc = sliceReader{b: data}
	defer func() { d.zsrc = sliceReader{} }()
	if err := zd.Reset(&d.zsrc); err != nil {
		return nil, newError(StatusBadFrame, "zstd: "+err.Error())
	}
	out := d.scratch[:0]
	for {
		if len(out) == cap(out) {
			if len(out) >= n {
				break
			}
			// Double what was produced, never past n: memory follows
			// output, and output beyond n is an error anyway.
			d.scratch = out
			if !d.growScratch(len(out), min(max(2*cap(out), minGrow), n)) {
				return nil, errBudget
			}
			out = d.scratch
		}
		end := cap(out)
		if chk != nil {
			end = min(end, len(out)+CheckChunk)
		}
		k, rerr := zd.Read(out[len(out):end])
		out = out[:len(out)+k]
		if chk != nil {
			if err := chk.feed(out); err != nil {
				d.scratch = out
				return nil, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, newError(StatusBadFrame, "zstd: "+rerr.Error())
		}
	}
	if len(out) == n {
		// All n bytes are in: the stream must end here.
		var one [1]byte
		k, rerr := zd.Read(one[:])
		if k > 0 {
			return nil, errn(StatusBadFrame, "zstd: body produces more than declared", uint64(n))
		}
		if rerr != nil && rerr != io.EOF {
			return nil, newError(StatusBadFrame, "zstd: "+rerr.Error())
		}
	}
	if len(out) != n {
		return nil, errn(StatusBadFrame, "decoded size differs from declared", uint64(n))
	}
	return out, nil
}

// uvarintLen returns the length of the uvarint at the start of b (which
// s2.DecodedLen has already parsed successfully).
func uvarintLen(b []byte) int {
	for i, c := range b {
		if c < 0x80 {
			return i + 1
		}
	}
	return len(b)
}

// s2Produces walks the elements of an s2 block (after its length header)
// without writing anything and returns how many bytes decoding it would
// produce. ok is false when an element runs past the input, a copy reaches
// before the start of the output, or the output passes max.
func s2Produces(src []byte, max int) (d int, ok bool) {
	s, offset := 0, 0
	for s < len(src) {
		var e s2Elem
		if e, ok = nextS2Elem(src, s, offset, d, max); !ok {
			return d, false
		}
		s, offset = e.next, e.offset
		if e.lit {
			s += e.length
		}
		d += e.length
	}
	return d, true
}

// s2Elem is one element of an s2 block: a literal of length bytes (they
// follow at next), or a copy of length bytes from offset bytes back.
type s2Elem struct {
	lit    bool
	length int
	offset int // the copy's offset, or the last one (kept by literals)
	next   int // where the element's header ends in src
}

// nextS2Elem parses the element at src[s:] of a block whose output is d
// bytes so far (at most max) and whose last copy offset is offset. ok is
// false when the element runs past the input, a copy reaches before the
// start of the output, or the output would pass max. It follows the
// element format of s2's reference decoder (klauspost/compress
// s2/decode_other.go), repeat codes included.
func nextS2Elem(src []byte, s, offset, d, max int) (e s2Elem, ok bool) {
	var length int
	switch src[s] & 0x03 {
	case 0: // literal
		x := uint32(src[s] >> 2)
		switch {
		case x < 60:
			s++
		case x == 60:
			s += 2
			if s > len(src) {
				return e, false
			}
			x = uint32(src[s-1])
		case x == 61:
			s += 3
			if s > len(src) {
				return e, false
			}
			x = uint32(src[s-2]) | uint32(src[s-1])<<8
		case x == 62:
			s += 4
			if s > len(src) {
				return e, false
			}
			x = uint32(src[s-3]) | uint32(src[s-2])<<8 | uint32(src[s-1])<<16
		default: // 63
			s += 5
			if s > len(src) {
				return e, false
			}
			x = uint32(src[s-4]) | uint32(src[s-3])<<8 | uint32(src[s-2])<<16 | uint32(src[s-1])<<24
		}
		length = int(x) + 1
		if length <= 0 || length > len(src)-s || length > max-d {
			return e, false
		}
		return s2Elem{lit: true, length: length, offset: offset, next: s}, true
	case 1: // copy with a 1-byte offset, or a repeat of the last offset
		s += 2
		if s > len(src) {
			return e, false
		}
		length = int(src[s-2]) >> 2 & 0x7
		toffset := int(uint32(src[s-2])&0xe0<<3 | uint32(src[s-1]))
		if toffset == 0 {
			switch length {
			case 5:
				s++
				if s > len(src) {
					return e, false
				}
				length = int(src[s-1]) + 4
			case 6:
				s += 2
				if s > len(src) {
					return e, false
				}
				length = int(uint32(src[s-2])|uint32(src[s-1])<<8) + 1<<8
			case 7:
				s += 3
				if s > len(src) {
					return e, false
				}
				length = int(uint32(src[s-3])|uint32(src[s-2])<<8|uint32(src[s-1])<<16) + 1<<16
			}
		} else {
			offset = toffset
		}
		length += 4
	case 2: // copy with a 2-byte offset
		s += 3
		if s > len(src) {
			return e, false
		}
		length = 1 + int(src[s-3])>>2
		offset = int(uint32(src[s-2]) | uint32(src[s-1])<<8)
	default: // copy with a 4-byte offset
		s += 5
		if s > len(src) {
			return e, false
		}
		length = 1 + int(src[s-5])>>2
		offset = int(uint32(src[s-4]) | uint32(src[s-3])<<8 | uint32(src[s-2])<<16 | uint32(src[s-1])<<24)
	}
	if offset <= 0 || d < offset || length > max-d {
		return e, false
	}
	return s2Elem{length: length, offset: offset, next: s}, true
}

// bufPool holds encode buffers. bytebufferpool calibrates its own size
// classes; PutBuffer additionally refuses buffers above maxPooledBuffer so a
// single huge GET response is not kept alive by the pool.
var bufPool bytebufferpool.Pool

// maxPooledBuffer is the largest buffer capacity PutBuffer returns to the
// pool.
const maxPooledBuffer = 1 << 20

// GetBuffer returns an empty buffer from the package pool. Append frames to
// its B field and give it back with PutBuffer once the bytes are written.
func GetBuffer() *bytebufferpool.ByteBuffer { return bufPool.Get() }

// PutBuffer returns b to the pool, or drops it when its capacity is above
// 1 MiB. b must not be used afterwards. A nil b is ignored.
func PutBuffer(b *bytebufferpool.ByteBuffer) {
	if b == nil || cap(b.B) > maxPooledBuffer {
		return
	}
	// No Reset here: bytebufferpool calibrates its size classes from the
	// length at Put (and resets the buffer itself); a reset buffer would
	// teach it that every buffer is tiny and it would stop pooling.
	bufPool.Put(b)
}
