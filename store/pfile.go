package store

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/phext/sq/phext"
	"github.com/zeebo/xxh3"
)

// Lifecycle of a pfile.
const (
	stateOpening int32 = iota
	stateReady
	stateClosing // flushing before close; reads still served
	stateClosed
)

// pfile is one open phext: a base document (the mmapped snapshot, or the
// document of the last Put) indexed by coordinate and an overlay of the
// scrolls changed since, whose records are in the store's commit log
// (log.go) until the next checkpoint. See doc.go for its locks.
type pfile struct {
	t                      *Tenant
	key                    string
	path, walPath, tmpPath string

	state   atomic.Int32
	opened  chan struct{} // closed when open finished (openErr set on failure)
	gone    chan struct{} // closed when the pfile is closed and forgotten
	openErr error
	lastUse atomic.Uint64
	victim  bool        // picked for a background eviction batch (Store.lmu)
	broken  atomic.Bool // open state unusable: reopen before next use (kept for callers; set by nothing today)
	// evictFail is the evictor's backoff after this phext's checkpoint
	// failed (0: none) and evictAfter (monoNow) when it may try again:
	// only the evictor touches them, one goroutine per phext at a time.
	evictFail, evictAfter atomic.Int64

	// mu guards the document state below. Readers hold it shared for as
	// long as they touch base; remap and munmap happen under it exclusive.
	mu      sync.RWMutex
	base    []byte // snapshot mapping (mapped) or heap document
	mapped  bool
	index   index                       // of base
	ov      map[phext.Coordinate][]byte // changed scrolls; nil value = deleted
	bytes   int64                       // scroll bytes of the current state
	scrolls int64                       // non-empty scrolls of the current state
	copied  int64                       // base bytes copied into the overlay since the last snapshot
	// frozen is the overlay a running checkpoint is writing out, read
	// below ov (lookups: ov, then frozen, then base). The checkpoint reads
	// it and the base without locks, so neither is changed while ckpt is
	// set: writes go to ov and a replaced base mapping is retired (unmapped
	// when the checkpoint ends). epoch counts Puts: a checkpoint whose view
	// went stale is abandoned.
	frozen  map[phext.Coordinate][]byte
	ckpt    bool
	retired [][]byte
	epoch   uint64

	// cmu serializes checkpoints (and close); taken before fmu and held
	// across a checkpoint's I/O, which writers never wait for.
	cmu sync.Mutex
	// fmu serializes this phext's log commits and applies (so its records
	// reach the log in LSN order) and guards the log bookkeeping below.
	// Held across a commit's write() (and fsync in mode always); never
	// held by readers.
	fmu        sync.Mutex
	snapExists atomic.Bool // the snapshot file exists
	snapID     walID       // identity of the snapshot file on disk (cmu, or p owned during open)
	compacting atomic.Bool
	// compactWait is when background compaction may start again after
	// one that a Put made useless (compactRetry; monoNow, 0: now).
	compactWait atomic.Int64
	lastLSN     uint64 // LSN of the last record applied
	// oldestGen is the log generation of the oldest record the snapshot
	// does not cover (0: none); ckptHold the one a running checkpoint
	// took over (until it is durable). Rotation keeps those generations.
	oldestGen, ckptHold uint64
	// llog is the log holding p's latest record (nil: none since open) and
	// lround the loop round of llog it is in (0: written by the worker
	// path, so already in the kernel). p's next record goes to another log
	// only once that round ended (TryApply declines, awaitLoopRound
	// waits): a phext's records reach the files in LSN order across logs.
	llog   *commitLog
	lround uint64
	// loopRecs: p has records in a loop log (not the worker's) not known
	// to be on the disk; an always write fsyncs the loop logs first
	// (awaitLoopRound).
	loopRecs bool
	logBytes atomic.Int64 // log bytes of records since the last checkpoint (compaction trigger, Usage)
	items    []logItem    // commit scratch (fmu)

	// qmu guards the pending batch (leaf lock).
	qmu        sync.Mutex
	idle       sync.Cond // on qmu: flushing became false
	cur        *batch
	flushing   bool
	closing    bool
	putPending int
	// sizeExact + sizeAdded bound the serialized size with every accepted
	// write applied (qmu; see checkSnapshotSize).
	sizeExact, sizeAdded int64
}

