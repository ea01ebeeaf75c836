package store

import (
	"errors"
	"os"
	"sync/atomic"
)

// Stats are store-wide counters since Open, for metrics.
type Stats struct {
	// Fsyncs counts successful fsyncs of the commit log, snapshots and
	// directories.
	Fsyncs uint64
	// Compactions counts snapshots rewritten; CompactionFailures the
	// attempts that failed (the phext kept its old snapshot and its
	// records in the commit log).
	Compactions        uint64
	CompactionFailures uint64
	// Rewrites counts phexts checkpointed from memory by the repair after
	// a failed fsync of the commit log.
	Rewrites uint64
	// OpenPhexts is the number of phexts open now.
	OpenPhexts int
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.lmu.Lock()
	n := len(s.open)
	s.lmu.Unlock()
	return Stats{
		Fsyncs:             s.fs.(statFS).n.Load(),
		Compactions:        s.compactions.Load(),
		CompactionFailures: s.compactFailures.Load(),
		Rewrites:           s.rewrites.Load(),
		OpenPhexts:         n,
	}
}

// statFS counts the fsyncs made through the store's FS seam.
type statFS struct {
	FS
	n *atomic.Uint64
}

func (f statFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fl, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return statFile{File: fl, n: f.n}, nil
}

func (f statFS) SyncDir(dir string) error {
	err := f.FS.SyncDir(dir)
	if err == nil {
		f.n.Add(1)
	}
	return err
}

// OpenFSSync forwards to the FS when it is an FSSyncer (counted like an
// fsync); errNoFSSync otherwise.
func (f statFS) OpenFSSync(dir string) (FSSync, error) {
	fs, ok := f.FS.(FSSyncer)
	if !ok {
		return nil, errNoFSSync
	}
	h, err := fs.OpenFSSync(dir)
	if err != nil {
		return nil, err
	}
	return statFSSync{FSSync: h, n: f.n}, nil
}

// errNoFSSync: the store's FS cannot sync a whole file system.
var errNoFSSync = errors.New("store: the file system seam has no syncfs")

type statFSSync struct {
	FSSync
	n *atomic.Uint64
}

func (h statFSSync) Sync() error {
	err := h.FSSync.Sync()
	if err == nil {
		h.n.Add(1)
	}
	return err
}

type statFile struct {
	File
	n *atomic.Uint64
}

func (f statFile) Sync() error {
	err := f.File.Sync()
	if err == nil {
		f.n.Add(1)
	}
	return err
}
