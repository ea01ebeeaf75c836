package server_test

import (
	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"net/http"
	"testing"
	"time"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// TestReview13hHeldRefusalPipelineOrder: a pipelined batch with held
// refusals between other requests is answered in request order.
func TestReview13hHeldRefusalPipelineOrder(t *testing.T) {
	t.Cleanup(server.SetRefusalHold(100 * time.Millisecond))
	h := startHostile(t, hostileOpts{opts: refusalOpts(1)})
	m := h.dial(t, "mallory")
	fillBig(t, m)
	timedGet(t, m) // the burst
	at := c9(1, 1, 1, 1, 1, 1, 1, 1, 1)
	type q struct {
		op   protocol.Op
		name string
		want protocol.Status
	}
	qs := []q{
		{protocol.OpSelect, "big", protocol.StatusOK},
		{protocol.OpPing, "", protocol.StatusOK},
		{protocol.OpGet, "big", protocol.StatusTooLarge},
		{protocol.OpSelect, "big", protocol.StatusOK},
		{protocol.OpInsert, "w", protocol.StatusOK},
		{protocol.OpGet, "big", protocol.StatusTooLarge},
		{protocol.OpInsert, "w", protocol.StatusOK},
		{protocol.OpPing, "", protocol.StatusOK},
	}
	var buf []byte
	first := m.id + 1
	for _, x := range qs {
		m.id++
		var p []byte
		if x.op == protocol.OpInsert {
			p = []byte("z")
		}
		buf = protocol.AppendRequest(buf, x.op, m.id, []byte(x.name), at, p)
	}
	if _, err := m.nc.Write(buf); err != nil {
		t.Fatal(err)
	}
	for i, x := range qs {
		r, err := m.recv(10 * time.Second)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if r.ID != first+uint32(i) || r.Status != x.want {
			t.Errorf("reply %d: id %d status %v, want id %d status %v", i, r.ID, r.Status, first+uint32(i), x.want)
		}
	}
	if n := h.srv.Stats().HeldNow; n != 0 {
		t.Errorf("HeldNow %d after the batch", n)
	}
}

// TestReview13hHeldRefusalTenantRemoved: mallory is removed by a reload
// while a binary and a REST answer of hers are held; both slots come back
// (HeldNow 0) and a later shutdown is prompt.
func TestReview13hHeldRefusalTenantRemoved(t *testing.T) {
	h, m, rest := twoHeld(t, 500*time.Millisecond)
	delete(h.cfg.Tenants, h.tokens["mallory"])
	if err := config.WriteFile(h.cfgPath, h.cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.ReloadFromSource(); err != nil {
		t.Fatal(err)
	}
	if c := (<-rest).code; c != http.StatusRequestEntityTooLarge {
		t.Errorf("REST held answer after removal: %d", c)
	}
	sqtest.CheckFor(t, 5*time.Second, "slots back", func() bool { return h.srv.Stats().HeldNow == 0 })
	if !m.closedWithin(5 * time.Second) {
		t.Errorf("removed tenant's connection still open")
	}
}
