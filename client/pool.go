package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// Pool spreads calls over a fixed number of connections to one server with
// one token. Each call goes to the live connection with the fewest pending
// requests, ties broken round-robin. A broken connection stays in the pool
// (and is skipped while another is live) until the caller replaces it with
// Redial: reconnecting is the caller's decision.
type Pool struct {
	addr, token string
	opts        []Option

	mu    sync.RWMutex // guards conns (Redial swaps entries)
	conns []*Conn
	next  atomic.Uint32
}

// NewPool dials size connections (at least 1) to addr. If any dial fails,
// the ones made are closed and the error is returned.
func NewPool(ctx context.Context, addr, token string, size int, opts ...Option) (*Pool, error) {
	if size < 1 {
		size = 1
	}
	p := &Pool{addr: addr, token: token, opts: opts, conns: make([]*Conn, size)}
	for i := range p.conns {
		c, err := Dial(ctx, addr, token, opts...)
		if err != nil {
			for _, d := range p.conns[:i] {
				d.Close()
			}
			return nil, fmt.Errorf("client: pool connection %d of %d: %w", i+1, size, err)
		}
		p.conns[i] = c
	}
	return p, nil
}

// Get returns the live connection with the fewest pending requests, or a
// broken one when none is live (its calls fail with ErrClosed).
func (p *Pool) Get() *Conn {
	p.mu.RLock()
	defer p.mu.RUnlock()
	n := len(p.conns)
	start := int(p.next.Add(1) % uint32(n))
	var best *Conn
	bestPending := 0
	for i := 0; i < n; i++ {
		c := p.conns[(start+i)%n]
		if c.Broken() {
			continue
		}
		if pd := c.Pending(); best == nil || pd < bestPending {
			best, bestPending = c, pd
			if pd == 0 {
				break
			}
		}
	}
	if best == nil {
		best = p.conns[start]
	}
	return best
}

// Conns returns a snapshot of the pool's connections.
func (p *Pool) Conns() []*Conn {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return append([]*Conn(nil), p.conns...)
}

// Redial replaces every broken connection with a new one and returns how
// many were replaced. A connection that cannot be dialed stays broken in
// the pool; the errors are joined.
func (p *Pool) Redial(ctx context.Context) (int, error) {
	p.mu.RLock()
	var broken []int
	for i, c := range p.conns {
		if c.Broken() {
			broken = append(broken, i)
		}
	}
	p.mu.RUnlock()
	var errs []error
	replaced := 0
	for _, i := range broken {
		nc, err := Dial(ctx, p.addr, p.token, p.opts...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.mu.Lock()
		old := p.conns[i]
		p.conns[i] = nc
		p.mu.Unlock()
		old.Close()
		replaced++
	}
	return replaced, errors.Join(errs...)
}

// Close closes every connection of the pool.
func (p *Pool) Close() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, c := range p.conns {
		c.Close()
	}
	return nil
}

// Do is Conn.Do on the pool's least loaded connection.
func (p *Pool) Do(ctx context.Context, op protocol.Op, name []byte, coord phext.Coordinate, payload, dst []byte) (protocol.Status, []byte, error) {
	return p.Get().Do(ctx, op, name, coord, payload, dst)
}

// Ping is Conn.Ping on the pool's least loaded connection.
func (p *Pool) Ping(ctx context.Context) error { return p.Get().Ping(ctx) }

// Select is Conn.Select on the pool's least loaded connection.
func (p *Pool) Select(ctx context.Context, phextName string, coord phext.Coordinate) ([]byte, error) {
	return p.Get().Select(ctx, phextName, coord)
}

// Insert is Conn.Insert on the pool's least loaded connection.
func (p *Pool) Insert(ctx context.Context, phextName string, coord phext.Coordinate, text []byte) (int, error) {
	return p.Get().Insert(ctx, phextName, coord, text)
}

// Update is Conn.Update on the pool's least loaded connection.
func (p *Pool) Update(ctx context.Context, phextName string, coord phext.Coordinate, text []byte) (int, error) {
	return p.Get().Update(ctx, phextName, coord, text)
}

// Delete is Conn.Delete on the pool's least loaded connection.
func (p *Pool) Delete(ctx context.Context, phextName string, coord phext.Coordinate) (int, error) {
	return p.Get().Delete(ctx, phextName, coord)
}

// TOC is Conn.TOC on the pool's least loaded connection.
func (p *Pool) TOC(ctx context.Context, phextName string) ([]byte, error) {
	return p.Get().TOC(ctx, phextName)
}

// GetPhext is Conn.Get on the pool's least loaded connection (Pool.Get is
// the connection picker, hence the different name).
func (p *Pool) GetPhext(ctx context.Context, phextName string) ([]byte, error) {
	return p.Get().Get(ctx, phextName)
}

// Put is Conn.Put on the pool's least loaded connection.
func (p *Pool) Put(ctx context.Context, phextName string, doc []byte) (int, error) {
	return p.Get().Put(ctx, phextName, doc)
}

// Checksum is Conn.Checksum on the pool's least loaded connection.
func (p *Pool) Checksum(ctx context.Context, phextName string) (string, error) {
	return p.Get().Checksum(ctx, phextName)
}

// Delta is Conn.Delta on the pool's least loaded connection.
func (p *Pool) Delta(ctx context.Context, phextName string, request []byte) ([]byte, error) {
	return p.Get().Delta(ctx, phextName, request)
}

// Where is Conn.Where on the pool's least loaded connection.
func (p *Pool) Where(ctx context.Context, text []byte, algo string, limit int) (phext.Coordinate, error) {
	return p.Get().Where(ctx, text, algo, limit)
}

// List is Conn.List on the pool's least loaded connection.
func (p *Pool) List(ctx context.Context) ([]string, error) { return p.Get().List(ctx) }

// Status is Conn.Status on the pool's least loaded connection.
func (p *Pool) Status(ctx context.Context) (protocol.StatusInfo, error) {
	return p.Get().Status(ctx)
}

// Version is Conn.Version on the pool's least loaded connection.
func (p *Pool) Version(ctx context.Context) (string, error) { return p.Get().Version(ctx) }
