package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

func TestHello(t *testing.T) {
	e := startEnv(t, envOptions{})
	t.Run("good token", func(t *testing.T) {
		c := dialRaw(t, e.srv.Addr())
		r := c.hello(e.tokens["alpha"], protocol.AcceptZstd|protocol.AcceptS2)
		if r.Status != protocol.StatusOK {
			t.Fatalf("status %v", r.Status)
		}
		hr, err := protocol.DecodeHelloReply(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		if hr.TenantName != "alpha" || hr.Version != protocol.Version || hr.Codec == protocol.CodecNone {
			t.Fatalf("reply %+v", hr)
		}
		if got := c.ok(protocol.OpPing, "", phext.Origin, nil); len(got) != 0 {
			t.Fatalf("PING body %q", got)
		}
	})
	t.Run("bad token", func(t *testing.T) {
		c := dialRaw(t, e.srv.Addr())
		r := c.hello("pmb-v1-999-000000000000000000000000", 0)
		if r.Status != protocol.StatusAuth {
			t.Fatalf("status %v, want AUTH", r.Status)
		}
		c.expectClosed(5 * time.Second)
	})
	t.Run("frame before hello", func(t *testing.T) {
		c := dialRaw(t, e.srv.Addr())
		c.write(protocol.AppendRequest(nil, protocol.OpSelect, 7, nil, phext.Origin, nil))
		r, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != protocol.StatusAuth || r.ID != 7 {
			t.Fatalf("got status %v id %d, want AUTH id 7", r.Status, r.ID)
		}
		c.expectClosed(5 * time.Second)
	})
}

func TestEveryOperation(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.dial("alpha")
	a := mustCoord(t, "1.1.1/1.1.1/1.1.1")
	b := mustCoord(t, "1.1.1/1.1.2/1.1.3")
	for _, name := range []string{"", "notes"} {
		t.Run("phext "+name, func(t *testing.T) {
			if n := binary.BigEndian.Uint32(c.ok(protocol.OpInsert, name, a, []byte("hello"))); n != 5 {
				t.Fatalf("INSERT count %d", n)
			}
			c.ok(protocol.OpInsert, name, a, []byte(" world"))
			if got := c.ok(protocol.OpSelect, name, a, nil); string(got) != "hello world" {
				t.Fatalf("SELECT after INSERT = %q", got)
			}
			c.ok(protocol.OpUpdate, name, b, []byte("second"))
			if got := c.ok(protocol.OpSelect, name, b, nil); string(got) != "second" {
				t.Fatalf("SELECT after UPDATE = %q", got)
			}
			want := phext.Implode([]phext.Scroll{{Coord: a, Text: []byte("hello world")}, {Coord: b, Text: []byte("second")}})
			doc := c.ok(protocol.OpGet, name, phext.Origin, nil)
			if !bytes.Equal(doc, want) {
				t.Fatalf("GET = %q, want %q", doc, want)
			}
			if got := c.ok(protocol.OpChecksum, name, phext.Origin, nil); string(got) != phext.Checksum(want) {
				t.Fatalf("CHECKSUM = %q, want %q", got, phext.Checksum(want))
			}
			toc, err := phext.TextMap(want)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ok(protocol.OpTOC, name, phext.Origin, nil); !bytes.Equal(got, toc) {
				t.Fatalf("TOC = %q, want %q", got, toc)
			}
			// DELTA with a right checksum for a: only b comes back.
			req := fmt.Sprintf("%s: %s\n", a, phext.Checksum([]byte("hello world")))
			if got := c.ok(protocol.OpDelta, name, phext.Origin, []byte(req)); !bytes.Contains(got, []byte("second")) || bytes.Contains(got, []byte("hello")) {
				t.Fatalf("DELTA = %q", got)
			}
			if n := binary.BigEndian.Uint32(c.ok(protocol.OpDelete, name, b, nil)); n != 6 {
				t.Fatalf("DELETE count %d, want 6", n)
			}
			if got := c.ok(protocol.OpSelect, name, b, nil); len(got) != 0 {
				t.Fatalf("SELECT after DELETE = %q", got)
			}
			c.ok(protocol.OpCompact, name, phext.Origin, nil)
			if got := c.ok(protocol.OpSelect, name, a, nil); string(got) != "hello world" {
				t.Fatalf("SELECT after COMPACT = %q", got)
			}
			newDoc := phext.Implode([]phext.Scroll{{Coord: b, Text: []byte("put")}})
			if n := binary.BigEndian.Uint32(c.ok(protocol.OpPut, name, phext.Origin, newDoc)); n != 1 {
				t.Fatalf("PUT count %d", n)
			}
			if got := c.ok(protocol.OpGet, name, phext.Origin, nil); !bytes.Equal(got, newDoc) {
				t.Fatalf("GET after PUT = %q, want %q", got, newDoc)
			}
		})
	}
	t.Run("list status version where", func(t *testing.T) {
		names, err := protocol.DecodeList(c.ok(protocol.OpList, "", phext.Origin, nil))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(names, ",") != ",notes" {
			t.Fatalf("LIST = %q", names)
		}
		si, err := protocol.DecodeStatusInfo(c.ok(protocol.OpStatus, "", phext.Origin, nil))
		if err != nil {
			t.Fatal(err)
		}
		if si.Phexts != 2 || si.Scrolls != 2 || si.Bytes == 0 {
			t.Fatalf("STATUS = %+v", si)
		}
		if got := c.ok(protocol.OpVersion, "", phext.Origin, nil); !strings.Contains(string(got), Version) {
			t.Fatalf("VERSION = %q", got)
		}
		text := []byte("a\x17b\x18c")
		want, err := phext.Where(text, "xor", 1)
		if err != nil {
			t.Fatal(err)
		}
		got := c.ok(protocol.OpWhere, "", phext.Origin, protocol.AppendWherePayload(nil, protocol.WhereXor, 1, text))
		if !bytes.Equal(got, protocol.AppendCoordinate(nil, want)) {
			t.Fatalf("WHERE = %x, want %v", got, want)
		}
	})
}

func TestTenantIsolation(t *testing.T) {
	e := startEnv(t, envOptions{})
	ca, cb := e.dial("alpha"), e.dial("beta")
	x := mustCoord(t, "2.2.2/2.2.2/2.2.2")
	ca.ok(protocol.OpUpdate, "shared", x, []byte("alpha's"))
	cb.ok(protocol.OpUpdate, "shared", x, []byte("beta's"))
	if got := ca.ok(protocol.OpSelect, "shared", x, nil); string(got) != "alpha's" {
		t.Fatalf("alpha reads %q", got)
	}
	if got := cb.ok(protocol.OpSelect, "shared", x, nil); string(got) != "beta's" {
		t.Fatalf("beta reads %q", got)
	}
	cb.ok(protocol.OpDelete, "shared", x, nil)
	if got := ca.ok(protocol.OpSelect, "shared", x, nil); string(got) != "alpha's" {
		t.Fatalf("alpha reads %q after beta's delete", got)
	}
	if got := ca.ok(protocol.OpGet, "shared", phext.Origin, nil); bytes.Contains(got, []byte("beta")) {
		t.Fatalf("alpha's GET holds beta's bytes: %q", got)
	}
}

func TestPipelineInOrder(t *testing.T) {
	e := startEnv(t, envOptions{opts: Options{MaxInFlight: 16}})
	c := e.dial("alpha")
	const n = 1000
	var buf []byte
	first := c.id + 1
	for i := 0; i < n; i++ {
		c.id++
		coord := phext.Origin
		coord[phext.LevelScroll] = uint16(i%999 + 1)
		if i%2 == 0 {
			buf = protocol.AppendRequest(buf, protocol.OpUpdate, c.id, nil, coord, []byte(fmt.Sprintf("v%d", i)))
		} else {
			buf = protocol.AppendRequest(buf, protocol.OpSelect, c.id, nil, coord, nil)
		}
	}
	go func() { c.nc.Write(buf) }()
	for i := 0; i < n; i++ {
		r, err := c.read()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if r.ID != first+uint32(i) || r.Status != protocol.StatusOK {
			t.Fatalf("reply %d: id %d status %v, want id %d OK", i, r.ID, r.Status, first+uint32(i))
		}
		if i%2 == 1 {
			// Odd i reads scroll i%999+1, which only the even i-999
			// wrote (when i ≥ 999): replies must reflect request order.
			want := ""
			if i >= 999 {
				want = fmt.Sprintf("v%d", i-999)
			}
			if string(r.Body) != want {
				t.Fatalf("reply %d: SELECT = %q, want %q", i, r.Body, want)
			}
		}
	}
}

func TestMalformedFrames(t *testing.T) {
	e := startEnv(t, envOptions{opts: Options{MaxFrame: 1 << 16}})
	good := e.dial("beta")
	hdr := func(length uint32, op, flags byte, id uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, length)
		b = append(b, op, flags)
		return binary.BigEndian.AppendUint32(b, id)
	}
	req := func(op protocol.Op, name string, coord phext.Coordinate, payload string) []byte {
		return protocol.AppendRequest(nil, op, 42, []byte(name), coord, []byte(payload))
	}
	bad := phext.Origin
	bad[phext.LevelBook] = 0
	big := phext.Origin
	big[phext.LevelScroll] = 1000
	flagged := req(protocol.OpSelect, "", phext.Origin, "")
	flagged[5] = 0x80
	truncated := hdr(6+5, byte(protocol.OpSelect), 0, 42)
	truncated = append(truncated, 3, 'a', 'b', 'c', 0)
	cases := []struct {
		name   string
		frame  []byte
		status protocol.Status
		closes bool
		msg    string // the error body must contain it
	}{
		{name: "length below 6", frame: hdr(5, 0x10, 0, 42)[:9], status: protocol.StatusBadFrame, closes: true},
		{name: "length over max frame", frame: hdr(1<<20, 0x10, 0, 42), status: protocol.StatusTooLarge, closes: true},
		{name: "unknown flag bit", frame: flagged, status: protocol.StatusBadFrame},
		{name: "unknown opcode", frame: req(0x3F, "", phext.Origin, ""), status: protocol.StatusUnknownOp},
		{name: "name too long", frame: req(protocol.OpSelect, strings.Repeat("n", 65), phext.Origin, ""), status: protocol.StatusBadName},
		{name: "name with bad byte", frame: req(protocol.OpSelect, "../etc", phext.Origin, ""), status: protocol.StatusBadName},
		{name: "coordinate 0", frame: req(protocol.OpSelect, "", bad, ""), status: protocol.StatusBadCoord, msg: "1.1.1/1.1.1/1.1.1"},
		{name: "coordinate 1000", frame: req(protocol.OpSelect, "", big, ""), status: protocol.StatusBadCoord, msg: "coordinate 1.1.1/1.1.1/1.1.1000 has a part outside 1..999"},
		{name: "truncated body", frame: truncated, status: protocol.StatusBadFrame},
		{name: "scroll with delimiter", frame: req(protocol.OpInsert, "", phext.Origin, "a\x17b"), status: protocol.StatusBadScroll, msg: "byte 0x17 (scroll break) at offset 1"},
		{name: "scroll not utf-8", frame: req(protocol.OpInsert, "", phext.Origin, "a\xffb"), status: protocol.StatusBadScroll, msg: "byte 0xFF at offset 1 is not valid UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial("alpha")
			c.write(tc.frame)
			r, err := c.read()
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			if r.Status != tc.status {
				t.Fatalf("status %v (%s), want %v", r.Status, r.Body, tc.status)
			}
			if !strings.Contains(string(r.Body), tc.msg) {
				t.Fatalf("error body %q lacks %q", r.Body, tc.msg)
			}
			if tc.closes {
				c.expectClosed(5 * time.Second)
			} else {
				c.ok(protocol.OpPing, "", phext.Origin, nil)
			}
			// Nothing was written, and other connections keep working.
			if got := good.ok(protocol.OpSelect, "", phext.Origin, nil); len(got) != 0 {
				t.Fatalf("beta's origin = %q", got)
			}
		})
	}
	c := e.dial("alpha")
	if got := c.ok(protocol.OpGet, "", phext.Origin, nil); len(got) != 0 {
		t.Fatalf("alpha's phext changed by bad requests: %q", got)
	}
}

