package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// testMetricsToken is the metrics_token of every test env's config.
const testMetricsToken = "metrics-token-for-tests"

// testEnv is a server on 127.0.0.1:0 over a store in a temp dir.
type testEnv struct {
	t       testing.TB
	dir     string
	cfgPath string
	cfg     *config.Config
	store   *store.Store
	srv     *Server
	tokens  map[string]string // tenant name → token
}

type envOptions struct {
	tenants    []string
	opts       Options
	durability store.Durability
	fs         store.FS // the store's file system (nil: the OS)
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
	}
	db, err := store.Open(&store.Options{Durability: dur, Logger: quietLogger(), FS: eo.fs})
	if err != nil {
		t.Fatal(err)
	}
	e.store = db
	o := eo.opts
	o.Listen = "127.0.0.1:0"
	if o.EventLoops == 0 {
		o.EventLoops = 2
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	o.LoadConfig = func() (*config.Config, error) { return config.Load(e.cfgPath) }
	srv, err := Start(db, e.cfg, &o)
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

func quietLogger() *slog.Logger {
	if os.Getenv("SQ_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// rawConn is a minimal protocol client for tests: it writes frames as
// given and reads replies one by one (through client.RawConn), with a
// deadline on every read.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	rc *client.RawConn
	id uint32
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, rc: client.NewRawConn(nc, client.WithMaxFrame(256<<20))}
}

// dialTenant connects and authenticates as tenant name.
func (e *testEnv) dial(name string) *rawConn {
	e.t.Helper()
	c := dialRaw(e.t, e.srv.Addr())
	r := c.hello(e.tokens[name], 0)
	if r.Status != protocol.StatusOK {
		e.t.Fatalf("HELLO as %s: status %v: %s", name, r.Status, r.Body)
	}
	return c
}

func (c *rawConn) hello(token string, codecs uint8) protocol.Response {
	c.t.Helper()
	c.id++
	c.write(protocol.AppendHello(nil, c.id, []byte(token), codecs))
	r, err := c.read()
	if err != nil {
		c.t.Fatalf("reading HELLO reply: %v", err)
	}
	if r.Status == protocol.StatusOK {
		hr, err := protocol.DecodeHelloReply(r.Body)
		if err != nil {
			c.t.Fatalf("HELLO reply: %v", err)
		}
		c.rc.SetHello(hr)
	}
	return r
}

func (c *rawConn) write(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// send writes one request and returns its id.
func (c *rawConn) send(op protocol.Op, name string, coord phext.Coordinate, payload []byte) uint32 {
	c.t.Helper()
	c.id++
	c.write(protocol.AppendRequest(nil, op, c.id, []byte(name), coord, payload))
	return c.id
}

// read reads one reply frame (body copied).
func (c *rawConn) read() (protocol.Response, error) {
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var r protocol.Response
	err := c.rc.Recv(&r)
	r.Body = append([]byte(nil), r.Body...)
	return r, err
}

// do sends one request and waits for its reply.
func (c *rawConn) do(op protocol.Op, name string, coord phext.Coordinate, payload []byte) protocol.Response {
	c.t.Helper()
	id := c.send(op, name, coord, payload)
	r, err := c.read()
	if err != nil {
		c.t.Fatalf("%v: %v", op, err)
	}
	if r.ID != id {
		c.t.Fatalf("%v: reply id %d, want %d", op, r.ID, id)
	}
	return r
}

// ok is do that requires StatusOK.
func (c *rawConn) ok(op protocol.Op, name string, coord phext.Coordinate, payload []byte) []byte {
	c.t.Helper()
	r := c.do(op, name, coord, payload)
	if r.Status != protocol.StatusOK {
		c.t.Fatalf("%v %s %v: status %v: %s", op, name, coord, r.Status, r.Body)
	}
	return r.Body
}

// expectClosed requires the server to close the connection (EOF or reset)
// within the deadline, after any replies it sends first.
func (c *rawConn) expectClosed(within time.Duration) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(within))
	// Bytes read here bypass rc's buffer: only the close matters.
	buf := make([]byte, 4096)
	for {
		_, err := c.nc.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection still open after %v", within)
		}
		return
	}
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
