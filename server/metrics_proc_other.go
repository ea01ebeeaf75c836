//go:build !linux

package server

// appendProcessMetrics writes nothing where /proc is missing.
func appendProcessMetrics(*expo) {}
