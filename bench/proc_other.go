//go:build !linux

package bench

import "fmt"

// ReadProc is Linux-only; elsewhere it returns ErrProc.
func ReadProc(pid int) (ProcStats, error) {
	return ProcStats{}, fmt.Errorf("%w: not available on this system", ErrProc)
}

// MemTotal is Linux-only; elsewhere it returns 0.
func MemTotal() int64 { return 0 }
