package client

import (
	"context"
	"fmt"
	"strings"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// Do sends one request and appends the OK or error body of its answer to
// dst. It is the allocation-free core under the typed methods: with a
// reused dst and a context without a deadline of its own (or with one, but
// no Options.Timeout) it allocates nothing per call once warm.
//
// An error status is not an error here: err is non-nil only when no answer
// was received (network, protocol, context, or a request refused locally
// before sending, see StatusError). name empty means the tenant's default
// phext; ops that need no coordinate ignore coord (pass phext.Origin).
//
// Do may be called from many goroutines at once.
func (c *Conn) Do(ctx context.Context, op protocol.Op, name []byte, coord phext.Coordinate, payload, dst []byte) (protocol.Status, []byte, error) {
	cl, err := c.roundTrip(ctx, op, name, coord, payload)
	if err != nil {
		return StatusNone, dst, err
	}
	st := cl.status
	dst = append(dst, cl.body...)
	c.putCall(cl)
	return st, dst, nil
}

// call sends a request and returns a copy of the OK body, or a *StatusError.
func (c *Conn) call(ctx context.Context, op protocol.Op, name string, coord phext.Coordinate, payload []byte) ([]byte, error) {
	cl, err := c.roundTrip(ctx, op, []byte(name), coord, payload)
	if err != nil {
		return nil, err
	}
	defer c.putCall(cl)
	if cl.status != protocol.StatusOK {
		return nil, &StatusError{Op: op, Status: cl.status, Msg: string(cl.body)}
	}
	return append([]byte(nil), cl.body...), nil
}

// count sends a request whose OK body is a u32 count.
func (c *Conn) count(ctx context.Context, op protocol.Op, name string, coord phext.Coordinate, payload []byte) (int, error) {
	cl, err := c.roundTrip(ctx, op, []byte(name), coord, payload)
	if err != nil {
		return 0, err
	}
	defer c.putCall(cl)
	if cl.status != protocol.StatusOK {
		return 0, &StatusError{Op: op, Status: cl.status, Msg: string(cl.body)}
	}
	n, err := protocol.DecodeCount(cl.body)
	if err != nil {
		return 0, fmt.Errorf("%w: %s reply: %w", ErrProtocol, op, err)
	}
	return int(n), nil
}

// Ping sends PING and waits for the answer: a round trip through the
// server's event loop.
func (c *Conn) Ping(ctx context.Context) error {
	_, err := c.call(ctx, protocol.OpPing, "", phext.Origin, nil)
	return err
}

// Select returns the text of the scroll at coord in phext phextName ("" is
// the tenant's default phext). An empty or absent scroll gives an empty
// slice and no error.
func (c *Conn) Select(ctx context.Context, phextName string, coord phext.Coordinate) ([]byte, error) {
	return c.call(ctx, protocol.OpSelect, phextName, coord, nil)
}

// Insert appends text to the scroll at coord and returns the number of
// bytes written. Text that is not valid UTF-8 or holds a phext delimiter
// gives a StatusError with status BAD_SCROLL and nothing is written.
func (c *Conn) Insert(ctx context.Context, phextName string, coord phext.Coordinate, text []byte) (int, error) {
	return c.count(ctx, protocol.OpInsert, phextName, coord, text)
}

// Update replaces the scroll at coord with text and returns the number of
// bytes written. Empty text empties the scroll.
func (c *Conn) Update(ctx context.Context, phextName string, coord phext.Coordinate, text []byte) (int, error) {
	return c.count(ctx, protocol.OpUpdate, phextName, coord, text)
}

// Delete empties the scroll at coord and returns the number of bytes
// removed (0 when it was already empty).
func (c *Conn) Delete(ctx context.Context, phextName string, coord phext.Coordinate) (int, error) {
	return c.count(ctx, protocol.OpDelete, phextName, coord, nil)
}

// TOC returns the phext's table of contents (libphext textmap text).
func (c *Conn) TOC(ctx context.Context, phextName string) ([]byte, error) {
	return c.call(ctx, protocol.OpTOC, phextName, phext.Origin, nil)
}

// Get returns the whole phext document, serialized.
func (c *Conn) Get(ctx context.Context, phextName string) ([]byte, error) {
	return c.call(ctx, protocol.OpGet, phextName, phext.Origin, nil)
}

// Put replaces the whole phext with the serialized document doc and
// returns the number of non-empty scrolls stored.
func (c *Conn) Put(ctx context.Context, phextName string, doc []byte) (int, error) {
	return c.count(ctx, protocol.OpPut, phextName, phext.Origin, doc)
}

// Checksum returns the phext's checksum: 32 lowercase hex characters,
// xxh3-128 of the serialized document.
func (c *Conn) Checksum(ctx context.Context, phextName string) (string, error) {
	b, err := c.call(ctx, protocol.OpChecksum, phextName, phext.Origin, nil)
	return string(b), err
}

// Delta sends SQ's delta request, `coord: checksum` lines describing what
// the caller has, and returns a phext document with the scrolls that
// differ (scrolls the server lacks come back as "---sq:Scroll-Missing---").
func (c *Conn) Delta(ctx context.Context, phextName string, request []byte) ([]byte, error) {
	return c.call(ctx, protocol.OpDelta, phextName, phext.Origin, request)
}

// Where asks the server for SQ's coordinate inference of text: algo is
// "xor" (the default when empty) or "checksum", limit the minimum phoken
// length for xor (phext.DefaultWhereLimit when ≤ 0). An xor result may
// hold 0 parts, so it is returned unvalidated.
func (c *Conn) Where(ctx context.Context, text []byte, algo string, limit int) (phext.Coordinate, error) {
	var a uint8
	switch strings.ToLower(algo) {
	case "", "xor":
		a = protocol.WhereXor
	case "checksum":
		a = protocol.WhereChecksum
	default:
		return phext.Coordinate{}, fmt.Errorf("%w: WHERE algorithm %q (want xor or checksum)", ErrBadArgument, algo)
	}
	if limit <= 0 {
		limit = phext.DefaultWhereLimit
	}
	if uint64(limit) > 0xFFFFFFFF {
		limit = 0xFFFFFFFF
	}
	payload := protocol.AppendWherePayload(make([]byte, 0, 5+len(text)), a, uint32(limit), text)
	b, err := c.call(ctx, protocol.OpWhere, "", phext.Origin, payload)
	if err != nil {
		return phext.Coordinate{}, err
	}
	coord, err := protocol.DecodeCoordinate(b)
	if err != nil || len(b) != protocol.CoordSize {
		return phext.Coordinate{}, fmt.Errorf("%w: WHERE reply of %d bytes, want %d", ErrProtocol, len(b), protocol.CoordSize)
	}
	return coord, nil
}

// List returns the names of the tenant's phexts; the default phext is
// listed as "".
func (c *Conn) List(ctx context.Context) ([]string, error) {
	b, err := c.call(ctx, protocol.OpList, "", phext.Origin, nil)
	if err != nil {
		return nil, err
	}
	names, err := protocol.DecodeList(b)
	if err != nil {
		return nil, fmt.Errorf("%w: LIST reply: %w", ErrProtocol, err)
	}
	return names, nil
}

// Status returns the tenant's usage: phexts, scrolls, bytes and quota.
func (c *Conn) Status(ctx context.Context) (protocol.StatusInfo, error) {
	b, err := c.call(ctx, protocol.OpStatus, "", phext.Origin, nil)
	if err != nil {
		return protocol.StatusInfo{}, err
	}
	si, err := protocol.DecodeStatusInfo(b)
	if err != nil {
		return si, fmt.Errorf("%w: STATUS reply: %w", ErrProtocol, err)
	}
	return si, nil
}

// Version returns the server's software version.
func (c *Conn) Version(ctx context.Context) (string, error) {
	b, err := c.call(ctx, protocol.OpVersion, "", phext.Origin, nil)
	return string(b), err
}

// Compact asks the server to compact the named phext now.
func (c *Conn) Compact(ctx context.Context, phextName string) error {
	_, err := c.call(ctx, protocol.OpCompact, phextName, phext.Origin, nil)
	return err
}

// Reload asks the server to reload its tenant configuration and returns
// its summary. The server allows it only from a loopback connection or for
// the config's admin token (else status AUTH).
func (c *Conn) Reload(ctx context.Context) (string, error) {
	b, err := c.call(ctx, protocol.OpReload, "", phext.Origin, nil)
	return string(b), err
}
