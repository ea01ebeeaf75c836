package main

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
)

// TestHostGOMAXPROCS: sq host runs with a P per CPU plus one per gnet
// poller (server.Procs: every event loop and the acceptor), so loops idle
// in epoll_wait do not hold the Ps the CPU-bound work leaves; a
// $GOMAXPROCS the operator set is kept as it is.
func TestHostGOMAXPROCS(t *testing.T) {
	cfgPath, _ := killTenants(t, t.TempDir(), 1)
	procs := func(loops string) int {
		t.Helper()
		h := startHost(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--event-loops", loops)
		defer h.kill()
		re := regexp.MustCompile(`sq started.* gomaxprocs=(\d+)`)
		var m []string
		sqtest.CheckFor(t, 10*time.Second, "the start log line", func() bool {
			m = re.FindStringSubmatch(h.stderr.String())
			return m != nil
		})
		n, _ := strconv.Atoi(m[1])
		return n
	}
	t.Setenv("GOMAXPROCS", "") // the runtime's default in the child
	one, three := procs("1"), procs("3")
	if three-one != 2 || one < 3 {
		t.Fatalf("GOMAXPROCS %d with 1 event loop, %d with 3: want CPUs + loops + 1", one, three)
	}
	// Values the runtime ignores (it chooses its default) are ignored
	// here too (found in review of 683482e: "0" kept the CPU count).
	for _, v := range []string{"0", "auto"} {
		t.Setenv("GOMAXPROCS", v)
		if n := procs("1"); n != one {
			t.Fatalf("GOMAXPROCS=%q in the environment: the server runs with %d, want %d as when unset", v, n, one)
		}
	}
	t.Setenv("GOMAXPROCS", "7")
	if n := procs("3"); n != 7 {
		t.Fatalf("GOMAXPROCS=7 in the environment: the server runs with %d", n)
	}
}
