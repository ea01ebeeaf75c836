//go:build !linux

package server

// readSocket reads nothing where sockets are not read directly: gnet
// delivers every byte (see sockread_linux.go).
func readSocket(_ int, b []byte, _ int) []byte { return b }

// discardSocket discards nothing where sockets are not read directly.
func discardSocket(int, int) int { return 0 }
