package sqtest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records Fatal instead of stopping.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }
func (r *recorder) Fatal(args ...any)                 { r.failed = fmt.Sprint(args...) }

func TestCheckForWaitsForTheCondition(t *testing.T) {
	n := 0
	CheckFor(t, 5*time.Second, "the third call", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
	m := 0
	CheckForErr(t, 5*time.Second, func() error {
		if m++; m < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if m != 3 {
		t.Fatalf("cond called %d times, want 3", m)
	}
}

func TestCheckForFailsAfterTheDeadline(t *testing.T) {
	r := &recorder{TB: t}
	CheckFor(r, 20*time.Millisecond, "never", func() bool { return r.failed != "" })
	if !strings.Contains(r.failed, "never") {
		t.Fatalf("CheckFor failed with %q, want it to name what it waited for", r.failed)
	}
	r.failed = ""
	CheckForErr(r, 20*time.Millisecond, func() error {
		if r.failed != "" {
			return nil
		}
		return errors.New("still broken")
	})
	if r.failed != "still broken" {
		t.Fatalf("CheckForErr failed with %q, want the last error", r.failed)
	}
}

// TestClosedWithin: a peer that answers and then closes is closed; one
// that stays open is not, once the deadline passed.
func TestClosedWithin(t *testing.T) {
	a, b := net.Pipe()
	go func() {
		b.Write([]byte("a reply first"))
		b.Close()
	}()
	if !ClosedWithin(a, 5*time.Second) {
		t.Fatal("a closed peer reported open")
	}
	c, d := net.Pipe()
	defer d.Close()
	if ClosedWithin(c, 50*time.Millisecond) {
		t.Fatal("an open peer reported closed")
	}
}
