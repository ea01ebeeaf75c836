package store

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// FS is the file-system seam used for every write the store makes, so tests
// can inject ENOSPC or EIO at named steps. Reads of snapshots (mmap) and
// log replay (the commit log, legacy per-phext WALs) go through files
// opened with FS.OpenFile too. A nil FS in Options
// means the operating system.
type FS interface {
	// OpenFile opens a file like os.OpenFile.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Rename renames a file like os.Rename (atomic within a directory).
	Rename(oldpath, newpath string) error
	// Remove removes a file like os.Remove.
	Remove(name string) error
	// MkdirAll creates a directory and its parents like os.MkdirAll.
	MkdirAll(path string, perm os.FileMode) error
	// SyncDir fsyncs a directory so that renames and creations in it are
	// durable.
	SyncDir(dir string) error
}

// File is the subset of *os.File the store uses.
type File interface {
	Write(p []byte) (int, error)
	ReadAt(p []byte, off int64) (int, error)
	Sync() error
	Truncate(size int64) error
	Close() error
	Stat() (os.FileInfo, error)
	// Fd returns the descriptor, used to mmap snapshots.
	Fd() uintptr
}

// osFS is the FS of the operating system.
type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// FSSyncer is an optional FS method set: one call makes a whole file
// system durable (syncfs(2)). Batched checkpoints (Store.Close,
// RemoveTenant) use it instead of an fsync per snapshot and per data dir;
// an FS without it gets those fsyncs.
type FSSyncer interface {
	// OpenFSSync returns a handle on the file system holding dir. Its Sync
	// writes back every file of that file system and reports any
	// write-back error since the handle was opened (Linux ≥ 5.17; osFS
	// declines where that does not hold: syncfsTrusted).
	OpenFSSync(dir string) (FSSync, error)
}

// FSSync is a handle of FSSyncer.
type FSSync interface {
	Sync() error
	Close() error
}

// OpenFSSync implements FSSyncer with syncfs(2) on a descriptor of dir,
// where syncfs can stand for the fsyncs it replaces (syncfsTrusted);
// elsewhere it declines (errNoFSSync) and the batch fsyncs each file.
func (osFS) OpenFSSync(dir string) (FSSync, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(d.Fd()), &st); err != nil {
		_ = d.Close()
		return nil, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if !syncfsTrusted(kernelRelease(), int64(st.Type)) {
		_ = d.Close()
		return nil, errNoFSSync
	}
	return osFSSync{d}, nil
}

// syncfsTrusted reports whether syncfs(2) on a file system of type fsType
// (statfs f_type) under kernel release makes every file durable and
// reports every error, as the fsyncs it replaces would. Before Linux 5.8
// syncfs reported no write-back error at all (the PostgreSQL fsync
// lesson: the pages are dropped, a later sync succeeds, the data is gone),
// and before 5.17 it dropped the file system's own ->sync_fs error (a
// failed journal commit or log force: the renames and inode sizes not
// durable, syncfs 0), which fsync returns. On a file system whose sync_fs
// does not reach the storage
// (FUSE, SMB, 9p: their fsync asks the server, their syncfs does not) or
// keeps the errors on another superblock (overlayfs) it does not stand
// for an fsync. So only local file systems known to do both are trusted.
func syncfsTrusted(release string, fsType int64) bool {
	var major, minor int
	if n, _ := fmt.Sscanf(release, "%d.%d", &major, &minor); n != 2 || major < 5 || major == 5 && minor < 17 {
		return false
	}
	switch fsType {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.F2FS_SUPER_MAGIC,
		unix.TMPFS_MAGIC: // tmpfs: nothing to make durable either way
		return true
	}
	return false
}

// kernelRelease is uname's release ("6.8.0-45-generic"), read once.
var kernelRelease = sync.OnceValue(func() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
})

type osFSSync struct{ d *os.File }

func (h osFSSync) Sync() error {
	if err := unix.Syncfs(int(h.d.Fd())); err != nil {
		return &os.PathError{Op: "syncfs", Path: h.d.Name(), Err: err}
	}
	return nil
}

func (h osFSSync) Close() error { return h.d.Close() }
