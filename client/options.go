package client

import (
	"context"
	"net"
	"time"

	"github.com/phext/sq/protocol"
)

// Options configures a connection. The zero value of every field means its
// default; Dial and NewPool take Option functions that edit a copy of
// DefaultOptions.
type Options struct {
	// DialTimeout bounds the TCP connect plus the HELLO exchange when the
	// context given to Dial has no earlier deadline. Default 10 s.
	DialTimeout time.Duration
	// Timeout is applied to each call whose context has no deadline; 0 (the
	// default) means calls wait as long as their context allows.
	Timeout time.Duration
	// WriteTimeout bounds each socket write (a batch of frames). A write
	// that times out breaks the connection, since part of a frame may have
	// been sent. Default 30 s; negative means no limit.
	WriteTimeout time.Duration
	// Codecs is the set of codecs offered in HELLO (protocol.AcceptZstd |
	// protocol.AcceptS2 by default). The server picks one or none. Use
	// WithCompression(false) to offer none.
	Codecs uint8
	// NoCompression, when true, offers no codec (Codecs is ignored).
	NoCompression bool
	// MaxFrame is the largest response frame this client accepts, and the
	// bound on a compressed response's declared uncompressed size. Default
	// protocol.DefaultMaxFrame (64 MiB). Requests are bounded separately by
	// the max frame the server announces in HELLO.
	MaxFrame int
	// ReadBufferSize is the size of the connection's read buffer (and of
	// RawConn's write buffer). Default 64 KiB.
	ReadBufferSize int
	// Dialer opens the network connection. Default: a net.Dialer on "tcp"
	// (plain TCP; the protocol has no TLS of its own, wrap the connection
	// here if a tunnel is needed).
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// DefaultOptions are the settings used when no Option is given.
var DefaultOptions = Options{
	DialTimeout:    10 * time.Second,
	WriteTimeout:   30 * time.Second,
	Codecs:         protocol.AcceptZstd | protocol.AcceptS2,
	MaxFrame:       protocol.DefaultMaxFrame,
	ReadBufferSize: 64 << 10,
}

// Option edits the Options of a Dial or NewPool call.
type Option func(*Options)

// WithOptions replaces all options with o (zero fields take defaults).
func WithOptions(o Options) Option { return func(p *Options) { *p = o } }

// WithDialTimeout sets Options.DialTimeout.
func WithDialTimeout(d time.Duration) Option { return func(o *Options) { o.DialTimeout = d } }

// WithTimeout sets Options.Timeout, the per-call timeout used when a call's
// context has no deadline.
func WithTimeout(d time.Duration) Option { return func(o *Options) { o.Timeout = d } }

// WithCompression turns the offer of compression in HELLO on (the default)
// or off.
func WithCompression(on bool) Option { return func(o *Options) { o.NoCompression = !on } }

// WithCodecs sets the accept bits offered in HELLO (protocol.AcceptZstd,
// protocol.AcceptS2).
func WithCodecs(accept uint8) Option { return func(o *Options) { o.Codecs = accept } }

// WithWriteTimeout sets Options.WriteTimeout.
func WithWriteTimeout(d time.Duration) Option { return func(o *Options) { o.WriteTimeout = d } }

// WithMaxFrame sets Options.MaxFrame.
func WithMaxFrame(n int) Option { return func(o *Options) { o.MaxFrame = n } }

// WithDialer sets Options.Dialer.
func WithDialer(d func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *Options) { o.Dialer = d }
}

// resolve applies opts to a copy of DefaultOptions and fills zero fields.
func resolve(opts []Option) Options {
	o := DefaultOptions
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultOptions.DialTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultOptions.WriteTimeout
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = protocol.DefaultMaxFrame
	}
	if o.ReadBufferSize <= 0 {
		o.ReadBufferSize = DefaultOptions.ReadBufferSize
	}
	if o.Dialer == nil {
		var d net.Dialer
		o.Dialer = d.DialContext
	}
	return o
}

// accept returns the codec bits to offer.
func (o *Options) accept() uint8 {
	if o.NoCompression {
		return 0
	}
	return o.Codecs & (protocol.AcceptZstd | protocol.AcceptS2)
}
