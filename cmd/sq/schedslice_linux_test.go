package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/internal/schedslice"
)

// hostSlices reads "se.slice" of every thread of process pid.
func hostSlices(t *testing.T, pid int) map[string]int64 {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/sched", pid, e.Name()))
		if err != nil {
			continue // ended meanwhile
		}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "se.slice" {
				m[e.Name()], _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return m
}

// TestHostSchedSlice: every thread of a running sq host, its event loops
// and store goroutines' threads included, runs with the short scheduler
// slice (internal/schedslice) or the one --sched-slice gives; a negative
// --sched-slice asks for none (the threads keep the slice they inherit).
func TestHostSchedSlice(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	if !schedslice.Supported() {
		t.Skip("the kernel has no custom scheduler slices")
	}
	// The child inherits this process's slice (other tests of the
	// package run sq host in-process): a slice of its own that neither
	// the default nor the kernel's is tells "asked for none" apart.
	const inherited = 3 * time.Millisecond
	if _, err := schedslice.Set(inherited); err != nil {
		t.Fatal(err)
	}
	defer schedslice.Set(schedslice.Default)
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, schedslice.Default},
		{[]string{"--sched-slice", "0"}, schedslice.Default},
		{[]string{"--sched-slice", "250us"}, 250 * time.Microsecond},
		{[]string{"--sched-slice", "-1ns"}, inherited},
	} {
		t.Chdir(t.TempDir())
		h := startHost(t, append([]string{"--listen", "127.0.0.1:0", "--event-loops", "2"}, tc.args...)...)
		slices := hostSlices(t, h.cmd.Process.Pid)
		h.kill()
		if len(slices) < 4 {
			t.Fatalf("%v: %d threads with a slice, want the runtime's and the loops'", tc.args, len(slices))
		}
		for tid, s := range slices {
			if s != tc.want.Nanoseconds() {
				t.Errorf("%v: thread %s has slice %d ns, want %d", tc.args, tid, s, tc.want.Nanoseconds())
			}
		}
	}
}