func TestTimeouts(t *testing.T) {
	e := startEnv(t, envOptions{opts: Options{
		HelloTimeout: 200 * time.Millisecond,
		IdleTimeout:  300 * time.Millisecond,
		FrameTimeout: 200 * time.Millisecond,
	}})
	t.Run("hello", func(t *testing.T) {
		c := dialRaw(t, e.srv.Addr())
		c.expectClosed(5 * time.Second)
	})
	t.Run("idle", func(t *testing.T) {
		c := e.dial("alpha")
		c.expectClosed(5 * time.Second)
	})
	t.Run("slow frame", func(t *testing.T) {
		c := e.dial("alpha")
		frame := protocol.AppendRequest(nil, protocol.OpPing, 9, nil, phext.Origin, nil)
		c.write(frame[:7])
		c.expectClosed(5 * time.Second)
	})
	st := e.srv.Stats()
	for _, r := range []string{"hello_timeout", "idle_timeout", "slow_frame"} {
		if st.Closed[r] == 0 {
			t.Errorf("no close counted as %s: %v", r, st.Closed)
		}
	}
}

func TestAuthFailuresSlowDown(t *testing.T) {
	e := startEnv(t, envOptions{opts: Options{AuthFailBudget: 2}})
	var last time.Duration
	for i := 0; i < 4; i++ {
		c := dialRaw(t, e.srv.Addr())
		start := time.Now()
		if r := c.hello("pmb-v1-000-wrong", 0); r.Status != protocol.StatusAuth {
			t.Fatalf("status %v", r.Status)
		}
		last = time.Since(start)
	}
	// Failures 3 and 4 are over the budget of 2: the 4th waits ≥ 500 ms.
	if last < 400*time.Millisecond {
		t.Fatalf("4th failure answered after %v; want a delay", last)
	}
	// A good token from the same address is not slowed.
	c := e.dial("alpha")
	c.ok(protocol.OpPing, "", phext.Origin, nil)
}

