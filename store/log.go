package store

// The commit log: one log shared by every tenant of a Store (docs/STORAGE.md,
// "Commit log"). Everything about it lives in this file (format, create,
// append with group commit, sync, generations) and in recover.go (replay at
// Open).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/phext/sq/phext"
)

// Log layout (see docs/STORAGE.md). All integers big-endian.
//
//	file:   <LogDir>/sq-<generation, 16 hex digits>-<writer>.log
//	header: "SQLOG002" | u64 generation | u64 first LSN | u32 0 |
//	        u32 CRC32C of bytes 0..27                           (32 bytes)
//	record: u32 body length L | u32 CRC32C(length field, body) |
//	        u32 CRC32C(length field, body[:14+n]) (the head: who it is for) |
//	        body = u8 op | u64 LSN | u32 dir id | u8 name length n |
//	               name | 9 x u16 coordinate | u64 previous LSN | payload
//
// Version 1 ("SQLOG001", read only) has no previous LSN field.
const (
	logMagic      = "SQLOG002"
	logMagicV1    = "SQLOG001"
	logHeaderSize = 32
	logFixed      = 1 + 8 + 4 + 1 + 18 + 8 // body bytes besides name and payload
	logFixedV1    = logFixed - 8           // version 1: no previous LSN
	logRecHeader  = 12                     // length, CRC of the body, CRC of the head
	logPrefix     = "sq-"
	logSuffix     = ".log"
	// workerLog names the log of the blocking (worker) path; loop logs are
	// "l0", "l1", … (loopLogName).
	workerLog = "w"
	// defaultLogRotate: the logs start a new generation past this size.
	defaultLogRotate = 256 << 20
)

// Record kinds of the commit log besides the phext operations opInsert,
// opUpdate, opDelete and opPut (wal.go).
const (
	// opCkpt: payload u64 dev | u64 inode | u64 covered LSN | u64 size |
	// u64 xxh3-64 | u64 previous size | u64 previous xxh3-64. A snapshot
	// with that size and hash holds every record of the phext up to the
	// covered LSN; it replaces the snapshot of the previous identity.
	opCkpt byte = 6
	// opDir: LSN 0, name empty, coordinate zero, payload = the absolute
	// data dir path the id stands for in this file.
	opDir byte = 7
	// opBad is never written: scanLog gives it to a whole record (CRC
	// matches) whose content is invalid; payload = the error text.
	opBad byte = 0xFF
)

// loopLogName names event loop i's log.
func loopLogName(i int) string { return "l" + strconv.Itoa(i) }

// logName returns the file name of writer's log of generation gen.
func logName(gen uint64, writer string) string {
	return fmt.Sprintf("%s%016x-%s%s", logPrefix, gen, writer, logSuffix)
}

// parseLogName is logName's inverse.
func parseLogName(fn string) (gen uint64, writer string, ok bool) {
	if !strings.HasPrefix(fn, logPrefix) || !strings.HasSuffix(fn, logSuffix) {
		return 0, "", false
	}
	mid := fn[len(logPrefix) : len(fn)-len(logSuffix)]
	if len(mid) < 18 || mid[16] != '-' {
		return 0, "", false
	}
	g, err := strconv.ParseUint(mid[:16], 16, 64)
	if err != nil {
		return 0, "", false
	}
	return g, mid[17:], true
}

func appendLogHeader(dst []byte, gen, firstLSN uint64) []byte {
	start := len(dst)
	dst = append(dst, logMagic...)
	dst = binary.BigEndian.AppendUint64(dst, gen)
	dst = binary.BigEndian.AppendUint64(dst, firstLSN)
	dst = binary.BigEndian.AppendUint32(dst, 0)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// appendLogRecord appends one encoded log record without a previous LSN
// (dir and checkpoint records, and data records that need none).
func appendLogRecord(dst []byte, kind byte, lsn uint64, dir uint32, name string, c phext.Coordinate, payload []byte) []byte {
	return appendLogRecordP(dst, kind, lsn, 0, dir, name, c, payload)
}

// appendLogRecordP appends one encoded log record; prev is the LSN of the
// phext's previous data record (0: none that recovery must find, see
// chainCut).
func appendLogRecordP(dst []byte, kind byte, lsn, prev uint64, dir uint32, name string, c phext.Coordinate, payload []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(logFixed+len(name)+len(payload)))
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint64(dst, lsn)
	dst = binary.BigEndian.AppendUint32(dst, dir)
	dst = append(dst, byte(len(name)))
	dst = append(dst, name...)
	head := len(dst)
	for _, v := range c {
		dst = binary.BigEndian.AppendUint16(dst, v)
	}
	dst = binary.BigEndian.AppendUint64(dst, prev)
	dst = append(dst, payload...)
	crc0 := crc32.Update(0, castagnoli, dst[start:start+4])
	hcrc := crc32.Update(crc0, castagnoli, dst[start+logRecHeader:head])
	crc := crc32.Update(hcrc, castagnoli, dst[head:])
	binary.BigEndian.PutUint32(dst[start+4:], crc)
	binary.BigEndian.PutUint32(dst[start+8:], hcrc)
	return dst
}

// ckptLen is the payload length of a checkpoint record.
const ckptLen = 56

// ckptPayload encodes a checkpoint record's payload: the new snapshot
// file's device and inode (for an operator), the LSN it covers, its
// identity (size, xxh3-64) and the identity of the snapshot it replaces.
// Recovery finds the snapshot on disk by identity (see recoverPhext).
func ckptPayload(dev, ino, covers uint64, id, prev walID) []byte {
	var b [ckptLen]byte
	binary.BigEndian.PutUint64(b[:], dev)
	binary.BigEndian.PutUint64(b[8:], ino)
	binary.BigEndian.PutUint64(b[16:], covers)
	binary.BigEndian.PutUint64(b[24:], id.size)
	binary.BigEndian.PutUint64(b[32:], id.hash)
	binary.BigEndian.PutUint64(b[40:], prev.size)
	binary.BigEndian.PutUint64(b[48:], prev.hash)
	return b[:]
}

