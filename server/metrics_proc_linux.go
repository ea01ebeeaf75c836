package server

import (
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
	"syscall"
)

// procSamples are the Go runtime metrics /metrics exposes.
var procSamples = []struct{ key, name, typ, help string }{
	{key: "/sched/goroutines:goroutines", name: "go_goroutines", typ: "gauge", help: "Goroutines that currently exist."},
	{key: "/memory/classes/heap/objects:bytes", name: "go_memstats_heap_alloc_bytes", typ: "gauge", help: "Bytes of allocated heap objects."},
	{key: "/memory/classes/total:bytes", name: "go_memstats_sys_bytes", typ: "gauge", help: "Bytes of memory obtained from the OS by the Go runtime."},
	{key: "/gc/cycles/total:gc-cycles", name: "go_gc_cycles_total", typ: "counter", help: "Completed GC cycles."},
}

// appendProcessMetrics writes the process_* families Prometheus client
// libraries write (CPU, memory, file descriptors) and a few Go runtime
// gauges, read from /proc and runtime/metrics at scrape time.
func appendProcessMetrics(e *expo) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
		e.family("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.")
		e.float(cpu, "process_cpu_seconds_total")
	}
	// /proc/self/statm: size resident … in pages.
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := bytes.Fields(b)
		if len(f) >= 2 {
			page := uint64(os.Getpagesize())
			vm, _ := strconv.ParseUint(string(f[0]), 10, 64)
			rss, _ := strconv.ParseUint(string(f[1]), 10, 64)
			e.one("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vm*page)
			e.one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss*page)
		}
	}
	if d, err := os.Open("/proc/self/fd"); err == nil {
		names, _ := d.Readdirnames(-1)
		d.Close()
		e.one("process_open_fds", "gauge", "Open file descriptors.", uint64(max(len(names)-1, 0))) // minus the one reading
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		e.one("process_max_fds", "gauge", "Limit on open file descriptors.", rl.Cur)
	}
	var ss [4]metrics.Sample
	for i := range procSamples {
		ss[i].Name = procSamples[i].key
	}
	metrics.Read(ss[:len(procSamples)])
	for i, p := range procSamples {
		if ss[i].Value.Kind() == metrics.KindUint64 {
			e.one(p.name, p.typ, p.help, ss[i].Value.Uint64())
		}
	}
}
