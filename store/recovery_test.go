package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/phext/sq/phext"
)

// writeHistory performs a fixed mix of writes on phext "h" and returns the
// serialized document after each one (states[0] = before any write), plus
// the snapshot and WAL bytes at the end.
func writeHistory(t *testing.T, db *testDB, n int) (states []string, snap, wal []byte) {
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
	snap = fileBytes(t, filepath.Join(db.dir(), "h.phext"))
	wal = fileBytes(t, filepath.Join(db.dir(), "h.phext.wal"))
	return states, snap, wal
}

// TestRecoveryEveryOffset truncates the WAL at every byte offset and
// reopens: the state is always the one after the complete records.
func TestRecoveryEveryOffset(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo})
	states, snap, wal := writeHistory(t, db, 20)
	w, err := scanWAL(wal, "wal")
	if err != nil {
		t.Fatal(err)
	}
	if len(w.recs) != 20 || w.end != int64(len(wal)) {
		t.Fatalf("recs %d end %d len %d", len(w.recs), w.end, len(wal))
	}
	s, err := Open(&Options{Logger: discardLogger(), Durability: DurabilityNo})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	root := t.TempDir()
	for cut := 0; cut <= len(wal); cut++ {
		// Complete records in wal[:cut].
		k := 0
		for k < len(w.recs) {
			end := int64(len(wal))
			if k+1 < len(w.recs) {
				end = w.recs[k+1].off
			}
			if end > int64(cut) {
				break
			}
			k++
		}
		dir := filepath.Join(root, "c"+itoa(int64(cut)))
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "h.phext"), snap, 0o640)
		os.WriteFile(filepath.Join(dir, "h.phext.wal"), wal[:cut], 0o640)
		ten, err := s.AddTenant(TenantConfig{Name: dir, DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		got, err := ten.AppendGet(nil, []byte("h"))
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if string(got) != states[k] {
			t.Fatalf("cut %d (%d records): got %q want %q", cut, k, got, states[k])
		}
		if cut%5 != 0 && cut != len(wal) {
			s.RemoveTenant(dir)
			os.RemoveAll(dir)
			continue
		}
		// A write after recovery lands after the valid prefix.
		if _, err := ten.Insert([]byte("h"), coord(7), []byte("after")); err != nil {
			t.Fatalf("cut %d: insert: %v", cut, err)
		}
		want := mustGet(t, ten, "h")
		if err := s.RemoveTenant(dir); err != nil {
			t.Fatal(err)
		}
		ten, _ = s.AddTenant(TenantConfig{Name: dir, DataDir: dir})
		if got := mustGet(t, ten, "h"); got != want {
			t.Fatalf("cut %d: after reopen %q want %q", cut, got, want)
		}
		s.RemoveTenant(dir)
		os.RemoveAll(dir)
	}
}

// TestCorruptWAL flips bytes inside the log: a damaged record in the middle
// is ErrCorrupt naming file and offset, files stay untouched, and the
// tenant's other phexts keep working.
func TestCorruptWAL(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo})
	_, snap, wal := writeHistory(t, db, 10)
	w, _ := scanWAL(wal, "x")
	if _, err := db.ten.Insert([]byte("other"), coord(1), []byte("fine")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	walPath := filepath.Join(db.dir(), "h.phext.wal")
	snapPath := filepath.Join(db.dir(), "h.phext")
	cases := []struct {
		name    string
		at      int64
		wantOff int64
	}{
		{name: "header magic", at: 2, wantOff: 0},
		{name: "header crc", at: 30, wantOff: 0},
		{name: "record 3 length", at: w.recs[3].off + 3, wantOff: w.recs[3].off},
		{name: "record 3 crc", at: w.recs[3].off + 5, wantOff: w.recs[3].off},
		{name: "record 5 body", at: w.recs[5].off + recHeaderSize + 2, wantOff: w.recs[5].off},
		{name: "record 0 payload", at: w.recs[0].off + recHeaderSize + recFixed, wantOff: w.recs[0].off},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := bytes.Clone(wal)
			bad[tc.at] ^= 0x40
			os.WriteFile(walPath, bad, 0o640)
			os.WriteFile(snapPath, snap, 0o640)
			db.open()
			defer db.Close()
			_, err := db.ten.AppendGet(nil, []byte("h"))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), walPath) || !strings.Contains(err.Error(), "offset "+itoa(tc.wantOff)) {
				t.Errorf("error does not name file and offset %d: %v", tc.wantOff, err)
			}
			if _, err := db.ten.Insert([]byte("h"), coord(1), []byte("x")); !errors.Is(err, ErrCorrupt) {
				t.Errorf("write to corrupt phext: %v", err)
			}
			if !bytes.Equal(fileBytes(t, walPath), bad) || !bytes.Equal(fileBytes(t, snapPath), snap) {
				t.Error("files changed")
			}
			if got := mustSelect(t, db.ten, "other", coord(1)); got != "fine" {
				t.Errorf("other phext: %q", got)
			}
		})
	}
	t.Run("wal of another snapshot", func(t *testing.T) {
		os.WriteFile(walPath, wal, 0o640)
		os.WriteFile(snapPath, []byte("replaced by someone"), 0o640)
		db.open()
		defer db.Close()
		if _, err := db.ten.AppendGet(nil, []byte("h")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("err = %v", err)
		}
	})
	db.closed = true
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
			if _, err := os.Stat(path + walExt); !errors.Is(err, os.ErrNotExist) {
				t.Error("wal created")
			}
		})
	}
}

