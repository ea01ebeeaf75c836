package store

import "testing"

// TestOpenChargedBeforeReady: a writer that looked a phext up while it
// was opening checks its state without the tenant's lock and, once the
// phext is ready, writes to it at once, while its opener may still hold
// that lock finishing the open. The opener counts the phext's bytes for
// the quota before it makes it ready, so the tenant's usage (what the
// quota refuses by) counts that writer's bytes once. The opener read the
// count after the phext was ready: it raced with such a writer's apply
// (the CI data race of TestReloadRacesEvictor: both stacks writers) and
// counted its bytes twice.
func TestOpenChargedBeforeReady(t *testing.T) {
	db := MustOpen(t, nil)
	if _, err := db.ten.Insert([]byte("p"), coord(1), []byte("base")); err != nil {
		t.Fatal(err)
	}
	// Reopened, p is closed: the next write opens it.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db.open()
	besides := 0
	db.Store.openedHook = func(p *pfile) {
		if p.key != "p" {
			return
		}
		besides++
		// The writer that saw p ready: it needs no tenant lock (this
		// opener holds it) and its write is applied before the opener
		// goes on.
		done := make(chan error)
		go func() {
			_, _, err := p.submit(&op{kind: opInsert, c: coord(2), text: []byte("beside")})
			done <- err
		}()
		if err := <-done; err != nil {
			t.Errorf("write beside the open: %v", err)
		}
	}
	if _, err := db.ten.Insert([]byte("p"), coord(3), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if besides != 1 {
		t.Fatalf("opened hook ran %d times for p, want 1", besides)
	}
	for c, want := range map[uint16]string{1: "base", 2: "beside", 3: "x"} {
		if got := mustSelect(t, db.ten, "p", coord(c)); got != want {
			t.Errorf("scroll %d: %q, want %q", c, got, want)
		}
	}
	u, err := db.ten.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len("base")+len("beside")+len("x")) + 3*ScrollCost; u.Bytes != want {
		t.Errorf("usage %d bytes, want %d (3 scrolls)", u.Bytes, want)
	}
}