func newPfile(t *Tenant, key string) *pfile {
	p := &pfile{t: t, key: key, opened: make(chan struct{}), gone: make(chan struct{})}
	p.path, p.walPath, p.tmpPath = t.filePaths(key)
	p.idle.L = &p.qmu
	p.state.Store(stateOpening)
	return p
}

func (p *pfile) touch() { p.lastUse.Store(p.t.s.clock.Add(1)) }

// open loads the snapshot, which holds every logged change of the phext
// (recovery at Open and the checkpoint at close put them there; a close
// that failed is retried first, retryPinned), and replays a per-phext WAL
// an earlier version left, if any (upgradeLegacyWAL). On error nothing on
// disk was changed.
func (p *pfile) open() error {
	fs := p.t.s.fs
	// A temp file left by a compaction that crashed before its rename holds
	// nothing the snapshot and the logs do not.
	for _, tmp := range []string{p.tmpPath, p.path + rwTmpExt} {
		if err := fs.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: %w", err)
		}
	}
	if err := p.t.s.unrecoveredErr(p.t.dir, p.key); err != nil {
		// A failed close (a transient fault) is retried now.
		if p.t.s.retryPinned(p.t.dir, p.key) != nil {
			return err
		}
	}
	p.ov = make(map[phext.Coordinate][]byte)
	if err := p.loadSnapshot(); err != nil {
		return err
	}
	if err := p.upgradeLegacyWAL(); err != nil {
		p.unmap()
		return err
	}
	p.sizeExact = p.docSize()
	return nil
}

// heldGen is the oldest log generation p needs kept (fmu held; 0: none).
func (p *pfile) heldGen() uint64 {
	switch {
	case p.oldestGen == 0:
		return p.ckptHold
	case p.ckptHold == 0:
		return p.oldestGen
	}
	return min(p.oldestGen, p.ckptHold)
}

// logged records that p's records up to LSN last went to generation gen
// (fmu held).
func (p *pfile) logged(last, gen uint64, n int) {
	defer p.t.s.wlog.accounted(gen)
	p.lastLSN = last
	p.logBytes.Add(int64(n))
	if p.oldestGen == 0 {
		p.oldestGen = gen
		p.t.s.markDirty(p)
	}
}

// baseItem returns, when p has no records in the logs and no checkpoint
// running (fmu held), the checkpoint record naming the snapshot on disk,
// to be logged before p's next record in the same group: recovery then
// knows which snapshot the records were written against, also when the
// file was restored, replaced or deleted while the phext was closed (an
// older checkpoint record of it would name another file, or an older state
// of it). nil when p is dirty: its base is logged already.
func (p *pfile) baseItem() []byte {
	if p.oldestGen != 0 || p.ckptHold != 0 {
		return nil
	}
	return ckptPayload(0, 0, 0, p.snapID, p.snapID)
}

func (p *pfile) unmap() {
	if p.mapped && p.ckpt {
		// A checkpoint reads this mapping without locks: unmap it when
		// the checkpoint ends.
		p.retired = append(p.retired, p.base)
	} else if p.mapped {
		if err := munmapFile(p.base); err != nil {
			p.t.s.log.Error("store: munmap", "path", p.path, "err", err)
		}
	}
	p.base, p.mapped, p.index = nil, false, index{}
}

