package server

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// TestClosingTenantIsShuttingDownEverywhere: a request that meets a
// closing store tenant (a reload removing it, a shutdown) gets the same
// retryable answer on both protocols: SHUTTING_DOWN on the binary
// protocol, 503 with Retry-After on REST (server/httpapi's test of the
// same name), and no log line per request. Before, the binary protocol
// answered INTERNAL with a warning line per request and REST 503 without
// Retry-After.
func TestClosingTenantIsShuttingDownEverywhere(t *testing.T) {
	logs := &sqtest.LogBuffer{}
	e := startEnv(t, envOptions{opts: Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}})
	c := e.dial("alpha")
	a := mustCoord(t, "1.1.1/1.1.1/1.1.1")
	c.ok(protocol.OpInsert, "", a, []byte("kept"))
	// The store tenant closes under the server's table, as when a reload
	// removes it while requests run.
	if err := e.store.RemoveTenant("alpha"); err != nil {
		t.Fatal(err)
	}
	for _, op := range []protocol.Op{protocol.OpSelect, protocol.OpInsert, protocol.OpGet, protocol.OpTOC, protocol.OpStatus} {
		if r := c.do(op, "", a, []byte("x")); r.Status != protocol.StatusShuttingDown {
			t.Errorf("%v: status %v %q, want SHUTTING_DOWN", op, r.Status, r.Body)
		}
	}
	// Pipelined writes go through one WriteMany.
	var ids []uint32
	for i := 0; i < 4; i++ {
		ids = append(ids, c.send(protocol.OpUpdate, "", a, []byte("y")))
	}
	for _, id := range ids {
		r, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if r.ID != id || r.Status != protocol.StatusShuttingDown {
			t.Errorf("pipelined UPDATE %d: id %d status %v, want SHUTTING_DOWN", id, r.ID, r.Status)
		}
	}

	if l := logs.String(); strings.Contains(l, "request failed") {
		t.Errorf("a closing tenant logged per request:\n%s", l)
	}
	tn := e.srv.table.Load().byName["alpha"]
	if o := tn.stats.op(int(opSlots[protocol.OpSelect])); o == nil {
		t.Error("no SELECT counted")
	} else if n := o.Status[protocol.StatusInternal].Load(); n != 0 {
		t.Errorf("%d SELECTs counted as INTERNAL", n)
	}

	t.Run("draining", func(t *testing.T) {
		e.srv.draining.Store(true)
		defer e.srv.draining.Store(false)
		if r := c.do(protocol.OpPing, "", phext.Origin, nil); r.Status != protocol.StatusShuttingDown {
			t.Errorf("binary while draining: %v", r.Status)
		}
	})
}
