package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/phext/sq/phext"
)

// writeHistory performs a fixed mix of writes on phext "h" (after a Put
// and a checkpoint, so that the log holds a checkpoint record) and returns
// the serialized document after each one (states[0] = before any write).
// The store is then abandoned like kill -9 (Crash): the snapshot and the
// log file are as the writes left them. snap is a hard link to the
// snapshot (same inode: the checkpoint record names it); log the bytes of
// the log file, at logPath.
func writeHistory(t *testing.T, db *testDB, n int) (states []string, snap, logPath string, log []byte) {
	t.Helper()
	ten := db.ten
	name := []byte("h")
	if _, err := ten.Put(name, []byte("base\x17scroll two\x18three")); err != nil {
		t.Fatal(err)
	}
	if err := ten.Compact(name); err != nil {
		t.Fatal(err)
	}
	states = append(states, mustGet(t, ten, "h"))
	for i := 0; i < n; i++ {
		c := coord(uint16(1+i%4), uint16(1+i%3))
		var err error
		switch i % 5 {
		case 0, 1:
			_, err = ten.Insert(name, c, []byte("i"+itoa(int64(i))))
		case 2:
			_, err = ten.Update(name, c, []byte("u"+itoa(int64(i))))
		case 3:
			// The scroll updated by the previous step: never absent.
			_, err = ten.Delete(name, coord(uint16(1+(i-1)%4), uint16(1+(i-1)%3)))
		case 4:
			if i%10 == 4 {
				_, err = ten.Put(name, []byte("p"+itoa(int64(i))+"\x17x"))
			} else {
				_, err = ten.Insert(name, c, []byte("ü"))
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, mustGet(t, ten, "h"))
	}
	if err := ten.Sync(); err != nil {
		t.Fatal(err)
	}
	logPath = db.wlog.path
	Crash(db.Store)
	db.closed = true
	snap = filepath.Join(db.root, "img")
	if err := os.Mkdir(snap, 0o750); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(db.dir())
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), snapExt) {
			if err := os.Link(filepath.Join(db.dir(), e.Name()), filepath.Join(snap, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	return states, snap, logPath, fileBytes(t, logPath)
}

// restore puts the crash image back: the snapshots of img (the same
// inodes), the log (bytes) as the only log file, no temp files.
func restore(t *testing.T, db *testDB, img, logPath string, log []byte) {
	t.Helper()
	os.Remove(filepath.Join(db.dir(), "h.phext.tmp"))
	ents, _ := os.ReadDir(img)
	for _, e := range ents {
		os.Remove(filepath.Join(db.dir(), e.Name()))
		if err := os.Link(filepath.Join(img, e.Name()), filepath.Join(db.dir(), e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := filepath.Glob(filepath.Join(db.root, "log", "sq-*.log"))
	for _, fn := range old {
		os.Remove(fn)
	}
	if err := os.WriteFile(logPath, log, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestRecoveryEveryOffset cuts the log at every byte offset of the
// history's records and reopens: the state is always the one after the
// complete records (a torn tail is no error), never a record applied
// twice (the checkpoint record's coverage), and a write after recovery
// lands after the valid prefix.
func TestRecoveryEveryOffset(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo, FS: noSyncFS{}})
	states, snap, logPath, log := writeHistory(t, db, 20)
	w, err := scanLog(log, "log")
	if err != nil {
		t.Fatal(err)
	}
	// The data records after the last checkpoint record (the base record
	// logged with the first record after the checkpoint).
	var offs []int64
	for _, r := range w.recs {
		if r.kind == opCkpt {
			offs = offs[:0]
			continue
		}
		offs = append(offs, r.off)
	}
	if len(offs) != 20 || w.end != int64(len(log)) {
		t.Fatalf("records after the checkpoint %d, end %d, len %d", len(offs), w.end, len(log))
	}
	// Every offset with SQ_RELIABILITY=long; by default every fourth, and
	// each record's first byte and the one before it.
	var cuts []int
	long := os.Getenv("SQ_RELIABILITY") == "long"
	for cut := int(offs[0]); cut <= len(log); cut++ {
		edge := cut == len(log)
		for _, o := range offs {
			edge = edge || cut == int(o) || cut == int(o)-1
		}
		if long || edge || cut%4 == 0 {
			cuts = append(cuts, cut)
		}
	}
	for _, cut := range cuts {
		k := 0 // complete records in log[:cut]
		for k < len(offs) {
			end := int64(len(log))
			if k+1 < len(offs) {
				end = offs[k+1]
			}
			if end > int64(cut) {
				break
			}
			k++
		}
		restore(t, db, snap, logPath, log[:cut])
		db.open()
		got, err := db.ten.AppendGet(nil, []byte("h"))
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if string(got) != states[k] {
			t.Fatalf("cut %d (%d records): got %q want %q", cut, k, got, states[k])
		}
		if cut%5 == 0 || cut == len(log) {
			if _, err := db.ten.Insert([]byte("h"), coord(7), []byte("after")); err != nil {
				t.Fatalf("cut %d: insert: %v", cut, err)
			}
			want := mustGet(t, db.ten, "h")
			db.MustReopen()
			if got := mustGet(t, db.ten, "h"); got != want {
				t.Fatalf("cut %d: after reopen %q want %q", cut, got, want)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCorruptLog flips bytes inside the log. Damage that cannot be
// attributed to a phext (header, length, CRC) is ErrCorrupt naming the log
// and the offset, and Open refuses: nothing is replayed or deleted. A
// whole record (CRC good) whose content is invalid names its phext: only
// that phext refuses to open (ErrCorrupt with the log and offset), the
// others work, and the log is kept for an operator.
func TestCorruptLog(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo})
	if _, err := db.ten.Insert([]byte("other"), coord(1), []byte("fine")); err != nil {
		t.Fatal(err)
	}
	_, snap, logPath, log := writeHistory(t, db, 10)
	w, _ := scanLog(log, "x")
	var data []logRec
	for _, r := range w.recs {
		if r.kind != opCkpt && r.name == "h" {
			data = append(data, r)
		}
	}
	cases := []struct {
		name    string
		at      int64
		wantOff int64
	}{
		{name: "header magic", at: 2, wantOff: 0},
		{name: "header crc", at: 30, wantOff: 0},
		{name: "record 3 length", at: data[3].off + 3, wantOff: data[3].off},
		{name: "record 3 head CRC", at: data[3].off + 9, wantOff: data[3].off},
		{name: "record 5 LSN", at: data[5].off + logRecHeader + 2, wantOff: data[5].off},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := bytes.Clone(log)
			bad[tc.at] ^= 0x40
			restore(t, db, snap, logPath, bad)
			o := db.opts
			o.Logger, o.LogDir = discardLogger(), filepath.Join(db.root, "log")
			_, err := Open(&o)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), logPath) || !strings.Contains(err.Error(), "offset "+itoa(tc.wantOff)) {
				t.Errorf("error does not name file and offset %d: %v", tc.wantOff, err)
			}
			if !bytes.Equal(fileBytes(t, logPath), bad) {
				t.Error("log changed")
			}
		})
	}
	attributable := map[string]func() []byte{
		"invalid content, good CRC": func() []byte {
			// Re-encode record 2 of h with a coordinate part of 0.
			r := data[2]
			l := int(binary.BigEndian.Uint32(log[r.off:]))
			body := bytes.Clone(log[r.off+logRecHeader : r.off+logRecHeader+int64(l)])
			binary.BigEndian.PutUint16(body[14+len(r.name):], 0)
			crc := crc32.Update(crc32.Update(0, castagnoli, log[r.off:r.off+4]), castagnoli, body)
			bad := bytes.Clone(log)
			copy(bad[r.off+logRecHeader:], body)
			binary.BigEndian.PutUint32(bad[r.off+4:], crc)
			return bad
		},
		"payload byte (head intact)": func() []byte {
			bad := bytes.Clone(log)
			bad[data[2].off+logRecHeader+int64(logFixed+len("h"))] ^= 0x40
			return bad
		},
		"body CRC field (head intact)": func() []byte {
			bad := bytes.Clone(log)
			bad[data[2].off+5] ^= 0x40
			return bad
		},
	}
	for name, damage := range attributable {
		t.Run(name, func(t *testing.T) {
			attributed(t, db, snap, logPath, damage(), data[2].off)
		})
	}
	db.closed = true
}

// attributed checks a damaged log whose damage names phext h: only h
// refuses to open.
func attributed(t *testing.T, db *testDB, snap, logPath string, bad []byte, off int64) {
	t.Helper()
	{
		r := struct{ off int64 }{off}
		restore(t, db, snap, logPath, bad)
		db.open()
		defer db.Close()
		_, err := db.ten.AppendGet(nil, []byte("h"))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), logPath) || !strings.Contains(err.Error(), "offset "+itoa(r.off)) {
			t.Fatalf("err = %v, want ErrCorrupt naming the log and offset %d", err, r.off)
		}
		if got := mustSelect(t, db.ten, "other", coord(1)); got != "fine" {
			t.Errorf("other phext: %q", got)
		}
		if !bytes.Equal(fileBytes(t, logPath), bad) {
			t.Error("the damaged log was not kept")
		}
		// A clean close keeps it too, and the next open says the same.
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db.open()
		if _, err := db.ten.AppendGet(nil, []byte("h")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("after a reopen: %v", err)
		}
		if got := mustSelect(t, db.ten, "other", coord(1)); got != "fine" {
			t.Errorf("other phext after a reopen: %q", got)
		}
	}
}

func TestCorruptSnapshot(t *testing.T) {
	db := MustOpen(t, nil)
	cases := []struct {
		name string
		doc  string
		want error
		off  string
	}{
		{name: "not-utf8", doc: "good\x17bad \xff here", want: ErrCorrupt, off: "offset 9"},
		{name: "overflow", doc: "a" + strings.Repeat("\x17", 999) + "b", want: ErrOverflow, off: "offset 999"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(db.dir(), tc.name+".phext")
			os.WriteFile(path, []byte(tc.doc), 0o640)
			_, err := db.ten.AppendSelect(nil, []byte(tc.name), coord(1))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.off) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v", err)
			}
			if tc.want == ErrOverflow && !errors.Is(err, phext.ErrOverflow) {
				t.Errorf("not a phext.ErrOverflow: %v", err)
			}
			if _, err := db.ten.Insert([]byte(tc.name), coord(1), []byte("x")); !errors.Is(err, tc.want) {
				t.Errorf("insert: %v", err)
			}
			if string(fileBytes(t, path)) != tc.doc {
				t.Error("snapshot changed")
			}
		})
	}
}