// mapSnapshot maps and indexes the snapshot at path. A missing file is an
// empty document (exists = false). scrolls, when known, is its number of
// non-empty scrolls: the index is then allocated once (indexDoc). prev,
// when not nil, is the index of document prevDoc: it is taken as the
// snapshot's when the snapshot holds prevDoc's scrolls at the same
// offsets (index.sameScrolls), instead of a scan.
func mapSnapshot(fs FS, path string, checkUTF8 bool, scrolls int, prev *index, prevDoc []byte) (base []byte, mapped bool, x index, exists bool, err error) {
	f, err := fs.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, index{}, false, nil
		}
		return nil, false, index{}, false, openErr(path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, index{}, true, fmt.Errorf("store: %w", err)
	}
	size := fi.Size()
	if size > math.MaxUint32 {
		return nil, false, index{}, true, fmt.Errorf("%w: snapshot %s is %d bytes", ErrTooLarge, path, size)
	}
	if size == 0 {
		return nil, false, index{}, true, nil
	}
	base, err = mmapFile(f.Fd(), int(size))
	if err != nil {
		return nil, false, index{}, true, fmt.Errorf("store: mmap %s: %w", path, err)
	}
	if prev != nil && !checkUTF8 && sameScrolls(base, prevDoc) {
		return base, true, *prev, true, nil
	}
	x, err = indexDoc(base, path, checkUTF8, scrolls)
	if err != nil {
		_ = munmapFile(base)
		return nil, false, index{}, true, err
	}
	return base, true, x, true, nil
}

func (p *pfile) loadSnapshot() error {
	base, mapped, x, exists, err := mapSnapshot(p.t.s.fs, p.path, true, 0, nil, nil)
	if err != nil {
		return err
	}
	p.base, p.mapped, p.index = base, mapped, x
	p.snapExists.Store(exists)
	p.snapID = walID{uint64(len(base)), xxh3.Hash(base)}
	p.bytes, p.scrolls = x.bytes, x.scrolls
	return nil
}

// lookup returns the current text at c (a view; read lock held).
func (p *pfile) lookup(c phext.Coordinate) []byte {
	if v, ok := p.overlaid(c); ok {
		return v
	}
	return p.index.find(p.base, c)
}

// overlaid returns the text at c that shadows the base's, if any: the
// overlay's, else a running checkpoint's frozen overlay's (read lock held).
func (p *pfile) overlaid(c phext.Coordinate) ([]byte, bool) {
	if v, ok := p.ov[c]; ok {
		return v, true
	}
	if p.frozen != nil {
		if v, ok := p.frozen[c]; ok {
			return v, true
		}
	}
	return nil, false
}

// walk calls fn for every non-empty scroll in coordinate order (read lock
// held). The texts are views valid only until the lock is released.
func (p *pfile) walk(fn func(c phext.Coordinate, text []byte)) {
	walkDoc(p.base, &p.index, p.ov, p.frozen, fn)
}

// docHash streams the serialized document into an xxh3 hasher.
// appendDoc appends the serialized document (what GET returns) to dst
// (mu held).
func (p *pfile) appendDoc(dst []byte) []byte {
	prev := phext.Origin
	p.walk(func(c phext.Coordinate, text []byte) {
		dst = phext.AppendDelimiters(dst, prev, c)
		dst = append(dst, text...)
		prev = c
	})
	return dst
}

func (p *pfile) docHash() *xxh3.Hasher {
	h := xxh3.New()
	var scratch [64]byte
	prev := phext.Origin
	p.walk(func(c phext.Coordinate, text []byte) {
		d := phext.AppendDelimiters(scratch[:0], prev, c)
		h.Write(d)
		h.Write(text)
		prev = c
	})
	return h
}

// apply changes the in-memory state by one logged record and returns the
// operation's result and the change in what the quota charges (p.charge:
// scroll bytes plus ScrollCost a scroll). The caller holds mu exclusively
// (or owns p during open). Records were validated before they were
// logged, so apply cannot fail.
func (p *pfile) apply(kind byte, c phext.Coordinate, payload []byte) (n int, delta int64) {
	return p.applyIndexed(kind, c, payload, nil)
}

// applyIndexed is apply with a Put's index of payload when the writer
// built it (Tenant.Put, outside the locks); nil indexes payload here.
func (p *pfile) applyIndexed(kind byte, c phext.Coordinate, payload []byte, idx *index) (n int, delta int64) {
	scrolls := p.scrolls
	n, delta = p.applyRecord(kind, c, payload, idx)
	return n, delta + ScrollCost*(p.scrolls-scrolls)
}

