package store

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Review 14, finding 4, without the hand-played schedule: writers of fresh phexts
// while rotations run back to back (every write passes LogRotateBytes);
// then a crash. Every acknowledged write must be there. Probabilistic:
// SQ_RELIABILITY=long to run.
func TestRotationRaceStress(t *testing.T) {
	if os.Getenv("SQ_RELIABILITY") != "long" {
		t.Skip("SQ_RELIABILITY=long to run")
	}
	for round := 0; round < 20; round++ {
		db := MustOpen(t, &Options{Durability: DurabilityEverySec, LogRotateBytes: 1})
		const n = 64
		var wg sync.WaitGroup
		acked := make([]bool, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := []byte(fmt.Sprintf("p%d", i))
				if _, err := db.ten.Insert(name, coord(1), []byte("x")); err == nil {
					acked[i] = true
				}
			}()
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = db.Store.rotate()
			}
		}()
		wg.Wait()
		close(stop)
		<-done
		Crash(db.Store)
		db.open()
		for i := range n {
			if !acked[i] {
				continue
			}
			if got := mustGet(t, db.ten, fmt.Sprintf("p%d", i)); got != "x" {
				t.Fatalf("round %d: acknowledged write to p%d lost after crash (got %q)", round, i, got)
			}
		}
		db.Close()
	}
}

// Close racing loop writes, worker writes, checkpoints and rotations
// (-race). Every write acknowledged before Close returned must be there
// after a reopen.
func TestCloseRacesWriters(t *testing.T) {
	for round := 0; round < 10; round++ {
		db := MustOpen(t, &Options{Durability: DurabilityEverySec, LogRotateBytes: 4 << 10, CompactMinWAL: 1 << 10})
		ten := db.ten
		for i := range 4 {
			if _, err := ten.Insert([]byte(fmt.Sprintf("p%d", i)), coord(1), []byte("seed")); err != nil {
				t.Fatal(err)
			}
		}
		var mu sync.Mutex
		acked := map[string][]string{}
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("p%d", w)
				for j := 0; ; j++ {
					tx := fmt.Sprintf("%d.%d;", w, j)
					var err error
					if j%2 == 0 {
						wr := Write{Kind: WriteInsert, Name: []byte(name), Coord: coord(1), Text: []byte(tx)}
						if _, ok := ten.TryWrite(&wr, nil); ok {
							err = wr.Err
						} else {
							_, err = ten.Insert([]byte(name), coord(1), []byte(tx))
						}
					} else {
						_, err = ten.Insert([]byte(name), coord(1), []byte(tx))
					}
					if err != nil {
						return
					}
					mu.Lock()
					acked[name] = append(acked[name], tx)
					mu.Unlock()
					if j%50 == 0 {
						_ = ten.Compact([]byte(name))
					}
				}
			}()
		}
		time.Sleep(30 * time.Millisecond)
		if err := db.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		wg.Wait()
		db.open()
		for name, txs := range acked {
			got := mustGet(t, db.ten, name)
			want := "seed" + strings.Join(txs, "")
			if got != want {
				t.Fatalf("round %d: %s: got %d bytes, want %d (acknowledged writes lost or extra)", round, name, len(got), len(want))
			}
		}
		db.Close()
	}
}
