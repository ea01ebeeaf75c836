package server

import "time"

// SetMaxMappedFrames sets maxMappedFrames (framebuf.go) for a test, before
// its server starts; the returned func restores it (register it with
// t.Cleanup before the server's, so it runs after the server stopped).
func SetMaxMappedFrames(n int64) (restore func()) {
	old := maxMappedFrames
	maxMappedFrames = n
	return func() { maxMappedFrames = old }
}

// SetMaxTenantRefusals sets maxTenantRefusals (pace.go) for a test, before
// its server starts; the returned func restores it.
func SetMaxTenantRefusals(n int64) (restore func()) {
	old := maxTenantRefusals
	maxTenantRefusals = n
	return func() { maxTenantRefusals = old }
}

// SetFrameIdleFor sets frameIdleFor (framepool.go) for a test, before its
// server starts; the returned func restores it.
func SetFrameIdleFor(d time.Duration) (restore func()) {
	old := frameIdleFor
	frameIdleFor = d
	return func() { frameIdleFor = old }
}

// SocketBytes reports the bytes of large frames read straight from their
// sockets and the bytes of refused frames dropped there (conn.go).
func (s *Server) SocketBytes() (read, dropped uint64) {
	return s.stats.socketRead.Load(), s.stats.socketDropped.Load()
}

// SetClockSkew adds d to every reading of the server's clock (clock.go),
// as a clock that disagrees with the timers would; the returned func
// restores it.
func SetClockSkew(d time.Duration) (restore func()) {
	old := clockSkew.Swap(int64(d))
	return func() { clockSkew.Store(old) }
}

// SetAuthDelayStep sets authDelayStep (authlimit.go) for a test, before
// its server starts; the returned func restores it.
func SetAuthDelayStep(d time.Duration) (restore func()) {
	old := authDelayStep
	authDelayStep = d
	return func() { authDelayStep = old }
}

// SetRefusalHold sets refusalHold (refusal.go) for a test, before its
// server starts; the returned func restores it.
func SetRefusalHold(d time.Duration) (restore func()) {
	old := refusalHold
	refusalHold = d
	return func() { refusalHold = old }
}

// SetMaxTenantHeld sets maxTenantHeld (refusal.go) for a test, before its
// server starts; the returned func restores it.
func SetMaxTenantHeld(n int64) (restore func()) {
	old := maxTenantHeld
	maxTenantHeld = n
	return func() { maxTenantHeld = old }
}

// AuthTimers reports the timers of delayed failed-HELLO answers armed
// and neither stopped nor done handing their answer to the loop
// (authlimit.go, authAnswer).
func (s *Server) AuthTimers() int64 { return s.authTimers.Load() }

// SetAuthFiredHook makes fn run on every delayed failed-HELLO answer's
// timer when it fires, before the answer is sent (nil: none).
func (s *Server) SetAuthFiredHook(fn func()) {
	if fn == nil {
		s.authFiredHook.Store(nil)
		return
	}
	s.authFiredHook.Store(&fn)
}