// TestCompactionCrashWindows simulates a crash between each step of a
// compaction by building the files each window leaves behind.
func TestCompactionCrashWindows(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityNo})
	states, snap, wal := writeHistory(t, db, 12)
	final := states[len(states)-1]
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	newSnap := []byte(final)
	id := walID{uint64(len(newSnap)), xxh3Hash(newSnap)}
	walMarked := appendRecord(bytes.Clone(wal), opCompact, phext.Coordinate{}, compactPayload(id))
	dir := db.dir()
	cases := []struct {
		name      string
		snap, wal []byte
		tmp       []byte
	}{
		{name: "temp written, not renamed", snap: snap, wal: wal, tmp: newSnap},
		{name: "marker logged, not renamed", snap: snap, wal: walMarked, tmp: newSnap},
		{name: "renamed, wal not reset", snap: newSnap, wal: walMarked},
		{name: "reset torn (empty wal)", snap: newSnap, wal: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(filepath.Join(dir, "h.phext"), tc.snap, 0o640)
			os.WriteFile(filepath.Join(dir, "h.phext.wal"), tc.wal, 0o640)
			if tc.tmp != nil {
				os.WriteFile(filepath.Join(dir, "h.phext.tmp"), tc.tmp, 0o640)
			}
			db.open()
			defer db.Close()
			if got := mustGet(t, db.ten, "h"); got != final {
				t.Fatalf("got %q want %q", got, final)
			}
			if _, err := os.Stat(filepath.Join(dir, "h.phext.tmp")); !errors.Is(err, os.ErrNotExist) {
				t.Error("temp file left")
			}
			db.check()
		})
	}
	db.closed = true
}

// faultFS injects errors at named steps.
type faultFS struct {
	osFS
	fail func(op, path string) error
}

type faultFile struct {
	File
	fs   *faultFS
	path string
}

func (f *faultFS) hook(op, path string) error {
	if f.fail == nil {
		return nil
	}
	return f.fail(op, path)
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
		{name: "ENOSPC on WAL append", op: "write", suffix: ".wal", err: syscall.ENOSPC, durable: DurabilityEverySec,
			do: func(ten *Tenant) error { _, err := ten.Insert([]byte("f"), coord(2), []byte("lost")); return err }},
		{name: "EIO on WAL fsync", op: "sync", suffix: ".wal", err: syscall.EIO, durable: DurabilityAlways,
			do: func(ten *Tenant) error { _, err := ten.Update([]byte("f"), coord(1), []byte("lost")); return err }},
		{name: "EIO on put fsync", op: "sync", suffix: ".wal", err: syscall.EIO, durable: DurabilityAlways,
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
			armed := true
			ffs.fail = func(op, path string) error {
				if armed && op == tc.op && strings.HasSuffix(path, tc.suffix) {
					armed = false
					return tc.err
				}
				return nil
			}
			err := tc.do(ten)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			ffs.fail = nil
			if got := mustGet(t, ten, "f"); got != before {
				t.Fatalf("state changed: %q want %q", got, before)
			}
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
