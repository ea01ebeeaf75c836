//go:build !linux

package bulk

// lowerThread does nothing off Linux: priorities are per process there.
func lowerThread() error { return nil }

// mainThread: no thread is lowered off Linux, so none needs avoiding.
func mainThread() bool { return false }
