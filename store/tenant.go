package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/phext/sq/phext"
)

// Tenant is one tenant's set of phexts. All methods are safe for concurrent
// use by many goroutines (reads run in parallel, writes to one phext are
// serialized); they block on disk I/O, so call them from worker goroutines.
//
// Every method taking a phext name treats an empty name as the tenant's
// default phext <data_dir>/.phext. A name is validated before anything
// touches the file system.
type Tenant struct {
	s    *Store
	name string
	dir  string

	quota    atomic.Int64             // 0 = unlimited
	dur      atomic.Uint32            // Durability; Default = the store's
	used     atomic.Int64             // scroll bytes applied (estimates for unopened phexts)
	reserved atomic.Int64             // quota held by logged-but-unapplied writes
	feed     atomic.Pointer[feedHook] // the change feed (feed.go); nil: nobody watches

	removing   bool  // guarded by Store.mu: RemoveTenant is closing it
	dirID      dirID // identity of dir, the key of Store.dirs
	createdDir bool  // AddTenant created dir (immutable)

	// scanned is set once sizes and used hold the estimate from file
	// sizes (read-only: Usage may do it); prepared once, in addition, the
	// dir was probed for case folding by the first request. Readers that
	// see prepared true may read fold without a lock.
	scanned  atomic.Bool
	prepared atomic.Bool
	fold     bool // the data dir is case-insensitive: phext names are folded to lower case

	mu     sync.RWMutex // guards files, sizes, closed (and prepare's writes)
	files  map[string]*pfile
	sizes  map[string]int64 // per phext bytes counted in used
	closed bool
}

// CreatedDir reports whether AddTenant created the tenant's data dir.
func (t *Tenant) CreatedDir() bool { return t.createdDir }

// prepare does, once, the per-tenant work AddTenant defers to the first
// request: estimate the phexts' sizes from their files (for the quota and
// Usage; see scan) and probe the data dir for case folding, which creates
// and removes a file. A failure is returned to that request and retried by
// the next one.
func (t *Tenant) prepare() error {
	if t.prepared.Load() {
		return nil
	}
	// Tenant.mu is held across the directory read: nothing of the tenant
	// can run before it is prepared anyway, and it happens once.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.prepared.Load() {
		return nil
	}
	if err := t.scanLocked(); err != nil {
		return err
	}
	fold := t.s.caseInsensitive(t.dir)
	if fold {
		// The scan kept names as listed; on a folding dir they are one
		// phext per lower-case name.
		folded := make(map[string]int64, len(t.sizes))
		for name, n := range t.sizes {
			folded[strings.ToLower(name)] += n
		}
		t.sizes = folded
	}
	t.fold = fold
	t.files = make(map[string]*pfile)
	t.prepared.Store(true)
	return nil
}

