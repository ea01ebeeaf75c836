package server

import (
	"fmt"
	"testing"

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
			text := []byte("a scroll of some sixty-four bytes, as the watch bench writes..")
			c := store.Change{Phext: "p", Op: store.ChangeUpdate, Coord: phext.Origin, Len: int64(len(text)), Text: text, HasSum: true}
			phext.AppendChecksum(c.Sum[:0], text)
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
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