// logRec is one decoded record; name and payload are views into the log.
type logRec struct {
	kind    byte
	lsn     uint64
	prev    uint64 // the phext's previous data record (0: none to find; version 1)
	dir     string // the data dir (resolved from the file's dir table)
	name    string
	c       phext.Coordinate
	payload []byte
	off     int64
}

// ckpt decodes an opCkpt payload.
func (r *logRec) ckpt() (covers uint64, id, prev walID) {
	p := r.payload
	return binary.BigEndian.Uint64(p[16:]), walID{binary.BigEndian.Uint64(p[24:]), binary.BigEndian.Uint64(p[32:])},
		walID{binary.BigEndian.Uint64(p[40:]), binary.BigEndian.Uint64(p[48:])}
}

// logScan is the result of parsing one log file.
type logScan struct {
	hdrOK    bool
	gen      uint64
	firstLSN uint64
	recs     []logRec // data and checkpoint records (dir records resolved)
	maxLSN   uint64
	end      int64 // where the valid log ends; < len(data) when the tail is torn
}

// scanLog parses a whole log file. As for a legacy per-phext WAL (scanWAL), a
// torn tail (a record cut short by a crash, or a damaged record followed
// only by zeros: a batch written with one write() whose later pages never
// reached the disk) ends the log; any other damage is ErrCorrupt naming
// path and offset. Records are checked for content too (known op, valid
// name, coordinate, scroll or document, known dir id), so replay cannot fail.
func scanLog(data []byte, path string) (logScan, error) {
	var w logScan
	if len(data) < logHeaderSize || allZero(data[:logHeaderSize]) {
		// Crash while the header was written: it is written and fsynced
		// before any record.
		if len(data) >= logHeaderSize && !allZero(data) {
			return w, corruptErr(path, 0, "bad log header")
		}
		return w, nil
	}
	h := data[:logHeaderSize]
	fixed := logFixed
	if string(h[:8]) == logMagicV1 {
		fixed = logFixedV1
	}
	if (string(h[:8]) != logMagic && fixed == logFixed) || binary.BigEndian.Uint32(h[28:]) != crc32.Checksum(h[:28], castagnoli) {
		return w, corruptErr(path, 0, "bad log header")
	}
	w.hdrOK = true
	w.gen = binary.BigEndian.Uint64(h[8:])
	w.firstLSN = binary.BigEndian.Uint64(h[16:])
	dirs := map[uint32]string{}
	off := logHeaderSize
	for off < len(data) {
		rest := data[off:]
		if len(rest) < logRecHeader {
			break // torn length/CRC
		}
		l := int(binary.BigEndian.Uint32(rest))
		if l < fixed || l > fixed+phext.MaxNameLen+MaxRecord {
			if allZero(rest) {
				break // zero-filled tail after a crash
			}
			return w, corruptErr(path, int64(off), "bad record length")
		}
		if logRecHeader+l > len(rest) {
			break // torn record: the append never finished
		}
		body := rest[logRecHeader : logRecHeader+l]
		n := min(int(body[13]), l-fixed)
		hcrc := crc32.Update(crc32.Update(0, castagnoli, rest[:4]), castagnoli, body[:14+n])
		crc := crc32.Update(hcrc, castagnoli, body[14+n:])
		if crc != binary.BigEndian.Uint32(rest[4:]) {
			if allZero(rest[logRecHeader+l:]) {
				break // torn inside the last write
			}
			if hcrc == binary.BigEndian.Uint32(rest[8:]) {
				// The head checks: the length and whose record it is are
				// known, only its content is damaged. That phext refuses to
				// open; the log goes on.
				r, _ := decodeLogBody(body[:14+n:14+n], dirs, true, fixed)
				if r.dir != "" && r.kind != opDir {
					r.off = int64(off)
					r.kind, r.payload = opBad, fmt.Appendf(nil, "%s at offset %d: record CRC mismatch", path, off)
					r.c[0] = headOnlyMark
					w.recs = append(w.recs, r)
					off += logRecHeader + l
					continue
				}
			}
			return w, corruptErr(path, int64(off), "record CRC mismatch")
		}
		if hcrc != binary.BigEndian.Uint32(rest[8:]) {
			return w, corruptErr(path, int64(off), "record head CRC mismatch")
		}
		r, why := decodeLogBody(body, dirs, false, fixed)
		r.off = int64(off)
		if why != "" {
			if r.dir == "" {
				return w, corruptErr(path, int64(off), why)
			}
			// The record is whole (its CRC matches) and names its phext:
			// only that phext is damaged (recovery refuses it, see
			// recoverPhext); the log goes on.
			r.kind, r.payload = opBad, fmt.Appendf(nil, "%s at offset %d: %s", path, off, why)
		}
		if r.kind == opDir {
			id := binary.BigEndian.Uint32(body[9:])
			if old, ok := dirs[id]; ok && old != string(r.payload) {
				return w, corruptErr(path, int64(off), "dir id defined twice")
			}
			dirs[id] = string(r.payload)
		} else {
			w.recs = append(w.recs, r)
		}
		off += logRecHeader + l
	}
	w.end = int64(off)
	// Records judged by their head alone count as damage only when a
	// whole record follows them; at the end of the log they are a torn
	// tail like any other.
	for len(w.recs) > 0 && w.recs[len(w.recs)-1].kind == opBad && w.recs[len(w.recs)-1].c[0] == headOnlyMark {
		w.end = w.recs[len(w.recs)-1].off
		w.recs = w.recs[:len(w.recs)-1]
	}
	w.maxLSN = 0
	for i := range w.recs {
		w.maxLSN = max(w.maxLSN, w.recs[i].lsn)
	}
	return w, nil
}

// headOnlyMark marks (in the coordinate) a record scanLog judged by its
// head alone.
const headOnlyMark = 0xFFFF