func TestReloadUnderLoad(t *testing.T) {
	e := startEnv(t, envOptions{tenants: []string{"stay", "drop", "off"}})
	stay, drop, off := e.dial("stay"), e.dial("drop"), e.dial("off")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		lc := e.dial("stay")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			coord := phext.Origin
			coord[phext.LevelScroll] = uint16(i%50 + 1)
			r := lc.do(protocol.OpUpdate, "load", coord, []byte(fmt.Sprint(i)))
			if r.Status != protocol.StatusOK {
				errs <- fmt.Errorf("unchanged tenant got %v during reload: %s", r.Status, r.Body)
				return
			}
		}
	}()
	newTok, _ := config.GenerateToken(9)
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	delete(cfg.Tenants, e.tokens["drop"])
	no := false
	ent := cfg.Tenants[e.tokens["off"]]
	ent.Enabled = &no
	cfg.Tenants[e.tokens["off"]] = ent
	cfg.Tenants[newTok] = config.TenantEntry{Name: "fresh", DataDir: e.dir + "/fresh"}
	if err := config.WriteFile(e.cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := e.srv.ReloadFromSource(); err != nil {
			t.Fatal(err)
		}
	}
	// Each gets a last frame saying why before its connection closes.
	for name, c := range map[string]*rawConn{"drop": drop, "off": off} {
		r, err := c.read()
		if err != nil {
			t.Fatalf("%s: no last frame: %v", name, err)
		}
		if r.Status != protocol.StatusAuth || r.ID != 0 || !strings.Contains(string(r.Body), "tenant "+name+" was disabled, removed or renamed by a config reload") {
			t.Fatalf("%s: last frame id %d %v %q", name, r.ID, r.Status, r.Body)
		}
		c.expectClosed(5 * time.Second)
	}
	stay.ok(protocol.OpPing, "", phext.Origin, nil)
	e.tokens["fresh"] = newTok
	e.dial("fresh").ok(protocol.OpInsert, "", phext.Origin, []byte("new"))
	for _, gone := range []string{"drop", "off"} {
		c := dialRaw(t, e.srv.Addr())
		if r := c.hello(e.tokens[gone], 0); r.Status != protocol.StatusAuth {
			t.Fatalf("%s after reload: status %v, want AUTH", gone, r.Status)
		}
	}
	// A config that fails to load leaves the old one in place.
	if err := config.WriteFile(e.cfgPath+".bad", cfg); err != nil {
		t.Fatal(err)
	}
	e.srv.opts.LoadConfig = func() (*config.Config, error) {
		return config.Parse([]byte(`{"tenants": {"": {"name": "x", "data_dir": "/tmp/x"}}}`))
	}
	if _, err := e.srv.ReloadFromSource(); err == nil {
		t.Fatal("bad config reloaded")
	}
	e.dial("fresh").ok(protocol.OpPing, "", phext.Origin, nil)
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

