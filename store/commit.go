package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/phext/sq/phext"
)

// op is one validated write.
type op struct {
	kind       byte
	c          phext.Coordinate
	text       []byte
	putScrolls int
	putBytes   int64
}

// batch is a group of records written with one write() (and one fsync in
// always mode), then applied in log order.
type batch struct {
	buf     []byte
	recs    []brec
	always  bool // some writer wants an fsync before its acknowledgement
	done    chan struct{}
	err     error        // set before done is closed
	waiters atomic.Int32 // writers yet to read their result; the last one recycles the batch
}

// batchPool recycles batches (their buffers) between group commits.
var batchPool = sync.Pool{New: func() any { return new(batch) }}

// maxPooledBatch: larger buffers (a big Put) are dropped, not pooled.
const maxPooledBatch = 1 << 20

func getBatch() *batch {
	b := batchPool.Get().(*batch)
	b.done = make(chan struct{})
	return b
}

// release is called by each writer once it has read its result.
func (b *batch) release() {
	if b.waiters.Add(-1) != 0 {
		return
	}
	if cap(b.buf) > maxPooledBatch {
		return
	}
	b.buf, b.recs = b.buf[:0], b.recs[:0]
	b.always, b.done, b.err = false, nil, nil
	batchPool.Put(b)
}

// brec is one record of a batch: its payload is buf[lo:hi].
type brec struct {
	kind    byte
	c       phext.Coordinate
	lo, hi  int
	reserve int64 // quota held until applied
	n       int   // result, set when applied
}

// growth is the quota a write needs, computed against the applied state
// (read lock and qmu held). While a Put is pending the applied state says
// little about the result, so the whole text counts.
func (p *pfile) growth(o *op) int64 {
	switch o.kind {
	case opInsert:
		return int64(len(o.text)) + p.newScrollCharge(o)
	case opUpdate:
		if p.putPending > 0 {
			return int64(len(o.text)) + p.newScrollCharge(o)
		}
		return int64(len(o.text)-len(p.lookup(o.c))) + p.newScrollCharge(o)
	case opPut:
		if p.putPending > 0 {
			return putCharge(o)
		}
		return putCharge(o) - p.charge()
	}
	return 0
}

// submit queues o on the pending batch and waits until that batch was
// logged and applied. retry means p is closing: get it again.
func (p *pfile) submit(o *op) (n int, retry bool, err error) {
	b, idx, leader, retry, n, err := p.enqueue(o)
	if b == nil {
		return n, retry, err
	}
	if leader {
		p.runFlush(b)
	}
	n, err = b.wait(idx)
	return n, false, err
}

// enqueue queues o on the pending batch and returns it with o's index.
// leader means the caller found no flusher and must call runFlush(b) (it
// may queue more records first: they join the same batch). A nil batch
// means o needs no log record or failed: n and err are its result, or
// retry says p is closing.
func (p *pfile) enqueue(o *op) (b *batch, idx int, leader, retry bool, n int, err error) {
	t := p.t
	always := t.durability() == DurabilityAlways
	p.mu.RLock()
	if p.state.Load() == stateClosed {
		p.mu.RUnlock()
		return nil, 0, false, true, 0, nil
	}
	p.qmu.Lock()
	if p.closing || p.broken.Load() {
		p.qmu.Unlock()
		p.mu.RUnlock()
		return nil, 0, false, true, 0, nil
	}
	if o.kind == opDelete && !p.flushing && len(p.lookup(o.c)) == 0 {
		// Nothing pending and nothing there: no need to log (and no files
		// are created for a delete on a phext that does not exist).
		p.qmu.Unlock()
		p.mu.RUnlock()
		return nil, 0, false, false, 0, nil
	}
	if err := p.checkSnapshotSize(o); err != nil {
		p.qmu.Unlock()
		p.mu.RUnlock()
		return nil, 0, false, false, 0, err
	}
	g := max(p.growth(o), 0)
	if err := t.reserve(g); err != nil {
		p.qmu.Unlock()
		p.mu.RUnlock()
		return nil, 0, false, false, 0, err
	}
	b = p.cur
	if b == nil {
		b = getBatch()
		p.cur = b
	}
	b.waiters.Add(1)
	idx = len(b.recs)
	lo := len(b.buf) + recHeaderSize + recFixed
	b.buf = appendRecord(b.buf, o.kind, o.c, o.text)
	b.recs = append(b.recs, brec{kind: o.kind, c: o.c, lo: lo, hi: len(b.buf), reserve: g})
	b.always = b.always || always
	if o.kind == opPut {
		p.putPending++
	}
	leader = !p.flushing
	if leader {
		p.flushing = true
	}
	p.qmu.Unlock()
	p.mu.RUnlock()
	return b, idx, leader, false, 0, nil
}

