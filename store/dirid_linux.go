package store

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// dirID is a directory's identity: two paths name the same directory
// exactly when their device and inode numbers match (what os.SameFile
// compares), so it can key a map.
type dirID struct{ dev, ino uint64 }

// dirLookup is what AddTenant needs of a data dir: one stat(2), following
// symlinks as os.Stat does.
type dirLookup struct {
	id    dirID
	isDir bool
	err   error // an *os.PathError as os.Stat returns
}

// lookupDir stats dir. Unlike os.Stat it allocates nothing when dir exists.
func lookupDir(dir string) dirLookup {
	var st syscall.Stat_t
	for {
		err := syscall.Stat(dir, &st)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return dirLookup{err: &os.PathError{Op: "stat", Path: dir, Err: err}}
		}
		break
	}
	return dirLookup{id: dirID{dev: uint64(st.Dev), ino: st.Ino}, isDir: st.Mode&syscall.S_IFMT == syscall.S_IFDIR}
}

// lookupParallelMin is the number of dirs from which lookupDirs spreads
// the stats over goroutines; fewer are not worth starting them.
const lookupParallelMin = 256

// lookupDirs is lookupDir of each of dirs, on up to 2 × GOMAXPROCS
// goroutines (more than the cores: a stat of an uncached inode waits for
// the disk).
func lookupDirs(dirs []string) []dirLookup {
	out := make([]dirLookup, len(dirs))
	workers := min(2*runtime.GOMAXPROCS(0), len(dirs)/lookupParallelMin)
	if workers <= 1 {
		for i, d := range dirs {
			out[i] = lookupDir(d)
		}
		return out
	}
	// Chunks of 64 from a shared counter: a slow inode holds up one
	// goroutine, not a fixed share of the dirs.
	const chunk = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= len(dirs) {
					return
				}
				for i := lo; i < min(lo+chunk, len(dirs)); i++ {
					out[i] = lookupDir(dirs[i])
				}
			}
		}()
	}
	wg.Wait()
	return out
}