// scan fills sizes and used from the data dir's file sizes, once, without
// writing anything: what Usage needs of a tenant that has served nothing
// (a metrics scrape must not touch 10,000 data dirs but to read them).
func (t *Tenant) scan() error {
	if t.scanned.Load() {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.scanLocked()
}

// scanLocked is scan with t.mu held.
func (t *Tenant) scanLocked() error {
	if t.closed {
		return ErrClosed
	}
	if t.scanned.Load() {
		return nil
	}
	sizes, total, err := t.estimateSizes()
	if err != nil {
		return err
	}
	// No write can have changed used: writes wait for prepare.
	t.sizes = sizes
	t.used.Store(total)
	t.scanned.Store(true)
	return nil
}

// Name returns the tenant's name.
func (t *Tenant) Name() string { return t.name }

// durability returns the tenant's effective mode.
func (t *Tenant) durability() Durability {
	if d := Durability(t.dur.Load()); d != DurabilityDefault {
		return d
	}
	return t.s.opts.Durability
}

// key returns the name phext name is known by in the tenant (prepared):
// name itself, or on a case-insensitive data dir its lower-case form, in
// buf. "Notes" and "notes" are one file there, so they must be one pfile
// (and one phext for the change feed). Names are ASCII, so ASCII folding
// is exact.
func (t *Tenant) key(name []byte, buf *[phext.MaxNameLen]byte) []byte {
	if !t.fold {
		return name
	}
	n := copy(buf[:], name)
	for i := range n {
		if c := buf[i]; 'A' <= c && c <= 'Z' {
			buf[i] = c + ('a' - 'A')
		}
	}
	return buf[:n]
}

// get returns the open phext called name, opening it on first use. The
// fast path takes only the tenant's read lock and does not allocate.
func (t *Tenant) get(name []byte) (*pfile, error) {
	if err := t.prepare(); err != nil {
		return nil, err
	}
	var folded [phext.MaxNameLen]byte
	name = t.key(name, &folded)
	for {
		t.mu.RLock()
		if t.closed {
			t.mu.RUnlock()
			return nil, ErrClosed
		}
		p := t.files[string(name)]
		t.mu.RUnlock()
		if p != nil {
			switch p.state.Load() {
			case stateReady:
				if p.broken.Load() {
					// A commit-log write or fsync failed: reopen so that
					// the state is what the disk holds.
					if err := t.closeFile(p, closeEvict); err != nil {
						t.s.log.Warn("store: closing phext after WAL failure", "path", p.path, "err", err)
					}
					continue
				}
				p.touch()
				return p, nil
			case stateOpening:
				<-p.opened
				if p.openErr != nil {
					return nil, p.openErr
				}
				continue
			default:
				<-p.gone
				continue
			}
		}
		key := string(name)
		// A slot under the ceiling of open phexts (may wait, no lock held).
		if err := t.s.reserveOpen(); err != nil {
			return nil, err
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			t.s.releaseOpen()
			return nil, ErrClosed
		}
		if t.files[key] != nil {
			t.mu.Unlock()
			t.s.releaseOpen()
			continue
		}
		p = newPfile(t, key)
		t.files[key] = p
		t.mu.Unlock()

		err := p.open()
		t.mu.Lock()
		if err != nil {
			delete(t.files, key)
			p.openErr = err
			p.state.Store(stateClosed)
			close(p.gone)
		} else {
			// Replace the estimate from file sizes by the exact count,
			// before p is ready: until stateReady is stored only this
			// goroutine touches p's document (p.mu is not held). A writer
			// that looked p up while it opened checks its state without
			// t.mu and, once it sees it ready, applies its records (under
			// p.mu): a charge read after the store raced with those
			// applies and counted them twice in used (CI race of
			// TestReloadRacesEvictor; TestOpenChargedBeforeReady).
			charge := p.charge()
			old, known := t.sizes[key]
			if known || p.snapExists.Load() {
				t.sizes[key] = charge
			}
			t.used.Add(charge - old)
			p.state.Store(stateReady)
			if h := t.s.openedHook; h != nil {
				h(p)
			}
		}
		close(p.opened)
		t.mu.Unlock()
		if err != nil {
			t.s.releaseOpen()
			return nil, err
		}
		t.s.register(p)
		return p, nil
	}
}

// closeFile flushes, fsyncs and closes p (see closeHow), then forgets it. Only one caller closes; the others
// wait for it.
func (t *Tenant) closeFile(p *pfile, how closeHow) error {
	if !p.state.CompareAndSwap(stateReady, stateClosing) {
		<-p.gone
		return nil
	}
	err := p.close(how)
	t.forget(p)
	return err
}

// closeIfClean closes p if it is clean: its snapshot covers everything it
// holds (no records in the log it needs, none queued or being logged, no
// checkpoint running), so the close does no I/O but the munmap. It
// reports whether it closed p; false leaves p as it was.
func (t *Tenant) closeIfClean(p *pfile) bool {
	// fmu: no record is logged (TryWrite, a flush) while it is checked;
	// qmu: none is queued, and closing refuses the next ones.
	p.fmu.Lock()
	p.qmu.Lock()
	ok := p.oldestGen == 0 && p.ckptHold == 0 && !p.flushing && p.cur == nil && !p.closing &&
		p.state.CompareAndSwap(stateReady, stateClosing)
	if ok {
		p.closing = true
	}
	p.qmu.Unlock()
	p.fmu.Unlock()
	if !ok {
		return false
	}
	if err := p.finishClose(nil); err != nil {
		t.s.log.Warn("store: closing a clean phext", "path", p.path, "err", err)
	}
	t.forget(p)
	return true
}

// forget drops a closed p from the LRU set and the tenant's map, keeps its
// byte count as the phext's share while it is closed, and wakes the
// goroutines waiting for it to go.
func (t *Tenant) forget(p *pfile) {
	t.s.unregister(p)
	t.mu.Lock()
	if t.files[p.key] == p {
		delete(t.files, p.key)
	}
	// used already counts p.charge() (kept up to date by apply); remember
	// it as this phext's share while it is closed.
	if _, known := t.sizes[p.key]; known || p.snapExists.Load() {
		t.sizes[p.key] = p.charge()
	}
	t.mu.Unlock()
	close(p.gone)
}

// shutdown closes every phext of the tenant (one batch: closeMany); later
// calls return ErrClosed.
func (t *Tenant) shutdown() error {
	return t.s.closeMany(t.closeAll())
}

// closeAll marks the tenant closed (no phext opens any more) and returns
// its phexts.
func (t *Tenant) closeAll() []*pfile {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	ps := make([]*pfile, 0, len(t.files))
	for _, p := range t.files {
		ps = append(ps, p)
	}
	return ps
}

// reader returns p read-locked, reopening as needed. The caller must
// RUnlock p.mu.
func (t *Tenant) reader(name []byte) (*pfile, error) {
	if !phext.ValidName(name) {
		return nil, ErrBadName
	}
	return t.readerOf(name)
}

// readerOf is reader for a name the caller has checked already (a method
// that must report a bad name before its other checks).
func (t *Tenant) readerOf(name []byte) (*pfile, error) {
	for {
		p, err := t.get(name)
		if err != nil {
			return nil, err
		}
		p.mu.RLock()
		if p.state.Load() != stateClosed {
			return p, nil
		}
		p.mu.RUnlock()
	}
}

// AppendSelect appends the text of the scroll at c of phext name to dst
// (nothing when the scroll is empty or absent). It does not allocate when
// dst has room.
func (t *Tenant) AppendSelect(dst, name []byte, c phext.Coordinate) ([]byte, error) {
	if !phext.ValidName(name) {
		return dst, ErrBadName
	}
	if !c.Valid() {
		return dst, ErrBadCoord
	}
	p, err := t.readerOf(name)
	if err != nil {
		return dst, err
	}
	dst = append(dst, p.lookup(c)...)
	p.mu.RUnlock()
	return dst, nil
}

// AppendGet appends the whole phext, serialized exactly as phext.Implode
// would write its current scrolls.
func (t *Tenant) AppendGet(dst, name []byte) ([]byte, error) {
	return t.AppendGetLimit(dst, name, Limit{})
}

// AppendGetLimit is AppendGet bounded by l: the document is measured first,
// and one larger than l.Max (or refused by l.Reserve) is refused before
// anything is appended; dst then grows once, to the exact size.
func (t *Tenant) AppendGetLimit(dst, name []byte, l Limit) ([]byte, error) {
	p, err := t.reader(name)
	if err != nil {
		return dst, err
	}
	defer p.mu.RUnlock()
	n := p.docSize()
	if err := l.Check(n); err != nil {
		return dst, err
	}
	return p.appendDoc(slices.Grow(dst, int(n))), nil
}

// AppendTOC appends SQ's table of contents of the current state: the
// textmap of the serialized document.
func (t *Tenant) AppendTOC(dst, name []byte) ([]byte, error) {
	return t.AppendTOCLimit(dst, name, Limit{})
}

// AppendTOCLimit is AppendTOC bounded by l, measured before anything is
// appended (see AppendGetLimit).
func (t *Tenant) AppendTOCLimit(dst, name []byte, l Limit) ([]byte, error) {
	p, err := t.reader(name)
	if err != nil {
		return dst, err
	}
	defer p.mu.RUnlock()
	var size int64
	p.walk(func(c phext.Coordinate, text []byte) {
		size += int64(phext.TOCLineLen(c, text))
	})
	if size == 0 {
		size = int64(phext.TOCLineLen(phext.Origin, nil))
	}
	if err := l.Check(size); err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, int(size))
	n := 0
	p.walk(func(c phext.Coordinate, text []byte) {
		dst = phext.AppendTOCLine(dst, c, text)
		n++
	})
	if n == 0 {
		// The empty document phokenizes to one empty token at the origin.
		dst = phext.AppendTOCLine(dst, phext.Origin, nil)
	}
	return dst, nil
}

