package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/phext/sq/phext"
)

// closeMany closes ps (the phexts of tenants being shut down: Store.Close,
// RemoveTenant) and forgets them; the dirty ones are checkpointed as one
// batch (checkpointClosing), not one by one: at 10,000 written phexts one
// snapshot fsync, log fsync, rename and directory fsync each made Close
// outlast a 30 s stop. Phexts another goroutine is closing are waited for.
func (s *Store) closeMany(ps []*pfile) error {
	var mine, others []*pfile
	for _, p := range ps {
		if p.state.Load() == stateOpening {
			<-p.opened
		}
		if p.state.CompareAndSwap(stateReady, stateClosing) {
			mine = append(mine, p)
		} else {
			others = append(others, p)
		}
	}
	var dirty []*pfile
	for _, p := range mine {
		p.drain()
		if p.dirty() {
			dirty = append(dirty, p)
		}
	}
	ckErrs := s.checkpointClosing(dirty)
	var errs []error
	for i, p := range mine {
		if err := p.finishClose(ckErrs[p]); err != nil {
			errs = append(errs, err)
		}
		p.t.forget(p)
		mine[i] = nil
	}
	for _, p := range others {
		<-p.gone
	}
	return errors.Join(errs...)
}

// closeCkpt is one phext of a batched checkpoint.
type closeCkpt struct {
	p        *pfile
	dir      string // its data dir
	fsKey    uint64 // the device of its data dir: one syncfs per device
	covers   uint64
	id       walID
	dev, ino uint64
	wrote    bool // the temp file exists
	err      error
}

