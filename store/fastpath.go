package store

import "github.com/phext/sq/phext"

// TryAppendSelect is AppendSelect for a caller that must never wait: an
// event loop. It answers only when the phext is already open and both
// locks are free at once, and only for scrolls of at most maxLen bytes;
// otherwise it returns ok=false without side effects and the caller takes
// the blocking path (a worker calling AppendSelect). It never opens a file
// and never waits on a lock. Bad names and coordinates also give ok=false,
// so the blocking path produces the error.
//
// The one wait it cannot rule out is a page fault on a snapshot page the
// kernel evicted (a major fault reads the disk); on a host where the
// snapshots fit in the page cache that does not happen.
func (t *Tenant) TryAppendSelect(dst, name []byte, c phext.Coordinate, maxLen int) ([]byte, bool) {
	if t.fold || !ValidName(name) || !c.Valid() {
		return dst, false
	}
	if !t.mu.TryRLock() {
		return dst, false
	}
	if t.closed {
		t.mu.RUnlock()
		return dst, false
	}
	p := t.files[string(name)]
	t.mu.RUnlock()
	if p == nil || p.state.Load() != stateReady || p.broken.Load() {
		return dst, false
	}
	if !p.mu.TryRLock() {
		return dst, false
	}
	if p.state.Load() != stateReady {
		p.mu.RUnlock()
		return dst, false
	}
	v := p.lookup(c)
	if len(v) > maxLen {
		p.mu.RUnlock()
		return dst, false
	}
	dst = append(dst, v...)
	p.mu.RUnlock()
	p.touch()
	return dst, true
}
