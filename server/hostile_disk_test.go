package server_test

// Disk faults (ENOSPC, EIO) and a corrupt phext, as a client sees them.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// faultFS fails writes and fsyncs of the files whose path contains match
// while armed (the commit log shared by all tenants: "-w.log").
type faultFS struct {
	armed atomic.Bool
	match string
	err   error
}

func (f *faultFS) fail(path string) error {
	if f.armed.Load() && strings.Contains(path, f.match) {
		return &os.PathError{Op: "write", Path: path, Err: f.err}
	}
	return nil
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (store.File, error) {
	fl, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: fl, fs: f, path: name}, nil
}
func (f *faultFS) Rename(o, n string) error                     { return os.Rename(o, n) }
func (f *faultFS) Remove(name string) error                     { return os.Remove(name) }
func (f *faultFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (f *faultFS) SyncDir(dir string) error                     { return nil }

type faultFile struct {
	*os.File
	fs   *faultFS
	path string
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err := f.fs.fail(f.path); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	if err := f.fs.fail(f.path); err != nil {
		return err
	}
	return f.File.Sync()
}

// TestDiskFaultsOverTheWire: ENOSPC and EIO on the commit log reach the
// clients as INTERNAL with the data exactly as before (the log is shared:
// every tenant's writes fail, reads go on); a tenant-local fault (a
// checkpoint of one tenant's phext) fails only that tenant's COMPACT; the
// tenants recover when the fault clears.
func TestDiskFaultsOverTheWire(t *testing.T) {
	for _, fault := range []error{syscall.ENOSPC, syscall.EIO} {
		t.Run(fault.Error(), func(t *testing.T) {
			ffs := &faultFS{match: "-w.log", err: fault}
			h := startHostile(t, hostileOpts{fs: ffs, http: true})
			a, b := h.dial(t, "alice"), h.dial(t, "bob")
			a.must(t, protocol.StatusOK, protocol.OpInsert, "", c9(1), []byte("before"))
			sum := a.must(t, protocol.StatusOK, protocol.OpChecksum, "", phext.Origin, nil)
			ffs.armed.Store(true)
			for i := 0; i < 5; i++ {
				body := a.must(t, protocol.StatusInternal, protocol.OpInsert, "", c9(1), []byte(" lost"))
				if !strings.Contains(string(body), fault.Error()) {
					t.Errorf("INTERNAL message %q does not say what failed", body)
				}
				a.must(t, protocol.StatusInternal, protocol.OpPut, "", phext.Origin, []byte("lost"))
				b.must(t, protocol.StatusInternal, protocol.OpInsert, "", c9(1), []byte("bob "))
				b.must(t, protocol.StatusOK, protocol.OpSelect, "", c9(1), nil)
				if got := a.must(t, protocol.StatusOK, protocol.OpChecksum, "", phext.Origin, nil); !bytes.Equal(got, sum) {
					t.Fatal("alice's data changed under the fault")
				}
			}
			// REST sees 500 for the same fault.
			req, _ := http.NewRequest("POST", "http://"+h.httpAddr+"/api/v2/insert?c=1.1.1/1.1.1/1.1.1", strings.NewReader("lost"))
			req.Header.Set("Authorization", "Bearer "+h.tokens["alice"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusInternalServerError {
				t.Errorf("REST insert under the fault: %d", resp.StatusCode)
			}
			ffs.armed.Store(false)
			a.must(t, protocol.StatusOK, protocol.OpInsert, "", c9(1), []byte(" after"))
			if got := a.must(t, protocol.StatusOK, protocol.OpSelect, "", c9(1), nil); string(got) != "before after" {
				t.Fatalf("after the fault cleared: %q", got)
			}
			// A fault in alice's data dir: her checkpoint fails, bob's
			// works, and her data is unchanged.
			ffs.match = filepath.Join("data", "alice") + "/"
			ffs.armed.Store(true)
			a.must(t, protocol.StatusInternal, protocol.OpCompact, "", phext.Origin, nil)
			b.must(t, protocol.StatusOK, protocol.OpInsert, "", c9(2), []byte("bob"))
			b.must(t, protocol.StatusOK, protocol.OpCompact, "", phext.Origin, nil)
			ffs.armed.Store(false)
			if got := a.must(t, protocol.StatusOK, protocol.OpSelect, "", c9(1), nil); string(got) != "before after" {
				t.Fatalf("after the checkpoint fault: %q", got)
			}
			if !strings.Contains(h.logs.String(), "request failed") {
				t.Error("no log line for the failed requests")
			}
		})
	}
}

// TestCorruptPhextOverTheWire: a phext whose WAL is corrupt answers
// INTERNAL with a log line naming the file, while the tenant's other phexts
// and other tenants work.
func TestCorruptPhextOverTheWire(t *testing.T) {
	h := startHostile(t, hostileOpts{})
	dir := filepath.Join(h.dir, "data", "alice")
	must(t, os.MkdirAll(dir, 0o750))
	must(t, os.WriteFile(filepath.Join(dir, "bad.phext"), []byte("fine"), 0o640))
	must(t, os.WriteFile(filepath.Join(dir, "bad.phext.wal"), []byte("SQWAL001 but then garbage that is not a header"), 0o640))
	must(t, os.WriteFile(filepath.Join(dir, "good.phext"), []byte("ok"), 0o640))
	a := h.dial(t, "alice")
	body := a.must(t, protocol.StatusInternal, protocol.OpGet, "bad", phext.Origin, nil)
	if !strings.Contains(string(body), "corrupt") {
		t.Errorf("message %q", body)
	}
	a.must(t, protocol.StatusInternal, protocol.OpInsert, "bad", c9(1), []byte("x"))
	if got := a.must(t, protocol.StatusOK, protocol.OpGet, "good", phext.Origin, nil); string(got) != "ok" {
		t.Errorf("good phext: %q", got)
	}
	h.dial(t, "bob").must(t, protocol.StatusOK, protocol.OpInsert, "", c9(1), []byte("x"))
	logs := h.logs.String()
	if !strings.Contains(logs, "bad.phext.wal") || !strings.Contains(logs, "tenant=alice") {
		t.Errorf("no clear log line naming the file and tenant:\n%s", logs)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "bad.phext.wal")); !bytes.HasPrefix(b, []byte("SQWAL001 but")) {
		t.Error("the corrupt WAL was changed")
	}
}

// TestLoopRoundFaultOverTheWire: in mode everysec a pipelined batch of
// writes is applied on the event loop and logged with one write(); when
// that write fails (ENOSPC on the shared log) every write of the batch is
// answered INTERNAL naming the fault, and the reads between them are
// answered in order. Those writes stay applied in memory (as Redis's do
// after a failed AOF write; docs/STORAGE.md): the log refuses every write
// until the store has checkpointed them from memory, after which writes
// succeed again and the state on disk is the state the readers saw.
func TestLoopRoundFaultOverTheWire(t *testing.T) {
	ffs := &faultFS{match: "-w.log", err: syscall.ENOSPC}
	h := startHostile(t, hostileOpts{fs: ffs, durability: store.DurabilityEverySec})
	a := h.dial(t, "alice")
	a.must(t, protocol.StatusOK, protocol.OpInsert, "", c9(1), []byte("before")) // creates the phext
	a.must(t, protocol.StatusOK, protocol.OpInsert, "", c9(1), []byte(" x"))
	ffs.armed.Store(true)
	for i := 0; i < 3; i++ {
		if err := a.send(protocol.OpInsert, "", c9(1), []byte(" lost")); err != nil {
			t.Fatal(err)
		}
		if err := a.send(protocol.OpSelect, "", c9(1), nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 6; i++ {
		r, err := a.recv(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			if r.Status != protocol.StatusOK {
				t.Fatalf("reply %d (SELECT): %v %s", i, r.Status, r.Body)
			}
			continue
		}
		if r.Status != protocol.StatusInternal || !strings.Contains(string(r.Body), syscall.ENOSPC.Error()) {
			t.Fatalf("reply %d (INSERT under the fault): %v %q", i, r.Status, r.Body)
		}
	}
	if !strings.Contains(h.logs.String(), "log write of a loop round failed") {
		t.Fatal("the writes were not answered on the loop")
	}
	seen := string(a.must(t, protocol.StatusOK, protocol.OpSelect, "", c9(1), nil))
	if !strings.HasPrefix(seen, "before x") {
		t.Fatalf("acknowledged data gone: %q", seen)
	}
	ffs.armed.Store(false)
	sqtest.CheckFor(t, 20*time.Second, "writes accepted after the fault cleared", func() bool {
		r, err := a.do(protocol.OpInsert, "", c9(1), []byte(" after"))
		return err == nil && r.Status == protocol.StatusOK
	})
	want := seen + " after"
	if got := string(a.must(t, protocol.StatusOK, protocol.OpSelect, "", c9(1), nil)); got != want {
		t.Fatalf("after the repair: %q, want %q", got, want)
	}
	h.stop()
	// A clean close checkpointed everything: a fresh log dir will do.
	db, err := store.Open(&store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ten, err := db.AddTenant(store.TenantConfig{Name: "alice", DataDir: filepath.Join(h.dir, "data", "alice")})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ten.AppendSelect(nil, nil, c9(1)); err != nil || string(got) != want {
		t.Fatalf("after restart: %q %v, want %q", got, err, want)
	}
}
