package store

// Commit log life cycle at the Store level: recovery at Open, generations
// (rotation and truncation), repair after a failed fsync, and the end of
// the logs at Close. See docs/STORAGE.md, "Commit log".

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"time"

	"github.com/phext/sq/phext"
	"github.com/zeebo/xxh3"
)

// carriedRec is a record of a phext that recovery could not restore: it
// is written again at the start of every new generation, so that it is
// never lost, and the phext refuses to open until a restart restores it.
type carriedRec struct {
	kind    byte
	lsn     uint64
	prev    uint64
	dir     string
	name    string
	c       phext.Coordinate
	payload []byte
}

// logFile is one log file found at Open.
type logFile struct {
	path   string
	gen    uint64
	writer string
}

// listLogs returns the log files in LogDir, oldest generation first.
func (s *Store) listLogs() ([]logFile, error) {
	ents, err := os.ReadDir(s.logDir)
	if err != nil {
		return nil, fmt.Errorf("store: log dir: %w", err)
	}
	var out []logFile
	for _, e := range ents {
		gen, w, ok := parseLogName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		out = append(out, logFile{path: filepath.Join(s.logDir, e.Name()), gen: gen, writer: w})
	}
	slices.SortFunc(out, func(a, b logFile) int { return cmp.Compare(a.gen, b.gen) })
	return out, nil
}

