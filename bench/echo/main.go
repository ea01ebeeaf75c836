// Command echo runs the do-nothing SQ echo server of package bench: it
// answers SQ frames with answers of the sizes a real server would send and
// stores nothing, so `sq bench --addr ADDR --token x --no-verify` against
// it measures the machine's network path (see bench/compare.sh).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/phext/sq/bench"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0 picks a free one)")
	size := flag.String("value-size", "1KiB", "size of every SELECT answer (e.g. 1KiB, 512B)")
	loops := flag.Int("event-loops", 0, "gnet event loops (0 = one per CPU)")
	flag.Parse()
	sz, err := bench.ParseSize(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(2)
	}
	e, err := bench.StartEcho(*listen, sz.Max, *loops)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	fmt.Printf("echo: listening on %s\n", e.Addr())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}