// decodeLogBody decodes and checks one record body; why != "" on damage.
// headOnly: body is only the head (op, LSN, dir, name): decode who the
// record is for, nothing more. fixed is the format's logFixed.
func decodeLogBody(body []byte, dirs map[uint32]string, headOnly bool, fixed int) (logRec, string) {
	r, why := decodeLogFields(body, dirs, headOnly, fixed)
	if why == "" && !headOnly {
		why = checkLogPayload(&r)
	}
	return r, why
}

// decodeLogFields is decodeLogBody without checkLogPayload: a reader that
// keeps few of the records it reads (the rotation's carry) checks the
// payloads of those only.
func decodeLogFields(body []byte, dirs map[uint32]string, headOnly bool, fixed int) (logRec, string) {
	var r logRec
	r.kind = body[0]
	r.lsn = binary.BigEndian.Uint64(body[1:])
	id := binary.BigEndian.Uint32(body[9:])
	n := int(body[13])
	if headOnly {
		if dir, ok := dirs[id]; ok && r.lsn != 0 && n <= phext.MaxNameLen && 14+n <= len(body) &&
			(n == 0 || phext.ValidName(body[14:14+n])) {
			r.dir, r.name = dir, string(body[14:14+n])
		}
		return r, ""
	}
	if n > phext.MaxNameLen || fixed+n > len(body) {
		return r, "bad name length in record"
	}
	name := body[14 : 14+n]
	cs := body[14+n:]
	for i := range r.c {
		r.c[i] = binary.BigEndian.Uint16(cs[2*i:])
	}
	if fixed == logFixed {
		r.prev = binary.BigEndian.Uint64(cs[18:])
	}
	r.payload = body[fixed+n:]
	if r.kind == opDir {
		if r.lsn != 0 || n != 0 || r.c != (phext.Coordinate{}) || len(r.payload) == 0 ||
			!filepath.IsAbs(string(r.payload)) || !utf8.Valid(r.payload) {
			return r, "bad dir record"
		}
		return r, ""
	}
	dir, ok := dirs[id]
	if !ok {
		return r, "record names an unknown dir id"
	}
	if r.lsn == 0 {
		return r, "record without LSN"
	}
	if n > 0 && !phext.ValidName(name) {
		return r, "bad phext name in record"
	}
	// From here a damaged record is attributed to its phext.
	r.dir, r.name = dir, string(name)
	if r.kind == opCkpt && (len(r.payload) != ckptLen || r.c != (phext.Coordinate{})) {
		return r, "bad checkpoint record"
	}
	return r, ""
}

// checkLogPayload checks what a data record of decodeLogFields says: its
// op, coordinate and payload (a scroll's text, a PUT's whole document:
// a scan of it). DIR and CHECKPOINT records pass.
func checkLogPayload(r *logRec) string {
	if r.kind == opDir || r.kind == opCkpt {
		return ""
	}
	wr := walRec{kind: r.kind, c: r.c, payload: r.payload}
	if wr.kind == opCompact {
		return "unknown record type"
	}
	if wr.kind == opPut && wr.c != (phext.Coordinate{}) {
		return "put record with a coordinate"
	}
	return checkRecord(&wr)
}

// logGroup is a group commit: records of any number of phexts written with
// one write() (and one fsync when some writer needs it).
type logGroup struct {
	buf  []byte
	sync bool
	done chan struct{}
	gen  uint64 // the generation it was written to (set before done)
	err  error  // set before done is closed
	// f, path and w: the file it was written to and its write's count
	// (wgen), set before done when err is nil (syncWritten).
	f    File
	path string
	w    uint64
	// writers: data writers in the group; each calls pfile.logged (which
	// calls commitLog.accounted) once its commit succeeded.
	writers int
}

// commitLog is one log writer: the worker log ("w"), written by whichever
// goroutine leads the group commit, or an event loop's ("l0", "l1", …),
// written only by that loop's rounds (LoopRound). See doc.go for its lock.
type commitLog struct {
	s      *Store
	writer string

	mu      sync.Mutex // guards everything below except the atomics
	cond    sync.Cond  // on mu: writing became false
	f       File
	path    string
	gen     uint64
	size    int64
	dirs    map[string]uint32
	cur     *logGroup // records waiting for the next write
	writing bool      // a goroutine is writing to f (only it touches f and size)
	closed  bool
	// loopBuf holds the records of the event loop round that owns the
	// write side (LoopRound): only that owner touches it.
	loopBuf []byte
	// round numbers the loop rounds that took the write side (only the
	// owner touches it); roundDone is the last one whose Flush ended
	// (written, or failed with the logs marked suspect). A phext whose
	// latest record is in round n of this log (pfile.llog, lround) gets no
	// record in another log before roundDone >= n (cond is broadcast).
	round     uint64
	roundDone atomic.Uint64
	// spare is the buffer of the last group written, for the next one.
	spare []byte
	// redefine: a write failed (and may have dropped dir records): the
	// next write starts with the whole dir table again.
	redefine bool
	// torn: a failed write could not be cut back, or a loop round's
	// write failed after its records were applied; the file takes nothing
	// more (the logs are suspect until a rotation replaces it).
	torn atomic.Bool

	// inflight counts, per generation, data records written there whose
	// phext has not yet recorded it (pfile.logged): a rotation keeps those
	// generations (neededGen), so an acknowledged write's generation is
	// never deleted between its write and its accounting.
	inflight map[uint64]int

	// wgen counts writes, sgen the last one known durable: the log is dirty
	// while wgen > sgen. Counting lets a close or rotation that races the
	// syncer see its own fsync as needed.
	wgen, sgen atomic.Uint64
	// wpend is the count the write in progress takes if it succeeds, set
	// by the write side's owner before its write() (so wgen <= wpend <=
	// wgen+1): an fsync that fails meanwhile may have had that write's
	// pages in its failed write-back.
	wpend atomic.Uint64
	// syncMu: a checkpoint record's fsync (syncWritten) holds it
	// exclusively, every other fsync of the log's files shared (a leaf:
	// taken with or without the write side, never with mu, nothing taken
	// under it; a group's successful fsync then takes it exclusively, no
	// I/O under it, to see the failures of the fsyncs beside it). The kernel reports a failed write-back to one fsync of
	// the file only, so an fsync running beside one that fails may return
	// success for pages that never reached the disk: syncWritten's runs
	// alone, and every failure of the others is recorded (lost) before
	// they give it back.
	syncMu sync.RWMutex
	// lost: writes up to this count may be lost for good (an fsync that
	// should have covered them failed, under syncMu). sgen counts writes
	// across files, so a later fsync of another file (after a rotation)
	// or of the same file (the failure was reported already) may pass
	// them: no write at or below lost ever counts as durable for
	// syncWritten (the logs are suspect and the repair checkpoints from
	// memory what they held).
	lost atomic.Uint64

	// faults counts failed writes and fsyncs, each counted before its
	// bytes are cut back: a reader of the files (Tenant.ReadChanges) that
	// sees it unchanged across its read saw no record that failed.
	faults atomic.Uint64
	// readBack lets one Tenant.ReadChanges read the files at a time
	// (a token: others wait for it, at most readBackWait, in turn).
	readBack        chan struct{}
	readBackWaiters atomic.Int64 // ReadChanges calls waiting for readBack
}