// openLogs takes LogDir (an exclusive lock: two Stores on one log would
// corrupt each other), recovers what the logs hold into the snapshots, and
// starts a fresh generation. On error nothing was deleted.
func (s *Store) openLogs() error {
	if err := s.fs.MkdirAll(s.logDir, 0o750); err != nil {
		return fmt.Errorf("store: log dir: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(s.logDir, "LOCK"), os.O_RDWR|os.O_CREATE|noFollow, 0o640)
	if err != nil {
		return fmt.Errorf("store: log dir lock: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return fmt.Errorf("store: log dir %s is in use by another store: %w", s.logDir, err)
	}
	s.lockF = lf
	old, err := s.recoverLogs()
	if err != nil {
		s.unlockLogDir()
		return err
	}
	l := s.wlog
	gen := s.gen.Add(1)
	ngs, err := s.startGens(s.logs, gen)
	if err != nil {
		s.removeRecoveryTmps()
		s.unlockLogDir()
		return err
	}
	for i, lg := range s.logs {
		lg.switchTo(ngs[i].f, ngs[i].path, gen)
	}
	// The recovery's checkpoint records are in the new generation only:
	// the old files (gen below it) always go before it does, so a later
	// generation never names a snapshot that has been replaced since.
	l.mu.Lock()
	s.recCkpts = nil
	l.mu.Unlock()
	// Only now that the new generation (durable) says what each rewritten
	// snapshot covers may the snapshots be replaced: a crash before this
	// point finds the old snapshots and the old records (the checkpoint
	// record's "previous" identity), a crash after it the new ones.
	s.finishRecovery()
	if s.keepOld && len(old) > 0 {
		// A damaged record of some phext: the old files stay for an
		// operator (and the next Open), like a damaged WAL used to.
		// Those files only: later generations go as usual (the damaged
		// phext's good records are carried into each of them).
		s.dmu.Lock()
		s.keptOld = s.gen.Load()
		s.dmu.Unlock()
		return nil
	}
	// Everything in the old files is now in snapshots (or carried into
	// the new one): drop them.
	s.removeLogs(old)
	return nil
}

// recoveredSnap is a snapshot recovery rewrote (tmp written and fsynced)
// or found up to date; finishRecovery renames it into place once the new
// generation holding its checkpoint record is durable.
type recoveredSnap struct {
	dir, name, key string
	tmp, path      string // tmp == "": nothing to rename, only the dir fsync
}

// finishRecovery renames the snapshots recovery rewrote and fsyncs their
// data dirs. A phext whose rename or dir fsync fails refuses to open and
// the old logs stay (they still hold its records) until the next Open.
func (s *Store) finishRecovery() {
	for _, r := range s.recSnaps {
		var err error
		if r.tmp != "" {
			if err = s.fs.Rename(r.tmp, r.path); err != nil {
				_ = s.fs.Remove(r.tmp)
			}
		}
		if err == nil {
			if err = s.fs.SyncDir(r.dir); err != nil {
				err = fmt.Errorf("fsync dir %s: %w", r.dir, err)
			}
		}
		if err != nil {
			s.log.Error("store: cannot finish restoring a phext from the commit log; the old logs are kept and it refuses to open until the store is reopened",
				"dir", r.dir, "phext", r.name, "err", err)
			s.unrecovered[r.key] = fmt.Errorf("store: phext %q of %s could not be restored from the commit log at open (its records are kept; reopen the store to retry): %w", r.name, r.dir, err)
			s.keepOld = true
		}
	}
	s.recSnaps = nil
}

// removeRecoveryTmps deletes the snapshots recovery wrote but could not
// put into place (Open failed).
func (s *Store) removeRecoveryTmps() {
	for _, r := range s.recSnaps {
		if r.tmp != "" {
			_ = s.fs.Remove(r.tmp)
		}
	}
	s.recSnaps = nil
}

func (s *Store) unlockLogDir() {
	if s.lockF != nil {
		s.lockF.Close()
		s.lockF = nil
	}
}

// removeLogs takes the given log files out of the live log (retireLog:
// into the change feed's history, loghist.go), bounds the history and
// fsyncs LogDir; ok says all of it succeeded.
func (s *Store) removeLogs(files []logFile) (ok bool) {
	if len(files) == 0 {
		return true
	}
	ok = true
	for _, lf := range files {
		if err := s.retireLog(lf); err != nil {
			// Oldest first, and stop at the first failure: a generation
			// goes only when every older one went.
			s.log.Warn("store: removing an old log", "path", lf.path, "err", err)
			ok = false
			break
		}
	}
	s.pruneHist(s.gen.Load())
	if err := s.fs.SyncDir(s.logDir); err != nil {
		s.log.Warn("store: fsync log dir", "dir", s.logDir, "err", err)
		ok = false
	}
	return ok
}

// recoverLogs reads every log in LogDir, applies the records each
// snapshot does not cover and checkpoints those phexts (the data dirs
// fsynced), and returns the files read. A phext that cannot be restored
// (its dir gone, a corrupt snapshot, an I/O error) keeps its records:
// they are carried into the new generation and the phext refuses to open
// (the error), while every other phext opens normally.
func (s *Store) recoverLogs() ([]logFile, error) {
	files, err := s.listLogs()
	if err != nil {
		return nil, err
	}
	type group struct {
		dir, name string
		recs      []logRec
	}
	groups := map[string]*group{}
	var maxGen, maxLSN uint64
	var firsts []genFirst
	var spans []fileSpan
	for _, lf := range files {
		maxGen = max(maxGen, lf.gen)
		data, err := readAll(s.fs, lf.path)
		if err != nil {
			return nil, err
		}
		w, err := scanLog(data, lf.path)
		if err != nil {
			return nil, err
		}
		if w.end < int64(len(data)) {
			s.log.Warn("store: torn log tail ignored", "path", lf.path, "offset", w.end, "dropped", int64(len(data))-w.end)
		}
		if w.hdrOK && w.firstLSN > 0 {
			maxLSN = max(maxLSN, w.firstLSN-1)
		}
		if w.hdrOK {
			firsts = append(firsts, genFirst{lf.gen, w.firstLSN})
		}
		spans = append(spans, fileSpan{lf.gen, w.maxLSN})
		maxLSN = max(maxLSN, w.maxLSN)
		for _, r := range w.recs {
			k := r.dir + "\x00" + r.name
			g := groups[k]
			if g == nil {
				g = &group{dir: r.dir, name: r.name}
				groups[k] = g
			}
			g.recs = append(g.recs, r)
		}
	}
	if maxLSN == math.MaxUint64 {
		return nil, corruptErr(s.logDir, 0, "LSN counter exhausted")
	}
	if len(files) == 0 {
		// A new (or emptied) log dir: start above any position an
		// earlier run could have handed out (the change feed's
		// positions are LSNs and must only grow).
		maxLSN = uint64(time.Now().UnixNano())
	}
	s.lsn.Store(maxLSN)
	s.gen.Store(maxGen)
	ch := newChainInfo(firsts, spans)
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := groups[k]
		slices.SortStableFunc(g.recs, func(a, b logRec) int { return cmp.Compare(a.lsn, b.lsn) })
		// A record carried into a new generation while its old file was
		// kept appears twice: once is enough.
		g.recs = slices.CompactFunc(g.recs, func(a, b logRec) bool { return a.lsn == b.lsn })
		dev, ino, covers, id, prev, tmp, known, err := s.recoverPhext(g.dir, g.name, g.recs, ch)
		if errors.Is(err, errDirGone) {
			// design14: a dir that no longer exists: its records are
			// dropped, never replayed into a tenant created later on the
			// same path.
			s.log.Warn("store: the data dir of records in the commit log no longer exists; its records are dropped",
				"dir", g.dir, "phext", g.name, "records", len(g.recs))
			s.droppedRecs.Add(uint64(len(g.recs)))
			continue
		}
		if err == nil && known {
			// The new generation says what the snapshot covers (and which
			// one it replaces), so that neither a crash before the rename
			// nor an old file that could not be removed applies a record
			// twice.
			ck := carriedRec{kind: opCkpt, dir: g.dir, name: g.name, payload: ckptPayload(dev, ino, covers, id, prev)}
			ck.lsn = s.lsn.Add(1)
			s.recCkpts = append(s.recCkpts, ck)
			t := &Tenant{s: s, dir: g.dir}
			path, _, _ := t.filePaths(g.name)
			s.recSnaps = append(s.recSnaps, recoveredSnap{dir: g.dir, name: g.name, key: k, tmp: tmp, path: path})
		}
		if err != nil {
			s.log.Error("store: cannot restore a phext from the commit log; its records are kept and it refuses to open",
				"dir", g.dir, "phext", g.name, "err", err)
			if !errors.Is(err, ErrCorrupt) {
				err = fmt.Errorf("store: phext %q of %s could not be restored from the commit log at open (its records are kept; reopen the store to retry): %w", g.name, g.dir, err)
			}
			s.unrecovered[k] = err
			for _, r := range g.recs {
				if r.kind == opBad {
					// Not written again: the old files stay (pinned).
					s.keepOld = true
					continue
				}
				s.carried = append(s.carried, carriedRec{kind: r.kind, lsn: r.lsn, prev: r.prev, dir: r.dir, name: r.name, c: r.c,
					payload: append([]byte(nil), r.payload...)})
			}
		}
	}
	return files, nil
}

// genFirst is the first LSN a log file's header names, and its generation.
type genFirst struct{ gen, first uint64 }

// chainFloor returns the LSN below which the predecessor of a record may
// be missing from the logs without a loss: the lowest first LSN of the
// unbroken run of generations that ends with the newest one. Generations
// go oldest first once every phext's snapshot covers them (only files kept
// for an operator lie below a gap), and a rotation switches every log at
// once with one first LSN above every record of the older generations, so
// a record missing at or above the floor was lost, not truncated away.
func chainFloor(fs []genFirst) uint64 {
	if len(fs) == 0 {
		return 0
	}
	slices.SortFunc(fs, func(a, b genFirst) int { return cmp.Compare(b.gen, a.gen) })
	floor, gen := fs[0].first, fs[0].gen
	for _, f := range fs {
		if f.gen+1 < gen {
			break // a gap: older files were kept, not the chain's
		}
		floor, gen = min(floor, f.first), f.gen
	}
	return floor
}

// chainInfo is what recovery knows of the log files for chainCut.
type chainInfo struct {
	floor  uint64
	firsts []genFirst
	spans  []fileSpan
}

// fileSpan is a log file's generation and the highest LSN of its records
// (0: none).
type fileSpan struct{ gen, last uint64 }

func newChainInfo(firsts []genFirst, spans []fileSpan) *chainInfo {
	return &chainInfo{floor: chainFloor(firsts), firsts: firsts, spans: spans}
}

// tailLost reports whether a power loss can explain that record lsn is
// missing: it went to a file of the generation its LSN falls in (or of the
// next one, for a group queued while a rotation switched the logs), a
// power loss takes only a tail of a file, and a file's LSNs grow, so that
// file keeps no record after it. Otherwise the record is missing by damage
// (a file deleted, a hole in one) and the phext must not be cut silently.
func (c *chainInfo) tailLost(lsn uint64) bool {
	var g uint64
	found := false
	for _, f := range c.firsts {
		if f.first <= lsn && (!found || f.gen > g) {
			g, found = f.gen, true
		}
	}
	if !found {
		return true
	}
	for _, sp := range c.spans {
		if (sp.gen == g || sp.gen == g+1) && sp.last < lsn {
			return true
		}
	}
	return false
}

// chainCut returns how many of todo (a phext's data records above what
// its snapshot covers, in LSN order) recovery may apply: it stops at the
// first record whose predecessor (prev) should be in the logs and is not
// among recs (all the phext's records found). Each log is fsynced on its
// own, so after a power loss one log (an event loop's, or the worker's)
// may hold a record of a phext whose predecessor, in another log, was
// lost: applying it would make a state the phext never had. The cut is a
// power-loss tail, like a torn one, not damage. A PUT needs no
// predecessor, nor a record that names none (prev 0: the phext's first
// since it was opened; version 1 logs).
func chainCut(recs, todo []logRec, covers, floor uint64) int {
	have := make(map[uint64]struct{}, len(recs))
	for i := range recs {
		have[recs[i].lsn] = struct{}{}
	}
	for i := range todo {
		r := &todo[i]
		if r.kind == opPut || r.prev == 0 || r.prev <= covers || r.prev < floor {
			continue
		}
		if _, ok := have[r.prev]; !ok {
			return i
		}
	}
	return len(todo)
}

// readAll reads a whole file through the FS seam.
func readAll(fs FS, path string) ([]byte, error) {
	f, size, err := openRead(fs, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, size)
	if n, err := f.ReadAt(data, 0); err != nil && !(errors.Is(err, io.EOF) && n == len(data)) {
		return nil, fmt.Errorf("store: read %s: %w", path, err)
	}
	return data, nil
}

// openRead opens path to read, never through a symlink, and returns it
// with its size.
func openRead(fs FS, path string) (File, int64, error) {
	f, err := fs.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return nil, 0, openErr(path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("store: %w", err)
	}
	return f, fi.Size(), nil
}

// fileIdentity returns the device and inode of fi.
func fileIdentity(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

// recoverPhext computes the snapshot of phext name in dir brought up to
// date with recs (all its records in the logs, in LSN order): when records
// apply, the new document is written to the phext's temp file and fsynced
// (tmp); the caller logs its checkpoint record durably before renaming it
// into place (finishRecovery), as a checkpoint does.
//
// Coverage: the covered LSN of the latest checkpoint record whose snapshot
// identity (size, xxh3-64) is the snapshot on disk now: identical bytes
// are an identical state, whichever checkpoint wrote them. A phext logs
// such a record (its base) with its first record after an open or a
// checkpoint, so a snapshot restored or replaced while the phext was
// closed is named by a later record than any older one. Otherwise 0, every
// record in the logs applies, when there is no checkpoint record (a new
// phext) or the snapshot is the one a checkpoint record replaces (a crash
// between the record and the rename). Any other snapshot → ErrCorrupt: the
// file was replaced or damaged, and applying records to an unknown base
// would write a wrong document.
//
// It returns the identity of the resulting snapshot, what it covers and
// the identity on disk now (known false: no snapshot matched or was
// written). A missing data dir is errDirGone.
func (s *Store) recoverPhext(dir, name string, recs []logRec, ch *chainInfo) (dev, ino, covers uint64, id, prev walID, tmp string, known bool, err error) {
	fail := func(err error) (uint64, uint64, uint64, walID, walID, string, bool, error) {
		return 0, 0, 0, walID{}, walID{}, "", false, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fail(errDirGone)
		}
		return fail(fmt.Errorf("store: data dir: %w", err))
	}
	if !fi.IsDir() {
		return fail(fmt.Errorf("store: data dir %s is not a directory", dir))
	}
	t := &Tenant{s: s, name: "(recovery)", dir: dir}
	p := newPfile(t, name)
	ckpts := 0
	for _, r := range recs {
		switch r.kind {
		case opBad:
			return fail(fmt.Errorf("%w: %s", ErrCorrupt, r.payload))
		case opCkpt:
			ckpts++
		}
	}
	p.ov = make(map[phext.Coordinate][]byte)
	if err := p.loadSnapshot(); err != nil {
		return fail(err)
	}
	defer p.unmap()
	cur := walID{uint64(len(p.base)), xxh3.Hash(p.base)}
	matched, replaced := false, false
	for _, r := range recs {
		if r.kind == opCkpt {
			c, cid, prev := r.ckpt()
			if cid == cur {
				covers, matched = c, true
			}
			replaced = replaced || prev == cur
		}
	}
	if ckpts > 0 && !matched && !replaced {
		return fail(corruptErr(p.path, 0, fmt.Sprintf("snapshot (%d bytes) is none of those its checkpoint records in the commit log name", len(p.base))))
	}
	var todo []logRec
	for _, r := range recs {
		if r.kind != opCkpt && r.lsn > covers {
			todo = append(todo, r)
		}
	}
	if n := chainCut(recs, todo, covers, ch.floor); n < len(todo) {
		if !ch.tailLost(todo[n].prev) {
			return fail(corruptErr(s.logDir, 0, fmt.Sprintf("record %d of phext %q names record %d before it, which no log file can have lost by a power loss (a file missing or damaged)",
				todo[n].lsn, name, todo[n].prev)))
		}
		s.log.Warn("store: a phext's records in the commit log stop where a predecessor is missing (lost from another log by a power loss); the later ones are dropped",
			"dir", dir, "phext", name, "lsn", todo[n].lsn, "missing", todo[n].prev, "dropped", len(todo)-n)
		s.chainCuts.Add(1)
		todo = todo[:n]
	}
	id = cur
	if len(todo) > 0 {
		for _, r := range todo {
			p.apply(r.kind, r.c, r.payload)
		}
		nid, ndev, nino, err := p.writeDoc(p.tmpPath, func(fn func(phext.Coordinate, []byte)) { p.walk(fn) })
		if err != nil {
			return fail(err)
		}
		dev, ino, id, tmp = ndev, nino, nid, p.tmpPath
	} else if !matched {
		return fail(nil) // nothing but checkpoint records: nothing to do or say
	}
	// Also when nothing was applied: a checkpoint renamed this snapshot
	// but its directory fsync may have failed; the logs that describe the
	// old snapshot are about to go (finishRecovery fsyncs the dir).
	covers = recs[len(recs)-1].lsn
	return dev, ino, covers, id, cur, tmp, true, nil
}

// errDirGone: the data dir of records in the logs does not exist.
var errDirGone = errors.New("store: data dir no longer exists")

// logHealthy returns the error that makes the logs refuse writes: a failed
// fsync or cut-back, until a repair checkpointed every phext with records
// in the suspect generations from memory.
func (s *Store) logHealthy() error {
	if e := s.suspect.Load(); e != nil {
		return fmt.Errorf("%w: %w", errLogSuspect, *e)
	}
	return nil
}

// errLogSuspect: writes are refused until the repair after a failed log
// fsync (or cut-back) succeeded.
var errLogSuspect = errors.New("store: commit log failed; writes refused until the phexts are checkpointed from memory")

// logFailed marks the logs suspect (PostgreSQL's fsync lesson: after a
// failed fsync the page cache is not trusted) and starts the repair: a new
// generation, and a checkpoint from memory of every phext with records in
// the old ones.
func (s *Store) logFailed(err error) {
	s.markSuspect(err)
	s.repairSuspect(err)
}

// markSuspect makes the logs refuse writes (atomics only: an event loop's
// Flush calls it).
func (s *Store) markSuspect(err error) {
	e := err
	s.suspectSeq.Add(1)
	s.suspect.Store(&e)
}

// repairSuspect reports a failure markSuspect recorded and starts the
// repair.
func (s *Store) repairSuspect(err error) {
	s.log.Error("store: commit log failed; checkpointing every phext from memory", "err", err)
	s.kickRotate()
}

// kickRotate starts a rotation on a background goroutine unless one runs.
func (s *Store) kickRotate() {
	if !s.rotating.CompareAndSwap(false, true) {
		return
	}
	s.lmu.Lock()
	if s.shutting {
		s.lmu.Unlock()
		s.rotating.Store(false)
		return
	}
	s.wg.Add(1)
	s.lmu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.rotating.Store(false)
		err := s.rotateIf(func() bool {
			// Another rotation may have done the work meanwhile.
			return s.logsBig() || s.suspect.Load() != nil
		})
		if err != nil {
			s.log.Error("store: log rotation failed; old generations kept", "err", err)
		}
	}()
}

// repair runs the repair of suspect logs on the calling goroutine (a
// writer, holding no lock), so that a write after the fault cleared does
// not wait for the syncer's next round.
func (s *Store) repair() {
	if s.suspect.Load() == nil {
		return
	}
	if err := s.rotateIf(func() bool { return s.suspect.Load() != nil }); err != nil {
		s.log.Error("store: commit log repair failed; writes still refused", "err", err)
	}
}

// rotateIf, when need (checked once the rotation lock is held) is nil or
// says so, starts a new generation of the logs, checkpoints every phext
// with records in the older ones, and deletes the generations no phext
// needs any more. It also repairs suspect logs: it clears the suspect state
// when every phext with records in the old generations was checkpointed.
func (s *Store) rotateIf(need func() bool) error {
	s.rotMu.Lock()
	defer s.rotMu.Unlock()
	// A closed store rotates nothing: its log dir lock is released and a
	// new Store may be using the dir.
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if need != nil && !need() {
		return nil
	}
	seq := s.suspectSeq.Load()
	// Every log switches at once: with all write sides held no record is
	// written anywhere, so the new generation's first LSN is above every
	// LSN of the older ones (chainFloor). The worker log first, then the
	// loops' in order (their rounds end without waiting for anything).
	for _, l := range s.logs {
		l.acquire()
	}
	gen := s.gen.Load() + 1
	ngs, err := s.startGens(s.logs, gen)
	if err != nil {
		for _, l := range s.logs {
			l.release()
		}
		return err
	}
	var cerrs []error
	for _, l := range s.logs {
		if err := l.closeFile(); err != nil {
			cerrs = append(cerrs, err)
		}
	}
	s.gen.Store(gen)
	for i, l := range s.logs {
		l.switchTo(ngs[i].f, ngs[i].path, gen)
		l.release()
	}
	if cerr := errors.Join(cerrs...); cerr != nil {
		s.log.Error("store: closing the previous log generation", "err", cerr)
	}
	old := gen - 1
	var (
		errs   []error
		failed []*pfile
	)
	for _, p := range s.dirtyList() {
		p.fmu.Lock()
		h := p.heldGen()
		p.fmu.Unlock()
		if h == 0 || h > old {
			continue
		}
		did, err := p.checkpoint()
		if err != nil && !errors.Is(err, errPfileClosed) {
			// A Put replaced the phext while its snapshot was written
			// (a tenant PUTting every few ms): nothing failed, its
			// records are carried like a failed checkpoint's.
			if !errors.Is(err, errReplaced) {
				errs = append(errs, err)
			}
			failed = append(failed, p)
		}
		if did && err == nil && seq > 0 {
			s.rewrites.Add(1)
		}
		p.countCompaction(did, err)
	}
	if len(failed) > 0 {
		// One tenant's failing checkpoints (its disk full or read-only)
		// must not keep the shared log's old generations, or the repair
		// after a failed log fsync, for everyone: its records there are
		// written again into the current one; after a failed fsync, from
		// memory (the page cache of the old files is not trusted).
		var err error
		if s.suspect.Load() == nil {
			err = s.carryOver(failed, old)
		} else {
			err = s.carryFromMemory(failed, old)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	s.dropOldGens(gen)
	if s.suspect.Load() != nil && s.suspectSeq.Load() == seq && s.neededGen(gen) >= gen {
		s.suspect.Store(nil)
		s.log.Info("store: commit log repaired; writes accepted again")
	}
	return errors.Join(errs...)
}

// carryFromMemory logs, for each phext of ps that still holds a generation
// up to old, its whole document from memory as one PUT record (a fresh
// LSN, fsynced) in the current generation: recovery applies a PUT onto
// whatever snapshot it finds, so the phext no longer needs the old
// generations. A document larger than MaxRecord keeps holding them.
func (s *Store) carryFromMemory(ps []*pfile, old uint64) error {
	var errs []error
	for _, p := range ps {
		p.fmu.Lock()
		if p.state.Load() == stateClosed || p.ckptHold != 0 || p.oldestGen == 0 || p.oldestGen > old {
			p.fmu.Unlock()
			continue
		}
		p.mu.RLock()
		doc := p.appendDoc(nil)
		p.mu.RUnlock()
		if len(doc) > MaxRecord {
			p.fmu.Unlock()
			errs = append(errs, fmt.Errorf("store: %s: document too large to log from memory", p.path))
			continue
		}
		if doc == nil {
			doc = []byte{}
		}
		last, g, err := s.wlog.commitX(p.t.dir, p.key, []logItem{{kind: opPut, payload: doc}}, true, true, p.lastLSN)
		if err == nil {
			p.oldestGen, p.lastLSN = g, last
			// A new position for the same content: watchers are told
			// (a compact change), so that a resume sees no silent gap.
			p.publishCompact(doc, last)
		} else {
			errs = append(errs, err)
		}
		p.fmu.Unlock()
	}
	return errors.Join(errs...)
}

// carryOver writes the records that phexts ps (whose checkpoint failed)
// have in generations up to old into the current generation, read back from
// those (closed, fsynced) files, so that the old generations can go. A
// phext with a checkpoint running, or whose records could not be carried,
// keeps holding its generations.
//
// It works in memory of the order of the carried records, not of the
// generations (issue 13: a tenant PUTting large documents fills a
// generation with them): the files are read record by record
// (scanLogStream), and of each phext only the records replay needs are
// kept (carrySet).
func (s *Store) carryOver(ps []*pfile, old uint64) error {
	// A phext with a checkpoint running keeps its generations whatever is
	// read: its records are not collected (nor carried below).
	set := carrySet{recs: make(map[string][]carryRec, len(ps)), put: map[string]uint64{}}
	for _, p := range ps {
		p.fmu.Lock()
		if p.state.Load() != stateClosed && p.ckptHold == 0 && p.oldestGen != 0 && p.oldestGen <= old {
			set.recs[p.t.dir+"\x00"+p.key] = nil
		}
		p.fmu.Unlock()
	}
	if len(set.recs) == 0 {
		return nil
	}
	files, err := s.listLogs()
	if err != nil {
		return err
	}
	for _, lf := range files {
		if lf.gen > old {
			continue
		}
		ok, err := scanLogStream(s.fs, lf.path, func(r *logRec, payOff int64) { set.add(lf.path, r, payOff) })
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		// Not a run of whole, intact records: scanLog judges the file
		// (a torn tail ends it, damage is an error or a bad record).
		// Records seen twice are dropped below by their LSN.
		data, err := readAll(s.fs, lf.path)
		if err != nil {
			return err
		}
		w, err := scanLog(data, lf.path)
		if err != nil {
			return err
		}
		for i := range w.recs {
			r := &w.recs[i]
			end := r.off + logRecHeader + int64(binary.BigEndian.Uint32(data[r.off:]))
			set.add(lf.path, r, end-int64(len(r.payload)))
		}
	}
	var errs []error
	for _, p := range ps {
		crs, ok := set.recs[p.t.dir+"\x00"+p.key]
		if !ok {
			continue
		}
		slices.SortStableFunc(crs, func(a, b carryRec) int { return cmp.Compare(a.lsn, b.lsn) })
		crs = slices.CompactFunc(crs, func(a, b carryRec) bool { return a.lsn == b.lsn })
		recs, err := set.load(s.fs, crs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.fmu.Lock()
		if p.state.Load() == stateClosed || p.ckptHold != 0 || p.oldestGen == 0 || p.oldestGen > old {
			p.fmu.Unlock()
			continue
		}
		g, err := s.wlog.commitRaw(p.t.dir, p.key, recs)
		if err == nil {
			p.oldestGen = g
		} else {
			errs = append(errs, err)
		}
		p.fmu.Unlock()
	}
	return errors.Join(errs...)
}

// carrySet collects what carryOver writes again of each phext it carries
// (the keys of recs): every checkpoint record (recovery names the
// snapshot on disk by one of them) and the data records from the phext's
// latest PUT on. Replay from that PUT gives the document replay of every
// record gives, as a PUT replaces the whole document whatever it is
// applied to, and needs no predecessor (chainCut); each later record names
// the PUT or a record after it as its predecessor. Records may come in
// any order (a phext's records are spread over every writer's file) and
// twice (a file read again by scanLog). Only where each payload lies is
// kept; load reads the payloads of the records kept in the end.
type carrySet struct {
	recs map[string][]carryRec
	put  map[string]uint64 // the LSN of the latest PUT seen of each
}

// carryRec is a record to carry: its payload (nil) is payLen bytes at
// payOff in the log file at path.
type carryRec struct {
	logRec
	path   string
	payOff int64
	payLen int
}

func (c *carrySet) add(path string, r *logRec, payOff int64) {
	k := r.dir + "\x00" + r.name
	rs, ok := c.recs[k]
	if !ok {
		return
	}
	// A damaged record (opBad: scanLog's judgement, or that kind read as
	// is) is kept like any other unless a later PUT replaces it: load
	// refuses it, so that its phext keeps its generations rather than
	// losing the record without a word.
	if r.kind != opCkpt {
		if r.lsn < c.put[k] {
			return // the PUT replaces it
		}
		if r.kind == opPut && r.lsn > c.put[k] {
			c.put[k] = r.lsn
			rs = slices.DeleteFunc(rs, func(o carryRec) bool { return o.kind != opCkpt && o.lsn < r.lsn })
		}
	}
	cr := carryRec{logRec: *r, path: path, payOff: payOff, payLen: len(r.payload)}
	cr.payload = nil
	c.recs[k] = append(rs, cr)
}

// load reads the payloads of crs back from their (closed, fsynced, checked
// by the scan) log files.
func (c *carrySet) load(fs FS, crs []carryRec) (recs []logRec, err error) {
	open := map[string]File{}
	defer func() {
		for _, f := range open {
			f.Close()
		}
	}()
	recs = make([]logRec, len(crs))
	for i := range crs {
		cr := &crs[i]
		f := open[cr.path]
		if f == nil {
			if f, err = fs.OpenFile(cr.path, os.O_RDONLY|noFollow, 0); err != nil {
				return nil, openErr(cr.path, err)
			}
			open[cr.path] = f
		}
		if cr.kind == opBad {
			return nil, corruptErr(cr.path, cr.off, "damaged record")
		}
		recs[i] = cr.logRec
		recs[i].payload = make([]byte, cr.payLen)
		if n, err := f.ReadAt(recs[i].payload, cr.payOff); err != nil && !(errors.Is(err, io.EOF) && n == cr.payLen) {
			return nil, fmt.Errorf("store: read %s: %w", cr.path, err)
		}
		// Its CRCs checked, its content not (scanLogStream): a record
		// that replay would refuse is not carried, and its phext keeps
		// its generations (Open then names the damage).
		if why := checkLogPayload(&recs[i]); why != "" {
			return nil, corruptErr(cr.path, cr.off, why)
		}
	}
	return recs, nil
}

// scanLogStream calls fn with each record (data and checkpoint records,
// as scanLog returns them; the payload is valid only during the call, and
// lies at payOff in the file) of
// the log file at path, read record by record into one buffer as large as
// the largest record, not the file. ok false: the file is not a run of
// whole records that check (a torn or zero-filled tail, damage, a header
// short or bad); reading stops there and the caller gives the file to
// scanLog, which tells each case apart.
func scanLogStream(fs FS, path string, fn func(r *logRec, payOff int64)) (ok bool, err error) {
	f, size, err := openRead(fs, path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 64<<10)
	// read fills b; ok false when the file ends first.
	read := func(b []byte) (bool, error) {
		_, err := io.ReadFull(br, b)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("store: read %s: %w", path, err)
		}
		return true, nil
	}
	var h [logHeaderSize]byte
	if ok, err := read(h[:]); !ok {
		return false, err
	}
	fixed := logFixed
	if string(h[:8]) == logMagicV1 {
		fixed = logFixedV1
	} else if string(h[:8]) != logMagic {
		return false, nil
	}
	if binary.BigEndian.Uint32(h[28:]) != crc32.Checksum(h[:28], castagnoli) {
		return false, nil
	}
	dirs := map[uint32]string{}
	var (
		rh  [logRecHeader]byte
		buf []byte
	)
	for off := int64(logHeaderSize); off < size; {
		if ok, err := read(rh[:]); !ok {
			return false, err
		}
		l := int(binary.BigEndian.Uint32(rh[:]))
		// Bounded before the buffer grows: by the format's largest
		// record, and by what the file holds.
		if l < fixed || l > fixed+phext.MaxNameLen+MaxRecord || off+logRecHeader+int64(l) > size {
			return false, nil
		}
		if cap(buf) < l {
			buf = make([]byte, l)
		}
		body := buf[:l]
		if ok, err := read(body); !ok {
			return false, err
		}
		n := min(int(body[13]), l-fixed)
		hcrc := crc32.Update(crc32.Update(0, castagnoli, rh[:4]), castagnoli, body[:14+n])
		crc := crc32.Update(hcrc, castagnoli, body[14+n:])
		if crc != binary.BigEndian.Uint32(rh[4:]) || hcrc != binary.BigEndian.Uint32(rh[8:]) {
			return false, nil
		}
		// The payload is not checked here: of a phext PUT every few ms,
		// a generation holds hundreds of documents of which only the
		// latest is carried (carrySet.load checks what is).
		r, why := decodeLogFields(body, dirs, false, fixed)
		if why != "" {
			return false, nil
		}
		r.off = off
		off += logRecHeader + int64(l)
		if r.kind == opDir {
			id := binary.BigEndian.Uint32(body[9:])
			if old, ok := dirs[id]; ok && old != string(r.payload) {
				return false, nil
			}
			dirs[id] = string(r.payload)
			continue
		}
		fn(&r, r.off+logRecHeader+int64(l-len(r.payload)))
	}
	return true, nil
}

// neededGen returns the oldest generation some phext still needs (cur when
// none does).
func (s *Store) neededGen(cur uint64) uint64 {
	need := cur
	if g := s.wlog.oldestInflight(); g != 0 {
		need = min(need, g)
	}
	s.dmu.Lock()
	for _, g := range s.pins {
		need = min(need, g)
	}
	ps := make([]*pfile, 0, len(s.dirtyP))
	for p := range s.dirtyP {
		ps = append(ps, p)
	}
	s.dmu.Unlock()
	for _, p := range ps {
		p.fmu.Lock()
		if h := p.heldGen(); h != 0 {
			need = min(need, h)
		}
		p.fmu.Unlock()
	}
	return need
}

// dropOldGens deletes the log files of generations no phext needs.
func (s *Store) dropOldGens(cur uint64) {
	need := s.neededGen(cur)
	files, err := s.listLogs()
	if err != nil {
		s.log.Warn("store: listing logs", "err", err)
		return
	}
	s.dmu.Lock()
	kept := s.keptOld
	s.dmu.Unlock()
	var drop []logFile
	for _, lf := range files {
		if lf.gen < need && lf.gen >= kept {
			drop = append(drop, lf)
		}
	}
	s.removeLogs(drop)
}

// markDirty records that p has records in the logs its snapshot does not
// cover (p.fmu held).
func (s *Store) markDirty(p *pfile) {
	s.dmu.Lock()
	s.dirtyP[p] = struct{}{}
	s.dmu.Unlock()
}

func (s *Store) markClean(p *pfile) {
	s.dmu.Lock()
	delete(s.dirtyP, p)
	s.dmu.Unlock()
}

func (s *Store) dirtyList() []*pfile {
	s.dmu.Lock()
	ps := make([]*pfile, 0, len(s.dirtyP))
	for p := range s.dirtyP {
		ps = append(ps, p)
	}
	s.dmu.Unlock()
	return ps
}

// pin keeps the generations from gen on until the next Open, and makes the
// phext refuse to open until then: a close whose checkpoint failed leaves
// its latest records only in the logs.
func (s *Store) pin(p *pfile, gen uint64, err error) {
	k := p.t.dir + "\x00" + p.key
	s.dmu.Lock()
	if s.pins == nil {
		s.pins = map[string]uint64{}
	}
	if g, ok := s.pins[k]; !ok || gen < g {
		s.pins[k] = gen
	}
	delete(s.dirtyP, p)
	s.dmu.Unlock()
	s.umu.Lock()
	s.unrecovered[p.t.dir+"\x00"+p.key] = fmt.Errorf("store: %s: closing it failed to checkpoint (%w); its records stay in the commit log until the store is reopened", p.path, err)
	s.umu.Unlock()
}

// retryPinned restores a phext whose close failed to checkpoint (Store.pin)
// from the logs, as recovery would at Open: its records (none were added
// since: it refused to open) are read from the current log files, applied
// onto its snapshot, and the result checkpointed (temp file, CHECKPOINT
// record logged durably, rename, dir fsync). On success the pin goes and
// the phext opens; on error it stays refused.
func (s *Store) retryPinned(dir, key string) error {
	k := dir + "\x00" + key
	s.dmu.Lock()
	_, pinned := s.pins[k]
	s.dmu.Unlock()
	if !pinned {
		return errors.New("not pinned")
	}
	s.rotMu.Lock() // no generation goes while the files are read
	defer s.rotMu.Unlock()
	// The phext's latest record may still wait in an event loop's round
	// (its close does not wait for it): the files are read once every
	// round holding a log when the phext closed has written (or failed)
	// its records, or the restored snapshot would miss an acknowledged
	// write and its checkpoint record would cover it away.
	for _, l := range s.logs {
		l.acquire()
		l.release()
	}
	files, err := s.listLogs()
	if err != nil {
		return err
	}
	var recs []logRec
	var firsts []genFirst
	var spans []fileSpan
	for _, lf := range files {
		data, err := readAll(s.fs, lf.path)
		if err != nil {
			return err
		}
		w, err := scanLog(data, lf.path)
		if err != nil {
			return err
		}
		if w.hdrOK {
			firsts = append(firsts, genFirst{lf.gen, w.firstLSN})
		}
		spans = append(spans, fileSpan{lf.gen, w.maxLSN})
		for _, r := range w.recs {
			if r.dir == dir && r.name == key {
				recs = append(recs, r)
			}
		}
	}
	slices.SortStableFunc(recs, func(a, b logRec) int { return cmp.Compare(a.lsn, b.lsn) })
	recs = slices.CompactFunc(recs, func(a, b logRec) bool { return a.lsn == b.lsn })
	if len(recs) > 0 {
		dev, ino, covers, id, prev, tmp, known, err := s.recoverPhext(dir, key, recs, newChainInfo(firsts, spans))
		if err != nil {
			return err
		}
		if known {
			if _, _, err := s.wlog.commitCkpt(dir, key, ckptPayload(dev, ino, covers, id, prev)); err != nil {
				if tmp != "" {
					_ = s.fs.Remove(tmp)
				}
				return err
			}
			if tmp != "" {
				t := &Tenant{s: s, dir: dir}
				path, _, _ := t.filePaths(key)
				if err := s.fs.Rename(tmp, path); err != nil {
					_ = s.fs.Remove(tmp)
					return err
				}
			}
			if err := s.fs.SyncDir(dir); err != nil {
				return err
			}
		}
	}
	s.dmu.Lock()
	delete(s.pins, k)
	s.dmu.Unlock()
	s.umu.Lock()
	delete(s.unrecovered, k)
	s.umu.Unlock()
	s.log.Info("store: phext restored from the commit log after a failed close", "dir", dir, "phext", key)
	return nil
}

// unrecoveredErr returns why phext key of dir may not open, or nil.
func (s *Store) unrecoveredErr(dir, key string) error {
	s.umu.Lock()
	defer s.umu.Unlock()
	return s.unrecovered[dir+"\x00"+key]
}

// closeLogs ends the logs at Close: when every phext was checkpointed (none
// pinned), a new empty generation holding the LSN counter (and any carried
// records) replaces the old ones, so the next Open has nothing to replay.
func (s *Store) closeLogs() error {
	// A rotation still running (a writer's repair) finishes first.
	s.rotMu.Lock()
	defer s.rotMu.Unlock()
	for _, l := range s.logs {
		l.acquire()
	}
	defer func() {
		for _, l := range s.logs {
			l.mu.Lock()
			l.closed = true
			l.writing = false
			l.cond.Broadcast()
			l.mu.Unlock()
		}
		s.unlockLogDir()
	}()
	var cerrs []error
	for _, l := range s.logs {
		if err := l.closeFile(); err != nil {
			cerrs = append(cerrs, err)
		}
	}
	cerr := errors.Join(cerrs...)
	s.dmu.Lock()
	clean := len(s.pins) == 0 && len(s.dirtyP) == 0 && s.keptOld == 0
	s.dmu.Unlock()
	if !clean || cerr != nil || s.suspect.Load() != nil {
		return cerr // the next Open replays the logs
	}
	old, err := s.listLogs()
	if err != nil {
		return err
	}
	gen := s.gen.Add(1)
	ngs, err := s.startGens(s.logs[:1], gen)
	if err != nil {
		return err
	}
	if err := ngs[0].f.Close(); err != nil {
		return err
	}
	s.removeLogs(old)
	return nil
}
