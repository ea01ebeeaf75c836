package server_test

// The live-server part of the reliability and security suite (issue 9):
// hostile input over the binary protocol and REST against a running
// server, resource abuse, path and name attacks, disk faults seen by a
// client, and token hygiene. Short forms run in `make test`; set
// SQ_RELIABILITY=long for the long forms (minutes of fuzzing, 10,000 idle
// connections, a million scrolls). docs/RELIABILITY.md records the numbers.
//
// This file is the harness (a server in a temp dir, a raw protocol client,
// a good client measuring latency, a heap sampler); each attack family has
// its own hostile_<family>_test.go.

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/server/httpapi"
	"github.com/phext/sq/store"
)

// long reports whether the long forms run (SQ_RELIABILITY=long).
func long() bool { return os.Getenv("SQ_RELIABILITY") == "long" }

// pick returns l in the long form and s otherwise.
func pick[T any](s, l T) T {
	if long() {
		return l
	}
	return s
}

// logSink is a concurrency-safe slog destination.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hostile is a server over a store in a temp dir, with every log record
// (debug level) captured.
type hostile struct {
	t        testing.TB
	dir      string
	cfgPath  string
	cfg      *config.Config
	store    *store.Store
	srv      *server.Server
	hs       *http.Server
	httpAddr string
	tokens   map[string]string
	logs     *logSink
}

type hostileOpts struct {
	tenants    []string
	quotaMB    map[string]float64
	tokens     map[string]string // fixed tokens by tenant name
	opts       server.Options
	fs         store.FS
	durability store.Durability
	http       bool
	extra      func(cfg *config.Config)
}