// TestCheckpointCrashWindows crashes a checkpoint between each of its
// steps (the files as they were at that moment, snapshots by hard link so
// their inodes are kept) and reopens: the state is always the final one,
// with no record applied twice.
func TestCheckpointCrashWindows(t *testing.T) {
	for _, window := range []string{"logged, not renamed", "renamed", "done"} {
		t.Run(window, func(t *testing.T) {
			db := MustOpen(t, &Options{Durability: DurabilityNo})
			states, _, _, _ := writeHistory(t, db, 12)
			db.open()
			if got := mustGet(t, db.ten, "h"); got != states[len(states)-1] {
				t.Fatalf("recovered %q want %q", got, states[len(states)-1])
			}
			// More writes after recovery, then a checkpoint to crash.
			if _, err := db.ten.Insert([]byte("h"), coord(8), []byte("late")); err != nil {
				t.Fatal(err)
			}
			final := mustGet(t, db.ten, "h")
			img := t.TempDir()
			var logPath string
			var logBytes []byte
			take := func() {
				logPath = db.wlog.path
				logBytes = fileBytes(t, logPath)
				os.Remove(filepath.Join(img, "h.phext"))
				if err := os.Link(filepath.Join(db.dir(), "h.phext"), filepath.Join(img, "h.phext")); err != nil {
					t.Fatal(err)
				}
			}
			if window == "logged, not renamed" {
				checkpointHook = func(*pfile) { take() }
				defer func() { checkpointHook = nil }()
			}
			if err := db.ten.Compact([]byte("h")); err != nil {
				t.Fatal(err)
			}
			checkpointHook = nil
			if window != "logged, not renamed" {
				take()
			}
			if window == "done" {
				if _, err := db.ten.Insert([]byte("h"), coord(9), []byte("after")); err != nil {
					t.Fatal(err)
				}
				final = mustGet(t, db.ten, "h")
				if err := db.ten.Sync(); err != nil {
					t.Fatal(err)
				}
				logBytes = fileBytes(t, logPath)
			}
			Crash(db.Store)
			restore(t, db, img, logPath, logBytes)
			db.open()
			if got := mustGet(t, db.ten, "h"); got != final {
				t.Fatalf("got %q want %q", got, final)
			}
			if _, err := os.Stat(filepath.Join(db.dir(), "h.phext.tmp")); !errors.Is(err, os.ErrNotExist) {
				t.Error("temp file left")
			}
		})
	}
}

