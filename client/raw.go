package client

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// RawConn is a connection for load generators: no reader goroutine, no
// per-call state, no allocation per request once its buffers are warm. The
// caller pipelines by hand:
//
//	rc, _ := client.DialRaw(ctx, addr, token)
//	for i := 0; i < depth; i++ { rc.Send(protocol.OpSelect, nil, coord, nil) }
//	rc.Flush()
//	for {
//		rc.Recv(&resp)                 // oldest outstanding answer
//		rc.Send(protocol.OpSelect, nil, coord, nil) // keep depth requests in flight
//		rc.Flush()
//	}
//
// Send/WriteFrames/Flush must be called by one goroutine at a time and Recv
// by one goroutine at a time; the sender and the receiver may be two
// different goroutines. Matching answers to requests is the caller's job:
// answers come back in request order and carry the request's id.
type RawConn struct {
	nc       net.Conn
	hello    protocol.HelloReply
	codec    uint8
	maxFrame int

	// Sender side.
	bw     *bufio.Writer
	wbuf   []byte
	nextID uint32

	// Receiver side.
	br   *bufio.Reader
	dec  protocol.Decoder
	rbuf []byte
}

// DialRaw connects and performs HELLO like Dial and returns a RawConn.
func DialRaw(ctx context.Context, addr, token string, opts ...Option) (*RawConn, error) {
	o := resolve(opts)
	nc, hello, err := handshake(ctx, addr, token, &o)
	if err != nil {
		return nil, err
	}
	r := NewRawConn(nc, WithOptions(o))
	r.SetHello(hello)
	return r, nil
}

// NewRawConn returns a RawConn over nc, on which no HELLO has been sent
// yet: the caller speaks the handshake itself (WriteFrames a HELLO, Flush,
// Recv the answer, or send something Dial never would: a bad token, a
// malformed or trickled HELLO) and then tells the RawConn what the server
// chose with SetHello. It is for tests and tools that play a hostile or
// broken client; everyone else uses DialRaw. Options apply as in DialRaw
// (MaxFrame bounds the answers Recv accepts, ReadBufferSize the buffers).
func NewRawConn(nc net.Conn, opts ...Option) *RawConn {
	o := resolve(opts)
	r := &RawConn{
		nc:       nc,
		maxFrame: o.MaxFrame,
		bw:       bufio.NewWriterSize(nc, o.ReadBufferSize),
		br:       bufio.NewReaderSize(nc, o.ReadBufferSize),
		nextID:   1,
	}
	r.dec.MaxFrame = o.MaxFrame
	return r
}

// SetHello records the server's HELLO answer on a RawConn made with
// NewRawConn: Send compresses with the codec it chose and Recv
// decompresses with it. Call it before the next Send or Recv.
func (r *RawConn) SetHello(h protocol.HelloReply) {
	r.hello = h
	r.codec = h.Codec
	r.dec.Codec = h.Codec
}

// Hello returns the server's HELLO reply.
func (r *RawConn) Hello() protocol.HelloReply { return r.hello }

// Send encodes one request (compressed when a codec was agreed and the body
// is at least protocol.CompressThreshold bytes) into the write buffer and
// returns its id. The frame reaches the server at the next Flush, or
// earlier when the buffer fills.
func (r *RawConn) Send(op protocol.Op, name []byte, coord phext.Coordinate, payload []byte) (uint32, error) {
	id := r.nextID
	r.nextID++
	r.wbuf = protocol.AppendCompressedRequest(r.wbuf[:0], op, id, name, coord, payload, r.codec)
	_, err := r.bw.Write(r.wbuf)
	if cap(r.wbuf) > maxKeptBuffer {
		r.wbuf = nil
	}
	return id, err
}

// WriteFrames buffers pre-built request frames (for example made once with
// protocol.AppendRequest) exactly as given; their ids are the caller's.
func (r *RawConn) WriteFrames(frames []byte) error {
	_, err := r.bw.Write(frames)
	return err
}

// Flush writes buffered frames to the network.
func (r *RawConn) Flush() error { return r.bw.Flush() }

// Recv reads the next answer into resp, decompressing it when flagged.
// resp.Body is valid until the next Recv. An error status is not an error;
// err is non-nil for network and protocol errors, after which the RawConn
// must be closed.
func (r *RawConn) Recv(resp *protocol.Response) error {
	var err error
	r.rbuf, err = readFrame(r.br, r.rbuf, r.maxFrame)
	if err != nil {
		return err
	}
	if err := r.dec.DecodeResponse(r.rbuf, resp); err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return nil
}

// SetDeadline sets the read and write deadline of the network connection.
func (r *RawConn) SetDeadline(t time.Time) error { return r.nc.SetDeadline(t) }

// Close closes the network connection without flushing.
func (r *RawConn) Close() error { return r.nc.Close() }
