package store

import (
	"errors"
	"fmt"
	"os"
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
	putIndex   *index // a Put's index of text, built before it is queued
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
	clear(b.recs) // a Put's index is not kept alive by a pooled batch
	b.buf, b.recs = b.buf[:0], b.recs[:0]
	b.always, b.done, b.err = false, nil, nil
	batchPool.Put(b)
}

// brec is one record of a batch: its payload is buf[lo:hi].
type brec struct {
	kind    byte
	c       phext.Coordinate
	lo, hi  int
	reserve int64  // quota held until applied
	idx     *index // a Put's index of its payload (op.putIndex)
	n       int    // result, set when applied
	lsn     uint64 // its LSN, set when logged
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
	b.recs = append(b.recs, brec{kind: o.kind, c: o.c, lo: lo, hi: len(b.buf), reserve: g, idx: o.putIndex})
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
	err := p.logBatch(b)
	if err == nil {
		p.mu.Lock()
		for i := range b.recs {
			r := &b.recs[i]
			n, d := p.applyIndexed(r.kind, r.c, b.buf[r.lo:r.hi], r.idx)
			r.n = n
			t.used.Add(d)
			p.publish(r.kind, r.c, r.lsn)
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
	p.t.s.maybeRotate()
}

// logBatch commits b's records to the worker log (fmu held), creating the
// empty snapshot first when the phext has none (so that it is listed and
// readable by other tools; recovery recreates it if it is lost).
func (p *pfile) logBatch(b *batch) error {
	if p.state.Load() == stateClosed {
		return ErrClosed
	}
	if !p.snapExists.Load() {
		if err := p.createSnapshot(); err != nil {
			return err
		}
	}
	if err := p.awaitLoopRound(b.always); err != nil {
		return err
	}
	items := p.items[:0]
	off := 0
	if base := p.baseItem(); base != nil {
		items = append(items, logItem{kind: opCkpt, payload: base, base: true})
		off = 1
	}
	for i := range b.recs {
		r := &b.recs[i]
		items = append(items, logItem{kind: r.kind, c: r.c, payload: b.buf[r.lo:r.hi]})
	}
	last, gen, err := p.t.s.wlog.commit(p.t.dir, p.key, items, b.always, p.lastLSN)
	for i := range b.recs {
		b.recs[i].lsn = items[i+off].lsn
	}
	clear(items)
	p.items = items[:0]
	if err != nil {
		return err
	}
	p.llog, p.lround = p.t.s.wlog, 0
	p.logged(last, gen, len(b.buf))
	return nil
}

// awaitLoopRound (fmu held) waits until the event loop round holding p's
// latest record, in another log than the worker's, has written it, so
// that p's next record never reaches a file before it (a crash of the
// process could otherwise keep the later record and lose the earlier).
// sync (mode always: a tenant switched from everysec or no): when p has
// records in loop logs not known durable (loopRecs), every loop log is
// made durable too, so that the acknowledged write never follows a record
// a power loss may take (recovery would stop the phext there, chainCut).
// Every loop log, not only p's latest one: p's earlier records may sit in
// another loop log (in the kernel, since the later records followed
// them), even when its latest record is the worker log's. Only the first
// always write after loop writes pays this.
func (p *pfile) awaitLoopRound(sync bool) error {
	if q := p.llog; q != nil && q != p.t.s.wlog {
		q.awaitRound(p.lround)
	}
	if !sync || !p.loopRecs {
		return nil
	}
	for _, l := range p.t.s.loopLogs {
		if err := l.sync(); err != nil {
			return err
		}
	}
	p.loopRecs = false
	return nil
}

// createSnapshot creates the empty snapshot of a new phext (fmu held).
func (p *pfile) createSnapshot() error {
	f, err := p.t.s.fs.OpenFile(p.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o640)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			// Someone else created it since we opened: refuse rather than
			// write over what they put there.
			return fmt.Errorf("store: create %s: %w (created outside the store while it was open)", p.path, err)
		}
		return fmt.Errorf("store: create %s: %w", p.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store: create %s: %w", p.path, err)
	}
	p.snapExists.Store(true)
	return nil
}

// closeHow says why a phext is closed (today every close does the same
// work).
type closeHow uint8

// closeEvict: LRU eviction, or a reopen after a failure.
const closeEvict closeHow = 0

// close flushes pending writes, checkpoints the phext when the logs hold
// records its snapshot does not cover (so that a closed phext is always
// self-contained: its data dir can be copied or moved, and the next open
// only maps it), and unmaps the snapshot. The caller moved state to
// stateClosing. A failed checkpoint pins the logs (Store.pin): the records
// stay there until the next Open replays them.
func (p *pfile) close(how closeHow) error {
	_ = how
	p.drain()
	var err error
	if p.dirty() {
		var did bool
		did, err = p.checkpoint()
		p.countCompaction(did, err)
	}
	return p.finishClose(err)
}

// drain refuses further writes (closing) and waits until the pending ones
// were logged and applied (state is stateClosing).
func (p *pfile) drain() {
	p.qmu.Lock()
	p.closing = true
	for p.flushing {
		p.idle.Wait()
	}
	p.qmu.Unlock()
}

// dirty reports whether the logs hold records of p its snapshot does not
// cover.
func (p *pfile) dirty() bool {
	p.fmu.Lock()
	defer p.fmu.Unlock()
	return p.oldestGen != 0
}

// finishClose ends a close (drained, checkpointed or not: ckErr is the
// checkpoint's error): a phext still holding log generations pins them
// (its records stay until the next Open) and the mapping goes.
func (p *pfile) finishClose(ckErr error) error {
	// A running checkpoint reads the mapping without locks: let it finish.
	p.cmu.Lock()
	defer p.cmu.Unlock()
	p.fmu.Lock()
	defer p.fmu.Unlock()
	if h := p.heldGen(); h != 0 {
		if ckErr == nil {
			ckErr = errors.New("records not checkpointed")
		}
		p.t.s.pin(p, h, ckErr)
	} else {
		p.t.s.markClean(p)
	}
	p.mu.Lock()
	// Readers hold mu shared while they touch the mapping, so none is
	// inside it now.
	p.unmap()
	p.ov = nil
	p.state.Store(stateClosed)
	p.mu.Unlock()
	return ckErr
}