// checkpointClosing checkpoints ps (closing: drained, so no writer changes
// them; dirty) as one batch, with the same crash order as a checkpoint
// (pfile.checkpoint) but one sync per step for all of them:
//
//	B. write every <name>.phext.tmp (in parallel, no fsync each);
//	   make them durable: one syncfs per file system (an FS without
//	   FSSyncer: an fsync of each file);
//	C. log every checkpoint record (size, hash, device, inode, covers)
//	   in one group with one log fsync;
//	D. rename every temp file over its snapshot; make the renames
//	   durable: one syncfs per file system (else an fsync per data dir).
//
// A phext is clean only when all of it succeeded for it; otherwise it
// keeps its records in the log (finishClose pins them, the next Open
// replays them). It returns the error of each phext that failed.
func (s *Store) checkpointClosing(ps []*pfile) map[*pfile]error {
	if len(ps) == 0 {
		return nil
	}
	errs := make(map[*pfile]error)
	cks := make([]closeCkpt, 0, len(ps))
	for _, p := range ps {
		// No other checkpoint of p runs until the batch ends.
		p.cmu.Lock()
		p.fmu.Lock()
		if p.oldestGen != 0 && p.state.Load() == stateClosing {
			cks = append(cks, closeCkpt{p: p, dir: filepath.Dir(p.path), fsKey: p.t.dirID.dev, covers: p.lastLSN})
		}
		p.fmu.Unlock()
	}
	defer func() {
		for _, p := range ps {
			p.cmu.Unlock()
		}
	}()
	fail := func(c *closeCkpt, err error) {
		if c.err == nil {
			c.err = fmt.Errorf("store: checkpoint %s: %w", c.p.path, err)
		}
	}
	// Handles on each file system, opened before the writes: syncfs
	// reports the write-back errors since its descriptor was opened.
	handles := map[uint64]FSSync{}
	herr := map[uint64]error{}
	whole := true
	for i := range cks {
		c := &cks[i]
		if _, ok := handles[c.fsKey]; ok || herr[c.fsKey] != nil {
			continue
		}
		h, err := s.fs.(statFS).OpenFSSync(c.dir)
		if errors.Is(err, errNoFSSync) {
			whole = false
			break
		}
		if err != nil {
			herr[c.fsKey] = err
			continue
		}
		handles[c.fsKey] = h
	}
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	if !whole {
		for _, h := range handles {
			h.Close()
		}
		clear(handles)
		clear(herr)
	}
	syncAll := func(step string) {
		for k, h := range handles {
			if herr[k] != nil {
				continue
			}
			if err := h.Sync(); err != nil {
				herr[k] = fmt.Errorf("%s: %w", step, err)
			}
		}
		for i := range cks {
			if err := herr[cks[i].fsKey]; err != nil {
				fail(&cks[i], err)
			}
		}
	}

	// B. The temp files.
	parallel(len(cks), func(i int) {
		c := &cks[i]
		if c.err != nil {
			return
		}
		p := c.p
		p.mu.RLock()
		id, dev, ino, err := p.writeDocX(p.tmpPath, func(fn func(phext.Coordinate, []byte)) {
			walkDoc(p.base, p.index, p.ov, p.frozen, fn)
		}, !whole)
		p.mu.RUnlock()
		if err != nil {
			c.err = err
			return
		}
		c.id, c.dev, c.ino, c.wrote = id, dev, ino, true
	})
	if whole {
		syncAll("syncfs of the snapshots")
	}
	drop := func(c *closeCkpt) {
		if c.wrote {
			_ = s.fs.Remove(c.p.tmpPath)
			c.wrote = false
		}
	}

	// C. One group of checkpoint records, one fsync.
	items := make([]ckptItem, 0, len(cks))
	for i := range cks {
		c := &cks[i]
		if c.err != nil {
			drop(c)
			continue
		}
		items = append(items, ckptItem{dir: c.p.t.dir, name: c.p.key, payload: ckptPayload(c.dev, c.ino, c.covers, c.id, c.p.snapID)})
	}
	if len(items) > 0 {
		if err := s.wlog.commitCkpts(items); err != nil {
			for i := range cks {
				if cks[i].err == nil {
					fail(&cks[i], err)
					drop(&cks[i])
				}
			}
		}
	}

	// D. Renames, then one sync of each file system (or dir).
	for i := range cks {
		c := &cks[i]
		if c.err != nil {
			continue
		}
		if checkpointHook != nil {
			checkpointHook(c.p)
		}
		if err := s.fs.Rename(c.p.tmpPath, c.p.path); err != nil {
			fail(c, err)
			drop(c)
			continue
		}
		c.wrote = false
		// The snapshot on disk is the new one from here, durable or not.
		c.p.snapExists.Store(true)
		c.p.snapID = c.id
	}
	if whole {
		syncAll("syncfs after the renames")
	} else {
		dirs := map[string][]int{}
		var order []string
		for i := range cks {
			if cks[i].err == nil {
				if _, ok := dirs[cks[i].dir]; !ok {
					order = append(order, cks[i].dir)
				}
				dirs[cks[i].dir] = append(dirs[cks[i].dir], i)
			}
		}
		parallel(len(order), func(j int) {
			if err := s.fs.SyncDir(order[j]); err != nil {
				for _, i := range dirs[order[j]] {
					fail(&cks[i], fmt.Errorf("fsync dir: %w", err))
				}
			}
		})
	}

	// E. Clean: the snapshots cover every record.
	for i := range cks {
		c := &cks[i]
		s.countClose(c.err)
		if c.err != nil {
			errs[c.p] = c.err
			continue
		}
		c.p.fmu.Lock()
		c.p.oldestGen = 0
		c.p.logBytes.Store(0)
		c.p.fmu.Unlock()
		s.markClean(c.p)
	}
	return errs
}

// countClose counts a batched checkpoint of one phext as done or failed.
func (s *Store) countClose(err error) {
	if err == nil {
		s.compactions.Add(1)
	} else {
		s.compactFailures.Add(1)
	}
}

// parallel runs fn(0..n-1) on up to closeParallelism goroutines.
func parallel(n int, fn func(i int)) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
	)
	for range min(n, closeParallelism) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}