func newCommitLog(s *Store, writer string) *commitLog {
	l := &commitLog{s: s, writer: writer, readBack: make(chan struct{}, 1)}
	l.cond.L = &l.mu
	return l
}

// dirIDLocked returns dir's id (mu held), defining it first (a dir record
// appended to buf) when the log has not seen dir yet. Ids are kept across
// generations: every new file starts with the table (startGen).
func (l *commitLog) dirIDLocked(buf *[]byte, dir string) uint32 {
	id, ok := l.dirs[dir]
	if !ok {
		id = uint32(len(l.dirs) + 1)
		l.dirs[dir] = id
		*buf = appendLogRecord(*buf, opDir, 0, id, "", phext.Coordinate{}, []byte(dir))
	}
	return id
}

// errLogClosed: the Store is closing; nothing more is logged.
var errLogClosed = errors.New("store: commit log closed")

// logItem is one record to log; commit sets lsn.
type logItem struct {
	kind    byte
	c       phext.Coordinate
	payload []byte
	lsn     uint64
	// base: a checkpoint record naming the snapshot the phext's next
	// records are written against (see pfile.baseItem); commit sets its
	// covered LSN to its own LSN.
	base bool
}

// setBaseLSN fills in the covered LSN of a base checkpoint payload.
func setBaseLSN(payload []byte, lsn uint64) { binary.BigEndian.PutUint64(payload[16:], lsn) }

// commit logs items of phext name (data dir dir) with one group commit and
// returns the LSN of the last one and the generation it went to, once the
// bytes are in the kernel (sync: on the disk). Callers serialize commits of
// one phext (its fmu), so its records reach the log in LSN order. prev is
// the LSN of the phext's last data record (pfile.lastLSN): each data
// record carries its predecessor's (chainCut).
func (l *commitLog) commit(dir, name string, items []logItem, sync bool, prev uint64) (last, gen uint64, err error) {
	return l.commitX(dir, name, items, sync, false, prev)
}

// commitCkpt logs a checkpoint record durably. Unlike data records it is
// taken while the logs are suspect: checkpoints are the repair.
func (l *commitLog) commitCkpt(dir, name string, payload []byte) (last, gen uint64, err error) {
	return l.commitX(dir, name, []logItem{{kind: opCkpt, payload: payload}}, true, true, 0)
}

func (l *commitLog) commitX(dir, name string, items []logItem, sync, repair bool, prev uint64) (last, gen uint64, err error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, 0, errLogClosed
	}
	if err := l.s.logHealthy(); err != nil && (!repair || l.torn.Load()) {
		// A failed cut-back left bytes after the last good record:
		// nothing more goes into this file (recovery would see damage
		// followed by records); the repair's checkpoints log into the
		// next generation.
		l.mu.Unlock()
		return 0, 0, err
	}
	g := l.cur
	if g == nil {
		g = l.newGroupLocked()
		l.cur = g
	}
	id := l.dirIDLocked(&g.buf, dir)
	for i := range items {
		it := &items[i]
		last = l.s.lsn.Add(1)
		it.lsn = last
		if it.kind == opCkpt {
			if it.base {
				setBaseLSN(it.payload, last)
			}
			g.buf = appendLogRecord(g.buf, it.kind, last, id, name, it.c, it.payload)
			continue
		}
		g.buf = appendLogRecordP(g.buf, it.kind, last, prev, id, name, it.c, it.payload)
		prev = last
	}
	g.sync = g.sync || sync
	if !repair {
		g.writers++
	}
	if l.writing {
		l.mu.Unlock()
		<-g.done
		return last, g.gen, g.err
	}
	l.writing = true
	l.run(g)
	return last, g.gen, g.err
}

// ckptItem is one checkpoint record of a batch (commitCkpts).
type ckptItem struct {
	dir, name string
	payload   []byte
}

// commitCkpts logs the checkpoint records of many phexts in one group with
// one fsync (every checkpoint, one phext or a batch). Like commitCkpt it is
// taken while the logs are suspect (unless the file holds a torn write).
//
// The group is written like any other, but its fsync runs after the write
// side is given back (syncWritten): the groups of writers that queue
// meanwhile are written while it runs instead of waiting for it (in
// everysec mode a checkpoint's fsync made the next writer wait 2–8 ms,
// BenchmarkCheckpointStall). The record is durable before the caller
// renames the snapshot, as before.
func (l *commitLog) commitCkpts(items []ckptItem) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errLogClosed
	}
	if err := l.s.logHealthy(); err != nil && l.torn.Load() {
		l.mu.Unlock()
		return err
	}
	g := l.cur
	if g == nil {
		g = l.newGroupLocked()
		l.cur = g
	}
	for _, it := range items {
		id := l.dirIDLocked(&g.buf, it.dir)
		g.buf = appendLogRecord(g.buf, opCkpt, l.s.lsn.Add(1), id, it.name, phext.Coordinate{}, it.payload)
	}
	if l.writing {
		l.mu.Unlock()
		<-g.done
	} else {
		l.writing = true
		l.run(g)
	}
	if g.err != nil {
		return g.err
	}
	if ckptWrittenHook != nil {
		ckptWrittenHook()
	}
	return l.syncWritten(g.f, g.path, g.w)
}

