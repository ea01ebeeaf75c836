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

// MaxLoopWrite is the largest scroll text TryApply takes: bigger writes
// copy too much for an event loop and go through the blocking path.
const MaxLoopWrite = 64 << 10

// TryWrite is TryApply for one write in a round of its own, flushed
// before it returns: the result in w is final (logged) when ok. scratch is
// returned unchanged (kept for callers of the earlier signature).
func (t *Tenant) TryWrite(w *Write, scratch []byte) ([]byte, bool) {
	var r LoopRound
	ok, logged := t.TryApply(&r, w)
	if err := r.Flush(); err != nil && logged {
		w.N, w.Err = 0, err
	}
	return scratch, ok
}

// LoopWrites reports whether TryApply may take writes of t at all: not
// when the tenant is in mode "always", nor before its first request (its
// case folding is not known yet, and that request's directory read belongs
// on a worker), nor on a case-folding data dir. An event loop asks before
// decoding a write, so that a write TryApply would decline anyway is
// decoded once, by the worker.
func (t *Tenant) LoopWrites() bool {
	return t.prepared.Load() && !t.fold && t.durability() != DurabilityAlways
}

// TryApply runs one Insert, Update or Delete for a caller that must never
// wait: an event loop. It validates the write, applies it in memory and
// appends its record to the commit log's buffer for round r, storing the
// result in w.N and w.Err exactly as the blocking method would; ok=true
// then. Validation errors (name, coordinate, scroll, quota, size) are
// results too (logged=false). logged=true means the result holds only once
// r.Flush returned nil, which writes the round's records with one write():
// the caller sends no reply of the round before that, and answers each
// logged write with Flush's error if it fails. Readers (and change-feed
// watchers) may see a logged write before Flush, as Redis serves writes
// from memory before its AOF write; a crash of the process before Flush
// loses only writes nobody was answered for.
//
// It returns ok=false, with no side effect, whenever answering would mean
// waiting: the tenant is in mode "always" (its writers share a blocking
// fsync), the phext is not open or has no snapshot file yet (creating
// files fsyncs), a group commit or compaction of it is running, a lock or
// the log is busy, the round's buffer is full, the text is above
// MaxLoopWrite, or the logs are suspect; the caller then takes the
// blocking path (and keeps the request order: nothing of the same client
// after it may be answered in the round).
//
// Locks are only tried, never waited for, and none of the phext's is held
// across a write(): the record is appended and applied under fmu and mu,
// and r holds the log's write side (not a phext lock) until Flush.
func (t *Tenant) TryApply(r *LoopRound, w *Write) (ok, logged bool) {
	if !t.LoopWrites() || len(w.Text) > MaxLoopWrite {
		return false, false
	}
	switch w.Kind {
	case WriteInsert, WriteUpdate, WriteDelete:
	default:
		return false, false
	}
	o, verr := w.check()
	if verr != nil {
		w.N, w.Err = 0, verr
		return true, false
	}
	if !t.mu.TryRLock() {
		return false, false
	}
	if t.closed {
		t.mu.RUnlock()
		return false, false
	}
	p := t.files[string(w.Name)]
	t.mu.RUnlock()
	if p == nil || p.state.Load() != stateReady || p.broken.Load() || !p.snapExists.Load() {
		return false, false
	}
	s := t.s
	l := s.loopLog(r.loop)
	if !r.take(l) {
		return false, false
	}
	if !p.fmu.TryLock() {
		return false, false
	}
	if p.state.Load() != stateReady || p.broken.Load() {
		p.fmu.Unlock()
		return false, false
	}
	if q := p.llog; q != nil && q != l && (q.roundDone.Load() < p.lround || s.suspect.Load() != nil) {
		// The phext's latest record waits in another loop's round: this
		// one must not reach a file first (nor follow one whose write
		// failed).
		p.fmu.Unlock()
		return false, false
	}
	if !p.mu.TryLock() {
		p.fmu.Unlock()
		return false, false
	}
	if !p.qmu.TryLock() {
		p.mu.Unlock()
		p.fmu.Unlock()
		return false, false
	}
	if p.flushing || p.cur != nil || p.closing {
		// Writes are queued for a group commit: this one must follow them.
		p.qmu.Unlock()
		p.mu.Unlock()
		p.fmu.Unlock()
		return false, false
	}
	if err := p.checkSnapshotSize(&o); err != nil {
		p.qmu.Unlock()
		p.mu.Unlock()
		p.fmu.Unlock()
		w.N, w.Err = 0, err
		return true, false
	}
	g := max(p.growth(&o), 0)
	p.qmu.Unlock()
	// A delete looks its scroll up once, here: the write lock is held
	// until it is applied (applyFound).
	var del deleteAt
	if o.kind == opDelete {
		if del = p.findDelete(o.c); del.was == 0 {
			p.mu.Unlock()
			p.fmu.Unlock()
			w.N, w.Err = 0, nil
			return true, false
		}
	}
	if err := t.reserve(g); err != nil {
		p.mu.Unlock()
		p.fmu.Unlock()
		w.N, w.Err = 0, err
		return true, false
	}
	// The first record since a checkpoint puts the phext in the store's
	// dirty set (rotations checkpoint it): dmu is tried too.
	first := p.oldestGen == 0
	if first && !s.dmu.TryLock() {
		t.reserved.Add(-g)
		p.mu.Unlock()
		p.fmu.Unlock()
		return false, false
	}
	lsn, gen, appended := r.appendLoop(t.dir, p.key, p.baseItem(), &logItem{kind: o.kind, c: o.c, payload: o.text}, p.lastLSN)
	if !appended {
		if first {
			s.dmu.Unlock()
		}
		t.reserved.Add(-g)
		p.mu.Unlock()
		p.fmu.Unlock()
		return false, false
	}
	// From here the write is applied; the round's Flush logs it (or fails
	// it, and the repair checkpoints it from memory). No rotation runs
	// before the Flush (r holds the write side), so gen is where it goes.
	if first {
		p.oldestGen = gen
		s.dirtyP[p] = struct{}{}
		s.dmu.Unlock()
	}
	p.lastLSN = lsn
	p.llog, p.lround = l, r.seq
	if l != s.wlog {
		p.loopRecs = true
	}
	p.logBytes.Add(int64(logRecHeader + logFixed + len(p.key) + len(o.text)))
	var n int
	var d int64
	if o.kind == opDelete {
		n, d = p.applyFound(o.c, del)
	} else {
		n, d = p.apply(o.kind, o.c, o.text)
	}
	t.used.Add(d)
	p.publish(o.kind, o.c, lsn)
	if g > 0 {
		t.reserved.Add(-g)
	}
	need := p.needCompact()
	p.mu.Unlock()
	p.fmu.Unlock()
	if need {
		p.compactAsync()
	}
	p.touch()
	w.N, w.Err = n, nil
	return true, true
}
