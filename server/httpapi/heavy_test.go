package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// turnEngine is the server with its HeavyTurn observed: which requests
// asked for a turn (input bytes, whole phext) and how many turns are
// held now.
type turnEngine struct {
	*server.Server
	mu    sync.Mutex
	asked []string
	held  atomic.Int64
}

func (e *turnEngine) HeavyTurn(t server.Tenant, input int, whole bool, name []byte) func() {
	e.mu.Lock()
	if whole {
		e.asked = append(e.asked, "whole "+string(name))
	} else if input > 64<<10 {
		e.asked = append(e.asked, "input "+string(name))
	}
	e.mu.Unlock()
	e.held.Add(1)
	done := e.Server.HeavyTurn(t, input, whole, name)
	return func() {
		done()
		e.held.Add(-1)
	}
}

// TestRESTHeavyTurns: the REST API applies the server's heavy-request rule
// (server/heavy.go): reads of a whole phext and requests with large input
// ask for a turn, scroll reads and small writes only pass their input size;
// every turn has ended before the reply reaches the client.
func TestRESTHeavyTurns(t *testing.T) {
	e := startEnv(t, envOptions{noEngine: true, durability: store.DurabilityNo})
	te := &turnEngine{Server: e.srv}
	api := Handler(te, Options{ConfigPath: e.cfgPath}).(*httpAPI)
	re := &restEnv{testEnv: e, api: api}
	re.hs = httptest.NewServer(api)
	t.Cleanup(re.hs.Close)
	tok := "Bearer " + e.tokens["alpha"]
	big := strings.Repeat("b", 100<<10)
	for _, c := range []struct {
		method, target, body string
		want                 string // what HeavyTurn was asked ("" for nothing notable)
	}{
		{http.MethodPost, "/api/v2/update?p=doc&c=1.1.1/1.1.1/1.1.1", big, "input doc"},
		{http.MethodPost, "/api/v2/update?p=doc&c=1.1.1/1.1.1/1.1.2", "small", ""},
		{http.MethodGet, "/api/v2/select?p=doc&c=1.1.1/1.1.1/1.1.1", "", ""},
		{http.MethodGet, "/api/v2/get?p=doc", "", "whole doc"},
		{http.MethodGet, "/api/v2/toc?p=doc", "", "whole doc"},
		{http.MethodGet, "/api/v2/checksum?p=doc", "", "whole doc"},
		{http.MethodGet, "/api/v2/json-export?p=doc", "", "whole doc"},
		{http.MethodPost, "/api/v2/delta?p=doc", "1.1.1/1.1.1/1.1.1: x\n", "whole doc"},
	} {
		te.mu.Lock()
		te.asked = te.asked[:0]
		te.mu.Unlock()
		a := re.call(c.method, c.target, c.body, "Authorization", tok)
		if a.code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", c.method, c.target, a.code, a.body)
		}
		if n := te.held.Load(); n != 0 {
			t.Fatalf("%s %s: %d heavy turns still held after the reply arrived", c.method, c.target, n)
		}
		te.mu.Lock()
		got := strings.Join(te.asked, ",")
		te.mu.Unlock()
		if got != c.want {
			t.Errorf("%s %s: asked %q, want %q", c.method, c.target, got, c.want)
		}
	}
}
