package client_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
)

// cutProxy forwards TCP connections to target until cut, which closes
// every connection it carries (the listener stays).
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, a, b)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(a, b); a.Close() }()
			go func() { defer p.wg.Done(); io.Copy(b, a); b.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

func nextEvent(t *testing.T, ch <-chan client.Event) client.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event channel closed")
		}
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event in 10 s")
	}
	return client.Event{}
}

// TestWatchResumesAcrossReconnect: the package-level Watch delivers every
// change in order with text, and after its connection is cut it dials
// again and resumes from the last position: the changes made while it was
// disconnected arrive exactly once, in order, without a resync.
func TestWatchResumesAcrossReconnect(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := startProxy(t, addr)
	name := fmt.Sprintf("watch-%d", time.Now().UnixNano())
	ch, err := client.Watch(ctx, p.ln.Addr().String(), token, name, client.WatchOptions{Text: true, Prefix: "1.1.1/1.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := client.Dial(ctx, addr, token)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c := func(i int) phext.Coordinate { return phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, uint16(1 + i)} }
	var last uint64
	for i := 0; i < 5; i++ {
		if _, err := w.Update(ctx, name, c(i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
		// Outside the prefix: never delivered.
		if _, err := w.Update(ctx, name, phext.Coordinate{1, 1, 2, 1, 1, 1, 1, 1, 1}, []byte("x")); err != nil {
			t.Fatal(err)
		}
		ev := nextEvent(t, ch)
		if ev.Resync || ev.Op != "update" || ev.Coord != c(i) || string(ev.Text) != fmt.Sprint("v", i) || ev.Pos <= last ||
			ev.Checksum != phext.Checksum(ev.Text) || ev.Phext != name {
			t.Fatalf("event %d: %+v", i, ev)
		}
		last = ev.Pos
	}
	p.cut()
	for i := 5; i < 10; i++ {
		if _, err := w.Update(ctx, name, c(i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 5; i < 12; i++ {
		if i >= 10 {
			if _, err := w.Insert(ctx, name, c(i), []byte(fmt.Sprint("v", i))); err != nil {
				t.Fatal(err)
			}
		}
		ev := nextEvent(t, ch)
		if ev.Resync || ev.Coord != c(i) || string(ev.Text) != fmt.Sprint("v", i) || ev.Pos <= last {
			t.Fatalf("after reconnect, event %d: %+v (last %d)", i, ev, last)
		}
		last = ev.Pos
	}
	cancel()
	for range ch {
	}
}

// TestConnWatchUnwatch: a subscription on a Conn ends with Close (its
// channel closes) while the connection keeps serving requests.
func TestConnWatchUnwatch(t *testing.T) {
	ctx := context.Background()
	c, err := client.Dial(ctx, addr, token)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	name := fmt.Sprintf("unwatch-%d", time.Now().UnixNano())
	sub, err := c.Watch(ctx, name, client.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Insert(ctx, name, phext.Origin, []byte("a")); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, sub.C)
	if ev.Op != "insert" || ev.Len != 1 || ev.Text != nil || ev.Pos <= sub.Head {
		t.Fatalf("%+v (head %d)", ev, sub.Head)
	}
	if err := sub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-sub.C; ok {
		t.Fatal("channel open after Close")
	}
	if _, err := c.Insert(ctx, name, phext.Origin, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Watch(ctx, name, client.WatchOptions{Prefix: "1.1.1000"}); err == nil {
		t.Fatal("bad prefix accepted")
	}
}