// wait blocks until b was logged and applied and returns the result of its
// record idx; each enqueued record is waited for exactly once.
func (b *batch) wait(idx int) (int, error) {
	<-b.done
	n, err := b.recs[idx].n, b.err
	b.release()
	return n, err
}

// runFlush writes pending batches until none is left. The writer that found
// no flusher runs it until its own batch is done, then hands the rest to a
// new goroutine so its own reply is not delayed by later writers.
func (p *pfile) runFlush(mine *batch) {
	for {
		p.qmu.Lock()
		b := p.cur
		if b == nil {
			p.flushing = false
			p.idle.Broadcast()
			p.qmu.Unlock()
			return
		}
		if mine == nil {
			p.cur = nil
		} else if mine.isDone() {
			p.qmu.Unlock()
			go p.runFlush(nil)
			return
		} else {
			p.cur = nil
		}
		p.qmu.Unlock()
		p.writeBatch(b)
	}
}

func (b *batch) isDone() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// writeBatch logs b, applies it on success, releases its quota and wakes
// its writers.
func (p *pfile) writeBatch(b *batch) {
	t := p.t
	puts := 0
	for i := range b.recs {
		if b.recs[i].kind == opPut {
			puts++
		}
	}
	p.fmu.Lock()
	// Durability order: the records reach the log (and the disk in always
	// mode) before any reader can see them; a failed write applies nothing.
	err := p.appendLocked(b.buf, b.always)
	if err == nil {
		p.mu.Lock()
		for i := range b.recs {
			r := &b.recs[i]
			n, d := p.apply(r.kind, r.c, b.buf[r.lo:r.hi])
			r.n = n
			t.used.Add(d)
			p.publish(r.kind, r.c)
		}
		p.mu.Unlock()
	}
	for i := range b.recs {
		if g := b.recs[i].reserve; g > 0 {
			t.reserved.Add(-g)
		}
	}
	need := err == nil && p.needCompact()
	p.fmu.Unlock()
	if puts > 0 {
		p.qmu.Lock()
		p.putPending -= puts
		p.qmu.Unlock()
	}
	b.err = err
	close(b.done)
	if need {
		p.compactAsync()
	}
}

