package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/phext/sq/phext"
)

// checkpoint writes the phext's document to a new snapshot without making
// its writers wait for the serialization: the overlay is frozen and
// written out from that frozen view (base + frozen overlay, immutable
// meanwhile) while later writes keep going to the log and into a fresh
// overlay. Steps:
//
//	A. (fmu, mu: memory only) freeze: the overlay becomes frozen, a new one
//	   takes the writes; covers = the LSN of the last record applied.
//	B. (no lock) write the frozen document to <name>.phext.tmp, fsync it,
//	   note its device and inode; map and index it.
//	C. (no lock) log a checkpoint record "(dir, phext, device, inode,
//	   covers, size, xxh3)" to the worker log and make it durable (its
//	   fsync runs after the group commit gave the file back:
//	   commitLog.syncWritten).
//	D. (no lock) rename the temp file over the snapshot and fsync the
//	   directory; then (fmu, mu: pointers only) swap the new mapping in and
//	   drop the frozen overlay.
//
// Writers wait only for the freeze and the swap. Recovery takes the latest
// checkpoint record naming the snapshot file on disk, so a crash anywhere
// leaves either the old snapshot (and every record, which the logs keep
// until the checkpoint is durable) or the new one with the records after
// covers. The generations holding the phext's older records are kept
// (ckptHold) until D's directory fsync succeeded. A Put during the
// checkpoint makes its view stale: the switch is abandoned (the snapshot on
// disk is still correct for recovery: its record says what it covers).
//
// did says whether there was anything to checkpoint.
func (p *pfile) checkpoint() (did bool, err error) {
	n, errs := p.t.s.checkpointBatch([]*pfile{p}, batchOne)
	return n > 0, errs[p]
}

// batchMode says how checkpointBatch syncs and ends.
type batchMode uint8

const (
	// batchOne: an fsync of each temp file and of each data dir (one
	// phext: a checkpoint, a compaction).
	batchOne batchMode = iota
	// batchOpen: open phexts (the evictor): one syncfs per file system
	// and step when the FS can, the new snapshots mapped and swapped in.
	batchOpen
	// batchClosing: closing phexts (Close, RemoveTenant): as batchOpen,
	// but nothing is mapped: the phexts are about to be unmapped.
	batchClosing
)

// ckRun is one phext's checkpoint in progress.
type ckRun struct {
	p            *pfile
	hold, covers uint64
	logBytes     int64
	base         []byte
	index        index
	frozen       map[phext.Coordinate][]byte
	copied       int64
	epoch        uint64
	fsKey        uint64 // the device of the data dir: one syncfs each

	nbase    []byte
	nmapped  bool
	nindex   index
	id       walID
	dev, ino uint64
	wrote    bool // the temp file exists
	renamed  bool
	err      error
}

// freeze is step A (cmu held): the overlay becomes frozen, a new one
// takes the writes. nil when there is nothing to checkpoint (err
// errPfileClosed when p is closed).
func (p *pfile) freeze() (*ckRun, error) {
	p.fmu.Lock()
	defer p.fmu.Unlock()
	if p.state.Load() == stateClosed {
		return nil, errPfileClosed
	}
	if p.oldestGen == 0 {
		return nil, nil
	}
	r := &ckRun{p: p, hold: p.oldestGen, covers: p.lastLSN, logBytes: p.logBytes.Load(), fsKey: p.t.dirID.dev}
	p.ckptHold, p.oldestGen = r.hold, 0
	p.logBytes.Store(0)
	p.mu.Lock()
	r.base, r.index, r.frozen = p.base, p.index, p.ov
	p.frozen = r.frozen
	p.ov = make(map[phext.Coordinate][]byte)
	r.copied = p.copied
	p.copied = 0
	p.ckpt = true
	r.epoch = p.epoch
	p.mu.Unlock()
	return r, nil
}

