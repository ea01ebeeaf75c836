// Package protocol is SQ's wire codec: framing, request and response
// encoding, the HELLO handshake and body compression. It does no I/O; the
// server's event loops and the client call it on bytes they already hold.
// docs/PROTOCOL.md is the specification; ../shared/PROTOCOL-CONTRACT.md (beside the repository) is
// the fixed part of it.
//
// Server side, inside gnet's OnTraffic:
//
//	buf, _ := c.Peek(4)
//	size, err := protocol.FrameSize(buf, maxFrame) // check before waiting
//	if err != nil { reply with protocol.AppendErr(…), then close }
//	if c.InboundBuffered() < size { return gnet.None }
//	frame, _ := c.Peek(size)
//	err = dec.Decode(frame, &req) // views into frame
//	… handle, then c.Discard(size)
//
// Client side: AppendHello, DecodeHelloReply, AppendRequest (or
// AppendCompressedRequest) and Decoder.DecodeResponse — the same codec in
// the other direction.
//
// Encoders append to a caller's buffer (GetBuffer/PutBuffer give pooled
// ones). AppendResponseHeader and AppendRequestHeader write everything but a
// large body so the body can be passed to writev without a copy.
//
// Malformed input is always an *Error carrying the Status to answer with;
// StatusOf maps any error to a status.
//
// # Caveats
//
//   - Request.Name, Request.Payload and Response.Body are views into the
//     frame passed in, or into the Decoder's scratch when the body was
//     compressed. They are valid only until the next Decode/DecodeResponse on
//     the same Decoder and until the frame's bytes are discarded (gnet:
//     Discard, or the end of OnTraffic). Copy what must live longer, e.g.
//     before handing a request to a worker goroutine.
//   - A Decoder is per connection and not safe for concurrent use. The
//     Append functions and the compression helpers are safe from any
//     goroutine.
//   - Decode does not check scroll text (UTF-8, delimiter bytes); the store
//     does, and answers BAD_SCROLL.
//   - Encoders do not validate what they are given (a name over 64 bytes, a
//     body over the peer's max frame); the peer rejects such frames.
//   - Decompressing a body costs CPU proportional to its declared size (up
//     to MaxFrame); do it off the event loop if bodies may be large, or keep
//     MaxFrame modest.
//   - The first zstd use builds a process-wide encoder (a few MB of state)
//     and up to ZstdStreams (the CPUs at start, internal/cpus) streaming
//     decoders, each holding a window of up to MaxZstdWindow; a decode
//     waits for a free one. s2 needs none.
//   - A compressed body's declared size is never trusted for an
//     allocation: zstd output grows as it is produced, an s2 block is
//     walked (proving its size) before its buffer is made.
//   - DecodeChecked decompresses in steps and lets a PayloadCheck stop it:
//     what it costs is then what was produced before the check refused,
//     not the declared size. Its s2 path is plain Go (slower per byte than
//     s2.Decode's assembly, which cannot stop part way); a check that
//     never refuses pays that for the whole body.
package protocol
