package store_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/store"
)

// copyTree copies the regular files under src to dst (a point-in-time
// image of the disk for a crash).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o750)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Review 14, finding 12 (double fault: ENOSPC on a log write whose cut-back fails).
// STORAGE.md: "A file whose cut-back failed takes no more records". But
// the group-commit leader's loop (commitLog.run) writes the groups queued
// during the failed write into the same file right after the torn bytes,
// and acknowledges them. A crash before the repair finished then finds
// the torn record followed by whole ones: Open fails for every tenant (or
// the acknowledged group is skipped as part of the torn record).
func TestQueuedGroupWrittenAfterTornWrite(t *testing.T) {
	gfs := &faultyFS{}
	root := t.TempDir()
	o := store.Options{FS: gfs, LogDir: filepath.Join(root, "log"), Logger: quiet(), SyncInterval: time.Hour}
	s, err := store.Open(&o)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.AddTenant(store.TenantConfig{Name: "a", DataDir: filepath.Join(root, "a")})
	b, _ := s.AddTenant(store.TenantConfig{Name: "b", DataDir: filepath.Join(root, "b")})
	if _, err := a.Insert([]byte("f"), c9(1), []byte("a1")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Insert([]byte("g"), c9(1), []byte("b1")); err != nil {
		t.Fatal(err)
	}
	// The next log write is held at a gate, then lands a third of its
	// bytes and fails with ENOSPC; the next log truncate (its cut-back)
	// fails with EIO.
	wg := gfs.gateWrite(".log")
	gfs.armOnce("write", ".log", syscall.ENOSPC)
	gfs.armOnce("truncate", ".log", syscall.EIO)
	aErr := make(chan error, 1)
	go func() {
		_, err := a.Insert([]byte("f"), c9(2), []byte("a write that fails with ENOSPC, long enough to be cut"))
		aErr <- err
	}()
	<-wg.entered
	bErr := make(chan error, 1)
	go func() {
		_, err := b.Insert([]byte("g"), c9(2), []byte("acked"))
		bErr <- err
	}()
	time.Sleep(200 * time.Millisecond) // b's group queues behind a's write
	// Hold the repair's rotation at its first fsync (the new log file).
	sg := gfs.gateSync(".log")
	close(wg.release)
	if err := <-aErr; err == nil {
		t.Fatal("the injected ENOSPC was not reported")
	}
	berr := <-bErr
	if berr != nil {
		// The fix: a group queued behind a torn write is refused (nothing
		// of it applied), never written after the torn bytes.
		got := get(t, b, "g")
		close(sg.release)
		s.Close()
		if got != "b1" {
			t.Fatalf("b's refused write was applied: %q", got)
		}
		return
	}
	<-sg.entered
	// kill -9 here: the disk image as it is now.
	img := filepath.Join(t.TempDir(), "img")
	copyTree(t, root, img)
	close(sg.release)
	store.Crash(s)
	for _, d := range []string{"log", "a", "b"} {
		os.RemoveAll(filepath.Join(root, d))
		copyTree(t, filepath.Join(img, d), filepath.Join(root, d))
	}
	o.FS = nil
	s2, err := store.Open(&o)
	if err != nil {
		t.Fatalf("after the crash: %v (b's write \"acked\" was acknowledged after a's torn write)", err)
	}
	defer s2.Close()
	b2, _ := s2.AddTenant(store.TenantConfig{Name: "b", DataDir: filepath.Join(root, "b")})
	if got := get(t, b2, "g"); got != "b1\x17acked" {
		t.Fatalf("b's acknowledged write lost: %q", got)
	}
}
