package server

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