// appendLocked appends buf to the WAL (fmu held), creating it on first use,
// and fsyncs when sync is set. On failure the WAL is cut back to where it
// was, so that a reopen does not replay records whose writers saw an error.
func (p *pfile) appendLocked(buf []byte, sync bool) error {
	if p.broken.Load() {
		return errWALSuspect
	}
	if p.state.Load() == stateClosed {
		return ErrClosed
	}
	if p.suspect.Load() {
		// An earlier fsync failed: first put the state held in memory on
		// disk again, in new files, or refuse the write.
		if err := p.rewriteLocked(); err != nil {
			return fmt.Errorf("%w: %w", errWALSuspect, err)
		}
	}
	if p.wal == nil {
		if err := p.createWAL(); err != nil {
			return err
		}
	}
	if p.needReset {
		// Open found a WAL its snapshot already covers but could not make
		// the snapshot's rename durable; do both before logging more.
		if err := p.t.s.fs.SyncDir(filepath.Dir(p.path)); err != nil {
			return fmt.Errorf("store: fsync dir of %s: %w", p.path, err)
		}
		if err := p.resetWAL(); err != nil {
			p.broken.Store(true)
			return err
		}
		p.needReset = false
	}
	pre := p.walSize
	n, err := p.wal.Write(buf)
	if err == nil && n != len(buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		if terr := p.wal.Truncate(pre); terr != nil {
			p.broken.Store(true)
		}
		return fmt.Errorf("store: append to %s: %w", p.walPath, err)
	}
	p.walSize += int64(n)
	g := p.wgen.Add(1)
	if !sync {
		return nil
	}
	if err := p.wal.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped dirty pages, so
		// what the disk holds is unknown: never pretend durability. Undo
		// the append (nothing of it was applied) and rewrite the state
		// from memory before the next write (PostgreSQL's fsync lesson).
		_ = p.wal.Truncate(pre)
		p.walSize = pre
		p.suspect.Store(true)
		return fmt.Errorf("store: fsync %s: %w", p.walPath, err)
	}
	// A WAL created in mode "no" (the tenant switched to a syncing mode
	// since) has a directory entry that was never made durable.
	if err := p.syncDirLocked(); err != nil {
		p.suspect.Store(true)
		return err
	}
	p.synced(g)
	return nil
}

// synced records that WAL writes up to generation g are durable.
func (p *pfile) synced(g uint64) {
	for {
		s := p.sgen.Load()
		if s >= g || p.sgen.CompareAndSwap(s, g) {
			return
		}
	}
}

// dirty reports whether the WAL was written since its last fsync.
func (p *pfile) dirty() bool { return p.wgen.Load() > p.sgen.Load() }

// syncDirLocked fsyncs the data dir if files were created in it without
// that (mode "no"); fmu held.
func (p *pfile) syncDirLocked() error {
	if !p.dirSync {
		return nil
	}
	if err := p.t.s.fs.SyncDir(filepath.Dir(p.path)); err != nil {
		return fmt.Errorf("store: fsync dir of %s: %w", p.path, err)
	}
	p.dirSync = false
	return nil
}

// createWAL creates the snapshot (empty, when missing, so that the phext is
// listed and readable by other tools) and the WAL with its header (fmu held).
func (p *pfile) createWAL() error {
	fs := p.t.s.fs
	dir := filepath.Dir(p.path)
	if !p.snapExists.Load() {
		f, err := fs.OpenFile(p.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o640)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				// Someone else created it since we opened: reopen to see it.
				p.broken.Store(true)
			}
			return fmt.Errorf("store: create %s: %w", p.path, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("store: create %s: %w", p.path, err)
		}
		p.snapExists.Store(true)
	}
	f, err := fs.OpenFile(p.walPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND|noFollow, 0o640)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", p.walPath, err)
	}
	p.wal = f
	// In mode "no" the OS decides when the new files reach the disk; Sync,
	// compaction and Close fsync them (directory included).
	lazy := p.t.durability() == DurabilityNo
	if err := p.resetWALSync(!lazy); err != nil {
		p.wal = nil
		f.Close()
		return err
	}
	if lazy {
		p.dirSync = true
		return nil
	}
	if err := fs.SyncDir(dir); err != nil {
		p.wal = nil
		f.Close()
		return fmt.Errorf("store: fsync dir %s: %w", dir, err)
	}
	return nil
}

