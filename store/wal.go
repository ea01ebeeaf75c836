package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/phext/sq/phext"
	"github.com/zeebo/xxh3"
)

// The per-phext write-ahead logs of earlier versions (<name>.phext.wal and
// the .new/.ckpt files their rewrites and checkpoints left) are only read:
// a phext that still has one replays it once at open, checkpoints, and
// removes it (upgradeLegacyWAL). Their record body (op, coordinate,
// payload) and its checks are shared with the commit log (log.go).
//
// File names: <data_dir>/<name>.phext is the snapshot, <name>.phext.tmp a
// checkpoint in progress.
const (
	snapExt  = ".phext"
	walExt   = ".wal"
	tmpExt   = ".tmp"
	newExt   = ".new"    // <name>.phext.wal.new: a WAL written by rewriteLocked
	ckptExt  = ".ckpt"   // <name>.phext.wal.ckpt: a WAL written by a checkpoint
	rwTmpExt = ".rw.tmp" // <name>.phext.rw.tmp: a rewrite's snapshot in progress
)

// WAL layout (see docs/STORAGE.md). All integers big-endian.
//
//	header (32 bytes): "SQWAL001" | u64 snapshot size | u64 xxh3-64 of the
//	                   snapshot | u32 0 | u32 CRC32C of bytes 0..27
//	record:            u32 body length L | u32 CRC32C(length field, body) |
//	                   body = u8 op | 9 x u16 coordinate | payload (L-19 bytes)
const (
	walMagic      = "SQWAL001"
	walHeaderSize = 32
	recHeaderSize = 8
	recFixed      = 19 // op + coordinate
	// MaxRecord is the largest payload of one WAL record: the longest scroll
	// text of an Insert/Update and the largest document of a Put.
	MaxRecord = 1 << 30
)

// Record kinds.
const (
	opInsert  byte = 1 // payload: text appended to the scroll
	opUpdate  byte = 2 // payload: the scroll's new text (empty = delete)
	opDelete  byte = 3 // no payload
	opPut     byte = 4 // payload: the whole new document
	opCompact byte = 5 // payload: u64 size + u64 xxh3-64 of the new snapshot
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walID names a snapshot: its size and xxh3-64. A WAL belongs to the
// snapshot its header names.
type walID struct {
	size uint64
	hash uint64
}

// appendRecord appends one encoded WAL record.
func appendRecord(dst []byte, kind byte, c phext.Coordinate, payload []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(recFixed+len(payload)))
	dst = append(dst, 0, 0, 0, 0)
	dst = append(dst, kind)
	for _, v := range c {
		dst = binary.BigEndian.AppendUint16(dst, v)
	}
	dst = append(dst, payload...)
	crc := crc32.Update(0, castagnoli, dst[start:start+4])
	crc = crc32.Update(crc, castagnoli, dst[start+recHeaderSize:])
	binary.BigEndian.PutUint32(dst[start+4:], crc)
	return dst
}

func compactPayload(id walID) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], id.size)
	binary.BigEndian.PutUint64(b[8:], id.hash)
	return b[:]
}

// walRec is one decoded record; payload is a view into the WAL bytes.
type walRec struct {
	kind    byte
	c       phext.Coordinate
	payload []byte
	off     int64
}

func (r *walRec) compactID() walID {
	return walID{binary.BigEndian.Uint64(r.payload), binary.BigEndian.Uint64(r.payload[8:])}
}

