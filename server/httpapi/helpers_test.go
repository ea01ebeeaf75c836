package httpapi

import (
	"context"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/internal/testenv"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// The HTTP API's tests run it over a real server (server.New, or
// server.Start when a test also speaks the binary protocol) and a store in
// a temp dir; the binary side is the Go client.

// testMetricsToken is the metrics_token of every test env's config.
const testMetricsToken = testenv.MetricsToken

// testEnv is a server over a store in a temp dir (a testenv.Env, whose
// fields it names as the tests use them).
type testEnv struct {
	t       testing.TB
	env     *testenv.Env
	dir     string
	cfgPath string
	cfg     *config.Config
	store   *store.Store
	srv     *server.Server
	tokens  map[string]string // tenant name → token
}

type envOptions struct {
	tenants    []string
	opts       server.Options
	durability store.Durability
	// noEngine builds the server with New and never runs its gnet engine
	// (tests that use only the HTTP API save the engine's stop time).
	noEngine bool
}

func startEnv(t testing.TB, eo envOptions) *testEnv {
	t.Helper()
	dur := eo.durability
	if dur == store.DurabilityDefault && eo.noEngine {
		dur = store.DurabilityNo
	}
	env := testenv.Open(t, testenv.Options{Tenants: eo.tenants, Durability: dur})
	e := &testEnv{t: t, env: env, dir: env.Dir, cfgPath: env.CfgPath, cfg: env.Cfg, store: env.Store, tokens: env.Tokens}
	o := eo.opts
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	o.LoadConfig = env.LoadConfig
	var srv *server.Server
	var err error
	if eo.noEngine {
		srv, err = server.New(env.Store, env.Cfg, &o)
	} else {
		o.Listen = "127.0.0.1:0"
		if o.EventLoops == 0 {
			o.EventLoops = 2
		}
		srv, err = server.Start(env.Store, env.Cfg, &o)
	}
	if err != nil {
		env.Store.Close()
		t.Fatal(err)
	}
	e.srv = srv
	t.Cleanup(e.stop)
	return e
}

func (e *testEnv) stop() {
	if e.srv == nil {
		return
	}
	e.env.Stop(e.t, e.srv)
	e.srv = nil
}

// drain makes the server refuse new requests as Shutdown does (a server
// built with New has no engine to stop, so it stays up, draining).
func (e *testEnv) drain() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Fatal(err)
	}
}

var quietLogger = testenv.QuietLogger

// binConn is a binary-protocol connection of one tenant (the Go client).
type binConn struct {
	t testing.TB
	c *client.Conn
}

// dial connects and authenticates as tenant name.
func (e *testEnv) dial(name string) *binConn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, e.srv.Addr(), e.tokens[name], client.WithMaxFrame(256<<20))
	if err != nil {
		e.t.Fatalf("HELLO as %s: %v", name, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &binConn{t: e.t, c: c}
}

// ok sends one request and requires StatusOK.
func (b *binConn) ok(op protocol.Op, name string, coord phext.Coordinate, payload []byte) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := b.c.Do(ctx, op, []byte(name), coord, payload, nil)
	if err != nil || status != protocol.StatusOK {
		b.t.Fatalf("%v %s %v: status %v: %s (%v)", op, name, coord, status, body, err)
	}
	return body
}

// expectClosed requires the server to close the connection within the
// deadline.
func (b *binConn) expectClosed(within time.Duration) {
	b.t.Helper()
	sqtest.CheckFor(b.t, within, "the server closing the connection", b.c.Broken)
}

var mustCoord = testenv.MustCoord

// reopenStore opens alpha's data dir in a fresh store after e stopped.
func reopenStore(t testing.TB, e *testEnv) *store.Tenant { return e.env.ReopenTenant(t, "alpha") }