func TestShutdownKeepsAcknowledgedWrites(t *testing.T) {
	e := startEnv(t, envOptions{})
	const writers, each = 8, 50
	acked := make([][]phext.Coordinate, writers)
	var nacked atomic.Int64
	addr := e.srv.Addr()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := dialRaw(t, addr)
			if r := c.hello(e.tokens["alpha"], 0); r.Status != protocol.StatusOK {
				return
			}
			for i := 0; i < each; i++ {
				coord := phext.Origin
				coord[phext.LevelSection] = uint16(w + 1)
				coord[phext.LevelScroll] = uint16(i + 1)
				c.id++
				if _, err := c.nc.Write(protocol.AppendRequest(nil, protocol.OpUpdate, c.id, []byte("sd"), coord, []byte(fmt.Sprintf("w%d-%d", w, i)))); err != nil {
					return
				}
				r, err := c.read()
				if err != nil || r.Status != protocol.StatusOK {
					return // refused or closed by the shutdown: not acknowledged
				}
				acked[w] = append(acked[w], coord)
				nacked.Add(1)
			}
		}(w)
	}
	// Shut down while the writers are busy.
	sqtest.CheckForErr(t, 10*time.Second, func() error {
		if n := nacked.Load(); n < writers*each/4 {
			return fmt.Errorf("only %d writes acknowledged", n)
		}
		return nil
	})
	e.stop()
	wg.Wait()
	// Reopen the data and check every acknowledged write.
	total := 0
	reopened := reopenStore(t, e)
	for w, coords := range acked {
		for i, coord := range coords {
			got, err := reopened.AppendSelect(nil, []byte("sd"), coord)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("w%d-%d", w, i); string(got) != want {
				t.Fatalf("acknowledged write %s at %v lost: got %q", want, coord, got)
			}
			total++
		}
	}
	t.Logf("%d acknowledged writes verified after shutdown", total)
}