// ckptWrittenHook, when set (tests only), runs between the write of a
// checkpoint record's group and its fsync (syncWritten).
var ckptWrittenHook func()

// syncWritten makes write w (a group already written to f) durable, without
// the write side, like the syncer's fsync: writers keep appending
// meanwhile. It trusts sgen only above lost: a rotation or Close that
// closed f first fsynced it itself (closeFile), and when that fsync failed
// (or any fsync after write w did, of f or of a later file) w is at or
// below lost and the record may never reach the disk, whatever a later
// fsync of another file or of f says. A failed fsync makes the logs
// suspect (the record may reach the disk or not; recovery ignores a
// checkpoint record whose snapshot was never renamed in, see STORAGE.md).
func (l *commitLog) syncWritten(f File, path string, w uint64) error {
	l.syncMu.Lock()
	if l.sgen.Load() < w && l.lost.Load() < w {
		err := f.Sync()
		switch {
		case err == nil:
			l.synced(w)
		case errors.Is(err, os.ErrClosed):
			// closeFile fsynced f first (holding syncMu, so it is
			// over): sgen or lost says how that went.
		default:
			l.fsyncFailedLocked(l.wpend.Load(), err)
			l.syncMu.Unlock()
			err = fmt.Errorf("store: fsync %s: %w", path, err)
			l.s.logFailed(err)
			return err
		}
	}
	durable, lost := l.sgen.Load() >= w, l.lost.Load() >= w
	l.syncMu.Unlock()
	if lost || !durable {
		if herr := l.s.logHealthy(); herr != nil {
			return fmt.Errorf("%w (an fsync of %s that should have covered the record failed)", herr, path)
		}
		return fmt.Errorf("%w: an fsync of %s that should have covered the record failed", errLogSuspect, path)
	}
	return nil
}

// fsyncFailedLocked records (syncMu held, shared or not) that an fsync
// failed which should have covered writes up to upTo. A caller without the write side passes
// wpend: a write may be between its write() and its count, and its pages
// may have been in the failed write-back.
//
// It also marks the logs suspect before syncMu is given back (the caller
// then reports the failure, logFailed): an fsync that succeeded beside
// this one and waits for syncMu exclusively (sync) sees the logs suspect.
func (l *commitLog) fsyncFailedLocked(upTo uint64, err error) {
	l.s.markSuspect(err)
	for {
		o := l.lost.Load()
		if o >= upTo || l.lost.CompareAndSwap(o, upTo) {
			return
		}
	}
}

// commitRaw logs recs (records of phext name read back from an older
// generation, with their own LSNs) durably, and returns the generation they
// went to. Recovery sorts a phext's records by LSN and drops duplicates, so
// a record carried while its old file stays is applied once.
func (l *commitLog) commitRaw(dir, name string, recs []logRec) (gen uint64, err error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, errLogClosed
	}
	if err := l.s.logHealthy(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	g := l.cur
	if g == nil {
		g = l.newGroupLocked()
		l.cur = g
	}
	id := l.dirIDLocked(&g.buf, dir)
	for i := range recs {
		r := &recs[i]
		g.buf = appendLogRecordP(g.buf, r.kind, r.lsn, r.prev, id, name, r.c, r.payload)
	}
	g.sync = true
	if l.writing {
		l.mu.Unlock()
		<-g.done
		return g.gen, g.err
	}
	l.writing = true
	l.run(g)
	return g.gen, g.err
}

// run writes pending groups until mine is done (mu held, writing owned;
// returns with mu released). Later groups are handed to a new goroutine so
// the leader's reply is not delayed by writers that came after it.
func (l *commitLog) run(mine *logGroup) {
	for {
		g := l.cur
		if g == nil {
			l.writing = false
			l.cond.Broadcast()
			l.mu.Unlock()
			return
		}
		if mine != nil && isClosed(mine.done) {
			l.mu.Unlock()
			go func() {
				l.mu.Lock()
				l.run(nil)
			}()
			return
		}
		l.cur = nil
		if l.torn.Load() {
			// A failed write could not be cut back: nothing more goes
			// into this file (recovery would see the torn bytes followed
			// by records). Groups queued meanwhile fail; nothing of them
			// was applied.
			g.gen, g.err = l.gen, l.s.logHealthy()
			if g.err == nil {
				g.err = fmt.Errorf("%w: %s holds a torn write", errLogSuspect, l.path)
			}
			close(g.done)
			continue
		}
		if l.redefine {
			// An earlier write failed and may have taken dir records
			// with it: define every dir again before this group.
			g.buf = append(l.dirTableLocked(nil), g.buf...)
			l.redefine = false
		}
		f, path, pre, gen := l.f, l.path, l.size, l.gen
		l.mu.Unlock()
		w, err := l.writeOut(f, pre, g.buf, g.sync)
		l.mu.Lock()
		if err == nil {
			l.size += int64(len(g.buf))
			l.addInflight(gen, g.writers)
			g.f, g.path, g.w = f, path, w
		} else {
			l.redefine = true
		}
		g.gen, g.err = gen, err
		if cap(g.buf) <= maxPooledBatch {
			// Only the writer touches a group's buffer: its waiters read
			// gen and err.
			l.spare = g.buf[:0]
		}
		g.buf = nil
		close(g.done)
	}
}

// newGroupLocked starts a group (mu held) on the spare buffer of an
// earlier one, so group commits do not grow a fresh buffer each time.
func (l *commitLog) newGroupLocked() *logGroup {
	g := &logGroup{done: make(chan struct{}), buf: l.spare}
	l.spare = nil
	return g
}

