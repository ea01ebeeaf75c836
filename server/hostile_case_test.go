package server_test

// Names that differ only in case, on a case-insensitive file system.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// TestCaseOnlyNames: names differing only in case are distinct phexts on
// a case-sensitive file system. On a case-insensitive mount they would name
// the same files; the store must then not open them as two phexts. This is
// simulated with an FS seam that folds case.
func TestCaseOnlyNames(t *testing.T) {
	h := startHostile(t, hostileOpts{fs: foldFS{}})
	c := h.dial(t, "mallory")
	c.must(t, protocol.StatusOK, protocol.OpInsert, "Notes", c9(1), []byte("upper "))
	r, err := c.do(protocol.OpInsert, "notes", c9(1), []byte("lower "))
	if err != nil {
		t.Fatal(err)
	}
	upper := c.must(t, protocol.StatusOK, protocol.OpSelect, "Notes", c9(1), nil)
	lower := c.must(t, protocol.StatusOK, protocol.OpSelect, "notes", c9(1), nil)
	c.must(t, protocol.StatusOK, protocol.OpCompact, "Notes", phext.Origin, nil)
	c.must(t, protocol.StatusOK, protocol.OpInsert, "Notes", c9(2), []byte("after"))
	r2, _ := c.do(protocol.OpInsert, "notes", c9(3), []byte("again"))
	h.stop()
	// After a restart the single file must hold every acknowledged write.
	db, err := store.Open(&store.Options{FS: foldFS{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ten, err := db.AddTenant(store.TenantConfig{Name: "mallory", DataDir: filepath.Join(h.dir, "data", "mallory")})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := ten.AppendGet(nil, []byte("notes"))
	t.Logf("insert into \"notes\" after \"Notes\": %v; views: Notes=%q notes=%q; second insert: %v; after restart: %q %v", r.Status, upper, lower, r2.Status, doc, err)
	var problems []string
	if err != nil {
		problems = append(problems, "the shared file is unreadable after restart: "+err.Error())
	}
	if r.Status == protocol.StatusOK && !bytes.Contains(doc, []byte("lower")) {
		problems = append(problems, "an acknowledged write to \"notes\" was lost")
	}
	if r2.Status == protocol.StatusOK && !bytes.Contains(doc, []byte("again")) {
		problems = append(problems, "an acknowledged write to \"notes\" after compacting \"Notes\" was lost")
	}
	if !bytes.Contains(doc, []byte("after")) {
		problems = append(problems, "an acknowledged write to \"Notes\" was lost")
	}
	if len(problems) > 0 {
		msg := "BUG: on a case-insensitive mount, names differing only in case open the same files as two phexts (store/tenant.go get keys pfiles by the exact name): " + strings.Join(problems, "; ")
		if os.Getenv("SQ_RELIABILITY_BUGS") == "" {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
}

// foldFS is the OS file system seen through a case-insensitive mount: the
// base name of every path is lower-cased.
type foldFS struct{}

func fold(p string) string { return filepath.Join(filepath.Dir(p), strings.ToLower(filepath.Base(p))) }

func (foldFS) OpenFile(name string, flag int, perm os.FileMode) (store.File, error) {
	f, err := os.OpenFile(fold(name), flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}
func (foldFS) Rename(o, n string) error                     { return os.Rename(fold(o), fold(n)) }
func (foldFS) Remove(name string) error                     { return os.Remove(fold(name)) }
func (foldFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (foldFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// TestCaseOnlyNamesWatch: on a case-insensitive data dir "Notes" and
// "notes" are one phext (the store folds names), so a watcher of either
// spelling gets the changes written under both. The feed compared the
// watched name as sent with the store's folded name and delivered nothing.
func TestCaseOnlyNamesWatch(t *testing.T) {
	h := startHostile(t, hostileOpts{fs: foldFS{}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wc, err := client.Dial(ctx, h.srv.Addr(), h.tokens["mallory"])
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	upper, err := wc.Watch(ctx, "Notes", client.WatchOptions{Text: true})
	if err != nil {
		t.Fatal(err)
	}
	lower, err := wc.Watch(ctx, "notes", client.WatchOptions{Text: true})
	if err != nil {
		t.Fatal(err)
	}
	c := h.dial(t, "mallory")
	c.must(t, protocol.StatusOK, protocol.OpInsert, "Notes", c9(1), []byte("upper "))
	c.must(t, protocol.StatusOK, protocol.OpInsert, "notes", c9(1), []byte("lower"))
	for _, sub := range []*client.Subscription{upper, lower} {
		for _, want := range []string{"upper ", "upper lower"} {
			select {
			case ev := <-sub.C:
				if ev.Resync || string(ev.Text) != want || ev.Op != "insert" {
					t.Fatalf("event %+v, want an insert with text %q", ev, want)
				}
			case <-ctx.Done():
				t.Fatalf("no event with text %q: the watcher missed a change of its phext", want)
			}
		}
	}
}