// AppendChecksum appends the 32 lowercase hex digits of the xxh3-128 of the
// serialized document (= phext.Checksum of AppendGet's output), streaming
// instead of materializing the document.
func (t *Tenant) AppendChecksum(dst, name []byte) ([]byte, error) {
	p, err := t.reader(name)
	if err != nil {
		return dst, err
	}
	h := p.docHash()
	p.mu.RUnlock()
	sum := h.Sum128().Bytes()
	const hexd = "0123456789abcdef"
	for _, b := range sum {
		dst = append(dst, hexd[b>>4], hexd[b&15])
	}
	return dst, nil
}

// maxDeltaMissing bounds what missing coordinates may add to a delta reply;
// the document's own scrolls may each bring up to maxBreaksPerScroll break
// bytes (999 − 1 breaks on each of nine levels).
const (
	maxDeltaMissing    = 64 << 20
	maxBreaksPerScroll = 9 * 999
)

// AppendDelta appends SQ's delta of the current state against request (a
// list of "<coord>: <checksum>" lines); see phext.Delta.
func (t *Tenant) AppendDelta(dst, name, request []byte) ([]byte, error) {
	return t.AppendDeltaLimit(dst, name, request, Limit{})
}

// AppendDeltaLimit is AppendDelta bounded by l. The request is parsed
// before the phext is locked (its parsed form reserved through l first);
// under the read lock only the stored scrolls are visited (work
// proportional to the document, not to the request) and the texts of those
// the reply keeps are copied out (reserved, and refused past l.Max); the
// reply, whose missing-scroll markers are proportional to the request, is
// built after the lock is released.
func (t *Tenant) AppendDeltaLimit(dst, name, request []byte, l Limit) ([]byte, error) {
	if !phext.ValidName(name) {
		return dst, ErrBadName
	}
	if err := l.Check(int64(phext.DeltaLines(request)) * int64(phext.DeltaEntrySize)); err != nil {
		if l.Max > 0 && errors.Is(err, ErrTooLarge) {
			// The parsed request, not the reply, is what is too large.
			err = fmt.Errorf("%w: delta request of %d lines", ErrTooLarge, phext.DeltaLines(request))
		}
		return dst, err
	}
	r := phext.ParseDeltaRequest(request)
	p, err := t.readerOf(name)
	if err != nil {
		return dst, err
	}
	var (
		kept      []phext.Scroll
		keptBytes int64
		keptN     int64
		docBytes  = p.bytes
		// which stored scrolls, in walk order, the reply keeps
		keep = make([]uint64, 0, (p.scrolls+63)/64)
		i    int
	)
	p.walk(func(c phext.Coordinate, text []byte) {
		if i%64 == 0 {
			keep = append(keep, 0)
		}
		if r.Keep(c, text) {
			keep[i/64] |= 1 << (i % 64)
			keptBytes += int64(len(text))
			keptN++
		}
		i++
	})
	// Copy the kept texts out in one allocation, so the reply is built
	// without the lock.
	err = l.Check(keptBytes + keptN*int64(scrollSize))
	if err == nil {
		arena := make([]byte, 0, keptBytes)
		kept = make([]phext.Scroll, 0, keptN)
		i = 0
		p.walk(func(c phext.Coordinate, text []byte) {
			if keep[i/64]&(1<<(i%64)) != 0 {
				at := len(arena)
				arena = append(arena, text...)
				kept = append(kept, phext.Scroll{Coord: c, Text: arena[at:len(arena):len(arena)]})
			}
			i++
		})
	}
	p.mu.RUnlock()
	if err != nil {
		return dst, err
	}
	// The reply holds at most the document (text and breaks) plus
	// maxDeltaMissing bytes of missing-scroll markers and their breaks.
	limit := int(docBytes) + len(kept)*maxBreaksPerScroll + maxDeltaMissing
	if l.Max > 0 && l.Max < limit {
		limit = l.Max
	}
	n, err := r.OutputLen(kept, limit)
	if err == nil {
		err = l.Check(int64(n))
	}
	if errors.Is(err, phext.ErrTooLarge) {
		return dst, fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if err != nil {
		return dst, err
	}
	return r.AppendOutput(slices.Grow(dst, n), kept, n)
}

// scrollSize is the memory of one phext.Scroll header.
const scrollSize = int(unsafe.Sizeof(phext.Scroll{}))

// List returns the names of the tenant's phexts (the snapshot files in its
// data dir; "" for the default .phext), sorted.
func (t *Tenant) List() ([]string, error) {
	t.mu.RLock()
	closed := t.closed
	t.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	ents, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, fmt.Errorf("store: tenant %s: %w", t.name, err)
	}
	var names []string
	for _, e := range ents {
		if name, ok := isPhextFile(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Usage reports the tenant's size. Phexts counts the snapshot files.
// Bytes is what the quota counts: scroll text bytes plus ScrollCost for
// every non-empty scroll (the memory a scroll costs whatever its length);
// for a phext not opened since the tenant was added it counts the sizes of
// its files instead (an estimate) until first use. Scrolls counts the scrolls of the phexts open right now (no
// file is rescanned to count the others).
// LogBytes counts the bytes of the open phexts' records in the shared
// commit log that no checkpoint covers yet.
type Usage struct {
	Phexts     int
	Scrolls    int64
	Bytes      int64
	QuotaBytes int64
	LogBytes   int64
}

// Usage returns the tenant's current usage, without rescanning files
// (the first call on a tenant that has served no request reads its data
// dir once, see scan).
func (t *Tenant) Usage() (Usage, error) {
	if err := t.scan(); err != nil {
		return Usage{}, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return Usage{}, ErrClosed
	}
	u := Usage{Bytes: t.used.Load(), QuotaBytes: t.quota.Load(), Phexts: len(t.sizes)}
	for key, p := range t.files {
		if p.state.Load() == stateOpening {
			continue
		}
		if _, known := t.sizes[key]; !known {
			if !p.snapExists.Load() {
				continue // opened for reading only; no file
			}
			u.Phexts++
		}
		p.mu.RLock()
		u.Scrolls += p.scrolls
		p.mu.RUnlock()
		u.LogBytes += p.logBytes.Load()
	}
	return u, nil
}

// Compact checkpoints phext name now: its document becomes a new snapshot,
// so its records in the commit log are no longer needed.
func (t *Tenant) Compact(name []byte) error {
	if !phext.ValidName(name) {
		return ErrBadName
	}
	for {
		p, err := t.get(name)
		if err != nil {
			return err
		}
		if err := p.compact(); err != errPfileClosed {
			return err
		}
	}
}

// Sync makes every write of the tenant acknowledged so far durable: it
// fsyncs each commit log (shared by all tenants) written since its last
// fsync.
func (t *Tenant) Sync() error {
	t.mu.RLock()
	closed := t.closed
	t.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if err := t.s.logHealthy(); err != nil {
		return err
	}
	for _, l := range t.s.logs {
		if err := l.sync(); err != nil {
			return err
		}
	}
	// A rotation or Close may have closed the file under the fsync (it
	// fsyncs the file itself): success only if that fsync did not fail.
	return t.s.logHealthy()
}

// Insert appends text to the scroll at c of phext name. It returns len(text)
// once the write is logged (and fsynced in always mode) and applied.
func (t *Tenant) Insert(name []byte, c phext.Coordinate, text []byte) (int, error) {
	if err := checkScrollWrite(name, c, text); err != nil {
		return 0, err
	}
	return t.write(name, &op{kind: opInsert, c: c, text: text})
}

// Update replaces the scroll at c of phext name with text (empty text
// removes it) and returns len(text).
func (t *Tenant) Update(name []byte, c phext.Coordinate, text []byte) (int, error) {
	if err := checkScrollWrite(name, c, text); err != nil {
		return 0, err
	}
	return t.write(name, &op{kind: opUpdate, c: c, text: text})
}

// Delete removes the scroll at c of phext name and returns the number of
// bytes removed (0 when it was absent).
func (t *Tenant) Delete(name []byte, c phext.Coordinate) (int, error) {
	if err := checkScrollWrite(name, c, nil); err != nil {
		return 0, err
	}
	return t.write(name, &op{kind: opDelete, c: c})
}

// Put replaces the whole phext name with doc and returns the number of
// non-empty scrolls stored. doc must be valid UTF-8 and scan without a
// coordinate part passing 999 (ErrOverflow).
//
// After the name and size (CheckPut), the quota is checked, by a count of
// doc's scrolls and text that
// stops once what doc would be charged passes the whole quota (putCheck),
// so an over-quota document of tiny scrolls costs a few bytes per quota
// byte, not a parse of the whole document (issue 13: a 60 MB document of
// 30 M one-byte scrolls was validated and scanned whole, ~230 ms, to be
// refused). Such a document is refused with ErrQuota even when it is also
// malformed further on. The document is then indexed once, into an index
// of exactly its scroll count, outside every lock; the write applies that
// index.
func (t *Tenant) Put(name []byte, doc []byte) (int, error) {
	return t.PutCounted(name, doc, nil)
}

// PutCounted is Put for a document that c has counted already: a server
// that checked it against the quota piece by piece as it arrived
// (PutCheck) hands the finished check over, so that the document is not
// counted a second time (issue 13, M4: a tenant rewriting a 400 k-scroll
// document ~20 times a second spent a tenth of the server's CPU on the
// second count). c is used only if every byte of doc, and nothing else,
// went through its Add in order, which PutCounted can verify only by
// length: a caller must not hand over a check of other bytes. The quota
// rule is applied again to c's count with the tenant's quota as it is
// now; when that refuses (the quota was lowered meanwhile, or c had
// refused), doc is counted again, so the answer is exactly Put's. A nil
// c, or one of another length or without a quota, is counted as Put does.
func (t *Tenant) PutCounted(name []byte, doc []byte, c *PutCheck) (int, error) {
	if err := CheckPut(name, len(doc)); err != nil {
		return 0, err
	}
	count, err := t.putCount(doc, c)
	if err != nil {
		return 0, err
	}
	if i := phext.InvalidUTF8At(doc); i >= 0 {
		return 0, fmt.Errorf("%w: document is not valid UTF-8 at offset %d (byte 0x%02X)", ErrBadScroll, i, doc[i])
	}
	idx, err := buildIndex(doc, int(count.Scrolls))
	if err != nil {
		return 0, fmt.Errorf("%w: document: %w", ErrOverflow, err)
	}
	return t.write(name, &op{kind: opPut, text: doc, putScrolls: int(idx.scrolls), putBytes: count.Text, putIndex: &idx})
}

// CheckPut makes Put's checks that come before its document is counted
// against the quota, for a document of size bytes to phext name: a server
// that refuses a document over the quota before all of it has arrived
// (PutCheck) answers what Put would when one of these comes first.
func CheckPut(name []byte, size int) error {
	if !phext.ValidName(name) {
		return ErrBadName
	}
	if size > MaxRecord {
		return ErrTooLarge
	}
	return nil
}

// checkScrollWrite validates name, coordinate and text, in that order (a
// delete passes no text). Every scroll write is checked here once
// (Write.check for WriteMany and TryApply).
//
// A binary-protocol request had its name and coordinate checked by its
// decoder already; the store checks them again on purpose: it is the last
// gate before a name becomes a file name, its callers (the REST API,
// cmd/sq, tools) pass raw bytes, and a validated-request type could not
// stop a caller from changing the name's bytes after the check unless it
// copied them. Both checks cost 13–35 ns together (11- and 64-byte
// names), against the microseconds of a worker hand-off.
func checkScrollWrite(name []byte, c phext.Coordinate, text []byte) error {
	if !phext.ValidName(name) {
		return ErrBadName
	}
	if !c.Valid() {
		return ErrBadCoord
	}
	if len(text) > MaxRecord {
		return ErrTooLarge
	}
	if !phext.ValidScroll(text) {
		// Error path only: name the byte and offset for the client.
		return fmt.Errorf("%w: %w", ErrBadScroll, phext.CheckScroll(text))
	}
	return nil
}

// reserve takes n bytes of quota for a pending write (n <= 0 always fits).
func (t *Tenant) reserve(n int64) error {
	if n <= 0 {
		return nil
	}
	for {
		q := t.quota.Load()
		r := t.reserved.Load()
		if q > 0 && t.used.Load()+r+n > q {
			return ErrQuota
		}
		if t.reserved.CompareAndSwap(r, r+n) {
			return nil
		}
	}
}

// write logs o to phext name (group commit) and applies it.
func (t *Tenant) write(name []byte, o *op) (int, error) {
	t.s.repair()
	for {
		p, err := t.get(name)
		if err != nil {
			return 0, err
		}
		n, retry, err := p.submit(o)
		if retry {
			continue
		}
		return n, err
	}
}

// filePaths returns the snapshot, legacy per-phext WAL (wal.go) and temp
// paths of phext key.
func (t *Tenant) filePaths(key string) (snap, wal, tmp string) {
	snap = filepath.Join(t.dir, key+snapExt)
	return snap, snap + walExt, snap + tmpExt
}