// faultFS injects errors at named steps.
type faultFS struct {
	osFS
	mu   sync.Mutex // guards fail: background rotations call hook too
	fail func(op, path string) error
}

// setFail replaces the fault function.
func (f *faultFS) setFail(fn func(op, path string) error) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

type faultFile struct {
	File
	fs   *faultFS
	path string
}

func (f *faultFS) hook(op, path string) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail == nil {
		return nil
	}
	return fail(op, path)
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if err := f.hook("open", name); err != nil {
		return nil, err
	}
	file, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, path: name}, nil
}

func (f *faultFS) Rename(o, n string) error {
	if err := f.hook("rename", n); err != nil {
		return err
	}
	return f.osFS.Rename(o, n)
}

func (f *faultFS) SyncDir(d string) error {
	if err := f.hook("syncdir", d); err != nil {
		return err
	}
	return f.osFS.SyncDir(d)
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err := f.fs.hook("write", f.path); err != nil {
		// A short write: half the bytes land, like a full disk would.
		n, _ := f.File.Write(p[:len(p)/2])
		return n, err
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	if err := f.fs.hook("sync", f.path); err != nil {
		return err
	}
	return f.File.Sync()
}

func TestFaults(t *testing.T) {
	cases := []struct {
		name    string
		op      string
		suffix  string
		err     error
		do      func(ten *Tenant) error
		durable Durability
	}{
		{name: "ENOSPC on log append", op: "write", suffix: ".log", err: syscall.ENOSPC, durable: DurabilityEverySec,
			do: func(ten *Tenant) error { _, err := ten.Insert([]byte("f"), coord(2), []byte("lost")); return err }},
		{name: "EIO on log fsync", op: "sync", suffix: ".log", err: syscall.EIO, durable: DurabilityAlways,
			do: func(ten *Tenant) error { _, err := ten.Update([]byte("f"), coord(1), []byte("lost")); return err }},
		{name: "EIO on put fsync", op: "sync", suffix: ".log", err: syscall.EIO, durable: DurabilityAlways,
			do: func(ten *Tenant) error { _, err := ten.Put([]byte("f"), []byte("lost")); return err }},
		{name: "ENOSPC on compaction temp", op: "write", suffix: ".tmp", err: syscall.ENOSPC, durable: DurabilityEverySec,
			do: func(ten *Tenant) error { return ten.Compact([]byte("f")) }},
		{name: "EIO on compaction temp fsync", op: "sync", suffix: ".tmp", err: syscall.EIO, durable: DurabilityEverySec,
			do: func(ten *Tenant) error { return ten.Compact([]byte("f")) }},
		{name: "EIO on rename", op: "rename", suffix: ".phext", err: syscall.EIO, durable: DurabilityEverySec,
			do: func(ten *Tenant) error { return ten.Compact([]byte("f")) }},
		{name: "EIO on dir fsync after rename", op: "syncdir", suffix: "", err: syscall.EIO, durable: DurabilityEverySec,
			do: func(ten *Tenant) error { return ten.Compact([]byte("f")) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ffs := &faultFS{}
			db := MustOpen(t, &Options{FS: ffs, Durability: tc.durable})
			ten := db.ten
			if _, err := ten.Insert([]byte("f"), coord(1), []byte("kept")); err != nil {
				t.Fatal(err)
			}
			if _, err := ten.Insert([]byte("f"), coord(3), []byte("also")); err != nil {
				t.Fatal(err)
			}
			before := mustGet(t, ten, "f")
			var armed atomic.Bool
			armed.Store(true)
			ffs.setFail(func(op, path string) error {
				if op == tc.op && strings.HasSuffix(path, tc.suffix) && armed.CompareAndSwap(true, false) {
					return tc.err
				}
				return nil
			})
			err := tc.do(ten)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			ffs.setFail(nil)
			if got := mustGet(t, ten, "f"); got != before {
				t.Fatalf("state changed: %q want %q", got, before)
			}
			// A failed log fsync starts the repair, a rotation that
			// checkpoints f from memory on its own goroutine: its temp
			// file is there until its rename. No temp file may be left
			// once it ended.
			Quiesce(db.Store)
			if _, err := os.Stat(filepath.Join(db.dir(), "f.phext.tmp")); !errors.Is(err, os.ErrNotExist) {
				t.Error("temp file left")
			}
			// Works again, and what the disk holds is the same.
			if _, err := ten.Insert([]byte("f"), coord(4), []byte("next")); err != nil {
				t.Fatal(err)
			}
			want := mustGet(t, ten, "f")
			db.MustReopen()
			if got := mustGet(t, db.ten, "f"); got != want {
				t.Fatalf("after reopen %q want %q", got, want)
			}
		})
	}
}
