package store

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/internal/bulk"
	"github.com/phext/sq/internal/sqtest"
)

// threadNice reads the calling thread's nice value from /proc.
func threadNice(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(syscall.Gettid()) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	n, err := strconv.Atoi(f[16]) // field 19, nice
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBackgroundCheckpointsRunLowered: a background compaction and a log
// rotation's checkpoints run on bulk threads (nice bulk.Nice); a
// compaction the caller asks for runs on the caller's thread, and the
// checkpoint record's group commit (step C) at the process's priority.
func TestBackgroundCheckpointsRunLowered(t *testing.T) {
	if threadNice(t) >= bulk.Nice {
		t.Skip("the test process already runs at nice", bulk.Nice)
	}
	db := MustOpen(t, &Options{CompactMinWAL: 1})
	ten := db.ten
	var (
		mu    sync.Mutex
		nices []int
		watch atomic.Pointer[Tenant] // the tenant whose checkpoints count
	)
	watch.Store(ten)
	checkpointHook = func(p *pfile) {
		if p.t != watch.Load() {
			return
		}
		n := threadNice(t)
		mu.Lock()
		nices = append(nices, n)
		mu.Unlock()
	}
	defer func() { checkpointHook = nil }()
	got := func() []int {
		mu.Lock()
		defer mu.Unlock()
		r := nices
		nices = nil
		return r
	}
	wait := func(what string) (r []int) {
		t.Helper()
		sqtest.CheckFor(t, 10*time.Second, what, func() bool {
			r = append(r, got()...)
			return len(r) > 0
		})
		return r
	}
	doc := []byte(strings.Repeat("x", 4096))

	// Past CompactMinWAL: the writer starts a background compaction.
	for i := range 4 {
		if _, err := ten.Update([]byte("bg"), coord(uint16(i+1)), doc); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range wait("background compaction") {
		if n != bulk.Nice {
			t.Errorf("background compaction at nice %d, want %d", n, bulk.Nice)
		}
	}

	// A rotation checkpoints every phext with records in the old logs.
	if _, err := ten.Update([]byte("rot"), coord(1), doc); err != nil {
		t.Fatal(err)
	}
	got()
	ten.s.kickRotate()
	for _, n := range wait("rotation") {
		if n != bulk.Nice {
			t.Errorf("rotation's checkpoint at nice %d, want %d", n, bulk.Nice)
		}
	}

	// Compact called by a client's request: the caller's thread (the
	// server runs COMPACT as bulk work itself). Its own store, where no
	// write starts a background compaction.
	sqtest.CheckFor(t, 10*time.Second, "the rotation ended", func() bool { return !ten.s.rotating.Load() })
	fg := MustOpen(t, nil)
	ten = fg.ten
	watch.Store(ten)
	if _, err := ten.Update([]byte("fg"), coord(1), doc); err != nil {
		t.Fatal(err)
	}
	got()
	if err := ten.Compact([]byte("fg")); err != nil {
		t.Fatal(err)
	}
	for _, n := range got() {
		if n != 0 {
			t.Errorf("Compact on the caller's goroutine at nice %d, want 0", n)
		}
	}
}
