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
	if !t.prepared.Load() || t.fold || !phext.ValidName(name) || !c.Valid() {
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

// MaxLoopWrite is the largest scroll text TryWrite takes: bigger writes
// copy too much for an event loop and go through the blocking path.
const MaxLoopWrite = 64 << 10

// TryWrite runs one Insert, Update or Delete for a caller that must never
// wait: an event loop. It logs the write with one write() to the WAL (no
// fsync: the everysec syncer or Sync does that), applies it, and stores the
// result in w.N and w.Err, exactly as the blocking method would; ok=true
// then. Validation errors (name, coordinate, scroll, quota) are results
// too. It returns ok=false, with no side effect, whenever answering would
// mean waiting: the tenant is in mode "always" (its writers share a
// blocking fsync), the phext is not open or has no WAL yet (creating files
// fsyncs), a group commit or compaction of it is running, a lock is busy,
// the text is above MaxLoopWrite, or the phext needs repair; the caller
// then takes the blocking path. scratch is a buffer for the encoded record,
// returned for reuse.
//
// Locks are only tried, never waited for: the phext's WAL lock and its
// document lock are held (in that order) across the write() so that the
// record reaches the log before any reader sees it.
func (t *Tenant) TryWrite(w *Write, scratch []byte) (buf []byte, ok bool) {
	// Unprepared (no request yet): fold is not known and the first
	// request's directory read belongs on a worker.
	if !t.prepared.Load() || t.fold || len(w.Text) > MaxLoopWrite || t.durability() == DurabilityAlways {
		return scratch, false
	}
	var o op
	var verr error
	switch w.Kind {
	case WriteInsert, WriteUpdate:
		verr = checkScrollWrite(w.Name, w.Coord, w.Text)
		o = op{kind: opInsert, c: w.Coord, text: w.Text}
		if w.Kind == WriteUpdate {
			o.kind = opUpdate
		}
	case WriteDelete:
		if !phext.ValidName(w.Name) {
			verr = ErrBadName
		} else if !w.Coord.Valid() {
			verr = ErrBadCoord
		}
		o = op{kind: opDelete, c: w.Coord}
	default:
		return scratch, false
	}
	if verr != nil {
		w.N, w.Err = 0, verr
		return scratch, true
	}
	if !t.mu.TryRLock() {
		return scratch, false
	}
	if t.closed {
		t.mu.RUnlock()
		return scratch, false
	}
	p := t.files[string(w.Name)]
	t.mu.RUnlock()
	if p == nil || p.state.Load() != stateReady || p.broken.Load() || !p.snapExists.Load() {
		return scratch, false
	}
	if !p.fmu.TryLock() {
		return scratch, false
	}
	if p.state.Load() != stateReady || p.broken.Load() {
		p.fmu.Unlock()
		return scratch, false
	}
	if !p.mu.TryLock() {
		p.fmu.Unlock()
		return scratch, false
	}
	if !p.qmu.TryLock() {
		p.mu.Unlock()
		p.fmu.Unlock()
		return scratch, false
	}
	if p.flushing || p.cur != nil || p.closing {
		// Writes are queued for a group commit: this one must follow them.
		p.qmu.Unlock()
		p.mu.Unlock()
		p.fmu.Unlock()
		return scratch, false
	}
	if err := p.checkSnapshotSize(&o); err != nil {
		p.qmu.Unlock()
		p.mu.Unlock()
		p.fmu.Unlock()
		w.N, w.Err = 0, err
		return scratch, true
	}
	g := max(p.growth(&o), 0)
	p.qmu.Unlock()
	// From here the write is answered on the loop.
	if o.kind == opDelete && len(p.lookup(o.c)) == 0 {
		p.mu.Unlock()
		p.fmu.Unlock()
		w.N, w.Err = 0, nil
		return scratch, true
	}
	if err := t.reserve(g); err != nil {
		p.mu.Unlock()
		p.fmu.Unlock()
		w.N, w.Err = 0, err
		return scratch, true
	}
	// Durability order as in writeBatch: logged, then applied.
	lsn, gen, logged, err := t.s.wlog.tryAppend(t.dir, p.key, p.baseItem(), logItem{kind: o.kind, c: o.c, payload: o.text})
	if !logged {
		if g > 0 {
			t.reserved.Add(-g)
		}
		p.mu.Unlock()
		p.fmu.Unlock()
		return scratch, false
	}
	n := 0
	if err == nil {
		p.logged(lsn, gen, logRecHeader+logFixed+len(p.key)+len(o.text))
		var d int64
		n, d = p.apply(o.kind, o.c, o.text)
		t.used.Add(d)
		p.publish(o.kind, o.c, lsn)
	}
	if g > 0 {
		t.reserved.Add(-g)
	}
	need := err == nil && p.needCompact()
	p.mu.Unlock()
	p.fmu.Unlock()
	if need {
		p.compactAsync()
	}
	if err == nil {
		t.s.maybeRotate()
	}
	p.touch()
	w.N, w.Err = n, err
	return scratch, true
}
