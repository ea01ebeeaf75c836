// Package cpus holds the one count that CPU-bound work in this module is
// sized by: the CPUs the process may use, as the Go runtime counted them
// when the process started (its default GOMAXPROCS: the affinity mask
// and, in a container, the cgroup CPU limit; or $GOMAXPROCS when set).
// Server's event loops and heavy lane and protocol's zstd encoder and
// streaming decoders take it from here.
//
// # Caveats
//
// The count is fixed at start. A process may then set GOMAXPROCS to
// something else (sq host gives a P to goroutines that wait in system
// calls, server.Procs; go test -cpu), which changes neither N nor what is
// sized by it: more Ps are not more CPUs.
package cpus

import "runtime"

// atStart is read once, during package initialization, before main or any
// test can call runtime.GOMAXPROCS.
var atStart = runtime.GOMAXPROCS(0)

// N is the number of CPUs the process may use, by the Go runtime's count
// at start (at least 1).
func N() int { return atStart }