func startHostile(t testing.TB, ho hostileOpts) *hostile {
	t.Helper()
	if len(ho.tenants) == 0 {
		ho.tenants = []string{"alice", "bob", "mallory"}
	}
	h := &hostile{t: t, dir: t.TempDir(), tokens: map[string]string{}, logs: &logSink{}}
	h.cfg = &config.Config{Tenants: map[string]config.TenantEntry{}}
	for i, name := range ho.tenants {
		tok := ho.tokens[name]
		if tok == "" {
			var err error
			if tok, err = config.GenerateToken(i + 1); err != nil {
				t.Fatal(err)
			}
		}
		h.tokens[name] = tok
		h.cfg.Tenants[tok] = config.TenantEntry{Name: name, DataDir: filepath.Join(h.dir, "data", name), QuotaMB: ho.quotaMB[name]}
	}
	if ho.extra != nil {
		ho.extra(h.cfg)
	}
	h.cfgPath = filepath.Join(h.dir, "tenants.json")
	if err := config.WriteFile(h.cfgPath, h.cfg); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(h.logs, testLogOut()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	dur := ho.durability
	if dur == store.DurabilityDefault {
		dur = store.DurabilityAlways
	}
	db, err := store.Open(&store.Options{Durability: dur, Logger: log, FS: ho.fs})
	if err != nil {
		t.Fatal(err)
	}
	h.store = db
	o := ho.opts
	o.Listen = "127.0.0.1:0"
	if o.EventLoops == 0 {
		o.EventLoops = 2
	}
	o.Logger = log
	o.LoadConfig = func() (*config.Config, error) { return config.Load(h.cfgPath) }
	srv, err := server.Start(db, h.cfg, &o)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	h.srv = srv
	if ho.http {
		hs, ln, err := httpapi.Start(srv, "127.0.0.1:0", &httpapi.Options{ConfigPath: h.cfgPath})
		if err != nil {
			t.Fatal(err)
		}
		h.hs, h.httpAddr = hs, ln.Addr().String()
	}
	t.Cleanup(h.stop)
	return h
}

func testLogOut() io.Writer {
	if os.Getenv("SQ_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

func (h *hostile) stop() {
	if h.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if h.hs != nil {
		h.hs.Shutdown(ctx)
	}
	if err := h.srv.Shutdown(ctx); err != nil {
		h.t.Errorf("shutdown: %v", err)
	}
	if err := h.store.Close(); err != nil {
		h.t.Logf("store close: %v", err)
	}
	h.srv = nil
}

// pconn is a minimal protocol client: one request at a time, or pipelined
// with send/recv. Frames are written as built; replies are read through
// client.RawConn.
type pconn struct {
	nc  net.Conn
	rc  *client.RawConn
	id  uint32
	buf []byte
}

func dialP(addr string) (*pconn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return newPconn(nc), nil
}

// newPconn wraps a connection that has not said HELLO.
func newPconn(nc net.Conn) *pconn {
	return &pconn{nc: nc, rc: client.NewRawConn(nc, client.WithMaxFrame(256<<20))}
}

// dialTenant connects and authenticates.
func (h *hostile) dial(t testing.TB, name string) *pconn {
	t.Helper()
	c, err := dialP(h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.nc.Close() })
	if status, body, err := c.hello(h.tokens[name]); err != nil || status != protocol.StatusOK {
		t.Fatalf("HELLO as %s: %v %v %s", name, err, status, body)
	}
	return c
}

func (c *pconn) hello(token string) (protocol.Status, []byte, error) {
	c.id++
	if _, err := c.nc.Write(protocol.AppendHello(nil, c.id, []byte(token), 0)); err != nil {
		return 0, nil, err
	}
	r, err := c.recv(10 * time.Second)
	if err != nil {
		return 0, nil, err
	}
	if r.Status == protocol.StatusOK {
		hr, err := protocol.DecodeHelloReply(r.Body)
		if err != nil {
			return 0, nil, err
		}
		c.rc.SetHello(hr)
	}
	return r.Status, r.Body, nil
}

func (c *pconn) send(op protocol.Op, name string, coord phext.Coordinate, payload []byte) error {
	c.id++
	c.buf = protocol.AppendRequest(c.buf[:0], op, c.id, []byte(name), coord, payload)
	c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := c.nc.Write(c.buf)
	return err
}

func (c *pconn) recv(within time.Duration) (protocol.Response, error) {
	c.nc.SetReadDeadline(time.Now().Add(within))
	var r protocol.Response
	err := c.rc.Recv(&r)
	r.Body = bytes.Clone(r.Body)
	return r, err
}

func (c *pconn) do(op protocol.Op, name string, coord phext.Coordinate, payload []byte) (protocol.Response, error) {
	if err := c.send(op, name, coord, payload); err != nil {
		return protocol.Response{}, err
	}
	return c.recv(30 * time.Second)
}

// must is do that fails the test on a network error and on a status other
// than want.
func (c *pconn) must(t testing.TB, want protocol.Status, op protocol.Op, name string, coord phext.Coordinate, payload []byte) []byte {
	t.Helper()
	r, err := c.do(op, name, coord, payload)
	if err != nil {
		t.Fatalf("%v %q: %v", op, name, err)
	}
	if r.Status != want {
		t.Fatalf("%v %q %v: status %v (%s), want %v", op, name, coord, r.Status, r.Body, want)
	}
	return r.Body
}

// closedWithin reports whether the server closes c within d.
func (c *pconn) closedWithin(d time.Duration) bool { return sqtest.ClosedWithin(c.nc, d) }

func c9(parts ...uint16) phext.Coordinate {
	c := phext.Origin
	copy(c[9-len(parts):], parts)
	return c
}

// latencies measures round trips of alternating INSERT and SELECT by a good
// client until stop is closed.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) p(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func (l *latencies) n() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// goodClient writes numbered tokens to scroll c of phext "good" and
// selects them back, recording each round trip; it returns the text it
// expects the scroll to hold.
func goodClient(t testing.TB, c *pconn, coord phext.Coordinate, d time.Duration, lat *latencies, start int) (string, int) {
	t.Helper()
	var want strings.Builder
	i := start
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		tok := "t" + strconv.Itoa(i) + ";"
		t0 := time.Now()
		r, err := c.do(protocol.OpInsert, "good", coord, []byte(tok))
		if err != nil || r.Status != protocol.StatusOK {
			t.Fatalf("good client insert: %v %v %s", err, r.Status, r.Body)
		}
		lat.mu.Lock()
		lat.d = append(lat.d, time.Since(t0))
		lat.mu.Unlock()
		want.WriteString(tok)
		i++
		t0 = time.Now()
		if r, err = c.do(protocol.OpSelect, "good", c9(1), nil); err != nil || r.Status != protocol.StatusOK {
			t.Fatalf("good client select: %v %v", err, r.Status)
		}
		lat.mu.Lock()
		lat.d = append(lat.d, time.Since(t0))
		lat.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	return want.String(), i
}

// heapSampler records the peak of the process's heap in use.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func sampleHeap(every time.Duration) *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-time.After(every):
			}
		}
	}()
	return h
}

func (h *heapSampler) finish() uint64 {
	close(h.stop)
	<-h.done
	return h.peak.Load()
}

func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

const mib = 1 << 20

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
