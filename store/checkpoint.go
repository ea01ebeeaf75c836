package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/phext/sq/phext"
)

// checkpoint writes the phext's document to a new snapshot without making
// its writers wait for the serialization: the overlay is frozen and
// written out from that frozen view (base + frozen overlay, immutable
// meanwhile) while later writes keep going to the WAL and into a fresh
// overlay. Steps:
//
//	A. (fmu, mu: memory only) freeze: the overlay becomes frozen, a new one
//	   takes the writes; cut = the WAL's end.
//	B. (no lock) write the frozen document to <name>.phext.tmp and fsync
//	   it; map and index it; create <name>.phext.wal.ckpt with a header
//	   naming the new snapshot and the WAL records logged since cut (the
//	   writes made meanwhile), fsync it and the directory.
//	C. (fmu) append the records logged since B's copy (mode always: fsync);
//	   rename the temp file over the snapshot, fsync the directory; rename
//	   the new WAL over the old one (mode always: fsync the directory);
//	   swap the new mapping in (mu, pointers only), drop the frozen overlay.
//
// Writers wait only for step C: two renames and a directory fsync between
// them (mode always: plus the new WAL's fsync and a second directory
// fsync; other modes leave those to the syncer's next round), never the
// serialization or the indexing. A crash before C's first rename
// leaves the old snapshot and WAL (the .ckpt WAL names another snapshot and
// is removed on open); after it, the snapshot is the new one and open takes
// the .ckpt WAL (adoptNewWAL). A Put or a rewrite during the checkpoint
// makes its view stale: it is abandoned and the frozen overlay merged back.
//
// did says whether there was anything to checkpoint.
func (p *pfile) checkpoint() (did bool, err error) {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	fs := p.t.s.fs
	dir := filepath.Dir(p.path)

	// A. Freeze.
	p.fmu.Lock()
	if p.state.Load() == stateClosed {
		p.fmu.Unlock()
		return false, errPfileClosed
	}
	if p.broken.Load() || p.suspect.Load() || p.needReset {
		// Repairs run the blocking way (they must hold the WAL anyway).
		did = !p.broken.Load()
		err = p.compactNow()
		p.fmu.Unlock()
		return did, err
	}
	if p.wal == nil || p.walSize <= walHeaderSize {
		p.fmu.Unlock()
		return false, nil
	}
	oldWAL, cut := p.wal, p.walSize
	p.mu.Lock()
	base, index, frozen := p.base, p.index, p.ov
	p.frozen = frozen
	p.ov = make(map[phext.Coordinate][]byte)
	copied := p.copied
	p.copied = 0
	p.ckpt = true
	epoch := p.epoch
	p.mu.Unlock()
	p.fmu.Unlock()

	var (
		newWAL  File
		nbase   []byte
		nmapped bool
	)
	walPath := p.walPath + ckptExt
	abort := func(err error) (bool, error) {
		if newWAL != nil {
			newWAL.Close()
		}
		_ = fs.Remove(p.tmpPath)
		_ = fs.Remove(walPath)
		// copied is read under fmu (needCompact), changed under both.
		p.fmu.Lock()
		p.mu.Lock()
		if p.epoch == epoch {
			// Merge the frozen overlay back under the writes made since.
			for k, v := range frozen {
				if _, ok := p.ov[k]; !ok {
					p.ov[k] = v
				}
			}
			p.copied += copied
			p.frozen = nil
		}
		p.ckpt = false
		retired := p.retired
		p.retired = nil
		p.mu.Unlock()
		p.fmu.Unlock()
		p.unmapAll(retired)
		if nmapped {
			p.unmapAll([][]byte{nbase})
		}
		return true, fmt.Errorf("store: checkpoint %s: %w", p.path, err)
	}

	// B. Write the frozen view out, without locks.
	id, err := p.writeDoc(p.tmpPath, func(fn func(phext.Coordinate, []byte)) {
		walkDoc(base, index, frozen, nil, fn)
	})
	if err != nil {
		return abort(err)
	}
	nbase, nmapped, nindex, _, err := mapSnapshot(fs, p.tmpPath, false)
	if err != nil {
		return abort(err)
	}
	newWAL, err = fs.OpenFile(walPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND|noFollow, 0o640)
	if err != nil {
		return abort(err)
	}
	if _, err := newWAL.Write(appendWALHeader(make([]byte, 0, walHeaderSize), id)); err != nil {
		return abort(err)
	}
	p.fmu.Lock()
	mid := p.walSize
	p.fmu.Unlock()
	// Records in [cut, mid) are complete and stay: a failed append only
	// cuts back what it wrote itself, past mid.
	if err := copyWAL(newWAL, oldWAL, cut, mid); err != nil {
		return abort(err)
	}
	if err := newWAL.Sync(); err != nil {
		return abort(err)
	}
	if err := fs.SyncDir(dir); err != nil {
		return abort(err)
	}

	if checkpointHook != nil {
		checkpointHook(p)
	}

	// C. Switch, holding the WAL lock.
	p.fmu.Lock()
	p.mu.RLock()
	stale := p.epoch != epoch
	p.mu.RUnlock()
	if stale || p.wal != oldWAL || p.state.Load() == stateClosed || p.broken.Load() || p.suspect.Load() || p.needReset {
		p.fmu.Unlock()
		return abort(errors.New("the phext changed under the checkpoint"))
	}
	end := p.walSize
	if err := copyWAL(newWAL, oldWAL, mid, end); err != nil {
		p.fmu.Unlock()
		return abort(err)
	}
	// In mode always the tail holds acknowledged records: durable in the
	// new WAL before the old one goes. In the other modes the syncer
	// fsyncs it (and the directory) within its round, so writers do not
	// wait for that here.
	always := p.t.durability() == DurabilityAlways
	if always {
		if err := newWAL.Sync(); err != nil {
			p.fmu.Unlock()
			return abort(err)
		}
	}
	if err := fs.Rename(p.tmpPath, p.path); err != nil {
		p.fmu.Unlock()
		return abort(err)
	}
	p.snapExists.Store(true)
	// From here the snapshot on disk is the new one and only the new WAL
	// describes it: writes must go there, whatever fails next.
	var errs []error
	dirPending := false
	if err := fs.SyncDir(dir); err != nil {
		dirPending = true
		errs = append(errs, fmt.Errorf("fsync dir: %w", err))
	}
	if err := fs.Rename(walPath, p.walPath); err != nil {
		// Open will find the .ckpt WAL naming the snapshot and take it;
		// until then this phext is reopened before its next use.
		p.broken.Store(true)
		errs = append(errs, err)
	} else if !always {
		dirPending = true // the syncer's next round fsyncs the directory
	} else if err := fs.SyncDir(dir); err != nil {
		dirPending = true
		errs = append(errs, fmt.Errorf("fsync dir: %w", err))
	}
	p.mu.Lock()
	oldBase, oldMapped := p.base, p.mapped
	p.base, p.mapped, p.index = nbase, nmapped, nindex
	p.frozen = nil
	p.ckpt = false
	p.snapID = id
	retired := p.retired
	p.retired = nil
	p.mu.Unlock()
	// Readers copy out of the mapping under the read lock, so no slice into
	// the old mapping survives the exclusive section above.
	if oldMapped {
		retired = append(retired, oldBase)
	}
	p.unmapAll(retired)
	_ = oldWAL.Close()
	p.wal = newWAL
	p.walSize = walHeaderSize + (end - cut)
	if dirPending || !always {
		// The renames are not durable yet: the WAL counts as dirty, and
		// its next fsync (appendLocked, syncer, close) fsyncs the
		// directory too.
		p.dirSync = true
		p.wgen.Add(1)
	} else {
		p.synced(p.wgen.Add(1))
	}
	p.fmu.Unlock()
	if len(errs) > 0 {
		return true, fmt.Errorf("store: checkpoint %s: %w", p.path, errors.Join(errs...))
	}
	return true, nil
}

// checkpointHook, when set (tests only), runs between steps B and C.
var checkpointHook func(*pfile)

// copyWAL appends bytes [from, to) of src to dst.
func copyWAL(dst, src File, from, to int64) error {
	if to <= from {
		return nil
	}
	buf := make([]byte, min(to-from, 1<<20))
	for off := from; off < to; {
		n := min(int64(len(buf)), to-off)
		k, err := src.ReadAt(buf[:n], off)
		if err != nil && !(errors.Is(err, io.EOF) && int64(k) == n) {
			return err
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// unmapAll unmaps retired mappings (no lock needed: nothing refers to them).
func (p *pfile) unmapAll(ms [][]byte) {
	for _, m := range ms {
		if err := munmapFile(m); err != nil {
			p.t.s.log.Error("store: munmap", "path", p.path, "err", err)
		}
	}
}