// syncWAL fsyncs the WAL if it was written since the last fsync. The fsync
// runs without fmu, so the flusher keeps writing meanwhile (like Redis'
// background fsync); an *os.File may be fsynced while another goroutine
// writes or closes it. Only a completed fsync advances sgen, so a close
// that races it still sees the WAL dirty and fsyncs it itself.
func (p *pfile) syncWAL() error {
	p.fmu.Lock()
	f := p.wal
	g := p.wgen.Load()
	if f == nil || g <= p.sgen.Load() || p.state.Load() == stateClosed {
		p.fmu.Unlock()
		return nil
	}
	if p.broken.Load() || p.suspect.Load() {
		p.fmu.Unlock()
		return errWALSuspect
	}
	dirSync := p.dirSync
	p.fmu.Unlock()
	if err := f.Sync(); err != nil {
		if errors.Is(err, os.ErrClosed) {
			// Closed meanwhile: close fsynced it, since sgen had not
			// reached g.
			return nil
		}
		return p.fsyncFailed(f, err)
	}
	if dirSync {
		p.fmu.Lock()
		err := p.syncDirLocked()
		p.fmu.Unlock()
		if err != nil {
			return err // sgen stays behind: tried again next round
		}
	}
	p.synced(g)
	return nil
}

// fsyncFailed handles a failed background fsync of WAL f (nil: a syncfs
// of its file system): the phext becomes suspect and the state in memory
// is written to new files at once, since acknowledged everysec writes may
// be gone from the disk.
func (p *pfile) fsyncFailed(f File, err error) error {
	p.fmu.Lock()
	defer p.fmu.Unlock()
	if p.wal == nil || (f != nil && p.wal != f) || p.state.Load() == stateClosed {
		// Closed or replaced by a rewrite meanwhile; close fsynced it.
		return nil
	}
	p.suspect.Store(true)
	werr := fmt.Errorf("store: fsync %s: %w", p.walPath, err)
	if rerr := p.rewriteLocked(); rerr != nil {
		return errors.Join(werr, rerr)
	}
	return werr
}

// closeHow says how much work a close does.
type closeHow uint8

const (
	// closeEvict: LRU eviction; fsyncs unless the tenant's mode is "no".
	closeEvict closeHow = iota
	// closeSync: RemoveTenant; always fsyncs.
	closeSync
	// closeCompact: Store.Close; fsyncs and compacts where cheap.
	closeCompact
)

// close flushes pending writes, optionally compacts, fsyncs and closes the
// WAL and unmaps the snapshot. The caller moved state to stateClosing.
func (p *pfile) close(how closeHow) error {
	p.qmu.Lock()
	p.closing = true
	for p.flushing {
		p.idle.Wait()
	}
	p.qmu.Unlock()

	// A running checkpoint reads the mapping without locks: let it finish.
	p.cmu.Lock()
	defer p.cmu.Unlock()
	p.fmu.Lock()
	defer p.fmu.Unlock()
	var errs []error
	if how == closeCompact && !p.broken.Load() && p.wal != nil && p.walSize > walHeaderSize &&
		(len(p.base) <= cheapCompactBytes || p.needCompact()) {
		if err := p.compactLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	if p.wal != nil {
		if p.suspect.Load() && !p.broken.Load() {
			// Closing must not leave the page cache as the only copy.
			if err := p.rewriteLocked(); err != nil {
				errs = append(errs, err)
			}
		}
		if !p.broken.Load() && !p.suspect.Load() && p.dirty() && (how != closeEvict || p.t.durability() != DurabilityNo) {
			g := p.wgen.Load()
			if err := p.wal.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("store: fsync %s: %w", p.walPath, err))
			} else if err := p.syncDirLocked(); err != nil {
				errs = append(errs, err)
			} else {
				p.synced(g)
			}
		}
		if err := p.wal.Close(); err != nil {
			errs = append(errs, err)
		}
		p.wal = nil
	}
	p.mu.Lock()
	// Readers hold mu shared while they touch the mapping, so none is
	// inside it now.
	p.unmap()
	p.ov = nil
	p.state.Store(stateClosed)
	p.mu.Unlock()
	return errors.Join(errs...)
}