// TestLoopRepliesStayInOrder interleaves writes (answered by the worker)
// with small SELECTs (answered on the event loop when nothing is in
// flight), each in its own socket write, and requires every reply in
// request order with the SELECT seeing the write before it.
func TestLoopRepliesStayInOrder(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityNo})
	c := e.dial("alpha")
	coord := phext.Origin
	const rounds = 3000
	go func() {
		for i := 0; i < rounds; i++ {
			id := uint32(2*i + 100)
			if _, err := c.nc.Write(protocol.AppendRequest(nil, protocol.OpUpdate, id, nil, coord, []byte(fmt.Sprint(i)))); err != nil {
				return
			}
			if _, err := c.nc.Write(protocol.AppendRequest(nil, protocol.OpSelect, id+1, nil, coord, nil)); err != nil {
				return
			}
		}
	}()
	for i := 0; i < 2*rounds; i++ {
		r, err := c.read()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if want := uint32(i + 100); r.ID != want {
			t.Fatalf("reply %d has id %d, want %d: replies out of order", i, r.ID, want)
		}
		if i%2 == 1 && string(r.Body) != fmt.Sprint(i/2) {
			t.Fatalf("SELECT after UPDATE %d read %q", i/2, r.Body)
		}
	}
}

// TestPipelinedWriteRun sends runs of writes in one socket write, so the
// worker passes them to the store as one group commit, and checks each
// reply in order, a refused write in the middle changing nothing.
func TestPipelinedWriteRun(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.dial("alpha")
	a, b := phext.Origin, phext.Origin
	b[phext.LevelScroll] = 2
	type step struct {
		op      protocol.Op
		coord   phext.Coordinate
		payload string
		status  protocol.Status
		count   uint32
	}
	steps := []step{
		{op: protocol.OpInsert, coord: a, payload: "one", status: protocol.StatusOK, count: 3},
		{op: protocol.OpUpdate, coord: b, payload: "bee", status: protocol.StatusOK, count: 3},
		{op: protocol.OpInsert, coord: a, payload: "x\x18y", status: protocol.StatusBadScroll},
		{op: protocol.OpInsert, coord: a, payload: "+two", status: protocol.StatusOK, count: 4},
		{op: protocol.OpDelete, coord: b, status: protocol.StatusOK, count: 3},
		{op: protocol.OpUpdate, coord: b, payload: "\xff", status: protocol.StatusBadScroll},
	}
	var buf []byte
	first := c.id + 1
	for _, st := range steps {
		c.id++
		buf = protocol.AppendRequest(buf, st.op, c.id, nil, st.coord, []byte(st.payload))
	}
	c.write(buf)
	for i, st := range steps {
		r, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if r.ID != first+uint32(i) || r.Status != st.status {
			t.Fatalf("reply %d: id %d status %v (%s), want id %d status %v", i, r.ID, r.Status, r.Body, first+uint32(i), st.status)
		}
		if st.status == protocol.StatusOK {
			if n := binary.BigEndian.Uint32(r.Body); n != st.count {
				t.Fatalf("reply %d: count %d, want %d", i, n, st.count)
			}
		}
	}
	if got := c.ok(protocol.OpSelect, "", a, nil); string(got) != "one+two" {
		t.Fatalf("scroll a = %q", got)
	}
	if got := c.ok(protocol.OpSelect, "", b, nil); len(got) != 0 {
		t.Fatalf("scroll b = %q after delete", got)
	}
}

// TestShutdownWithBusyClient: a client that never stops sending cannot hold
// the shutdown: running requests finish, later ones get SHUTTING_DOWN, and
// Shutdown returns within its grace.
func TestShutdownWithBusyClient(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityNo})
	c := e.dial("alpha")
	stop := make(chan struct{})
	var shuttingDown atomic.Int64
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			var batch []byte
			for i := 0; i < 16; i++ {
				c.id++
				batch = protocol.AppendRequest(batch, protocol.OpUpdate, c.id, nil, phext.Origin, []byte("busy"))
			}
			if _, err := c.nc.Write(batch); err != nil {
				return
			}
		}
	}()
	go func() {
		for {
			r, err := c.read()
			if err != nil {
				return
			}
			if r.Status == protocol.StatusShuttingDown {
				shuttingDown.Add(1)
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := e.srv.Shutdown(ctx)
	took := time.Since(start)
	close(stop)
	if err != nil {
		t.Fatalf("shutdown with a busy client: %v", err)
	}
	if took > drainGrace+3*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	t.Logf("shutdown took %v; %d SHUTTING_DOWN answers seen", took, shuttingDown.Load())
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	e.srv = nil
}

// TestSlowConsumerClosed: a client that pipelines large GETs and never
// reads its replies is closed once MaxOutbound bytes wait for it, without
// needing to send anything more.
func TestSlowConsumerClosed(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityNo, opts: Options{MaxFrame: 1 << 20, MaxInFlight: 256}})
	c := e.dial("alpha")
	big := make([]byte, 900<<10)
	for i := range big {
		big[i] = 'g'
	}
	c.ok(protocol.OpUpdate, "big", phext.Origin, big)
	var batch []byte
	for i := 0; i < 200; i++ {
		c.id++
		batch = protocol.AppendRequest(batch, protocol.OpGet, c.id, []byte("big"), phext.Origin, nil)
	}
	c.write(batch) // and never read
	sqtest.CheckForErr(t, 10*time.Second, func() error {
		if n := e.srv.Stats().Closed["slow_consumer"]; n == 0 {
			return fmt.Errorf("not closed as a slow consumer yet")
		}
		return nil
	})
}

