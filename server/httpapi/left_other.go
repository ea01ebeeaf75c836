//go:build !linux

package httpapi

import "syscall"

// peerClosed is false off Linux: there a waiting answer whose request
// body is unread ends at its delay, not at its client's close.
func peerClosed(syscall.RawConn) bool { return false }
