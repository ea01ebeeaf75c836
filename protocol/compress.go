package protocol

import (
	"encoding/binary"
	"runtime"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/valyala/bytebufferpool"
)

// A compressed body (FlagCompressed set) is
//
//	u32 uncompressed size U | U bytes compressed with the agreed codec
//
// The receiver checks U against its max frame before it allocates anything,
// decodes into a buffer whose capacity is exactly U, and refuses the body if
// the codec produces more or fewer than U bytes.

// zstd encoders and decoders are expensive to build and safe for concurrent
// EncodeAll/DecodeAll: each keeps its own internal pool of per-call state
// (bounded by the concurrency option), so one of each per process is the
// pool. They are built on first use so a process that never compresses pays
// nothing.
var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
)

func zstdInit() {
	zstdOnce.Do(func() {
		n := runtime.GOMAXPROCS(0)
		var err error
		zstdEnc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(n),
			zstd.WithEncoderCRC(false),
			zstd.WithZeroFrames(true))
		if err != nil {
			panic("protocol: zstd encoder options: " + err.Error()) // constant options: cannot happen
		}
		zstdDec, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(n),
			// Output is limited to cap(dst), which the decoder sets to the
			// declared size U after checking U against the max frame.
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderLowmem(true))
		if err != nil {
			panic("protocol: zstd decoder options: " + err.Error())
		}
	})
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

// decompress decodes a compressed body src (u32 U + data) with codec into
// scratch, which it grows to U only after checking U ≤ limit. It returns the
// U decoded bytes and the (possibly grown) scratch to keep.
func decompress(scratch []byte, codec uint8, src []byte, limit int) (out, keep []byte, err error) {
	if len(src) < 4 {
		return nil, scratch, newError(StatusBadFrame, "compressed body shorter than its 4-byte size")
	}
	u := binary.BigEndian.Uint32(src)
	// Check the declared size before allocating: a 20-byte frame must not be
	// able to make us reserve gigabytes.
	if uint64(u) > uint64(limit) {
		return nil, scratch, errn(StatusTooLarge, "uncompressed size above limit: declared", uint64(u))
	}
	n := int(u)
	if cap(scratch) < n {
		scratch = make([]byte, n)
	}
	data := src[4:]
	switch codec {
	case CodecZstd:
		zstdInit()
		out, err = zstdDec.DecodeAll(data, scratch[:0:n])
		if err != nil {
			return nil, scratch, newError(StatusBadFrame, "zstd: "+err.Error())
		}
	case CodecS2:
		dl, derr := s2.DecodedLen(data)
		if derr != nil {
			return nil, scratch, newError(StatusBadFrame, "s2: "+derr.Error())
		}
		if dl != n {
			return nil, scratch, errn(StatusBadFrame, "s2: decoded size differs from declared", uint64(n))
		}
		out, err = s2.Decode(scratch[:n], data)
		if err != nil {
			return nil, scratch, newError(StatusBadFrame, "s2: "+err.Error())
		}
	default:
		return nil, scratch, newError(StatusBadFrame, "compressed body but no codec agreed")
	}
	if len(out) != n {
		return nil, scratch, errn(StatusBadFrame, "decoded size differs from declared", uint64(n))
	}
	return out, scratch, nil
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