// addInflight counts n writers whose records went to generation gen (mu
// held).
func (l *commitLog) addInflight(gen uint64, n int) {
	if n == 0 {
		return
	}
	if l.inflight == nil {
		l.inflight = map[uint64]int{}
	}
	l.inflight[gen] += n
}

// accounted: a writer whose records went to gen recorded it (pfile.logged).
func (l *commitLog) accounted(gen uint64) {
	l.mu.Lock()
	if n := l.inflight[gen]; n > 1 {
		l.inflight[gen] = n - 1
	} else {
		delete(l.inflight, gen)
	}
	l.mu.Unlock()
}

// oldestInflight returns the oldest generation with unaccounted records
// (0: none).
func (l *commitLog) oldestInflight() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var o uint64
	for g := range l.inflight {
		if o == 0 || g < o {
			o = g
		}
	}
	return o
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// writeOut writes buf at the end of f (size pre) and fsyncs when sync is
// set (writing owned, mu not held), and returns the write's count (wgen).
// A failed write is cut back; a failed
// cut-back or fsync makes the store's logs suspect (see Store.logHealthy):
// the page cache is not trusted and every phext with records in this
// generation is checkpointed from memory before writes go on.
func (l *commitLog) writeOut(f File, pre int64, buf []byte, sync bool) (uint64, error) {
	l.wpend.Store(l.wgen.Load() + 1)
	n, err := f.Write(buf)
	if err == nil && n != len(buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		// No count taken: nothing is in progress for a failed fsync to
		// mark (the next write takes this count).
		l.wpend.Store(l.wgen.Load())
		l.faults.Add(1)
		if terr := f.Truncate(pre); terr != nil {
			l.torn.Store(true)
			l.s.logFailed(fmt.Errorf("store: cut back %s: %w", l.path, terr))
		}
		return 0, fmt.Errorf("store: append to %s: %w", l.path, err)
	}
	w := l.wgen.Add(1)
	if !sync {
		return w, nil
	}
	l.syncMu.RLock()
	err = f.Sync()
	if err != nil {
		l.fsyncFailedLocked(w, err)
	}
	l.syncMu.RUnlock()
	if err == nil {
		// An fsync beside this one (the syncer's) that failed may have
		// had this batch's pages in its failed write-back, and the
		// kernel told it, not us: syncMu taken exclusively waits until
		// each such fsync recorded its failure (lost).
		l.syncMu.Lock()
		if l.lost.Load() >= w {
			err = fmt.Errorf("%w: an fsync that should have covered the write failed", errLogSuspect)
		} else {
			l.synced(w)
		}
		l.syncMu.Unlock()
	}
	if err != nil {
		// After a failed fsync the kernel may have dropped dirty pages:
		// never pretend durability. This batch is cut back (nothing of it
		// was applied) and the logs become suspect; the earlier writes
		// to this file it should have covered are lost for good.
		l.faults.Add(1)
		if terr := f.Truncate(pre); terr != nil {
			l.torn.Store(true)
		}
		err = fmt.Errorf("store: fsync %s: %w", l.path, err)
		l.s.logFailed(err)
		return 0, err
	}
	return w, nil
}

// synced records that writes up to w are durable.
func (l *commitLog) synced(w uint64) {
	for {
		s := l.sgen.Load()
		if s >= w || l.sgen.CompareAndSwap(s, w) {
			return
		}
	}
}

// sync fsyncs the log if it was written since its last fsync (the everysec
// syncer, Tenant.Sync). It runs without the write side, so writers keep
// appending meanwhile. Only a completed fsync advances sgen: a rotation or
// Close that closed the file meanwhile fsynced it itself (closeFile), so
// the "file already closed" error is neither a failure nor a success.
func (l *commitLog) sync() error {
	l.mu.Lock()
	f, path, w := l.f, l.path, l.wgen.Load()
	l.mu.Unlock()
	if f == nil {
		return nil
	}
	l.syncMu.RLock()
	if w <= l.sgen.Load() {
		// An fsync covered it. One that failed beside that one (the
		// syncer's beside a rotation's close fsync, which succeeded)
		// may have been told of the pages' loss instead: wait for
		// those to mark the logs suspect (Tenant.Sync checks).
		l.syncMu.RUnlock()
		l.syncMu.Lock()
		//lint:ignore SA2001 a barrier: every fsync beside it has ended
		l.syncMu.Unlock()
		return nil
	}
	err := f.Sync()
	if err != nil && !errors.Is(err, os.ErrClosed) {
		l.fsyncFailedLocked(l.wpend.Load(), err)
	}
	l.syncMu.RUnlock()
	if err == nil {
		// As in writeOut: an fsync beside this one that failed may
		// have had these writes' pages in its failed write-back (it
		// marks the logs suspect and starts the repair itself), so
		// this caller (Tenant.Sync) is not told they are durable. The
		// count still moves: fsyncing again would not bring them back,
		// and the record durability rule reads lost (syncWritten).
		l.syncMu.Lock()
		l.synced(w)
		lost := l.lost.Load() >= w
		l.syncMu.Unlock()
		if lost {
			return fmt.Errorf("%w: an fsync of %s that should have covered its writes failed", errLogSuspect, path)
		}
	}
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil
		}
		err = fmt.Errorf("store: fsync %s: %w", path, err)
		l.s.logFailed(err)
		return err
	}
	return nil
}

// acquire waits until no goroutine writes and takes the write side (for a
// rotation or close): only the caller touches the file until release.
func (l *commitLog) acquire() {
	l.mu.Lock()
	for l.writing {
		l.cond.Wait()
	}
	l.writing = true
	l.mu.Unlock()
}

// release gives the write side back and writes the groups queued meanwhile.
func (l *commitLog) release() {
	l.mu.Lock()
	l.run(nil)
}

