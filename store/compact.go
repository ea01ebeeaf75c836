package store

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/phext/sq/phext"
	"github.com/zeebo/xxh3"
)

// cheapCompactBytes: on Close, a phext whose base is at most this large is
// compacted when its WAL holds records.
const cheapCompactBytes = 64 << 20

// needCompact reports whether the WAL (plus the base bytes the overlay
// had to copy) is past the threshold: larger than CompactMinWAL and than
// half the base document (fmu held).
func (p *pfile) needCompact() bool {
	n := p.walSize + p.copied
	return n > p.t.s.opts.CompactMinWAL && n > int64(len(p.base))/2
}

// compactAsync compacts p on a background goroutine unless one is running.
func (p *pfile) compactAsync() {
	if !p.compacting.CompareAndSwap(false, true) {
		return
	}
	s := p.t.s
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer p.compacting.Store(false)
		if err := p.compact(); err != nil && err != errPfileClosed {
			s.log.Error("store: background compaction failed", "path", p.path, "err", err)
		}
	}()
}

// compact merges the WAL into a new snapshot (a checkpoint).
func (p *pfile) compact() error {
	did, err := p.checkpoint()
	p.countCompaction(did, err)
	return err
}

// snapWriter buffers the new snapshot and hashes it on the way out.
type snapWriter struct {
	f   File
	buf []byte
	h   *xxh3.Hasher
	n   int64
	err error
}

func (w *snapWriter) write(b []byte) {
	for len(b) > 0 && w.err == nil {
		if len(w.buf) == cap(w.buf) {
			w.flush()
			continue
		}
		k := copy(w.buf[len(w.buf):cap(w.buf)], b)
		w.buf = w.buf[:len(w.buf)+k]
		b = b[k:]
	}
}

func (w *snapWriter) flush() {
	if w.err != nil || len(w.buf) == 0 {
		return
	}
	w.h.Write(w.buf)
	n, err := w.f.Write(w.buf)
	w.n += int64(n)
	if err == nil && n != len(w.buf) {
		err = fmt.Errorf("short write")
	}
	w.err = err
	w.buf = w.buf[:0]
}

// compactLocked writes the merged document to a temp file and makes it the
// snapshot (fmu held, so no batch is written or applied meanwhile; readers
// go on). Steps, in durability order:
//  1. write the merged document to <name>.phext.tmp and fsync it;
//  2. append a compaction record naming the new snapshot (size, xxh3) to
//     the WAL and fsync it;
//  3. rename the temp file over the snapshot and fsync the directory;
//  4. map and index the new snapshot, swap it in under the write lock and
//     unmap the old mapping;
//  5. reset the WAL to a header naming the new snapshot.
//
// A crash before 3 leaves the old snapshot and a WAL whose header names it;
// a crash between 3 and 5 leaves a WAL whose header names the old snapshot
// but whose last record names the current one, so open discards it.
// compactLocked compacts p (fmu held) and counts the outcome in the
// store's Stats.
func (p *pfile) compactLocked() error {
	did := p.wal != nil && p.walSize > walHeaderSize && !p.broken.Load()
	err := p.compactNow()
	p.countCompaction(did, err)
	return err
}

func (p *pfile) compactNow() error {
	if p.broken.Load() {
		return errWALSuspect
	}
	if p.suspect.Load() {
		// The WAL is not trusted: the rewrite from memory is the compaction.
		return p.rewriteLocked()
	}
	if p.wal == nil || p.walSize <= walHeaderSize {
		return nil // nothing logged since the snapshot
	}
	fs := p.t.s.fs
	dir := filepath.Dir(p.path)
	// 1. The new snapshot's bytes are on disk before anything names it.
	id, err := p.writeTmp(p.tmpPath)
	if err != nil {
		return err
	}
	// 2. The WAL says which snapshot holds all its records.
	rec := appendRecord(nil, opCompact, phext.Coordinate{}, compactPayload(id))
	if err := p.appendLocked(rec, true); err != nil {
		_ = fs.Remove(p.tmpPath)
		return fmt.Errorf("store: compact %s: %w", p.path, err)
	}
	// 3. Atomic switch of the snapshot.
	if err := fs.Rename(p.tmpPath, p.path); err != nil {
		_ = fs.Remove(p.tmpPath)
		return fmt.Errorf("store: compact %s: %w", p.path, err)
	}
	p.snapExists.Store(true)
	if err := fs.SyncDir(dir); err != nil {
		// The rename may not be durable: reopen before the next write so
		// that the WAL is judged against whichever snapshot is on disk.
		p.broken.Store(true)
		return fmt.Errorf("store: compact %s: fsync dir: %w", p.path, err)
	}
	// 4. Remap.
	base, mapped, index, _, err := mapSnapshot(fs, p.path, false)
	if err != nil {
		p.broken.Store(true)
		return fmt.Errorf("store: compact %s: remap: %w", p.path, err)
	}
	p.mu.Lock()
	// Readers copy out of the mapping under the read lock, so no slice into
	// the old mapping survives this exclusive section.
	p.unmap()
	p.base, p.mapped, p.index = base, mapped, index
	p.ov = make(map[phext.Coordinate][]byte)
	p.copied = 0
	p.snapID = id
	p.mu.Unlock()
	// 5. Start a fresh log.
	if err := p.resetWAL(); err != nil {
		p.broken.Store(true)
		return fmt.Errorf("store: compact %s: %w", p.path, err)
	}
	return nil
}

