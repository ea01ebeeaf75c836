package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// The change feed (docs/PROTOCOL.md §2.10).

// Event is one change-feed event: a committed change of the watched phext,
// or a resync (Resync true), after which the caller reads the phext again
// (Delta with the checksums it holds, or Get) because events were lost or
// could not be proven complete.
type Event struct {
	// Pos is the change's position (per phext it only grows). For a
	// resync, the position the feed goes on from.
	Pos uint64
	// Resync marks a resync event; Reason is "gap" (the changes after the
	// position resumed from are gone), "slow" (this watcher fell behind)
	// or "gone" (the server ended the subscription: shutdown).
	Resync bool
	Reason string
	// Op is "insert", "update", "delete", "put" or "compact" (a change).
	Op    string
	Phext string
	Coord phext.Coordinate
	Len   uint64 // the scroll's length after the change (put, compact: the phext's text bytes)
	// Checksum is 32 hex: xxh3-128 of the scroll's new text (as Delta
	// uses); for put and compact the whole phext's, as Checksum answers.
	Checksum string
	// Text is the scroll's new text when the watch asked for it (for put
	// and compact the serialized phext, as Get answers); nil for delete.
	// TextOmitted: it is above 64 KiB, Select (or Get) it.
	Text        []byte
	TextOmitted bool
	// Err, on the last event of a Watch channel, says why it stopped
	// other than by its context (e.g. the token was refused).
	Err error

	ended bool // resync: the subscription is over
}

// WatchOptions select what a subscription receives.
type WatchOptions struct {
	// Prefix limits the subscription to scrolls under a coordinate prefix
	// of 1..9 parts ("1.1.1/1.1.1/1.2"); empty: the whole phext.
	Prefix string
	// Resume starts after position From (the last position the caller
	// handled): the changes since are replayed, or a resync event comes
	// first when they are gone. Without it the subscription starts now.
	Resume bool
	From   uint64
	// Text asks for each scroll's new text.
	Text bool
	// Buffer is the capacity of the event channel (default 1024). The
	// connection's reader waits while it is full, so a caller that does
	// not take its events stalls that connection's replies and, past the
	// server's queue limit, is dropped with a resync.
	Buffer int
}

// Subscription is one WATCH on a Conn. Its events arrive on C, which is
// closed when the subscription ends: Close, an ended resync (delivered
// first), or the connection breaking (see Conn.Err).
type Subscription struct {
	// C delivers the events.
	C <-chan Event
	// Head is the position the server reported at WATCH: a caller that
	// handled every event may resume from max(Head, last event's Pos).
	Head uint64

	c      *Conn
	id     uint32
	name   string // the phext watched: events reuse it instead of a copy each
	ch     chan Event
	mu     sync.Mutex
	closed bool
}

// watchState is a Conn's subscriptions, keyed by id (smu).
type watchState struct {
	smu    sync.Mutex
	subs   map[uint32]*Subscription
	nextID uint32
}

// Watch subscribes to the committed changes of phext name (empty: the
// default phext) on c. Events are delivered by the connection's reader
// goroutine; a Conn never reconnects, so the subscription ends with the
// connection: use the package-level Watch for a feed that resumes across
// reconnects.
func (c *Conn) Watch(ctx context.Context, name string, o WatchOptions) (*Subscription, error) {
	prefix, d, err := phext.ParsePrefix(o.Prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadArgument, err)
	}
	depth := uint8(d)
	var flags uint8
	if o.Text {
		flags |= protocol.WatchText
	}
	if o.Resume {
		flags |= protocol.WatchFrom
	}
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	s := &Subscription{c: c, name: name, ch: make(chan Event, o.Buffer)}
	s.C = s.ch
	w := &c.watch
	w.smu.Lock()
	if w.subs == nil {
		w.subs = map[uint32]*Subscription{}
	}
	w.nextID++
	s.id = w.nextID
	w.subs[s.id] = s // before the request: events may precede the reply
	w.smu.Unlock()
	body, err := c.call(ctx, protocol.OpWatch, name, prefix, protocol.AppendWatchPayload(nil, s.id, depth, flags, o.From))
	if err == nil && len(body) != 8 {
		err = fmt.Errorf("%w: WATCH reply of %d bytes", ErrProtocol, len(body))
	}
	if err != nil {
		c.endSub(s)
		return nil, err
	}
	s.Head = binary.BigEndian.Uint64(body)
	return s, nil
}

// Close ends the subscription (UNWATCH) and closes C. Events already
// queued on C stay readable.
func (s *Subscription) Close(ctx context.Context) error {
	s.mu.Lock()
	done := s.closed
	s.mu.Unlock()
	if done {
		return nil
	}
	_, err := s.c.call(ctx, protocol.OpUnwatch, "", phext.Origin, protocol.AppendUnwatchPayload(nil, s.id))
	s.c.endSub(s)
	return err
}

// endSub forgets s and closes its channel (once).
func (c *Conn) endSub(s *Subscription) {
	c.watch.smu.Lock()
	if c.watch.subs[s.id] == s {
		delete(c.watch.subs, s.id)
	}
	c.watch.smu.Unlock()
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
	s.mu.Unlock()
}

