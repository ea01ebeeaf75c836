package server_test

// Quota abuse: writes past the quota, racing writers.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// TestQuotaAbuse: a tenant writes until its quota; the refused writes are
// QUOTA, store nothing partial, and other tenants are unaffected; concurrent
// writers racing to the quota never overshoot it.
func TestQuotaAbuse(t *testing.T) {
	const quotaMB = 0.25 // 262144 bytes
	quota := int(quotaMB * mib)
	h := startHostile(t, hostileOpts{quotaMB: map[string]float64{"mallory": quotaMB}})
	const writers = 8
	const size = 1000
	var acked atomic.Int64
	var quotaN atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		c := h.dial(t, "mallory")
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := bytes.Repeat([]byte{byte('a' + w)}, size)
			for i := 0; ; i++ {
				r, err := c.do(protocol.OpInsert, "q", c9(uint16(w+1), uint16(i%999+1)), text)
				if err != nil {
					t.Error(err)
					return
				}
				if r.Status == protocol.StatusQuota {
					quotaN.Add(1)
					if quotaN.Load() > 4*writers {
						return
					}
					continue
				}
				if r.Status != protocol.StatusOK {
					t.Errorf("status %v %s", r.Status, r.Body)
					return
				}
				acked.Add(size)
			}
		}()
	}
	// Meanwhile bob writes without noticing.
	bob := h.dial(t, "bob")
	for i := 0; i < 50; i++ {
		bob.must(t, protocol.StatusOK, protocol.OpInsert, "", c9(1), []byte("bob writes; "))
	}
	wg.Wait()
	c := h.dial(t, "mallory")
	doc := c.must(t, protocol.StatusOK, protocol.OpGet, "q", phext.Origin, nil)
	var sc phext.Scanner
	sc.Reset(doc)
	var stored int
	for sc.Next() {
		s := sc.Scroll()
		if len(s)%size != 0 || len(bytes.Trim(s, string(s[:1]))) != 0 {
			t.Fatalf("a partial or mixed scroll at %v: %d bytes", sc.Coordinate(), len(s))
		}
		stored += len(s)
	}
	t.Logf("quota %d B: %d B acknowledged and stored, %d QUOTA answers", quota, acked.Load(), quotaN.Load())
	// The quota charges each scroll store.ScrollCost on top of its text.
	charged := stored / size * (size + store.ScrollCost)
	if int64(stored) != acked.Load() || charged > quota || charged < quota-writers*(size+store.ScrollCost) {
		t.Fatalf("stored %d, acknowledged %d, quota %d", stored, acked.Load(), quota)
	}
	// A Put over the quota and an Update that grows a scroll are refused
	// whole; a write that shrinks usage still works.
	before := c.must(t, protocol.StatusOK, protocol.OpChecksum, "q", phext.Origin, nil)
	c.must(t, protocol.StatusQuota, protocol.OpPut, "other", phext.Origin, bytes.Repeat([]byte("p"), quota))
	c.must(t, protocol.StatusQuota, protocol.OpUpdate, "q", c9(1, 1), bytes.Repeat([]byte("u"), 3*size))
	if after := c.must(t, protocol.StatusOK, protocol.OpChecksum, "q", phext.Origin, nil); !bytes.Equal(before, after) {
		t.Fatal("a refused write changed the phext")
	}
	c.must(t, protocol.StatusOK, protocol.OpDelete, "q", c9(1, 1), nil)
	c.must(t, protocol.StatusOK, protocol.OpInsert, "q", c9(1, 1), []byte("fits again"))
	if got := bob.must(t, protocol.StatusOK, protocol.OpSelect, "", c9(1), nil); len(got) != 50*len("bob writes; ") {
		t.Fatalf("bob's scroll: %d bytes", len(got))
	}
}
