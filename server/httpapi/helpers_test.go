package httpapi

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// The HTTP API's tests run it over a real server (server.New, or
// server.Start when a test also speaks the binary protocol) and a store in
// a temp dir; the binary side is the Go client.

// testMetricsToken is the metrics_token of every test env's config.
const testMetricsToken = "metrics-token-for-tests"

// testEnv is a server over a store in a temp dir.
type testEnv struct {
	t       testing.TB
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
	if len(eo.tenants) == 0 {
		eo.tenants = []string{"alpha", "beta"}
	}
	e := &testEnv{t: t, dir: t.TempDir(), tokens: map[string]string{}}
	e.cfg = &config.Config{Tenants: map[string]config.TenantEntry{}, MetricsToken: testMetricsToken}
	for i, name := range eo.tenants {
		tok, err := config.GenerateToken(i + 1)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[name] = tok
		e.cfg.Tenants[tok] = config.TenantEntry{Name: name, DataDir: filepath.Join(e.dir, name)}
	}
	e.cfgPath = filepath.Join(e.dir, "tenants.json")
	if err := config.WriteFile(e.cfgPath, e.cfg); err != nil {
		t.Fatal(err)
	}
	dur := eo.durability
	if dur == store.DurabilityDefault {
		dur = store.DurabilityAlways
		if eo.noEngine {
			dur = store.DurabilityNo
		}
	}
	db, err := store.Open(&store.Options{Durability: dur, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	e.store = db
	o := eo.opts
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	o.LoadConfig = func() (*config.Config, error) { return config.Load(e.cfgPath) }
	var srv *server.Server
	if eo.noEngine {
		srv, err = server.New(db, e.cfg, &o)
	} else {
		o.Listen = "127.0.0.1:0"
		if o.EventLoops == 0 {
			o.EventLoops = 2
		}
		srv, err = server.Start(db, e.cfg, &o)
	}
	if err != nil {
		db.Close()
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Errorf("shutdown: %v", err)
	}
	if err := e.store.Close(); err != nil {
		e.t.Errorf("store close: %v", err)
	}
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

func quietLogger() *slog.Logger {
	if os.Getenv("SQ_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

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

func mustCoord(t testing.TB, s string) phext.Coordinate {
	t.Helper()
	c, err := phext.ParseCoordinate(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reopenStore opens alpha's data dir in a fresh store after e stopped.
func reopenStore(t testing.TB, e *testEnv) *store.Tenant {
	t.Helper()
	db, err := store.Open(&store.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tn, err := db.AddTenant(store.TenantConfig{Name: "alpha", DataDir: filepath.Join(e.dir, "alpha")})
	if err != nil {
		t.Fatal(err)
	}
	return tn
}