// endAllSubs closes every subscription (the connection broke).
func (c *Conn) endAllSubs() {
	c.watch.smu.Lock()
	subs := make([]*Subscription, 0, len(c.watch.subs))
	for _, s := range c.watch.subs {
		subs = append(subs, s)
	}
	c.watch.smu.Unlock()
	for _, s := range subs {
		c.endSub(s)
	}
}

// onEvent routes an event frame's body to its subscription (reader
// goroutine). It waits while the subscription's channel is full.
func (c *Conn) onEvent(body []byte) error {
	var pe protocol.Event
	if err := protocol.DecodeEvent(body, &pe); err != nil {
		return err
	}
	c.watch.smu.Lock()
	s := c.watch.subs[pe.Sub]
	c.watch.smu.Unlock()
	if s == nil {
		return nil // ended or unwatched: ignored, as the spec says
	}
	ev := Event{Pos: pe.Pos}
	if pe.Kind == protocol.EventResync {
		ev.Resync, ev.ended = true, pe.Ended
		switch pe.Reason {
		case protocol.ResyncGap:
			ev.Reason = "gap"
		case protocol.ResyncSlow:
			ev.Reason = "slow"
		default:
			ev.Reason = "gone"
		}
	} else {
		ev.Op = protocol.ChangeOpName(pe.Op)
		ev.Phext = s.name
		if string(pe.Phext) != s.name {
			ev.Phext = string(pe.Phext)
		}
		ev.Coord = pe.Coord
		ev.Len = pe.Len
		ev.Checksum = string(pe.Sum)
		ev.TextOmitted = pe.TextAt == protocol.TextOmitted
		if pe.TextAt == protocol.TextHere {
			ev.Text = append([]byte{}, pe.Text...)
		}
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		// Only this goroutine sends and endSub is the only closer; a
		// concurrent Close may close the channel while we wait, so
		// recover from that send.
		safeSend(s.ch, ev)
	}
	if ev.ended {
		c.endSub(s)
	}
	return nil
}

func safeSend(ch chan Event, ev Event) {
	defer func() { _ = recover() }()
	ch <- ev
}

// Watch follows the committed changes of phext name on its own connection
// to addr and keeps following across reconnects: after a broken
// connection it dials again (backing off from 50 ms to 5 s) and resumes
// from the last position it delivered, so the caller gets exactly the
// changes it missed (from the server's memory of recent changes, or its
// commit log and the log files it keeps for the feed, also across a server
// restart), or one resync event (Reason "gap") when the server no longer
// holds them (a long outage: older than sq host --log-keep). A watcher
// that falls behind gets a resync (Reason "slow") and is subscribed again
// from that position. After any resync, read the phext again (Delta or
// Get) before applying further events.
//
// The first dial and WATCH happen before Watch returns (their error is
// returned). The channel is closed when ctx is done, or after an event
// whose Err says why following stopped (a refused token, a WATCH the
// server refuses).
func Watch(ctx context.Context, addr, token, name string, o WatchOptions, opts ...Option) (<-chan Event, error) {
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	c, sub, err := watchDial(ctx, addr, token, name, o, opts)
	if err != nil {
		return nil, err
	}
	out := make(chan Event, o.Buffer)
	go followLoop(ctx, addr, token, name, o, opts, c, sub, out)
	return out, nil
}

func watchDial(ctx context.Context, addr, token, name string, o WatchOptions, opts []Option) (*Conn, *Subscription, error) {
	c, err := Dial(ctx, addr, token, opts...)
	if err != nil {
		return nil, nil, err
	}
	sub, err := c.Watch(ctx, name, o)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, sub, nil
}

// followLoop forwards events and resubscribes; it owns c and sub.
func followLoop(ctx context.Context, addr, token, name string, o WatchOptions, opts []Option, c *Conn, sub *Subscription, out chan<- Event) {
	defer close(out)
	last := max(sub.Head, o.From)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer func() { stop(); c.Close() }()
	for {
		for ev := range sub.C {
			last = max(last, ev.Pos)
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		o.Resume, o.From = true, last
		var err error
		if !c.Broken() {
			// The server ended the subscription (slow, gone): subscribe
			// again on the same connection.
			if sub, err = c.Watch(ctx, name, o); err == nil {
				continue
			}
			if !errors.Is(err, ErrClosed) {
				if retryable(err) {
					c.Close()
				} else {
					sendErr(ctx, out, err)
					return
				}
			}
		}
		stop()
		c.Close()
		// Reconnect with backoff.
		delay := 50 * time.Millisecond
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			c, sub, err = watchDial(ctx, addr, token, name, o, opts)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if !retryable(err) {
				sendErr(ctx, out, err)
				return
			}
			delay = min(2*delay, 5*time.Second)
		}
		stop = context.AfterFunc(ctx, func() { c.Close() })
	}
}

// retryable reports whether following may go on after err: network errors
// and the server's "retry later" statuses are; refusals are not.
func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status == protocol.StatusBusy || se.Status == protocol.StatusShuttingDown
	}
	return true
}

func sendErr(ctx context.Context, out chan<- Event, err error) {
	select {
	case out <- Event{Err: err}:
	case <-ctx.Done():
	}
}