// walScan is the result of parsing a WAL file.
type walScan struct {
	hdrOK bool  // a valid header was read
	id    walID // the snapshot the header names
	recs  []walRec
	end   int64 // where the valid log ends; < len(data) when the tail is torn
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// scanWAL parses a whole WAL. A torn tail (a record cut short by a crash, or
// a zero-filled tail) ends the log; any other damage is ErrCorrupt naming
// path and offset. Records are checked for content too (known op, valid
// coordinate, valid scroll or document), so replay cannot fail.
func scanWAL(data []byte, path string) (walScan, error) {
	var w walScan
	if len(data) < walHeaderSize || allZero(data[:walHeaderSize]) {
		// Crash while the header was written (it is the first write to a
		// new or reset WAL, and fsynced before any record).
		if !allZero(data) && len(data) >= walHeaderSize {
			return w, corruptErr(path, 0, "bad WAL header")
		}
		return w, nil
	}
	h := data[:walHeaderSize]
	if string(h[:8]) != walMagic || binary.BigEndian.Uint32(h[28:]) != crc32.Checksum(h[:28], castagnoli) {
		return w, corruptErr(path, 0, "bad WAL header")
	}
	w.hdrOK = true
	w.id = walID{binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint64(h[16:])}
	off := walHeaderSize
	for off < len(data) {
		rest := data[off:]
		if len(rest) < recHeaderSize {
			break // torn length/CRC
		}
		l := int(binary.BigEndian.Uint32(rest))
		if l < recFixed || l > recFixed+MaxRecord {
			if allZero(rest) {
				break // zero-filled tail after a crash
			}
			return w, corruptErr(path, int64(off), "bad record length")
		}
		// A batch is written with one write(); after a power loss any of
		// its pages may be missing (zeros). A damaged record followed only
		// by zeros is such a torn tail, not corruption.
		if recHeaderSize+l > len(rest) {
			break // torn record: the append never finished
		}
		body := rest[recHeaderSize : recHeaderSize+l]
		crc := crc32.Update(crc32.Update(0, castagnoli, rest[:4]), castagnoli, body)
		if crc != binary.BigEndian.Uint32(rest[4:]) {
			if allZero(rest[recHeaderSize+l:]) {
				break // last record (or last before zeros), torn inside
			}
			return w, corruptErr(path, int64(off), "record CRC mismatch")
		}
		r := walRec{kind: body[0], payload: body[recFixed:], off: int64(off)}
		for i := range r.c {
			r.c[i] = binary.BigEndian.Uint16(body[1+2*i:])
		}
		if why := checkRecord(&r); why != "" {
			return w, corruptErr(path, int64(off), why)
		}
		w.recs = append(w.recs, r)
		off += recHeaderSize + l
	}
	w.end = int64(off)
	return w, nil
}

// checkRecord validates a record's content; "" means good.
func checkRecord(r *walRec) string {
	switch r.kind {
	case opInsert, opUpdate:
		if !r.c.Valid() {
			return "bad coordinate in record"
		}
		if !phext.ValidScroll(r.payload) {
			return "bad scroll text in record"
		}
	case opDelete:
		if !r.c.Valid() {
			return "bad coordinate in record"
		}
		if len(r.payload) != 0 {
			return "delete record with payload"
		}
	case opPut:
		if !utf8.Valid(r.payload) {
			return "put record is not valid UTF-8"
		}
		var sc phext.Scanner
		sc.Reset(r.payload)
		for sc.Next() {
		}
		if sc.Err() != nil {
			return "put record: " + sc.Err().Error()
		}
	case opCompact:
		if len(r.payload) != 16 {
			return "bad compaction record"
		}
	default:
		return "unknown record type"
	}
	return ""
}

// upgradeLegacyWAL replays a per-phext WAL left by an earlier version into
// a new snapshot and removes it (open, p owned). The rules are the old
// recovery's: a .ckpt or .new WAL whose header names the snapshot on disk
// is the one to replay (a checkpoint or rewrite crashed between its
// renames); a WAL naming another snapshot is stale when it has no records
// or its last record is a COMPACT naming this snapshot, else ErrCorrupt.
// On error nothing on disk changed.
func (p *pfile) upgradeLegacyWAL() error {
	fs := p.t.s.fs
	paths := []string{p.walPath, p.walPath + newExt, p.walPath + ckptExt}
	var datas [3][]byte
	var found [3]bool
	anyFound := false
	for i, path := range paths {
		data, err := readAll(fs, path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err
		}
		datas[i], found[i], anyFound = data, true, true
	}
	if !anyFound {
		return nil
	}
	id := walID{uint64(len(p.base)), xxh3.Hash(p.base)}
	use := -1
	for _, i := range []int{2, 1} {
		if !found[i] {
			continue
		}
		if w, err := scanWAL(datas[i][:min(len(datas[i]), walHeaderSize)], paths[i]); err == nil && w.hdrOK && w.id == id {
			use = i
			break
		}
	}
	if use < 0 && found[0] {
		use = 0
	}
	dir := filepath.Dir(p.path)
	if use > 0 {
		// As the old open did: the .new or .ckpt WAL becomes the WAL.
		if err := fs.Rename(paths[use], paths[0]); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if err := fs.SyncDir(dir); err != nil {
			return fmt.Errorf("store: fsync dir %s: %w", dir, err)
		}
		datas[0], found[0], found[use] = datas[use], true, false
		use = 0
	}
	applied := 0
	var end int64
	if use == 0 {
		w, err := scanWAL(datas[0], paths[0])
		if err != nil {
			return err
		}
		end = w.end
		if w.hdrOK && w.id != id {
			last := len(w.recs) - 1
			if last >= 0 && (w.recs[last].kind != opCompact || w.recs[last].compactID() != id) {
				return corruptErr(paths[0], 0, "WAL belongs to another snapshot")
			}
		} else if w.hdrOK {
			for i := range w.recs {
				r := &w.recs[i]
				if r.kind != opCompact {
					p.apply(r.kind, r.c, r.payload)
					applied++
				}
			}
		}
	}
	if applied > 0 {
		// The old protocol, so that a crash at any step leaves files the
		// next open reads the same way: new snapshot fsynced, a COMPACT
		// record naming it appended to the WAL and fsynced, rename.
		nid, _, _, err := p.writeDoc(p.tmpPath, func(fn func(phext.Coordinate, []byte)) { p.walk(fn) })
		if err != nil {
			return err
		}
		if err := appendLegacyCompact(fs, paths[0], end, nid); err != nil {
			_ = fs.Remove(p.tmpPath)
			return err
		}
		if err := fs.Rename(p.tmpPath, p.path); err != nil {
			_ = fs.Remove(p.tmpPath)
			return fmt.Errorf("store: %w", err)
		}
		if err := fs.SyncDir(dir); err != nil {
			return fmt.Errorf("store: fsync dir %s: %w", dir, err)
		}
		p.unmap()
		p.ov = make(map[phext.Coordinate][]byte)
		p.frozen = nil
		p.copied = 0
		if err := p.loadSnapshot(); err != nil {
			return err
		}
	}
	for i, path := range paths {
		if found[i] {
			if err := fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("store: %w", err)
			}
		}
	}
	if err := fs.SyncDir(dir); err != nil {
		return fmt.Errorf("store: fsync dir %s: %w", dir, err)
	}
	p.t.s.log.Info("store: per-phext WAL of an earlier version replayed and removed", "path", p.walPath, "records", applied)
	return nil
}

// appendLegacyCompact cuts a legacy WAL to end (dropping a torn tail) and
// appends a COMPACT record naming snapshot id, fsynced.
func appendLegacyCompact(fs FS, path string, end int64, id walID) error {
	f, err := fs.OpenFile(path, os.O_WRONLY|noFollow, 0)
	if err != nil {
		return openErr(path, err)
	}
	defer f.Close()
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("store: truncate %s: %w", path, err)
	}
	wf, err := fs.OpenFile(path, os.O_WRONLY|os.O_APPEND|noFollow, 0)
	if err != nil {
		return openErr(path, err)
	}
	defer wf.Close()
	if _, err := wf.Write(appendRecord(nil, opCompact, phext.Coordinate{}, compactPayload(id))); err != nil {
		return fmt.Errorf("store: append to %s: %w", path, err)
	}
	if err := wf.Sync(); err != nil {
		return fmt.Errorf("store: fsync %s: %w", path, err)
	}
	return nil
}
