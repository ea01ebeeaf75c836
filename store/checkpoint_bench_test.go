package store

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phext/sq/phext"
)

// BenchmarkCheckpointStall measures what a checkpoint of a 100 MB phext
// costs its writers (issue 14: the blocking compaction stalled them for
// 0.5–0.7 s). A writer updates the phext in a loop during each checkpoint;
// max-stall-ms is the longest single write. "blocking" runs the old
// compaction, which holds the WAL lock for the whole serialization; "none"
// runs the writer for a second without a checkpoint (the machine's noise).
//
//	go test -run '^$' -bench CheckpointStall -benchtime 3x ./store
func BenchmarkCheckpointStall(b *testing.B) {
	for _, mode := range []string{"checkpoint", "none"} {
		b.Run(mode, func(b *testing.B) {
			db := MustOpen(b, &Options{Durability: DurabilityEverySec, CompactMinWAL: 1 << 40})
			ten := db.ten
			name := []byte("big")
			text := bytes.Repeat([]byte("x"), 1000)
			var doc []byte
			prev := phext.Origin
			c := phext.Origin
			for i := 0; i < 100_000; i++ {
				c[phext.LevelScroll] = uint16(i%999) + 1
				c[phext.LevelSection] = uint16(i/999) + 1
				doc = phext.AppendDelimiters(doc, prev, c)
				doc = append(doc, text...)
				prev = c
			}
			if _, err := ten.Put(name, doc); err != nil {
				b.Fatal(err)
			}
			if err := ten.Compact(name); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			var worst, ckpt time.Duration
			for i := 0; i < b.N; i++ {
				for k := 0; k < 200; k++ { // something to checkpoint
					if _, err := ten.Update(name, coord(uint16(k%999)+1), text); err != nil {
						b.Fatal(err)
					}
				}
				var stop atomic.Bool
				var wg sync.WaitGroup
				var longest time.Duration
				wg.Add(1)
				go func() {
					defer wg.Done()
					k := 0
					for !stop.Load() {
						t0 := time.Now()
						if _, err := ten.Update(name, coord(uint16(k%999)+1), []byte(fmt.Sprint("w", k))); err != nil {
							b.Error(err)
							return
						}
						if d := time.Since(t0); d > longest {
							longest = d
						}
						k++
					}
				}()
				time.Sleep(20 * time.Millisecond)
				t0 := time.Now()
				var err error
				switch mode {
				case "none": // the box's own noise: the writer alone for a second
					time.Sleep(time.Second)
				default:
					err = ten.Compact(name)
				}
				ckpt += time.Since(t0)
				time.Sleep(20 * time.Millisecond)
				stop.Store(true)
				wg.Wait()
				if err != nil {
					b.Fatal(err)
				}
				worst = max(worst, longest)
			}
			b.ReportMetric(float64(worst)/float64(time.Millisecond), "max-stall-ms")
			b.ReportMetric(float64(ckpt)/float64(b.N)/float64(time.Millisecond), "checkpoint-ms")
		})
	}
}