// finish ends the checkpoint: durable says the generations held for the
// frozen records may go; merge puts the frozen overlay back.
func (r *ckRun) finish(durable, merge bool) {
	p, s := r.p, r.p.t.s
	p.fmu.Lock()
	p.mu.Lock()
	if merge && p.epoch == r.epoch {
		for k, v := range r.frozen {
			if _, ok := p.ov[k]; !ok {
				p.ov[k] = v
			}
		}
		p.copied += r.copied
		p.frozen = nil
	}
	p.ckpt = false
	retired := p.retired
	p.retired = nil
	p.mu.Unlock()
	if !durable {
		if p.oldestGen == 0 || r.hold < p.oldestGen {
			p.oldestGen = r.hold
		}
		p.logBytes.Add(r.logBytes)
	}
	p.ckptHold = 0
	if p.oldestGen == 0 {
		s.markClean(p)
	}
	p.fmu.Unlock()
	p.unmapAll(retired)
}

// fail records the first error of r.
func (r *ckRun) fail(err error) {
	if r.err == nil {
		r.err = fmt.Errorf("store: checkpoint %s: %w", r.p.path, err)
	}
}

// abort ends a checkpoint that failed before its rename: the temp file
// goes and the frozen overlay is merged back.
func (r *ckRun) abort() {
	if r.wrote {
		_ = r.p.t.s.fs.Remove(r.p.tmpPath)
		r.wrote = false
	}
	r.finish(false, true)
	if r.nmapped {
		r.p.unmapAll([][]byte{r.nbase})
	}
}

// write is step B: the frozen view to <name>.phext.tmp (fsynced when
// fsync), mapped and indexed unless the phext is closing.
func (r *ckRun) write(fsync, mapIt bool) {
	p := r.p
	scrolls := 0 // what the new snapshot's index will hold
	id, dev, ino, err := p.writeDocX(p.tmpPath, func(fn func(phext.Coordinate, []byte)) {
		walkDoc(r.base, &r.index, r.frozen, nil, func(c phext.Coordinate, text []byte) {
			if len(text) > 0 {
				scrolls++
			}
			fn(c, text)
		})
	}, fsync)
	if err != nil {
		r.fail(err)
		return
	}
	r.id, r.dev, r.ino, r.wrote = id, dev, ino, true
	if r.replaced() {
		// A Put came while the view was written: the new snapshot would be
		// dropped at the swap (end), after its index, record and rename.
		// Stop here, as a checkpoint that failed before its rename.
		r.fail(errReplaced)
		return
	}
	if mapIt {
		// A checkpoint of an unchanged document (the first after a Put)
		// writes back its bytes, less any trailing breaks: its index
		// serves the new mapping.
		var prev *index
		if len(r.frozen) == 0 {
			prev = &r.index
		}
		r.nbase, r.nmapped, r.nindex, _, err = mapSnapshot(p.t.s.fs, p.tmpPath, false, scrolls, prev, r.base)
		if err != nil {
			r.fail(err)
		}
	}
}

// replaced reports whether a Put replaced the document since r froze it.
func (r *ckRun) replaced() bool {
	r.p.mu.RLock()
	defer r.p.mu.RUnlock()
	return r.p.epoch != r.epoch
}

// rename is step D's rename: from here the snapshot on disk is the new one.
func (r *ckRun) rename() {
	p := r.p
	if err := p.t.s.fs.Rename(p.tmpPath, p.path); err != nil {
		r.fail(err)
		return
	}
	r.wrote, r.renamed = false, true
	p.snapExists.Store(true)
	p.snapID = r.id
}