// closeFile fsyncs (when dirty) and closes the current file (write side
// owned). A failed fsync is returned and makes the logs suspect: the
// file's bytes may not be on the disk.
func (l *commitLog) closeFile() error {
	l.mu.Lock()
	f, path := l.f, l.path
	l.mu.Unlock()
	if f == nil {
		return nil
	}
	var err error
	if w := l.wgen.Load(); w > l.sgen.Load() {
		// The write side is ours: w counts every write to f.
		l.syncMu.RLock()
		if err = f.Sync(); err == nil {
			l.synced(w)
		} else {
			l.fsyncFailedLocked(w, err)
		}
		l.syncMu.RUnlock()
		if err != nil {
			err = fmt.Errorf("store: fsync %s: %w", path, err)
			l.s.logFailed(err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	l.mu.Lock()
	l.f = nil
	l.mu.Unlock()
	return err
}

// startGen creates the file of generation gen (write side owned, or the
// log not yet shared): header (first LSN first), the dir table so far
// (groups queued before the switch use its ids), and for the worker log
// the records carried over for phexts recovery could not restore;
// fsynced. The caller fsyncs LogDir (startGens) and switches to it
// (switchTo).
func (l *commitLog) startGen(gen, first uint64) (File, string, error) {
	path := filepath.Join(l.s.logDir, logName(gen, l.writer))
	fs := l.s.fs
	f, err := fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND|noFollow, 0o640)
	if err != nil {
		return nil, "", fmt.Errorf("store: create log %s: %w", path, err)
	}
	buf := appendLogHeader(make([]byte, 0, 4096), gen, first)
	l.mu.Lock()
	if l.dirs == nil {
		l.dirs = map[string]uint32{}
	}
	buf = l.dirTableLocked(buf)
	l.redefine = false
	if l.writer == workerLog {
		for _, rs := range [][]carriedRec{l.s.carried, l.s.recCkpts} {
			for i := range rs {
				r := &rs[i]
				id := l.dirIDLocked(&buf, r.dir)
				buf = appendLogRecordP(buf, r.kind, r.lsn, r.prev, id, r.name, r.c, r.payload)
			}
		}
	}
	l.mu.Unlock()
	fail := func(err error) (File, string, error) {
		f.Close()
		_ = fs.Remove(path)
		return nil, "", fmt.Errorf("store: create log %s: %w", path, err)
	}
	if _, err := f.Write(buf); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	return f, path, nil
}

// newGen is one log's file of a new generation (startGens).
type newGen struct {
	f    File
	path string
}

// startGens creates generation gen's file of every log in ls (their write
// sides owned, or the logs not yet shared) with one first LSN, above every
// LSN written to an older generation (chainFloor), and fsyncs LogDir: the
// new files' directory entries are durable before any record in them is
// acknowledged, whatever the tenants' modes. On error none is left.
func (s *Store) startGens(ls []*commitLog, gen uint64) ([]newGen, error) {
	first := s.lsn.Load() + 1
	out := make([]newGen, 0, len(ls))
	undo := func(err error) ([]newGen, error) {
		for _, g := range out {
			g.f.Close()
			_ = s.fs.Remove(g.path)
		}
		return nil, err
	}
	for _, l := range ls {
		f, path, err := l.startGen(gen, first)
		if err != nil {
			return undo(err)
		}
		out = append(out, newGen{f, path})
	}
	if err := s.fs.SyncDir(s.logDir); err != nil {
		return undo(fmt.Errorf("store: create log generation %d: fsync %s: %w", gen, s.logDir, err))
	}
	return out, nil
}

// dirTableLocked appends a dir record for every dir id (mu held).
func (l *commitLog) dirTableLocked(buf []byte) []byte {
	for dir, id := range l.dirs {
		buf = appendLogRecord(buf, opDir, 0, id, "", phext.Coordinate{}, []byte(dir))
	}
	return buf
}

// switchTo makes f (generation gen) the log's file (write side owned).
func (l *commitLog) switchTo(f File, path string, gen uint64) {
	fi, err := f.Stat()
	l.mu.Lock()
	l.f, l.path, l.gen = f, path, gen
	l.torn.Store(false)
	l.size = logHeaderSize
	if err == nil {
		l.size = fi.Size()
	}
	l.mu.Unlock()
}

// MaxLoopLogs bounds Options.LoopLogs: with the worker's log, the syncer
// fsyncs at most 1 + MaxLoopLogs logs per SyncInterval (16 a second in
// mode everysec, whatever the host's core count and the tenants).
const MaxLoopLogs = 15

// LoopRound is the writes an event loop applied in one round
// (Tenant.TryApply): their records wait in the commit log's loop buffer,
// and Flush writes them with one write(). While a round has records it
// owns the log's write side, so nothing else reaches the file before them
// (group commits queue behind it, and a rotation or close waits): a
// phext's records are in the file in LSN order, and whatever of the file
// survives a crash is a prefix of every phext's records. The zero value is
// ready; a LoopRound belongs to one goroutine.
type LoopRound struct {
	l       *commitLog // the log whose write side the round holds (nil: none)
	records int        // data records in the loop buffer
	seq     uint64     // the round's number in l (commitLog.round)
	loop    int        // the event loop: which loop log it writes (SetLoop)
}

// SetLoop says which event loop runs the round: its writes go to that
// loop's log (Options.LoopLogs; loop i writes log i modulo their number),
// which no other loop writes, so two loops' rounds never wait for each
// other. Call it once, before the round's first write.
func (r *LoopRound) SetLoop(i int) { r.loop = max(i, 0) }

// maxLoopRound bounds the bytes one round buffers: later writes of the
// round are declined (they take the blocking path).
const maxLoopRound = 1 << 20

// Held reports whether the round owns a log's write side: Flush must be
// called before the replies of its writes go out.
func (r *LoopRound) Held() bool { return r.l != nil }

// Records is the number of data records waiting for Flush.
func (r *LoopRound) Records() int { return r.records }

// take makes r own l's write side (mu tried, never waited for). false:
// the log is busy (written, a group queued), closed or suspect.
func (r *LoopRound) take(l *commitLog) bool {
	if r.l != nil {
		return r.l == l && len(l.loopBuf) < maxLoopRound
	}
	if !l.mu.TryLock() {
		return false
	}
	if l.writing || l.cur != nil || l.closed || l.torn.Load() || l.s.logHealthy() != nil {
		l.mu.Unlock()
		return false
	}
	l.writing = true
	l.round++
	r.seq = l.round
	buf := l.loopBuf[:0]
	if l.redefine {
		// An earlier write failed and may have taken dir records with
		// it: define every dir again first.
		buf = l.dirTableLocked(buf)
		l.redefine = false
	}
	l.loopBuf = buf
	l.mu.Unlock()
	r.l = l
	return true
}

// appendLoop appends a record of phext name (after base, its base
// checkpoint payload, when not nil) to the round's buffer and returns its
// LSN and the generation it goes to; prev is the phext's last data LSN.
// The caller holds the phext's fmu, so its LSNs grow in buffer order.
// ok=false (mu busy): nothing appended.
func (r *LoopRound) appendLoop(dir, name string, base []byte, it *logItem, prev uint64) (lsn, gen uint64, ok bool) {
	l := r.l
	if !l.mu.TryLock() {
		return 0, 0, false
	}
	buf := l.loopBuf
	id := l.dirIDLocked(&buf, dir)
	if base != nil {
		blsn := l.s.lsn.Add(1)
		setBaseLSN(base, blsn)
		buf = appendLogRecord(buf, opCkpt, blsn, id, name, phext.Coordinate{}, base)
	}
	lsn = l.s.lsn.Add(1)
	buf = appendLogRecordP(buf, it.kind, lsn, prev, id, name, it.c, it.payload)
	l.loopBuf = buf
	gen = l.gen
	l.mu.Unlock()
	r.records++
	return lsn, gen, true
}

// Flush writes the round's records with one write() (no fsync: the
// syncer does that) and gives the log's write side back; groups queued
// meanwhile are handed to a new goroutine, never written here. Replies to
// the round's writes may go out once it returned nil: their records are
// in the kernel. On error the round's writes, applied in memory already,
// must be answered with it; the log file takes nothing more and the
// logs are suspect, so the repair checkpoints those phexts from memory
// (see doc.go). Flush never waits for a lock and never fsyncs; the cut-
// back of a failed write runs on its own goroutine.
func (r *LoopRound) Flush() error {
	l := r.l
	if l == nil {
		return nil
	}
	n, seq := r.records, r.seq
	r.l, r.records = nil, 0
	buf := l.loopBuf
	if n == 0 {
		// Only a dir table (redefine) or nothing: write it with the next
		// group instead.
		l.roundDone.Store(seq)
		l.loopDone(0, len(buf) > 0)
		return nil
	}
	// The write side is ours: f, size and path change only under it.
	f, pre := l.f, l.size
	l.wpend.Store(l.wgen.Load() + 1)
	w, err := f.Write(buf)
	if err == nil && w != len(buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		err = fmt.Errorf("store: append to %s: %w", l.path, err)
		l.wpend.Store(l.wgen.Load()) // nothing in progress (as in writeOut)
		l.faults.Add(1)              // before the cut-back (see Tenant.ReadChanges)
		l.resetLoopBuf()
		// Suspect before the round counts as done: a writer of one of its
		// phexts waiting for it (or another loop) then sees the logs
		// refuse writes, and never logs a record after the lost one.
		l.s.markSuspect(err)
		l.roundDone.Store(seq)
		go l.loopFailed(f, pre, err)
		return err
	}
	l.wgen.Add(1)
	l.roundDone.Store(seq)
	l.loopDone(int64(len(buf)), false)
	return nil
}

// awaitRound waits until round seq of l ended (its Flush returned): a
// worker about to log a record of a phext whose latest one is in that
// round (never an event loop: it declines instead).
func (l *commitLog) awaitRound(seq uint64) {
	if l.roundDone.Load() >= seq {
		return
	}
	l.mu.Lock()
	for l.roundDone.Load() < seq {
		l.cond.Wait()
	}
	l.mu.Unlock()
}

func (l *commitLog) resetLoopBuf() {
	if cap(l.loopBuf) > maxPooledBatch {
		l.loopBuf = nil
	} else {
		l.loopBuf = l.loopBuf[:0]
	}
}

// loopDone gives the write side back after a round that wrote n bytes
// (redefine: the dir table it started with was not written). mu is only
// tried: when busy, a goroutine finishes.
func (l *commitLog) loopDone(n int64, redefine bool) {
	l.resetLoopBuf()
	if !l.mu.TryLock() {
		go func() {
			l.mu.Lock()
			l.finishLoop(n, redefine)
		}()
		return
	}
	l.finishLoop(n, redefine)
}

// finishLoop (mu held, write side owned; returns with mu released).
func (l *commitLog) finishLoop(n int64, redefine bool) {
	l.size += n
	if redefine {
		l.redefine = true
	}
	big := l.size > l.s.opts.LogRotateBytes
	if l.cur == nil {
		l.writing = false
		l.cond.Broadcast()
		l.mu.Unlock()
	} else {
		// Writers queued meanwhile wait for a leader; an event loop must
		// not write (or, in mode always, fsync) their group.
		l.mu.Unlock()
		go func() {
			l.mu.Lock()
			l.run(nil)
		}()
	}
	if big && !l.s.rotating.Load() {
		go l.s.kickRotate()
	}
}

// loopFailed finishes a loop round whose write failed (write side owned,
// on its own goroutine). Its records are applied in memory already, and
// records queued behind them may depend on them: the file takes nothing
// more (torn; queued groups fail, nothing of them applied) and the logs
// become suspect, so the repair checkpoints every dirty phext, the
// round's included, from memory.
func (l *commitLog) loopFailed(f File, pre int64, err error) {
	l.s.repairSuspect(err) // marked suspect by Flush
	l.torn.Store(true)
	if terr := f.Truncate(pre); terr != nil {
		l.s.log.Error("store: cut back after a failed loop write", "path", l.path, "err", terr)
	}
	l.mu.Lock()
	l.redefine = true
	l.run(nil)
}
