package httpapi

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// TestClosingTenantIsShuttingDownEverywhere: a request that meets a
// closing store tenant (a reload removing it, a shutdown) gets the same
// retryable answer on both protocols: 503 with Retry-After on REST,
// SHUTTING_DOWN on the binary protocol (server's test of the same name),
// and no log line per request. Before, REST answered 503 without
// Retry-After.
func TestClosingTenantIsShuttingDownEverywhere(t *testing.T) {
	logs := &sqtest.LogBuffer{}
	e := restOver(t, startEnv(t, envOptions{noEngine: true, opts: server.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}}), Options{})
	e.want(e.as("alpha", "POST", "/api/v2/insert?c=1.1.1/1.1.1/1.1.1", "kept"), 200, "Inserted 4 bytes")
	// The store tenant closes under the server's table, as when a reload
	// removes it while requests run.
	if err := e.store.RemoveTenant("alpha"); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/api/v2/select?c=1.1.1/1.1.1/1.1.1", "/api/v2/get", "/api/v2/toc", "/api/v2/insert?c=1.1.1/1.1.1/1.1.1&s=z"} {
		got := e.as("alpha", "GET", target, "")
		if got.code != 503 || got.hdr.Get("Retry-After") == "" {
			t.Errorf("REST %s: %d Retry-After %q %q, want 503 with Retry-After", target, got.code, got.hdr.Get("Retry-After"), got.body)
		}
	}
	if l := logs.String(); strings.Contains(l, "request failed") {
		t.Errorf("a closing tenant logged per request:\n%s", l)
	}
	tn, _ := e.srv.TenantByName("alpha")
	if o := tn.OpStats(protocol.OpSelect); o == nil {
		t.Error("no SELECT counted")
	} else if n := o.Status[protocol.StatusInternal].Load(); n != 0 {
		t.Errorf("%d SELECTs counted as INTERNAL", n)
	}

	t.Run("draining", func(t *testing.T) {
		e.drain()
		got := e.as("beta", "GET", "/api/v2/select?c=1.1.1/1.1.1/1.1.1", "")
		if got.code != 503 || got.hdr.Get("Retry-After") == "" {
			t.Errorf("REST while draining: %d Retry-After %q", got.code, got.hdr.Get("Retry-After"))
		}
	})
}
