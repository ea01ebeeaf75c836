package store

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/phext/sq/phext"
	"github.com/zeebo/xxh3"
)

// needCompact reports whether the phext's log records since its last
// checkpoint (plus the base bytes the overlay had to copy) are past the
// threshold: larger than CompactMinWAL and than half the base document
// (fmu held).
func (p *pfile) needCompact() bool {
	n := p.logBytes.Load() + p.copied
	return n > p.t.s.opts.CompactMinWAL && n > int64(len(p.base))/2
}

// compactRetry is how long a phext waits for its next background
// compaction after one that a Put made useless (errReplaced): a tenant
// replacing its phext every few milliseconds made every compaction write
// and index a snapshot of the document just replaced, then drop it, and
// log an ERROR each time (issue 13, M4: 344 lines in one 5 s window and
// ~a fifth of the server's CPU). Its records stay in the log meanwhile,
// as they do while any compaction fails; the log rotation checkpoints it.
const compactRetry = time.Second

// compactAsync compacts p on a background goroutine unless one is running
// or the last one was made useless by a Put less than compactRetry ago.
func (p *pfile) compactAsync() {
	if w := p.compactWait.Load(); w != 0 && monoNow() < w {
		return
	}
	if !p.compacting.CompareAndSwap(false, true) {
		return
	}
	s := p.t.s
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer p.compacting.Store(false)
		err := p.compact()
		switch {
		case errors.Is(err, errReplaced):
			// Not an operator's problem: the tenant rewrites its phext.
			p.compactWait.Store(monoNow() + int64(compactRetry))
			s.compactReplaced.Add(1)
		case err != nil && err != errPfileClosed:
			s.log.Error("store: background compaction failed", "path", p.path, "err", err)
		default:
			p.compactWait.Store(0)
		}
	}()
}

// compact writes a new snapshot (a checkpoint).
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

// snapBufs recycles snapshot write buffers: Close writes thousands of
// small snapshots, and a fresh 1 MiB buffer each was gigabytes of
// allocation.
var snapBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// writeDoc writes the document walk produces to path, fsyncs and closes
// it, and returns its identity (size and xxh3-64) and its device and inode.
// On failure the file is removed.
func (p *pfile) writeDoc(path string, walk func(func(phext.Coordinate, []byte))) (id walID, dev, ino uint64, err error) {
	return p.writeDocX(path, walk, true)
}

// writeDocX is writeDoc; fsync false leaves the fsync to the caller (a
// batch that syncs the whole file system once).
func (p *pfile) writeDocX(path string, walk func(func(phext.Coordinate, []byte)), fsync bool) (id walID, dev, ino uint64, err error) {
	fs := p.t.s.fs
	f, err := fs.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|noFollow, 0o640)
	if err != nil {
		return walID{}, 0, 0, fmt.Errorf("store: compact %s: %w", p.path, err)
	}
	fail := func(err error) (walID, uint64, uint64, error) {
		_ = f.Close()
		_ = fs.Remove(path)
		return walID{}, 0, 0, fmt.Errorf("store: compact %s: %w", p.path, err)
	}
	bp := snapBufs.Get().(*[]byte)
	defer func() { *bp = (*bp)[:0]; snapBufs.Put(bp) }()
	w := snapWriter{f: f, buf: (*bp)[:0], h: xxh3.New()}
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
	if fsync {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	dev, ino = fileIdentity(fi)
	if err := f.Close(); err != nil {
		_ = fs.Remove(path)
		return walID{}, 0, 0, fmt.Errorf("store: compact %s: %w", p.path, err)
	}
	return walID{uint64(w.n), w.h.Sum64()}, dev, ino, nil
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
