package bench

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// fakeSQ is a small in-memory SQ server for tests: HELLO maps a token to
// a tenant, SELECT/INSERT/UPDATE/DELETE work on a map. Its faults make it
// misbehave on purpose so tests can check that the bench notices.
type fakeSQ struct {
	t      *testing.T
	ln     net.Listener
	tokens map[string]int

	mu   sync.Mutex
	data map[string][]byte // tenant|name|coord → text

	// Faults, read atomically.
	leakEvery    atomic.Int64 // every n-th SELECT answers another tenant's scroll
	corruptEvery atomic.Int64 // every n-th SELECT flips a byte
	busyEvery    atomic.Int64 // every n-th write answers BUSY (and does not write)
	badCount     atomic.Bool  // UPDATE answers a wrong count
	selects      atomic.Int64
	writes       atomic.Int64
	wg           sync.WaitGroup
}

func startFakeSQ(t *testing.T, tenants int) (*fakeSQ, []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSQ{t: t, ln: ln, tokens: map[string]int{}, data: map[string][]byte{}}
	var toks []string
	for i := 0; i < tenants; i++ {
		tok := "pmb-v1-" + strconv.Itoa(i) + "-test"
		f.tokens[tok] = i
		toks = append(toks, tok)
	}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f, toks
}

func (f *fakeSQ) addr() string { return f.ln.Addr().String() }

func (f *fakeSQ) accept() {
	defer f.wg.Done()
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	defer func() {
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	}()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			f.serve(c)
		}()
	}
}

func key(tenant int, name []byte, c phext.Coordinate) string {
	return strconv.Itoa(tenant) + "|" + string(name) + "|" + c.String()
}

func (f *fakeSQ) serve(nc net.Conn) {
	br := bufio.NewReader(nc)
	bw := bufio.NewWriter(nc)
	var dec protocol.Decoder
	tenant := -1
	buf := make([]byte, 0, 4096)
	var out []byte
	for {
		if br.Buffered() == 0 && len(out) > 0 {
			if _, err := bw.Write(out); err != nil {
				return
			}
			if bw.Flush() != nil {
				return
			}
			out = out[:0]
		}
		if cap(buf) < 4 {
			buf = make([]byte, 4)
		}
		if _, err := io.ReadFull(br, buf[:4]); err != nil {
			return
		}
		n, err := protocol.FrameSize(buf[:4], 0)
		if err != nil {
			return
		}
		if cap(buf) < n {
			nb := make([]byte, n)
			copy(nb, buf[:4])
			buf = nb
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf[4:]); err != nil {
			return
		}
		if tenant < 0 {
			h, id, err := protocol.DecodeHello(buf)
			ti, ok := f.tokens[string(h.Token)]
			if err != nil || !ok {
				out = protocol.AppendError(out, id, protocol.StatusAuth, "bad token")
				bw.Write(out)
				bw.Flush()
				return
			}
			tenant = ti
			out = protocol.AppendHelloReply(out, id, &protocol.HelloReply{Version: 1, MaxFrame: protocol.DefaultMaxFrame, TenantName: "t" + strconv.Itoa(ti)})
			continue
		}
		var req protocol.Request
		if err := dec.Decode(buf, &req); err != nil {
			out = protocol.AppendErr(out, req.ID, err)
			continue
		}
		out = f.handle(out, tenant, &req)
	}
}

func (f *fakeSQ) handle(out []byte, tenant int, req *protocol.Request) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key(tenant, req.Name, req.Coord)
	every := func(v *atomic.Int64, n int64) bool { e := v.Load(); return e > 0 && n%e == 0 }
	switch req.Op {
	case protocol.OpSelect:
		n := f.selects.Add(1)
		v := f.data[k]
		if every(&f.leakEvery, n) {
			own := string(appendTag(nil, tenant))
			for other, ov := range f.data {
				if other != k && len(ov) >= tagLen && string(ov[:tagLen]) != own {
					v = ov
					break
				}
			}
		}
		if every(&f.corruptEvery, n) && len(v) > 0 {
			v = append([]byte(nil), v...)
			v[len(v)-1] ^= 1
		}
		return protocol.AppendResponse(out, req.ID, protocol.StatusOK, v)
	case protocol.OpInsert, protocol.OpUpdate, protocol.OpDelete:
		if every(&f.busyEvery, f.writes.Add(1)) {
			return protocol.AppendError(out, req.ID, protocol.StatusBusy, "busy")
		}
		var cnt int
		switch req.Op {
		case protocol.OpInsert:
			f.data[k] = append(append([]byte(nil), f.data[k]...), req.Payload...)
			cnt = len(req.Payload)
		case protocol.OpUpdate:
			f.data[k] = append([]byte(nil), req.Payload...)
			cnt = len(req.Payload)
			if f.badCount.Load() {
				cnt++
			}
		case protocol.OpDelete:
			cnt = len(f.data[k])
			delete(f.data, k)
		}
		return protocol.AppendResponse(out, req.ID, protocol.StatusOK, protocol.AppendCount(nil, uint32(cnt)))
	}
	return protocol.AppendResponse(out, req.ID, protocol.StatusOK, nil)
}

// fakeRedis is a tiny RESP server with GET, SET, APPEND and DEL.
type fakeRedis struct {
	ln   net.Listener
	mu   sync.Mutex
	data map[string][]byte
	wg   sync.WaitGroup
}

func startFakeRedis(t *testing.T) *fakeRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRedis{ln: ln, data: map[string][]byte{}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		var conns []net.Conn
		var cw sync.WaitGroup
		defer func() {
			for _, c := range conns {
				c.Close()
			}
			cw.Wait()
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			cw.Add(1)
			go func() { defer cw.Done(); defer c.Close(); f.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakeRedis) serve(nc net.Conn) {
	br := bufio.NewReader(nc)
	bw := bufio.NewWriter(nc)
	readLine := func() (string, error) {
		l, err := br.ReadString('\n')
		if len(l) >= 2 {
			l = l[:len(l)-2]
		}
		return l, err
	}
	for {
		l, err := readLine()
		if err != nil || len(l) < 2 || l[0] != '*' {
			return
		}
		n, _ := strconv.Atoi(l[1:])
		args := make([][]byte, n)
		for i := range args {
			h, err := readLine()
			if err != nil || h[0] != '$' {
				return
			}
			m, _ := strconv.Atoi(h[1:])
			b := make([]byte, m+2)
			if _, err := io.ReadFull(br, b); err != nil {
				return
			}
			args[i] = b[:m]
		}
		f.mu.Lock()
		k := string(args[1])
		switch string(args[0]) {
		case "GET":
			if v, ok := f.data[k]; ok {
				bw.WriteString("$" + strconv.Itoa(len(v)) + "\r\n")
				bw.Write(v)
				bw.WriteString("\r\n")
			} else {
				bw.WriteString("$-1\r\n")
			}
		case "SET":
			f.data[k] = args[2]
			bw.WriteString("+OK\r\n")
		case "APPEND":
			f.data[k] = append(f.data[k], args[2]...)
			bw.WriteString(":" + strconv.Itoa(len(f.data[k])) + "\r\n")
		case "DEL":
			_, ok := f.data[k]
			delete(f.data, k)
			if ok {
				bw.WriteString(":1\r\n")
			} else {
				bw.WriteString(":0\r\n")
			}
		default:
			bw.WriteString("-ERR unknown command\r\n")
		}
		f.mu.Unlock()
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}
