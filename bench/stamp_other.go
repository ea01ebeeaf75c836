//go:build !linux

package bench

import (
	"context"
	"net"
)

// stampConn is a plain connection here: arrivals are not timed (Stamp 0).
type stampConn struct{ net.Conn }

// stampsSupported says whether watchers can time arrivals (stampConn).
const stampsSupported = false

func dialStamped(ctx context.Context, network, addr string) (*stampConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &stampConn{Conn: nc}, nil
}

// Stamp is 0: no receive timestamps on this system.
func (c *stampConn) Stamp() int64 { return 0 }