// end ends a renamed checkpoint; derr is the failure to make the rename
// durable (the older generations then stay: a power loss could bring the
// old snapshot back). swap puts the new mapping in place.
func (r *ckRun) end(derr error, swap bool) error {
	p := r.p
	if !swap {
		r.finish(derr == nil, false)
		return derr
	}
	p.fmu.Lock()
	p.mu.Lock()
	stale := p.epoch != r.epoch || p.state.Load() == stateClosed
	if stale {
		p.mu.Unlock()
		p.fmu.Unlock()
		if r.nmapped {
			p.unmapAll([][]byte{r.nbase})
		}
		r.finish(false, false)
		if derr != nil {
			return derr
		}
		return fmt.Errorf("store: checkpoint %s: %w", p.path, errReplaced)
	}
	oldBase, oldMapped := p.base, p.mapped
	p.base, p.mapped, p.index = r.nbase, r.nmapped, r.nindex
	p.frozen = nil
	p.mu.Unlock()
	p.fmu.Unlock()
	// Readers copy out of the mapping under the read lock, so no slice into
	// the old mapping survives the exclusive section above.
	if oldMapped {
		p.mu.Lock()
		p.retired = append(p.retired, oldBase)
		p.mu.Unlock()
	}
	r.finish(derr == nil, false)
	return derr
}

