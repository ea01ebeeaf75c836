package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// heavyRecorder is a heavyHook that records how many heavy turns overlap,
// per tenant and in all, holding each turn for a moment so that turns
// the gates failed to serialize would be seen overlapping.
type heavyRecorder struct {
	mu                 sync.Mutex
	now                map[string]int
	all, maxAll, turns int
	maxTenant          map[string]int
}

func (r *heavyRecorder) hook(t *tenant) {
	r.mu.Lock()
	r.now[t.name]++
	r.all++
	r.turns++
	r.maxTenant[t.name] = max(r.maxTenant[t.name], r.now[t.name])
	r.maxAll = max(r.maxAll, r.all)
	r.mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	r.mu.Lock()
	r.now[t.name]--
	r.all--
	r.mu.Unlock()
}

func (r *heavyRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.turns
}

// TestHeavyRequestsTakeTurns: requests whose work is proportional to what a
// client sent or stored run one at a time per tenant and at most
// heavySlots() at once in the server (one P stays free for the event
// loops), whichever of a tenant's connections they come from; light
// requests (small frames, reads of small phexts) take no turn. The HTTP
// API's use of the rule: httpapi TestRESTHeavyTurns.
func TestHeavyRequestsTakeTurns(t *testing.T) {
	e := startEnv(t, envOptions{tenants: []string{"alpha", "beta", "gamma"}, durability: store.DurabilityNo})
	rec := &heavyRecorder{now: map[string]int{}, maxTenant: map[string]int{}}
	hook := rec.hook
	e.srv.heavyHook.Store(&hook)

	// Light: small writes, SELECT, GET/TOC/CHECKSUM/DELTA of a small phext.
	a := e.dial("alpha")
	c1 := phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 1}
	a.ok(protocol.OpUpdate, "small", c1, []byte("hello"))
	for _, op := range []protocol.Op{protocol.OpSelect, protocol.OpGet, protocol.OpTOC, protocol.OpChecksum} {
		a.ok(op, "small", c1, nil)
	}
	a.ok(protocol.OpDelta, "small", c1, []byte("1.1.1/1.1.1/1.1.1: x\n"))
	if n := rec.count(); n != 0 {
		t.Fatalf("%d light requests took a heavy turn", n)
	}

	// Heavy by input: a frame above heavyBytes; by stored size: every
	// read of the whole phext it made; by a compressed body's claim.
	big := bytes.Repeat([]byte("b"), heavyBytes+1)
	a.ok(protocol.OpUpdate, "big", c1, big)
	for _, op := range []protocol.Op{protocol.OpGet, protocol.OpTOC, protocol.OpChecksum} {
		a.ok(op, "big", c1, nil)
	}
	a.ok(protocol.OpDelta, "big", c1, []byte("1.1.1/1.1.1/1.1.1: x\n"))
	if n := rec.count(); n != 5 {
		t.Fatalf("%d heavy turns for 5 heavy requests", n)
	}
	z := dialRaw(t, e.srv.Addr())
	if r := z.hello(e.tokens["alpha"], protocol.AcceptS2); r.Status != protocol.StatusOK {
		t.Fatal(r.Status)
	}
	body := binary.BigEndian.AppendUint32(nil, 1<<20)
	body = append(body, "garbage"...)
	f := binary.BigEndian.AppendUint32(nil, uint32(6+len(body)))
	f = append(f, byte(protocol.OpSelect), protocol.FlagCompressed, 0, 0, 0, 9)
	z.write(append(f, body...))
	if r, err := z.read(); err != nil || r.Status != protocol.StatusBadFrame {
		t.Fatalf("compressed garbage: %v %v", r.Status, err)
	}
	if n := rec.count(); n != 6 {
		t.Fatalf("a compressed body declaring 1 MiB took no heavy turn (%d)", n)
	}

	// Three tenants × three connections × four pipelined heavy DELTAs.
	var req []byte
	for i := 0; len(req) <= heavyBytes; i++ {
		req = fmt.Appendf(req, "1.1.1/1.1.1/1.1.%d: x\n", 1+i%999)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 9)
	for _, name := range []string{"alpha", "beta", "gamma"} {
		for range 3 {
			c := e.dial(name)
			wg.Add(1)
			go func() {
				defer wg.Done()
				var batch []byte
				for i := range 4 {
					batch = protocol.AppendRequest(batch, protocol.OpDelta, uint32(100+i), nil, phext.Coordinate{}, req)
				}
				if _, err := c.nc.Write(batch); err != nil {
					errs <- err
					return
				}
				for range 4 {
					var r protocol.Response
					if err := c.rc.Recv(&r); err != nil || r.Status != protocol.StatusOK {
						errs <- fmt.Errorf("%s delta: %v %v", name, r.Status, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.turns != 6+36 {
		t.Fatalf("%d heavy turns, want %d", rec.turns, 6+36)
	}
	for name, m := range rec.maxTenant {
		if m != 1 {
			t.Errorf("tenant %s ran %d heavy requests at once, want 1", name, m)
		}
	}
	if rec.maxAll > heavySlots() {
		t.Errorf("%d heavy requests at once in the server, limit %d", rec.maxAll, heavySlots())
	}
	t.Logf("max at once: %d (limit %d)", rec.maxAll, heavySlots())
}
