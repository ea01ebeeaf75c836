//go:build linux

package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{name: "plain", in: "123 (sq) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0", want: 3 * time.Second},
		{name: "name-with-paren-and-space", in: "123 (a) b) S 1 2 3 4 5 6 7 8 9 10 1 2 0 0", want: 30 * time.Millisecond},
		{name: "no-name", in: "123 sq S 1", wantErr: true},
		{name: "short", in: "123 (sq) S 1 2 3", wantErr: true},
		{name: "not-a-number", in: "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 2 0 0", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.in))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error, got %v", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestStatusKB(t *testing.T) {
	status := []byte("Name:\tsq\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n")
	tests := []struct {
		name string
		key  string
		want int64
	}{
		{name: "rss", key: "VmRSS:", want: 1024},
		{name: "hwm", key: "VmHWM:", want: 2048},
		{name: "threads", key: "Threads:", want: 7},
		{name: "first-line", key: "Name:", want: 0},
		{name: "absent", key: "VmSwap:", want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusKB(status, tc.key); got != tc.want {
				t.Fatalf("statusKB(%q) = %d, want %d", tc.key, got, tc.want)
			}
		})
	}
}

func TestReadProcSelf(t *testing.T) {
	// Burn a little CPU so the counter has moved.
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	p, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.RSS <= 0 || p.HWM < p.RSS || p.Threads < 1 || p.CPU <= 0 {
		t.Fatalf("implausible: %+v", p)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Fatal("no error for a missing pid")
	}
	if MemTotal() <= 0 {
		t.Fatal("MemTotal = 0")
	}
}