// applyFound is apply of a delete at c that findDelete found as d, with
// nothing changed since (write lock held throughout): the event loop's
// delete, which looks its scroll up before it logs it (TryApply).
func (p *pfile) applyFound(c phext.Coordinate, d deleteAt) (n int, delta int64) {
	scrolls := p.scrolls
	was := p.removeFound(c, d)
	return was, -int64(was) + ScrollCost*(p.scrolls-scrolls)
}

// applyRecord is applyIndexed; its delta counts scroll bytes only.
func (p *pfile) applyRecord(kind byte, c phext.Coordinate, payload []byte, idx *index) (n int, delta int64) {
	switch kind {
	case opInsert:
		if len(payload) == 0 {
			return 0, 0
		}
		v, inOv := p.ov[c]
		if !inOv {
			old := p.lookup(c)
			nv := make([]byte, 0, len(old)+len(payload))
			v = append(nv, old...)
			// Counted towards compaction: small inserts into big scrolls
			// grow memory much faster than the log.
			p.copied += int64(len(old))
		}
		if len(v) == 0 {
			p.scrolls++
		}
		// Overlay texts are owned by the overlay (never views into the base
		// or a batch), so appending in place is safe under the write lock.
		p.ov[c] = append(v, payload...)
		p.bytes += int64(len(payload))
		return len(payload), int64(len(payload))
	case opUpdate:
		if len(payload) == 0 {
			was := p.remove(c)
			return 0, -int64(was)
		}
		old := p.lookup(c)
		was := len(old)
		v, inOv := p.ov[c]
		if inOv && cap(v) >= len(payload) {
			v = append(v[:0], payload...)
		} else {
			v = bytes.Clone(payload)
		}
		p.ov[c] = v
		if was == 0 {
			p.scrolls++
		}
		d := int64(len(payload) - was)
		p.bytes += d
		return len(payload), d
	case opDelete:
		was := p.remove(c)
		return was, -int64(was)
	case opPut:
		// The index's offsets are the payload's, so they hold in its copy.
		doc := bytes.Clone(payload)
		if idx == nil {
			x, err := indexDoc(doc, "", false, 0)
			if err != nil {
				// Unreachable: Put documents are validated before logging, and
				// records read back are checked by scanLog (legacy WALs:
				// scanWAL).
				panic("store: put record does not index: " + err.Error())
			}
			idx = &x
		}
		before := p.bytes
		p.unmap()
		p.base, p.index = doc, *idx
		p.ov = make(map[phext.Coordinate][]byte)
		// A running checkpoint's view no longer describes the document.
		p.frozen = nil
		p.epoch++
		p.copied = 0
		p.bytes, p.scrolls = idx.bytes, idx.scrolls
		return int(idx.scrolls), p.bytes - before
	}
	return 0, 0 // opCompact: nothing to apply
}

// remove deletes the scroll at c and returns its former length.
func (p *pfile) remove(c phext.Coordinate) int {
	return p.removeFound(c, p.findDelete(c))
}

// deleteAt is what a delete at c finds (findDelete): the current text's
// length, and whether removing it must shadow a scroll of the base (or
// of a running checkpoint's frozen overlay) rather than drop an overlay
// entry.
type deleteAt struct {
	was    int
	shadow bool
}

// findDelete looks up c for a delete, searching the base at most once (a
// search scans up to sampleScrolls scrolls): for the current text when
// nothing shadows it, and to know whether the deletion must shadow a base
// scroll (read lock held).
func (p *pfile) findDelete(c phext.Coordinate) deleteAt {
	v, over := p.overlaid(c)
	var base []byte
	if !over || p.frozen == nil {
		base = p.index.find(p.base, c)
	}
	if !over {
		v = base
	}
	return deleteAt{was: len(v), shadow: len(base) > 0 || p.frozen != nil}
}

// removeFound deletes the scroll at c that findDelete found as d, with
// nothing changed since (write lock held throughout), and returns its
// former length.
func (p *pfile) removeFound(c phext.Coordinate, d deleteAt) int {
	if d.shadow {
		p.ov[c] = nil // shadows the base scroll (or the frozen overlay's)
	} else {
		delete(p.ov, c)
	}
	if d.was > 0 {
		p.scrolls--
		p.bytes -= int64(d.was)
	}
	return d.was
}
