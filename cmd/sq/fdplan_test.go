package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/phext/sq/store"
)

// TestAutoMaxOpen: the default open-phext cap is a quarter of the
// open-file limit, within 256..16384.
func TestAutoMaxOpen(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit uint64
		want  int
	}{
		{name: "default limit", limit: 1024, want: 256},
		{name: "bench box", limit: 20000, want: 5000},
		{name: "capped", limit: 1 << 20, want: 16384},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := autoMaxOpen(tc.limit); got != tc.want {
				t.Errorf("autoMaxOpen(%d) = %d, want %d", tc.limit, got, tc.want)
			}
		})
	}
}

// TestFDPlanReport: a limit below one connection per tenant plus the open
// phexts' descriptors is a warning at start, with the figures; a limit
// that fits is not.
func TestFDPlanReport(t *testing.T) {
	p := planFDs(0, 10)
	if p.soft != p.hard {
		t.Errorf("soft limit %d not raised to the hard limit %d", p.soft, p.hard)
	}
	if p.maxOpen < 256 || p.need != 10+uint64(p.maxOpen)*17/16*store.FDsPerOpenPhext+fdReserve {
		t.Errorf("plan %+v", p)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	fits := fdPlan{soft: 20000, hard: 20000, maxOpen: 5000, need: 15824}
	fits.report(log, 10000)
	if buf.Len() != 0 {
		t.Errorf("a limit that fits logged: %s", buf.String())
	}
	short := fdPlan{soft: 20000, hard: 20000, raisedFrom: 1024, maxOpen: 16000, need: 27512}
	short.report(log, 10000)
	out := buf.String()
	for _, want := range []string{"raised the open-file limit", "from=1024", "level=WARN", "open_files_limit=20000", "need=27512", "max_open_phexts=16000"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q: %s", want, out)
		}
	}
}
