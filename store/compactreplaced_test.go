package store

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
)

// TestPutStreamCompactionsBounded: a tenant that replaces its phext with
// Puts back to back, each far past the compaction threshold, makes the
// background compactions of the document it has just replaced useless.
// They are neither logged as errors nor retried after every Put: at most
// one a compactRetry fails that way. The data is whole after a reopen. On
// the old code every Put started one that failed, each with an ERROR line
// (issue 13, M4: 344 lines in one 5 s window).
func TestPutStreamCompactionsBounded(t *testing.T) {
	var lb sqtest.LogBuffer
	db := &testDB{tb: t, root: t.TempDir()}
	db.opts.Durability = DurabilityNo
	db.opts.CompactMinWAL = 1
	db.opts.Logger = slog.New(slog.NewTextHandler(&lb, nil))
	db.open()
	t.Cleanup(func() {
		if !db.closed {
			db.Close()
		}
	})
	docs := [2][]byte{sqtest.TinyScrolls(50_000), sqtest.TinyScrolls(40_000)}
	name := []byte("rewritten")
	const stream = 1500 * time.Millisecond
	start := time.Now()
	puts := 0
	for time.Since(start) < stream {
		if _, err := db.ten.Put(name, docs[puts%2]); err != nil {
			t.Fatal(err)
		}
		puts++
	}
	elapsed := time.Since(start)
	st := db.Stats()
	replaced := db.compactReplaced.Load()
	t.Logf("%d puts in %v: %d compactions, %d failed (%d made useless by a Put)",
		puts, elapsed, st.Compactions, st.CompactionFailures, replaced)
	if n := strings.Count(lb.String(), "level=ERROR"); n > 0 {
		t.Errorf("%d ERROR lines for a Put stream, first: %s", n, lb.String()[strings.Index(lb.String(), "level=ERROR"):])
	}
	if most := uint64(elapsed/compactRetry) + 2; st.CompactionFailures > most {
		t.Errorf("%d failed compactions in %v of Puts, want at most %d (one a %v)", st.CompactionFailures, elapsed, most, compactRetry)
	}
	last := docs[(puts-1)%2]
	db.MustReopen()
	got, err := db.ten.AppendGet(nil, name)
	if err != nil || !bytes.Equal(got, bytes.TrimRight(last, "\x17")) && !bytes.Equal(got, last) {
		t.Fatalf("after reopen: %d bytes (%v), want the last Put's %d", len(got), err, len(last))
	}
}
