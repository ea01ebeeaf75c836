package store

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"runtime"
)

// Crash abandons s the way a killed process would: no flush, no fsync, no
// checkpoint; its log dir lock is released so that a new Store can open
// the same files. s must not be used afterwards.
func Crash(s *Store) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.lmu.Lock()
	s.shutting = true
	s.lmu.Unlock()
	close(s.stop)
	s.wg.Wait()
	for _, l := range s.logs {
		l.acquire()
		l.mu.Lock()
		l.closed = true
		if l.f != nil {
			l.f.Close()
			l.f = nil
		}
		l.mu.Unlock()
	}
	s.unlockLogDir()
}

// Quiesce waits until no rotation runs or is about to.
func Quiesce(s *Store) {
	for s.rotating.Load() {
		runtime.Gosched()
	}
	// Wait for a running rotation by taking its lock.
	s.rotMu.Lock()
	defer s.rotMu.Unlock()
	_ = s.gen.Load()
}

// Rotate starts a new log generation now and truncates the old ones away
// where every phext allows it.
func Rotate(s *Store) error { return s.rotate() }

// The store's own tests call these; production code has no use for them
// (staticcheck -tests=false lists none).

// rotate is a rotation now (rotateIf with no condition).
func (s *Store) rotate() error { return s.rotateIf(nil) }

// dirty reports whether the log was written since its last fsync.
func (l *commitLog) dirty() bool { return l.wgen.Load() > l.sgen.Load() }

// appendWALHeader writes the header of a per-phext WAL of an earlier
// version (wal.go reads them), for tests that leave one to be replayed.
func appendWALHeader(dst []byte, id walID) []byte {
	start := len(dst)
	dst = append(dst, walMagic...)
	dst = binary.BigEndian.AppendUint64(dst, id.size)
	dst = binary.BigEndian.AppendUint64(dst, id.hash)
	dst = binary.BigEndian.AppendUint32(dst, 0)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// LogRecords returns the offsets of the data records of phext name of dir
// in the log file at path.
func LogRecords(path, dir, name string) []int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	w, _ := scanLog(data, path)
	var offs []int64
	for _, r := range w.recs {
		if r.dir == dir && r.name == name && r.kind != opCkpt {
			offs = append(offs, r.off)
		}
	}
	return offs
}

// FixLogRecordCRCs recomputes both CRCs of the log record at off.
func FixLogRecordCRCs(b []byte, off int) {
	l := int(binary.BigEndian.Uint32(b[off:]))
	body := b[off+logRecHeader : off+logRecHeader+l]
	n := int(body[13])
	h := crc32.Update(crc32.Update(0, castagnoli, b[off:off+4]), castagnoli, body[:14+n])
	binary.BigEndian.PutUint32(b[off+8:], h)
	binary.BigEndian.PutUint32(b[off+4:], crc32.Update(h, castagnoli, body[14+n:]))
}

// LogRecHeader is the size of a log record's header.
const LogRecHeader = logRecHeader