// checkpointBatch checkpoints ps (see checkpoint for the steps) as one
// batch: each step runs for all of them before the next starts, so that
// one sync serves the batch where mode allows (one syncfs per file system
// for the temp files and for the renames; always one log group and fsync
// for all checkpoint records). The crash order of each phext is that of a
// lone checkpoint. It returns how many had anything to checkpoint and the
// error of each that failed (ps that were closed: errPfileClosed).
func (s *Store) checkpointBatch(ps []*pfile, mode batchMode) (did int, errs map[*pfile]error) {
	errs = map[*pfile]error{}
	// cmu: no other checkpoint of these phexts (nor their close) runs
	// until the batch ends. Two batches (the evictor's, a close's) could
	// take two phexts' locks in opposite orders: the evictor only tries
	// them, and skips a phext whose lock is taken (errCkptBusy).
	locked := ps
	if mode == batchOpen {
		locked = make([]*pfile, 0, len(ps))
		for _, p := range ps {
			if p.cmu.TryLock() {
				locked = append(locked, p)
			} else {
				errs[p] = errCkptBusy
			}
		}
		ps = locked
	} else {
		for _, p := range ps {
			p.cmu.Lock()
		}
	}
	defer func() {
		for _, p := range locked {
			p.cmu.Unlock()
		}
	}()
	runs := make([]*ckRun, 0, len(ps))
	for _, p := range ps {
		r, err := p.freeze()
		if err != nil {
			errs[p] = err
		}
		if r != nil {
			runs = append(runs, r)
		}
	}
	if len(runs) == 0 {
		return 0, errs
	}
	// One syncfs per file system and step, through handles opened before
	// the writes (syncfs reports the write-back errors since then).
	var handles map[uint64]FSSync
	if mode != batchOne {
		handles = s.openFSSyncs(runs)
		defer func() {
			for _, h := range handles {
				if h != nil {
					h.Close()
				}
			}
		}()
	}
	whole := handles != nil
	syncAll := func(step string) {
		herr := map[uint64]error{}
		for k, h := range handles {
			if h == nil {
				herr[k] = errors.New("no handle")
			} else if err := h.Sync(); err != nil {
				herr[k] = err
			}
		}
		for _, r := range runs {
			if err := herr[r.fsKey]; err != nil && r.err == nil {
				r.fail(fmt.Errorf("%s: %w", step, err))
			}
		}
	}
	// alive returns the runs without an error, aborting the ones that
	// failed before their rename.
	alive := func() []*ckRun {
		ok := runs[:0]
		for _, r := range runs {
			if r.err == nil {
				ok = append(ok, r)
				continue
			}
			r.abort()
			errs[r.p] = r.err
		}
		return ok
	}
	did = len(runs)

	// B. The temp files.
	parallel(len(runs), batchParallelism(mode), func(i int) {
		if mode == batchOpen && i >= evictCkptUrgent && s.openWaiting.Load() > 0 {
			// Openers wait at the ceiling for this batch's closes: write no
			// more (the rest goes back dirty, see reserveOpen).
			runs[i].err = errCkptCut
			return
		}
		runs[i].write(!whole, mode != batchClosing)
	})
	if whole {
		syncAll("syncfs of the new snapshots")
	}
	if runs = alive(); len(runs) == 0 {
		return did, errs
	}

	// C. The log says which file holds everything up to covers: all the
	// records in one group, one fsync.
	items := make([]ckptItem, len(runs))
	for i, r := range runs {
		items[i] = ckptItem{dir: r.p.t.dir, name: r.p.key, payload: ckptPayload(r.dev, r.ino, r.covers, r.id, r.p.snapID)}
	}
	if err := s.wlog.commitCkpts(items); err != nil {
		for _, r := range runs {
			r.fail(err)
		}
	}
	if checkpointHook != nil {
		for _, r := range runs {
			if r.err == nil {
				checkpointHook(r.p)
			}
		}
	}

	// D. Switch: the renames, made durable.
	for _, r := range runs {
		if r.err == nil {
			r.rename()
		}
	}
	if runs = alive(); len(runs) == 0 {
		return did, errs
	}
	derrs := make(map[*ckRun]error)
	if whole {
		syncAll("syncfs after the renames")
		for _, r := range runs {
			if r.err != nil {
				derrs[r] = r.err
			}
		}
	} else {
		dirs := map[string][]*ckRun{}
		var order []string
		for _, r := range runs {
			d := filepath.Dir(r.p.path)
			if _, ok := dirs[d]; !ok {
				order = append(order, d)
			}
			dirs[d] = append(dirs[d], r)
		}
		var mu sync.Mutex
		parallel(len(order), batchParallelism(mode), func(j int) {
			if err := s.fs.SyncDir(order[j]); err != nil {
				mu.Lock()
				for _, r := range dirs[order[j]] {
					derrs[r] = fmt.Errorf("store: checkpoint %s: fsync dir: %w", r.p.path, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, r := range runs {
		if err := r.end(derrs[r], mode != batchClosing); err != nil {
			errs[r.p] = err
		}
	}
	return did, errs
}

// errCkptBusy: the evictor skipped a phext another checkpoint holds.
var errCkptBusy = errors.New("store: a checkpoint of the phext is running")

// errCkptCut: the evictor cut its batch short for openers waiting at the
// ceiling; the phext is still dirty.
var errCkptCut = errors.New("store: checkpoint left for a later batch")

// batchParallelism is how many goroutines write a batch's temp files.
func batchParallelism(mode batchMode) int {
	switch mode {
	case batchOne:
		return 1
	case batchOpen:
		return evictCkptParallel
	}
	return closeParallelism
}

// openFSSyncs opens a syncfs handle on the file system of each run's data
// dir (nil handle: that one failed to open, its runs fail). nil when the
// FS has no syncfs.
func (s *Store) openFSSyncs(runs []*ckRun) map[uint64]FSSync {
	hs := map[uint64]FSSync{}
	for _, r := range runs {
		if _, ok := hs[r.fsKey]; ok {
			continue
		}
		h, err := s.fs.(statFS).OpenFSSync(r.p.t.dir)
		if errors.Is(err, errNoFSSync) {
			for _, h := range hs {
				if h != nil {
					h.Close()
				}
			}
			return nil
		}
		if err != nil {
			s.log.Warn("store: syncfs handle", "dir", r.p.t.dir, "err", err)
			h = nil
		}
		hs[r.fsKey] = h
	}
	return hs
}

// parallel runs fn(0..n-1) on up to k goroutines (the caller's alone when
// k is 1).
func parallel(n, k int, fn func(i int)) {
	if k <= 1 || n <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(n, k) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// checkpointHook, when set (tests only), runs between steps C and D.
var checkpointHook func(*pfile)

// unmapAll unmaps retired mappings (no lock needed: nothing refers to them).
func (p *pfile) unmapAll(ms [][]byte) {
	for _, m := range ms {
		if err := munmapFile(m); err != nil {
			p.t.s.log.Error("store: munmap", "path", p.path, "err", err)
		}
	}
}
