package server_test

// Refused frames weigh their bytes in the tenant's budget of limit
// refusals (server/refusal.go, refusalWeight; issue 13, row M2: 4
// connections sending 60 MiB DELTAs, each refused TOO_LARGE, or BUSY at
// its header while another held the tenant's frame share, ~1 GB/s through
// the server's socket reads counted as ~17 refusals a second).

import (
	"bytes"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// heavyHold: refused frames' answers wait at most 1 s (half the 2 s
// frame timeout, maxRefusalHold), which a heavy answer past a budget of
// one refusal per 5 s waits in full.
const heavyHold = time.Second

// TestRefusalsWeighFrameBytes: an UPDATE of 3 MiB over the tenant's quota
// weighs 4 refusals (one plus one a MiB), so a burst of 12 answers three
// at once and holds the fourth, which still gets its QUOTA, after the
// heavy hold (until the budget has room for its weight, here at most
// heavyHold), on a connection that stays open. Counted as one refusal
// each, all four went out at once.
func TestRefusalsWeighFrameBytes(t *testing.T) {
	t.Cleanup(server.SetRefusalHold(testHold)) // after the server stops
	h := startHostile(t, hostileOpts{quotaMB: map[string]float64{"mallory": 1}, durability: store.DurabilityNo,
		opts: server.Options{MaxFrame: 8 * mib, RefusalRate: 0.2, RefusalBurst: 12, FrameTimeout: 2 * heavyHold}})
	m := h.dial(t, "mallory")
	text := bytes.Repeat([]byte("q"), 3*mib)
	for i := range 3 {
		m.must(t, protocol.StatusQuota, protocol.OpUpdate, "big", c9(1, 1, 1, 1, 1, 1, 1, 1, uint16(i+1)), text)
	}
	if n := held(h); n != 0 {
		t.Fatalf("%d answers held within the burst (3 × 4 of 12)", n)
	}
	t0 := time.Now()
	if err := m.send(protocol.OpUpdate, "big", c9(1, 1, 1, 1, 1, 1, 1, 1, 4), text); err != nil {
		t.Fatal(err)
	}
	sqtest.CheckFor(t, 10*time.Second, "the fourth answer held", func() bool { return h.srv.Stats().HeldNow == 1 })
	r, err := m.recv(10 * time.Second)
	if err != nil || r.Status != protocol.StatusQuota {
		t.Fatalf("held UPDATE: %v %v %q, want QUOTA", err, r.Status, r.Body)
	}
	if d := time.Since(t0); d < heavyHold-10*time.Millisecond {
		t.Errorf("held UPDATE answered after %v, want ≥ %v", d, heavyHold)
	}
	m.must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
	if st := h.srv.Stats(); st.RefusalsHeld != 1 || st.RefusalsClosed != 0 {
		t.Errorf("stats: held %d closed %d, want 1 0", st.RefusalsHeld, st.RefusalsClosed)
	}
}

// TestBusyLargeFramesWeighTheirBytes: a large frame answered BUSY at its
// header (the tenant's frame share is held by another of its frames) has
// its body dropped as it arrives, which costs the server its bytes: it
// weighs one refusal a MiB, so with a burst of 20 the first 12 MiB BUSY
// goes out at once and the second is held (the heavy hold), still BUSY. A BUSY was never
// held before. The frame that holds the share is served as usual.
func TestBusyLargeFramesWeighTheirBytes(t *testing.T) {
	t.Cleanup(server.SetRefusalHold(testHold)) // after the server stops
	o := frameShareOpts()
	o.RefusalRate, o.RefusalBurst, o.FrameTimeout = 0.2, 20, 2*heavyHold
	h, a, first, payload := holdFrameShare(t, o)
	b := h.dial(t, "mallory")
	b.id = 1
	if r, err := b.do(protocol.OpUpdate, "big", c9(2), payload); err != nil || r.Status != protocol.StatusBusy {
		t.Fatalf("a second large frame while the first arrives: %v %v %.80s, want BUSY", err, r.Status, r.Body)
	}
	if n := held(h); n != 0 {
		t.Fatalf("%d answers held within the burst (12 of 20)", n)
	}
	t0 := time.Now()
	if err := b.send(protocol.OpUpdate, "big", c9(2), payload); err != nil {
		t.Fatal(err)
	}
	sqtest.CheckFor(t, 10*time.Second, "the second BUSY held", func() bool { return h.srv.Stats().HeldNow == 1 })
	if r, err := b.recv(10 * time.Second); err != nil || r.Status != protocol.StatusBusy {
		t.Fatalf("held answer: %v %v %.80s, want BUSY", err, r.Status, r.Body)
	}
	if d := time.Since(t0); d < heavyHold-10*time.Millisecond {
		t.Errorf("held BUSY answered after %v, want ≥ %v", d, heavyHold)
	}
	if _, err := a.nc.Write(first[len(first)/2:]); err != nil {
		t.Fatal(err)
	}
	if r, err := a.recv(30 * time.Second); err != nil || r.Status != protocol.StatusOK {
		t.Fatalf("mallory's first frame: %v %v %s", err, r.Status, r.Body)
	}
	b.must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
}

// TestCompressedQuotaRefusalsWeighDeclaredSize: a compressed PUT refused
// QUOTA while it is decompressed weighs the size it declares (3.5 MiB of
// one-byte scrolls: 4 refusals), not its few wire bytes, so a burst of
// 12 answers three at once and holds the fourth, which still gets its
// QUOTA after the heavy hold (issue 13, row M4c). By their wire bytes all
// four weighed one and went out at once.
func TestCompressedQuotaRefusalsWeighDeclaredSize(t *testing.T) {
	t.Cleanup(server.SetRefusalHold(testHold)) // after the server stops
	over := oneByteScrolls((3*mib + mib/2) / (2 * 999))
	for _, codec := range wireCodecs {
		t.Run(codec.name, func(t *testing.T) {
			h := startHostile(t, hostileOpts{quotaMB: map[string]float64{"mallory": 1}, durability: store.DurabilityNo,
				opts: server.Options{MaxFrame: 8 * mib, RefusalRate: 0.2, RefusalBurst: 12, FrameTimeout: 2 * heavyHold, Codecs: codec.accept}})
			c, agreed := h.dialCompressed(t, "mallory")
			if agreed == protocol.CodecNone {
				t.Fatal("no codec agreed")
			}
			send := func() {
				t.Helper()
				c.id++
				f := protocol.AppendCompressedRequest(nil, protocol.OpPut, c.id, []byte("dots"), phext.Origin, over, agreed)
				if f[5]&protocol.FlagCompressed == 0 || len(f) > mib {
					t.Fatalf("the PUT was not compressed well: %d bytes on the wire", len(f))
				}
				c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.nc.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			recvQuota := func() {
				t.Helper()
				r, err := c.recv(10 * time.Second)
				if err != nil || r.ID != c.id || r.Status != protocol.StatusQuota {
					t.Fatalf("PUT: %v id %d (want %d) %v %.80s, want QUOTA", err, r.ID, c.id, r.Status, r.Body)
				}
			}
			for range 3 {
				send()
				recvQuota()
			}
			if n := held(h); n != 0 {
				t.Fatalf("%d answers held within the burst (3 × 4 of 12)", n)
			}
			t0 := time.Now()
			send()
			sqtest.CheckFor(t, 10*time.Second, "the fourth answer held", func() bool { return h.srv.Stats().HeldNow == 1 })
			recvQuota()
			if d := time.Since(t0); d < heavyHold-10*time.Millisecond {
				t.Errorf("held QUOTA answered after %v, want ≥ %v", d, heavyHold)
			}
			c.must(t, protocol.StatusOK, protocol.OpPing, "", phext.Origin, nil)
		})
	}
}