// TestReloadFailureKeepsOldConfig: a reload that fails part way (a new
// tenant, or a moved one, whose data dir cannot be created) leaves every
// tenant of the old config serving its data; a rename (same token and
// dir, new name) goes through.
func TestReloadFailureKeepsOldConfig(t *testing.T) {
	e := startEnv(t, envOptions{tenants: []string{"alpha", "beta"}})
	e.dial("alpha").ok(protocol.OpUpdate, "", phext.Origin, []byte("alpha data"))
	blocker := filepath.Join(e.dir, "file")
	if err := os.WriteFile(blocker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	unmakeable := filepath.Join(blocker, "sub")
	check := func(when string) {
		t.Helper()
		if got := e.dial("alpha").ok(protocol.OpSelect, "", phext.Origin, nil); string(got) != "alpha data" {
			t.Fatalf("%s: alpha reads %q", when, got)
		}
		e.dial("beta").ok(protocol.OpPing, "", phext.Origin, nil)
	}
	t.Run("bad new tenant", func(t *testing.T) {
		cfg, _ := config.Load(e.cfgPath)
		tok, _ := config.GenerateToken(7)
		cfg.Tenants[tok] = config.TenantEntry{Name: "zeta", DataDir: unmakeable}
		if _, err := e.srv.Reload(cfg); err == nil {
			t.Fatal("reload with an uncreatable data dir succeeded")
		}
		check("after a failed add")
	})
	t.Run("bad move", func(t *testing.T) {
		cfg, _ := config.Load(e.cfgPath)
		a := cfg.Tenants[e.tokens["alpha"]]
		a.DataDir = unmakeable
		cfg.Tenants[e.tokens["alpha"]] = a
		if _, err := e.srv.Reload(cfg); err == nil {
			t.Fatal("reload moving alpha to an uncreatable dir succeeded")
		}
		check("after a failed move")
	})
	t.Run("rename", func(t *testing.T) {
		cfg, _ := config.Load(e.cfgPath)
		a := cfg.Tenants[e.tokens["alpha"]]
		a.Name = "alpha2"
		cfg.Tenants[e.tokens["alpha"]] = a
		if _, err := e.srv.Reload(cfg); err != nil {
			t.Fatalf("rename: %v", err)
		}
		c := e.dial("alpha") // same token, new name
		if got := c.ok(protocol.OpSelect, "", phext.Origin, nil); string(got) != "alpha data" {
			t.Fatalf("renamed tenant reads %q", got)
		}
	})
}

// TestWritesAnsweredOnLoop: in everysec mode writes to an open phext are
// answered on the event loop (no worker), in order with reads, with the
// results and errors of the worker path; they survive a restart. In mode
// always they go to the worker (their fsync cannot run on a loop).
func TestWritesAnsweredOnLoop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dur    store.Durability
		onLoop bool
	}{
		{name: "everysec", dur: store.DurabilityEverySec, onLoop: true},
		{name: "always", dur: store.DurabilityAlways, onLoop: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, envOptions{durability: tc.dur})
			c := e.dial("alpha")
			a, b := phext.Origin, phext.Origin
			b[phext.LevelScroll] = 2
			c.ok(protocol.OpInsert, "", a, []byte("first")) // opens the phext and creates its files
			before := e.srv.stats.loopWrites.Load()
			var buf []byte
			type want struct {
				status protocol.Status
				body   string
				count  int
			}
			var wants []want
			add := func(op protocol.Op, co phext.Coordinate, payload string, w want) {
				c.id++
				buf = protocol.AppendRequest(buf, op, c.id, nil, co, []byte(payload))
				wants = append(wants, w)
			}
			for i := 0; i < 20; i++ {
				add(protocol.OpUpdate, b, fmt.Sprint("v", i), want{status: protocol.StatusOK, count: len(fmt.Sprint("v", i))})
				add(protocol.OpSelect, b, "", want{status: protocol.StatusOK, body: fmt.Sprint("v", i), count: -1})
			}
			add(protocol.OpInsert, a, "+", want{status: protocol.StatusOK, count: 1})
			add(protocol.OpInsert, a, "bad\x17", want{status: protocol.StatusBadScroll, count: -1})
			add(protocol.OpDelete, b, "", want{status: protocol.StatusOK, count: 3})
			add(protocol.OpSelect, a, "", want{status: protocol.StatusOK, body: "first+", count: -1})
			first := c.id - uint32(len(wants)) + 1
			c.write(buf)
			for i, w := range wants {
				r, err := c.read()
				if err != nil {
					t.Fatal(err)
				}
				if r.ID != first+uint32(i) || r.Status != w.status {
					t.Fatalf("reply %d: id %d status %v (%s), want id %d status %v", i, r.ID, r.Status, r.Body, first+uint32(i), w.status)
				}
				if w.count >= 0 && w.status == protocol.StatusOK && binary.BigEndian.Uint32(r.Body) != uint32(w.count) {
					t.Fatalf("reply %d: count %d, want %d", i, binary.BigEndian.Uint32(r.Body), w.count)
				}
				if w.count < 0 && w.status == protocol.StatusOK && string(r.Body) != w.body {
					t.Fatalf("reply %d: body %q, want %q", i, r.Body, w.body)
				}
			}
			loop := e.srv.stats.loopWrites.Load() - before
			if tc.onLoop && loop == 0 {
				t.Fatal("no write was answered on the event loop")
			}
			if !tc.onLoop && loop != 0 {
				t.Fatalf("%d always-mode writes answered on the loop (before their fsync)", loop)
			}
			e.stop()
			db, err := store.Open(&store.Options{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ten, err := db.AddTenant(store.TenantConfig{Name: "alpha", DataDir: filepath.Join(e.dir, "alpha")})
			if err != nil {
				t.Fatal(err)
			}
			doc, err := ten.AppendGet(nil, nil)
			if err != nil || string(doc) != "first+" {
				t.Fatalf("after restart: %q %v", doc, err)
			}
		})
	}
}

