//go:build !linux

package server

// mapFrame falls back to the Go heap where frames are not mapped.
func mapFrame(size int) ([]byte, error) { return make([]byte, size), nil }

// unmapFrame leaves b to the GC.
func unmapFrame([]byte) (bool, error) { return false, nil }
