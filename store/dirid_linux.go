package store

import (
	"os"
	"syscall"
)

// dirID is a directory's identity: two paths name the same directory
// exactly when their device and inode numbers match (what os.SameFile
// compares), so it can key a map.
type dirID struct{ dev, ino uint64 }

// dirIdentity returns the identity of fi, a result of os.Stat.
func dirIdentity(fi os.FileInfo) dirID {
	st := fi.Sys().(*syscall.Stat_t)
	return dirID{dev: uint64(st.Dev), ino: st.Ino}
}