// TestOneLoopLogWritePerRound: a loop makes at most one log write per
// round (the house rule, as Redis writes its AOF once per iteration), and
// every write of a pipelined batch shares it: the store's file system
// counts the log's write() calls against the rounds that applied writes.
// Writes pipelined in one segment arrive in one OnTraffic (gnet may split
// it: each part is a round of its own); every reply comes back in order,
// and reads between the writes see them.
func TestOneLoopLogWritePerRound(t *testing.T) {
	fs := &logWriteFS{}
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec, fs: fs})
	c := e.dial("alpha")
	co := phext.Origin
	c.ok(protocol.OpInsert, "", co, []byte("x")) // opens the phext
	const n = 32
	var buf []byte
	first := c.id + 1
	for i := 0; i < n; i++ {
		c.id++
		buf = protocol.AppendRequest(buf, protocol.OpUpdate, c.id, nil, co, []byte(fmt.Sprint("v", i)))
		c.id++
		buf = protocol.AppendRequest(buf, protocol.OpSelect, c.id, nil, co, nil)
	}
	before := e.srv.stats.loopWrites.Load()
	rounds := e.srv.stats.loopLogWrites.Load()
	writes := fs.writes.Load()
	c.write(buf) // one segment: one OnTraffic (the frames are ~40 bytes each)
	for i := 0; i < 2*n; i++ {
		r, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if r.ID != first+uint32(i) || r.Status != protocol.StatusOK {
			t.Fatalf("reply %d: id %d status %v, want id %d OK", i, r.ID, r.Status, first+uint32(i))
		}
		if i%2 == 1 && string(r.Body) != fmt.Sprint("v", i/2) {
			t.Fatalf("read %d after its write: %q", i/2, r.Body)
		}
	}
	loop := e.srv.stats.loopWrites.Load() - before
	rounds = e.srv.stats.loopLogWrites.Load() - rounds
	writes = fs.writes.Load() - writes
	if loop != n {
		t.Fatalf("%d of %d pipelined writes answered on the loop", loop, n)
	}
	if writes != int64(rounds) || rounds == 0 || rounds > 4 {
		t.Fatalf("%d log write() calls in %d loop rounds: want one per round", writes, rounds)
	}
	if got := c.ok(protocol.OpSelect, "", co, nil); string(got) != fmt.Sprint("v", n-1) {
		t.Fatalf("last write lost: %q", got)
	}
}

// logWriteFS counts write() calls to the commit logs, also per writer
// ("w", "l0", …).
type logWriteFS struct {
	writes   atomic.Int64
	mu       sync.Mutex
	byWriter map[string]int
}

// writerWrites returns the write() calls to writer's log files.
func (f *logWriteFS) writerWrites(writer string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byWriter[writer]
}

