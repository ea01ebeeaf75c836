package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/store"
)

// BenchmarkFeedPublish: the memory work of publishing one change (what a
// writer pays, under the phext's locks) to n subscriptions whose sinks
// encode it (stream sinks writing event frames: no socket). The socket write happens later on the
// watcher's own goroutine or loop and is not included.
func BenchmarkFeedPublish(b *testing.B) {
	for _, n := range []int{0, 1, 2, 16} {
		b.Run(fmt.Sprintf("subs-%d", n), func(b *testing.B) {
			s := &Server{opts: (&Options{}).withDefaults()}
			mem := &memBudget{limit: 1 << 40}
			h := &feedHub{s: s, mem: mem, subs: map[*watchSub]struct{}{}, ring: make([]*feedEvent, s.opts.WatchRetainEvents)}
			var sinks []*streamSink
			var spares [][]byte
			for i := 0; i < n; i++ {
				k := &streamSink{mem: mem, max: 1 << 30, enc: frameEncoder{}, wake: make(chan struct{}, 1)}
				sinks = append(sinks, k)
				spares = append(spares, nil)
				h.subs[&watchSub{id: uint32(i), phext: "p", text: true, sink: k}] = struct{}{}
			}
			c := benchChange()
			b.ReportAllocs()
			b.SetBytes(int64(len(c.Text)))
			for i := 0; i < b.N; i++ {
				c.Pos = uint64(i + 1)
				h.Publish(&c)
				if i%256 == 255 {
					for j, k := range sinks {
						buf, charged, _ := k.take(spares[j])
						spares[j] = buf
						mem.release(charged)
					}
				}
			}
		})
	}
}

// benchLoop is a gnet.EventLoop that keeps the task Execute gives it; the
// benchmark runs it as the loop would.
type benchLoop struct {
	gnet.EventLoop
	tasks []gnet.Runnable
}

func (l *benchLoop) Execute(_ context.Context, r gnet.Runnable) error {
	l.tasks = append(l.tasks, r)
	return nil
}

// benchConn is a gnet.Conn whose socket takes everything at once.
type benchConn struct {
	gnet.Conn
	loop    *benchLoop
	written int
}

func (c *benchConn) EventLoop() gnet.EventLoop                   { return c.loop }
func (c *benchConn) OutboundBuffered() int                       { return 0 }
func (c *benchConn) InboundBuffered() int                        { return 0 }
func (c *benchConn) Write(b []byte) (int, error)                 { c.written += len(b); return len(b), nil }
func (c *benchConn) Writev(bs [][]byte) (int, error)             { panic("unused") }
func (c *benchConn) AsyncWrite([]byte, gnet.AsyncCallback) error { panic("unused") }

// feedFixture is a hub with watcher connections on one fake event loop,
// and a 64-byte UPDATE to publish to them.
type feedFixture struct {
	s     *Server
	h     *feedHub
	loop  *benchLoop
	conns []*benchConn
	c     store.Change
}

func newFeedFixture(conns int) *feedFixture {
	s := &Server{opts: (&Options{}).withDefaults()}
	mem := &memBudget{limit: 1 << 40}
	f := &feedFixture{s: s, loop: &benchLoop{}, c: benchChange(),
		h: &feedHub{s: s, mem: mem, subs: map[*watchSub]struct{}{}, ring: make([]*feedEvent, s.opts.WatchRetainEvents)}}
	lf := s.loopFeedFor(f.loop)
	for i := 0; i < conns; i++ {
		c := &benchConn{loop: f.loop}
		f.conns = append(f.conns, c)
		cs := &connState{s: s, c: c, mem: mem}
		cs.watch.loop = lf
		f.h.subs[&watchSub{id: 1, phext: "p", text: true, sink: connSink{cs}}] = struct{}{}
	}
	return f
}

// benchChange is the change the feed benchmarks publish: an UPDATE of a
// 64-byte scroll, the size the watch scenario writes.
func benchChange() store.Change {
	text := []byte("a scroll of some sixty-four bytes, as the watch bench writes..")
	c := store.Change{Phext: "p", Op: store.ChangeUpdate, Coord: phext.Origin, Len: int64(len(text)), Text: text, HasSum: true}
	phext.AppendChecksum(c.Sum[:0], text)
	return c
}

func (f *feedFixture) publish() {
	f.c.Pos++
	f.h.Publish(&f.c)
}

// flush runs the loop's queued flush tasks.
func (f *feedFixture) flush() {
	for _, r := range f.loop.tasks {
		r.Run(context.Background())
	}
	f.loop.tasks = f.loop.tasks[:0]
}

// BenchmarkFeedDeliver: one published change delivered to n watcher
// connections on one event loop, all the way to their socket writes:
// Publish (the writer's part: retention and one encode per subscription
// into its connection's queue) and the loop's flush task (one Write per
// connection). flush-every is how many changes a flush finds queued.
func BenchmarkFeedDeliver(b *testing.B) {
	for _, tc := range []struct {
		name       string
		conns      int
		flushEvery int
	}{
		{name: "conns-2/flush-every-1", conns: 2, flushEvery: 1},
		{name: "conns-2/flush-every-16", conns: 2, flushEvery: 16},
		{name: "conns-16/flush-every-1", conns: 16, flushEvery: 1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := newFeedFixture(tc.conns)
			b.ReportAllocs()
			b.SetBytes(int64(len(f.c.Text)))
			for i := 0; i < b.N; i++ {
				f.publish()
				if (i+1)%tc.flushEvery == 0 {
					f.flush()
				}
			}
			f.flush()
			if f.conns[0].written == 0 {
				b.Fatal("nothing written")
			}
		})
	}
}
