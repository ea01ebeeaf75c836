package server

import (
	"net"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/internal/testenv"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// testEnv is a server on 127.0.0.1:0 over a store in a temp dir (a
// testenv.Env, whose fields it names as the tests use them).
type testEnv struct {
	t       testing.TB
	env     *testenv.Env
	dir     string
	cfgPath string
	cfg     *config.Config
	store   *store.Store
	srv     *Server
	tokens  map[string]string // tenant name → token
	opts    Options           // the server's, for restart
}

type envOptions struct {
	tenants    []string
	opts       Options
	durability store.Durability
	fs         store.FS // the store's file system (nil: the OS)
	logKeep    int64    // testenv.Options.LogKeep: a commit log restart reopens
}

func startEnv(t testing.TB, eo envOptions) *testEnv {
	t.Helper()
	env := testenv.Open(t, testenv.Options{Tenants: eo.tenants, Durability: eo.durability, FS: eo.fs, LogKeep: eo.logKeep})
	e := &testEnv{t: t, env: env, dir: env.Dir, cfgPath: env.CfgPath, cfg: env.Cfg, store: env.Store, tokens: env.Tokens}
	o := eo.opts
	o.Listen = "127.0.0.1:0"
	if o.EventLoops == 0 {
		o.EventLoops = 2
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	o.LoadConfig = env.LoadConfig
	e.opts = o
	srv, err := Start(env.Store, env.Cfg, &o)
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

// restart stops the server and closes the store cleanly, then opens both
// again on the same dirs (envOptions.logKeep: the same commit log) with
// the store's LogKeepBytes set to logKeep.
func (e *testEnv) restart(logKeep int64) {
	e.t.Helper()
	e.stop()
	e.env.ReopenStore(e.t, logKeep)
	e.store = e.env.Store
	o := e.opts
	srv, err := Start(e.store, e.cfg, &o)
	if err != nil {
		e.store.Close()
		e.t.Fatal(err)
	}
	e.srv = srv
}

var quietLogger = testenv.QuietLogger

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
// within the deadline, after any replies it sends first (read past rc's
// buffer: only the close matters).
func (c *rawConn) expectClosed(within time.Duration) {
	c.t.Helper()
	if !sqtest.ClosedWithin(c.nc, within) {
		c.t.Fatalf("connection still open after %v", within)
	}
}

var mustCoord = testenv.MustCoord

// reopenStore opens alpha's data dir in a fresh store after e stopped.
func reopenStore(t testing.TB, e *testEnv) *store.Tenant { return e.env.ReopenTenant(t, "alpha") }