// writeTmp writes the current document (base + overlay, read lock taken
// here) to the temp file path, fsyncs and closes it, and returns its
// identity. On failure the temp file is removed.
func (p *pfile) writeTmp(path string) (walID, error) {
	return p.writeDoc(path, func(fn func(phext.Coordinate, []byte)) {
		p.mu.RLock()
		p.walk(fn)
		p.mu.RUnlock()
	})
}

// writeDoc writes the document walk produces to path, fsyncs and closes
// it, and returns its identity. On failure the file is removed.
func (p *pfile) writeDoc(path string, walk func(func(phext.Coordinate, []byte))) (walID, error) {
	fs := p.t.s.fs
	f, err := fs.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|noFollow, 0o640)
	if err != nil {
		return walID{}, fmt.Errorf("store: compact %s: %w", p.path, err)
	}
	fail := func(err error) (walID, error) {
		_ = f.Close()
		_ = fs.Remove(path)
		return walID{}, fmt.Errorf("store: compact %s: %w", p.path, err)
	}
	w := snapWriter{f: f, buf: make([]byte, 0, 1<<20), h: xxh3.New()}
	var scratch []byte
	prev := phext.Origin
	walk(func(c phext.Coordinate, text []byte) {
		scratch = phext.AppendDelimiters(scratch[:0], prev, c)
		w.write(scratch)
		w.write(text)
		prev = c
	})
	w.flush()
	if w.err != nil {
		return fail(w.err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = fs.Remove(path)
		return walID{}, fmt.Errorf("store: compact %s: %w", p.path, err)
	}
	return walID{uint64(w.n), w.h.Sum64()}, nil
}

// rewriteLocked puts the state held in memory on disk again, in new files,
// after an fsync of the WAL failed (fmu held): the kernel may have dropped
// the WAL's dirty pages while its page cache still shows them, so neither
// the old WAL nor a replay of it is trusted (PostgreSQL's fsync lesson).
// Steps, in durability order:
//  1. write the document from memory to <name>.phext.tmp, fsync;
//  2. create <name>.phext.wal.new (a new inode) with a header naming the
//     new snapshot, fsync it and the directory;
//  3. rename the temp file over the snapshot, fsync the directory;
//  4. rename the new WAL over the old one, fsync the directory;
//  5. swap the new snapshot and WAL in.
//
// A crash between 3 and 4 leaves a snapshot that only <name>.phext.wal.new
// names; open then takes that WAL (see replayWAL). On failure the phext
// stays suspect and writes are refused until a rewrite succeeds.
func (p *pfile) rewriteLocked() error {
	if p.broken.Load() {
		return errWALSuspect
	}
	fs := p.t.s.fs
	dir := filepath.Dir(p.path)
	newPath := p.walPath + newExt
	tmpPath := p.path + rwTmpExt
	id, err := p.writeTmp(tmpPath)
	if err != nil {
		return err
	}
	fail := func(step string, err error) error {
		_ = fs.Remove(tmpPath)
		_ = fs.Remove(newPath)
		return fmt.Errorf("store: rewrite %s after a failed fsync: %s: %w", p.path, step, err)
	}
	f, err := fs.OpenFile(newPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND|noFollow, 0o640)
	if err != nil {
		return fail("create WAL", err)
	}
	hdr := appendWALHeader(make([]byte, 0, walHeaderSize), id)
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		return fail("write WAL", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fail("fsync WAL", err)
	}
	if err := fs.SyncDir(dir); err != nil {
		f.Close()
		return fail("fsync dir", err)
	}
	if err := fs.Rename(tmpPath, p.path); err != nil {
		f.Close()
		return fail("rename snapshot", err)
	}
	p.snapExists.Store(true)
	// From here the snapshot on disk is the new one: failures leave
	// wal.new in place for open to pick up.
	if err := fs.SyncDir(dir); err != nil {
		f.Close()
		return fmt.Errorf("store: rewrite %s: fsync dir: %w", p.path, err)
	}
	if err := fs.Rename(newPath, p.walPath); err != nil {
		f.Close()
		return fmt.Errorf("store: rewrite %s: rename WAL: %w", p.path, err)
	}
	if err := fs.SyncDir(dir); err != nil {
		f.Close()
		return fmt.Errorf("store: rewrite %s: fsync dir: %w", p.path, err)
	}
	base, mapped, index, _, err := mapSnapshot(fs, p.path, false)
	if err != nil {
		f.Close()
		p.broken.Store(true)
		return fmt.Errorf("store: rewrite %s: remap: %w", p.path, err)
	}
	p.mu.Lock()
	p.unmap()
	p.base, p.mapped, p.index = base, mapped, index
	p.ov = make(map[phext.Coordinate][]byte)
	p.frozen = nil // written out too: a running checkpoint is stale
	p.epoch++
	p.copied = 0
	p.snapID = id
	p.mu.Unlock()
	if p.wal != nil {
		_ = p.wal.Close()
	}
	p.wal = f
	p.walSize = walHeaderSize
	p.dirSync = false
	p.synced(p.wgen.Add(1))
	p.suspect.Store(false)
	p.t.s.rewrites.Add(1)
	return nil
}

// countCompaction counts a checkpoint that did work, as done or failed.
func (p *pfile) countCompaction(did bool, err error) {
	if !did {
		return
	}
	if err == nil {
		p.t.s.compactions.Add(1)
	} else {
		p.t.s.compactFailures.Add(1)
	}
}