func (f *logWriteFS) Rename(o, n string) error                     { return os.Rename(o, n) }
func (f *logWriteFS) Remove(name string) error                     { return os.Remove(name) }
func (f *logWriteFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

func (f *logWriteFS) OpenFile(name string, flag int, perm os.FileMode) (store.File, error) {
	fl, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(name, ".log") {
		return fl, nil
	}
	w := strings.TrimSuffix(name[strings.LastIndexByte(name, '-')+1:], ".log")
	return &logWriteFile{File: fl, fs: f, writer: w}, nil
}

func (f *logWriteFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type logWriteFile struct {
	*os.File
	fs     *logWriteFS
	writer string
}

func (f *logWriteFile) Write(p []byte) (int, error) {
	f.fs.writes.Add(1)
	f.fs.mu.Lock()
	if f.fs.byWriter == nil {
		f.fs.byWriter = map[string]int{}
	}
	f.fs.byWriter[f.writer]++
	f.fs.mu.Unlock()
	return f.File.Write(p)
}

// TestLoopsWriteOwnLogs: connections on both event loops write on the
// loop, each loop's rounds into its own commit log ("l0", "l1": the
// connection's round knows its loop from OnOpen), none into the worker's.
func TestLoopsWriteOwnLogs(t *testing.T) {
	fs := &logWriteFS{}
	e := startEnv(t, envOptions{durability: store.DurabilityEverySec, fs: fs})
	var cs []*rawConn
	for i := range 4 { // gnet spreads new connections over the 2 loops
		c := e.dial("alpha")
		c.ok(protocol.OpInsert, fmt.Sprint("p", i), phext.Origin, []byte("x")) // opens the phext
		cs = append(cs, c)
	}
	w0, l0, l1 := fs.writerWrites("w"), fs.writerWrites("l0"), fs.writerWrites("l1")
	before := e.srv.stats.loopWrites.Load()
	for k := range 10 {
		for i, c := range cs {
			c.ok(protocol.OpUpdate, fmt.Sprint("p", i), phext.Origin, []byte(fmt.Sprint("v", k)))
		}
	}
	if n := e.srv.stats.loopWrites.Load() - before; n != 40 {
		t.Fatalf("%d of 40 writes answered on the loops", n)
	}
	w0, l0, l1 = fs.writerWrites("w")-w0, fs.writerWrites("l0")-l0, fs.writerWrites("l1")-l1
	if l0 == 0 || l1 == 0 || w0 != 0 || l0+l1 != 40 {
		t.Fatalf("log writes: w %d, l0 %d, l1 %d; want 40 in l0 and l1, each some", w0, l0, l1)
	}
}

// TestFastMissesUnderLoad: connections pipeline requests the event loop
// decodes and then leaves to the worker (a SELECT above maxFastReply, a
// SELECT with a bad name, the first UPDATE of each new phext) beside
// requests it answers itself, so the loop's decodings are handed to the
// workers while loops and workers run (under -race: connState.pre's
// hand-off). The first request of each round is the one the loop decodes
// (nothing is in flight then), and each kind takes its turn first. Every
// reply comes in order with the status and text its request asks for.
func TestFastMissesUnderLoad(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityNo})
	big := bytes.Repeat([]byte("b"), maxFastReply+1)
	e.dial("alpha").ok(protocol.OpUpdate, "", phext.Origin, big)
	type want struct {
		status protocol.Status
		body   string
	}
	type req struct {
		op         protocol.Op
		name, text []byte
		want       want
	}
	const conns, rounds = 4, 150
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for k := 0; k < conns; k++ {
		c := e.dial("alpha")
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			id := uint32(0)
			for i := 0; i < rounds; i++ {
				name := []byte(fmt.Sprintf("c%d-p%d", k, i/10))
				text := []byte(fmt.Sprintf("%d/%d", k, i))
				reqs := []req{
					{op: protocol.OpSelect, want: want{status: protocol.StatusOK, body: string(big)}},
					{op: protocol.OpUpdate, name: name, text: text, want: want{status: protocol.StatusOK, body: string(binary.BigEndian.AppendUint32(nil, uint32(len(text))))}},
					{op: protocol.OpSelect, name: []byte("../x"), want: want{status: protocol.StatusBadName}},
				}
				n := i % len(reqs)
				reqs = append(reqs[n:], reqs[:n]...)
				reqs = append(reqs, req{op: protocol.OpSelect, name: name, want: want{status: protocol.StatusOK, body: string(text)}})
				buf = buf[:0]
				for j, q := range reqs {
					buf = protocol.AppendRequest(buf, q.op, id+uint32(j), q.name, phext.Origin, q.text)
				}
				if _, err := c.nc.Write(buf); err != nil {
					errs <- err
					return
				}
				for _, q := range reqs {
					r, err := c.read()
					if err != nil {
						errs <- err
						return
					}
					w := q.want
					if r.ID != id || r.Status != w.status || (w.status == protocol.StatusOK && string(r.Body) != w.body) {
						errs <- fmt.Errorf("conn %d reply %d: id %d %v %.40q, want %v %.40q", k, id, r.ID, r.Status, r.Body, w.status, w.body)
						return
					}
					id++
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
