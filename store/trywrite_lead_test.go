package store

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/phext"
)

// leadFS runs onWrite before the next write of the log, and blocks fsyncs
// of the log while gate is set. It counts the log's write() calls
// (writes) and fails the next one with ENOSPC, a third of it landed, when
// fail is set.
type leadFS struct {
	osFS
	mu      sync.Mutex
	onWrite func()
	gate    chan struct{}
	writes  atomic.Int64
	fail    atomic.Bool
}

type leadFile struct {
	File
	fs   *leadFS
	path string
}

func (f *leadFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fl, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &leadFile{File: fl, fs: f, path: name}, nil
}

func (f *leadFile) Write(p []byte) (int, error) {
	if strings.HasSuffix(f.path, logSuffix) {
		f.fs.mu.Lock()
		hook := f.fs.onWrite
		f.fs.onWrite = nil
		f.fs.mu.Unlock()
		if hook != nil {
			hook()
		}
		f.fs.writes.Add(1)
		if f.fs.fail.Swap(false) {
			n, _ := f.File.Write(p[:len(p)/3])
			return n, syscall.ENOSPC
		}
	}
	return f.File.Write(p)
}

func (f *leadFile) Sync() error {
	if strings.HasSuffix(f.path, logSuffix) {
		f.fs.mu.Lock()
		g := f.fs.gate
		f.fs.mu.Unlock()
		if g != nil {
			<-g
		}
	}
	return f.File.Sync()
}

// TestTryWriteNeverLeadsQueuedGroups: writers that queue a group while the
// event loop's TryWrite writes its record wait for a leader; the loop must
// not become it (it would write, and in mode always fsync, their group).
// Here an always-mode writer of another tenant queues while the loop's
// write() is under way and the log's fsync is held: TryWrite still returns.
func TestTryWriteNeverLeadsQueuedGroups(t *testing.T) {
	fs := &leadFS{}
	db := MustOpen(t, &Options{FS: fs, Durability: DurabilityEverySec})
	b, err := db.AddTenant(TenantConfig{Name: "b", DataDir: db.root + "/b", Durability: DurabilityAlways})
	if err != nil {
		t.Fatal(err)
	}
	for _, ten := range []*Tenant{db.ten, b} {
		if _, err := ten.Insert([]byte("f"), coord(1), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	gate := make(chan struct{})
	done := make(chan error, 1)
	fs.mu.Lock()
	fs.onWrite = func() {
		// The loop holds the log's write side: b's always-mode commit
		// queues its group and waits for a leader.
		go func() {
			_, err := b.Insert([]byte("f"), coord(2), []byte("y"))
			done <- err
		}()
		for {
			db.wlog.mu.Lock()
			queued := db.wlog.cur != nil
			db.wlog.mu.Unlock()
			if queued {
				break
			}
			time.Sleep(time.Millisecond)
		}
		fs.mu.Lock()
		fs.gate = gate
		fs.mu.Unlock()
	}
	fs.mu.Unlock()
	returned := make(chan bool, 1)
	go func() {
		w := Write{Kind: WriteUpdate, Name: []byte("f"), Coord: phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 1}, Text: []byte("loop")}
		_, ok := db.ten.TryWrite(&w, nil)
		returned <- ok && w.Err == nil
	}()
	select {
	case ok := <-returned:
		if !ok {
			t.Error("TryWrite declined or failed")
		}
	case <-time.After(20 * time.Second):
		close(gate)
		t.Fatal("TryWrite led the queued always-mode group and waited for its fsync")
	}
	fs.mu.Lock()
	fs.gate = nil
	fs.mu.Unlock()
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
