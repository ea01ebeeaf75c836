package server_test

// Idle connections: many that never send a byte, held by a child process in
// the long form.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/server"
)

// TestIdleConnections opens many connections that never send a byte (the
// long form: 10,000, held by a child process because of the descriptor
// limit) and checks the server keeps serving, with the memory per idle
// connection measured.
func TestIdleConnections(t *testing.T) {
	if os.Getenv("SQ_IDLE_CHILD") != "" {
		t.Skip("child")
	}
	n := pick(1000, 10000)
	h := startHostile(t, hostileOpts{opts: server.Options{HelloTimeout: time.Hour}})
	good := h.dial(t, "alice")
	var base latencies
	goodClient(t, good, c9(1), 300*time.Millisecond, &base, 0)
	heap0 := heapNow()
	t0 := time.Now()
	var release func()
	if n > 2000 {
		release = holdConnsInChild(t, h.srv.Addr(), n)
	} else {
		var ncs []net.Conn
		for i := 0; i < n; i++ {
			nc, err := net.DialTimeout("tcp", h.srv.Addr(), 5*time.Second)
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			ncs = append(ncs, nc)
		}
		release = func() {
			for _, nc := range ncs {
				nc.Close()
			}
		}
	}
	defer release()
	sqtest.CheckFor(t, 30*time.Second, "all idle connections accepted", func() bool { return h.srv.Stats().Conns >= int64(n)+1 })
	opened := time.Since(t0)
	heap1 := heapNow()
	var under latencies
	goodClient(t, good, c9(2), 300*time.Millisecond, &under, 0)
	perConn := (float64(heap1) - float64(heap0)) / float64(n)
	t.Logf("%d idle connections opened in %v; server heap %.1f → %.1f MiB (%.0f B per idle connection, client ends included when in-process); good client p99 %v → %v",
		n, opened.Round(time.Millisecond), float64(heap0)/mib, float64(heap1)/mib, perConn, base.p(0.99), under.p(0.99))
	if perConn > 64<<10 {
		t.Errorf("%.0f bytes of heap per idle connection", perConn)
	}
	if u := under.p(0.99); u > 10*base.p(0.99)+250*time.Millisecond {
		t.Errorf("good client p99 %v with idle connections, baseline %v", u, base.p(0.99))
	}
}

// holdConnsInChild runs this test binary as a child that opens n
// connections to addr and holds them until released.
func holdConnsInChild(t *testing.T, addr string, n int) func() {
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SQ_IDLE_CHILD="+addr, "SQ_IDLE_N="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if sc.Text() == "ready" {
			ready = true
			break
		}
	}
	if !ready {
		cmd.Wait()
		t.Fatal("idle-connection child failed")
	}
	go io.Copy(io.Discard, out)
	return func() {
		stdin.Close()
		cmd.Wait()
	}
}

// TestIdleConnChild is the child of holdConnsInChild.
func TestIdleConnChild(t *testing.T) {
	addr := os.Getenv("SQ_IDLE_CHILD")
	if addr == "" {
		t.Skip("only run as a child of TestIdleConnections")
	}
	n, _ := strconv.Atoi(os.Getenv("SQ_IDLE_N"))
	var ncs []net.Conn
	for i := 0; i < n; i++ {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			os.Exit(1)
		}
		ncs = append(ncs, nc)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, nc := range ncs {
		nc.Close()
	}
}
