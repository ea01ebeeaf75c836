package store

import (
	"errors"
	"fmt"
	"path/filepath"

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
//	   covers, size, xxh3)" to the worker log and make it durable (it shares the group
//	   commit's fsync).
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
	p.cmu.Lock()
	defer p.cmu.Unlock()
	s := p.t.s
	fs := s.fs
	dir := filepath.Dir(p.path)

	// A. Freeze.
	p.fmu.Lock()
	if p.state.Load() == stateClosed {
		p.fmu.Unlock()
		return false, errPfileClosed
	}
	if p.oldestGen == 0 {
		p.fmu.Unlock()
		return false, nil
	}
	hold, covers, logBytes := p.oldestGen, p.lastLSN, p.logBytes.Load()
	p.ckptHold, p.oldestGen = hold, 0
	p.logBytes.Store(0)
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
		nbase   []byte
		nmapped bool
	)
	// finish ends the checkpoint: durable says the generations held for
	// the frozen records may go; merge puts the frozen overlay back.
	finish := func(durable, merge bool) {
		p.fmu.Lock()
		p.mu.Lock()
		if merge && p.epoch == epoch {
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
		if !durable {
			if p.oldestGen == 0 || hold < p.oldestGen {
				p.oldestGen = hold
			}
			p.logBytes.Add(logBytes)
		}
		p.ckptHold = 0
		if p.oldestGen == 0 {
			s.markClean(p)
		}
		p.fmu.Unlock()
		p.unmapAll(retired)
	}
	abort := func(err error) (bool, error) {
		_ = fs.Remove(p.tmpPath)
		finish(false, true)
		if nmapped {
			p.unmapAll([][]byte{nbase})
		}
		return true, fmt.Errorf("store: checkpoint %s: %w", p.path, err)
	}

	// B. Write the frozen view out, without locks.
	id, dev, ino, err := p.writeDoc(p.tmpPath, func(fn func(phext.Coordinate, []byte)) {
		walkDoc(base, index, frozen, nil, fn)
	})
	if err != nil {
		return abort(err)
	}
	nbase, nmapped, nindex, _, err := mapSnapshot(fs, p.tmpPath, false)
	if err != nil {
		return abort(err)
	}

	// C. The log says which file holds everything up to covers.
	if _, _, err := s.wlog.commitCkpt(p.t.dir, p.key, ckptPayload(dev, ino, covers, id, p.snapID)); err != nil {
		return abort(err)
	}
	if checkpointHook != nil {
		checkpointHook(p)
	}

	// D. Switch.
	if err := fs.Rename(p.tmpPath, p.path); err != nil {
		return abort(err)
	}
	p.snapExists.Store(true)
	p.snapID = id
	// From here the snapshot on disk is the new one.
	var derr error
	if err := fs.SyncDir(dir); err != nil {
		derr = fmt.Errorf("store: checkpoint %s: fsync dir: %w", p.path, err)
	}
	p.fmu.Lock()
	p.mu.Lock()
	stale := p.epoch != epoch || p.state.Load() == stateClosed
	if stale {
		p.mu.Unlock()
		p.fmu.Unlock()
		if nmapped {
			p.unmapAll([][]byte{nbase})
		}
		finish(false, false)
		if derr != nil {
			return true, derr
		}
		return true, errors.New("store: checkpoint " + p.path + ": the phext was replaced under it")
	}
	oldBase, oldMapped := p.base, p.mapped
	p.base, p.mapped, p.index = nbase, nmapped, nindex
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
	// Without a durable rename the older generations stay: a power loss
	// could bring the old snapshot back.
	finish(derr == nil, false)
	return true, derr
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
