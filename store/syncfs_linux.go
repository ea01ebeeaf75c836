package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// FSSyncer is implemented by an FS that can make every file of one file
// system durable with one call (Linux syncfs(2)). The everysec syncer uses
// it when several dirty WALs live on one file system: one call per file
// system and round instead of one fsync per WAL. An FS without it gets one
// fsync per WAL.
type FSSyncer interface {
	// SyncFS flushes the file system holding dir, an open directory handle
	// the syncer keeps for the life of the Store (so that a writeback error
	// anywhere on it after the handle was opened is reported).
	SyncFS(dir File) error
}

// SyncFS calls syncfs(2), which reports writeback errors of the whole file
// system since dir was opened (Linux ≥ 5.8).
func (osFS) SyncFS(dir File) error {
	if err := unix.Syncfs(int(dir.Fd())); err != nil {
		return &os.PathError{Op: "syncfs", Path: "", Err: err}
	}
	return nil
}

// SyncFS forwards to the wrapped FS and counts a success as one fsync.
func (f statFS) SyncFS(dir File) error {
	fss, ok := f.FS.(FSSyncer)
	if !ok {
		return errNoSyncFS
	}
	if sf, ok := dir.(statFile); ok {
		dir = sf.File
	}
	err := fss.SyncFS(dir)
	if err == nil {
		f.n.Add(1)
	}
	return err
}
