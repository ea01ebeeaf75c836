package main

// Operator-experience tests (issue 16): restart after SIGTERM, logs,
// health, config permissions.

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
)

// TestRestartAfterSIGTERMUnderLoad: a server stopped with SIGTERM while
// clients write closes their connections itself, which leaves server-side
// TIME_WAIT sockets on the listen port; a restart on the same address must
// still bind at once (SO_REUSEADDR), not fail for a minute with "address
// already in use".
func TestRestartAfterSIGTERMUnderLoad(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	cfgPath, tokens := killTenants(t, dir, 4)
	h := startHost(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--durability", "no")
	addr := h.addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var acked sync.WaitGroup
	const conns = 32
	acked.Add(conns)
	for i := 0; i < conns; i++ {
		c, err := client.Dial(ctx, addr, tokens[i%len(tokens)])
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			first := true
			for {
				_, err := c.Insert(ctx, "", phext.Origin, []byte("x"))
				if first {
					acked.Done()
					first = false
				}
				// Busy clients keep trying through SHUTTING_DOWN
				// answers, so the server closes the connection first.
				if err != nil && c.Broken() {
					return
				}
			}
		}()
	}
	acked.Wait() // every connection is busy
	// Idle connections are closed by the server too.
	for i := 0; i < conns; i++ {
		c, err := client.Dial(ctx, addr, tokens[i%len(tokens)])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	<-h.exited
	if code := h.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d on SIGTERM:\n%s", code, h.stderr.String())
	}
	wg.Wait()
	start := time.Now()
	h2 := startHost(t, "--config", cfgPath, "--listen", addr, "--durability", "no")
	defer func() {
		h2.cmd.Process.Signal(syscall.SIGTERM)
		<-h2.exited
	}()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("restart on %s took %v, want under 3 s", addr, d)
	}
	c, err := client.Dial(ctx, addr, tokens[0])
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestHostBindErrorNamesAddress: a port another process listens on is
// refused with an error that says which address.
func TestHostBindErrorNamesAddress(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	cfgPath, _ := killTenants(t, dir, 1)
	var out, errb strings.Builder
	code := runHost([]string{"--config", cfgPath, "--listen", ln.Addr().String(), "--http="}, &out, &errb)
	if code == 0 {
		t.Fatal("started on a port in use")
	}
	if !strings.Contains(errb.String(), ln.Addr().String()) || !strings.Contains(errb.String(), "in use") {
		t.Fatalf("error does not name the address: %q", errb.String())
	}
}
