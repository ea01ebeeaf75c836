package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phext/sq/phext"
)

func TestOperations(t *testing.T) {
	db := MustOpen(t, nil)
	ten := db.ten
	a, b, c := coord(1), coord(2), coord(2, 1)
	steps := []struct {
		name    string
		do      func() (int, error)
		wantN   int
		wantDoc string
	}{
		{name: "insert new", do: func() (int, error) { return ten.Insert(nil, a, []byte("hello")) }, wantN: 5, wantDoc: "hello"},
		{name: "insert appends", do: func() (int, error) { return ten.Insert(nil, a, []byte(" world")) }, wantN: 6, wantDoc: "hello world"},
		{name: "insert second scroll", do: func() (int, error) { return ten.Insert(nil, b, []byte("B")) }, wantN: 1, wantDoc: "hello world\x17B"},
		{name: "insert section", do: func() (int, error) { return ten.Insert(nil, c, []byte("C")) }, wantN: 1, wantDoc: "hello world\x17B\x18C"},
		{name: "update replaces", do: func() (int, error) { return ten.Update(nil, a, []byte("hi")) }, wantN: 2, wantDoc: "hi\x17B\x18C"},
		{name: "delete", do: func() (int, error) { return ten.Delete(nil, b) }, wantN: 1, wantDoc: "hi\x18C"},
		{name: "delete absent", do: func() (int, error) { return ten.Delete(nil, b) }, wantN: 0, wantDoc: "hi\x18C"},
		{name: "update empty removes", do: func() (int, error) { return ten.Update(nil, a, nil) }, wantN: 0, wantDoc: "\x18C"},
		{name: "put replaces all", do: func() (int, error) { return ten.Put(nil, []byte("x\x17y\x01z")) }, wantN: 3, wantDoc: "x\x17y\x01z"},
		{name: "insert after put", do: func() (int, error) { return ten.Insert(nil, a, []byte("!")) }, wantN: 1, wantDoc: "x!\x17y\x01z"},
		{name: "put normalizes", do: func() (int, error) { return ten.Put(nil, []byte("\x17\x17a\x17\x17")) }, wantN: 1, wantDoc: "\x17\x17a"},
		{name: "put empty", do: func() (int, error) { return ten.Put(nil, nil) }, wantN: 0, wantDoc: ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			n, err := st.do()
			if err != nil {
				t.Fatal(err)
			}
			if n != st.wantN {
				t.Errorf("n = %d, want %d", n, st.wantN)
			}
			if got := mustGet(t, ten, ""); got != st.wantDoc {
				t.Errorf("doc = %q, want %q", got, st.wantDoc)
			}
			db.check()
		})
	}
	db.MustReopen()
	if got := mustGet(t, db.ten, ""); got != "" {
		t.Errorf("after reopen doc = %q", got)
	}
}

func TestSelectTOCChecksum(t *testing.T) {
	db := MustOpen(t, nil)
	ten := db.ten
	name := []byte("notes")
	if _, err := ten.Put(name, []byte("alpha\x17beta\x19gamma is a long scroll with more than 32 bytes")); err != nil {
		t.Fatal(err)
	}
	if _, err := ten.Insert(name, coord(2), []byte("+")); err != nil {
		t.Fatal(err)
	}
	doc := mustGet(t, ten, "notes")
	if want := "alpha\x17beta+\x19gamma is a long scroll with more than 32 bytes"; doc != want {
		t.Fatalf("doc %q", doc)
	}
	if got := mustSelect(t, ten, "notes", coord(2, 1, 1)); got != "gamma is a long scroll with more than 32 bytes" {
		t.Errorf("select base scroll = %q", got)
	}
	if got := mustSelect(t, ten, "notes", coord(2)); got != "beta+" {
		t.Errorf("select overlay scroll = %q", got)
	}
	if got := mustSelect(t, ten, "notes", coord(9)); got != "" {
		t.Errorf("select absent = %q", got)
	}
	sum, err := ten.AppendChecksum(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	if want := phext.Checksum([]byte(doc)); string(sum) != want {
		t.Errorf("checksum %s, want %s", sum, want)
	}
	toc, err := ten.AppendTOC(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	wantTOC, err := phext.TextMap([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if string(toc) != string(wantTOC) {
		t.Errorf("toc %q, want %q", toc, wantTOC)
	}
	// Empty phext: SQ's toc of the empty document.
	toc, _ = ten.AppendTOC(nil, []byte("none"))
	if string(toc) != "* 1.1.1/1.1.1/1.1.1: \n" {
		t.Errorf("empty toc %q", toc)
	}
	sum, _ = ten.AppendChecksum(nil, []byte("none"))
	if string(sum) != "99aa06d3014798d86001c324468d497f" {
		t.Errorf("empty checksum %s", sum)
	}
	scrolls, _ := phext.Explode([]byte(doc))
	wantDelta, err := phext.Delta(scrolls, nil)
	if err != nil {
		t.Fatal(err)
	}
	delta, err := ten.AppendDelta(nil, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(delta) != string(wantDelta) {
		t.Errorf("delta %q, want %q", delta, wantDelta)
	}
	names, err := ten.List()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "notes" {
		t.Errorf("list %q", names)
	}
	db.MustReopen()
}

func TestValidation(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityAlways})
	ten := db.ten
	bad := phext.Origin
	bad[3] = 1000
	zero := phext.Origin
	zero[8] = 0
	cases := []struct {
		name string
		do   func() error
		want error
	}{
		{name: "name with slash", do: func() error { _, err := ten.Insert([]byte("a/b"), coord(1), []byte("x")); return err }, want: ErrBadName},
		{name: "name dotdot", do: func() error { _, err := ten.Insert([]byte(".."), coord(1), []byte("x")); return err }, want: ErrBadName},
		{name: "name leading dot", do: func() error { _, err := ten.Update([]byte(".x"), coord(1), []byte("x")); return err }, want: ErrBadName},
		{name: "name too long", do: func() error { _, err := ten.Delete([]byte(strings.Repeat("a", 65)), coord(1)); return err }, want: ErrBadName},
		{name: "name non-ascii", do: func() error { _, err := ten.AppendSelect(nil, []byte("é"), coord(1)); return err }, want: ErrBadName},
		{name: "name nul", do: func() error { _, err := ten.AppendGet(nil, []byte("a\x00")); return err }, want: ErrBadName},
		{name: "put bad name", do: func() error { _, err := ten.Put([]byte("a b"), nil); return err }, want: ErrBadName},
		{name: "coord 1000", do: func() error { _, err := ten.Insert(nil, bad, []byte("x")); return err }, want: ErrBadCoord},
		{name: "coord 0", do: func() error { _, err := ten.Update(nil, zero, []byte("x")); return err }, want: ErrBadCoord},
		{name: "select coord 0", do: func() error { _, err := ten.AppendSelect(nil, nil, zero); return err }, want: ErrBadCoord},
		{name: "delete coord 0", do: func() error { _, err := ten.Delete(nil, zero); return err }, want: ErrBadCoord},
		{name: "bad name before bad coord", do: func() error { _, err := ten.Insert([]byte("/"), zero, []byte("\x17")); return err }, want: ErrBadName},
		{name: "bad coord before bad scroll", do: func() error { _, err := ten.Insert(nil, zero, []byte("\x17")); return err }, want: ErrBadCoord},
		{name: "scroll with delimiter", do: func() error { _, err := ten.Insert(nil, coord(1), []byte("a\x17b")); return err }, want: ErrBadScroll},
		{name: "scroll with library break", do: func() error { _, err := ten.Update(nil, coord(1), []byte("a\x01")); return err }, want: ErrBadScroll},
		{name: "scroll bad utf8", do: func() error { _, err := ten.Insert(nil, coord(1), []byte{0xff}); return err }, want: ErrBadScroll},
		{name: "put bad utf8", do: func() error { _, err := ten.Put(nil, []byte{'a', 0xc3}); return err }, want: ErrBadScroll},
		{name: "put overflow", do: func() error { _, err := ten.Put(nil, []byte("a"+strings.Repeat("\x17", 999)+"b")); return err }, want: ErrOverflow},
		{name: "put overflow is phext overflow", do: func() error { _, err := ten.Put(nil, []byte(strings.Repeat("\x01", 1000)+"b")); return err }, want: phext.ErrOverflow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Nothing was written anywhere.
	ents, err := os.ReadDir(db.dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("unexpected file %s", e.Name())
	}
}

func TestDefaultPhextFile(t *testing.T) {
	db := MustOpen(t, nil)
	// A data dir written by the Rust SQ: .phext is the default phext.
	if err := os.WriteFile(filepath.Join(db.dir(), ".phext"), []byte("sq\x17data"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(db.dir(), "other.phext"), []byte("o"), 0o640); err != nil {
		t.Fatal(err)
	}
	if got := mustSelect(t, db.ten, "", coord(2)); got != "data" {
		t.Fatalf("select = %q", got)
	}
	names, _ := db.ten.List()
	if strings.Join(names, "|") != "|other" {
		t.Errorf("list = %q", names)
	}
	if _, err := db.ten.Insert(nil, coord(3), []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := db.ten.Compact(nil); err != nil {
		t.Fatal(err)
	}
	if got := string(fileBytes(t, filepath.Join(db.dir(), ".phext"))); got != "sq\x17data\x17new" {
		t.Errorf("snapshot after compaction = %q", got)
	}
	if _, err := os.Stat(filepath.Join(db.dir(), ".phext.wal")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a per-phext WAL was created: %v", err)
	}
	db.MustReopen()
}

func TestQuota(t *testing.T) {
	db := &testDB{}
	// The quota charges scroll bytes plus ScrollCost a scroll: 100 bytes
	// of text in two scrolls fill it.
	const quota = 100 + 2*ScrollCost
	db = MustOpenQuota(t, quota)
	ten := db.ten
	if _, err := ten.Insert(nil, coord(1), []byte(strings.Repeat("a", 60))); err != nil {
		t.Fatal(err)
	}
	before := mustGet(t, ten, "")
	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{name: "insert over", do: func() error { _, err := ten.Insert(nil, coord(2), []byte(strings.Repeat("b", 41))); return err }, want: ErrQuota},
		{name: "insert other phext over", do: func() error {
			_, err := ten.Insert([]byte("p2"), coord(2), []byte(strings.Repeat("b", 41)))
			return err
		}, want: ErrQuota},
		{name: "update over", do: func() error {
			_, err := ten.Update(nil, coord(1), []byte(strings.Repeat("c", 101+ScrollCost)))
			return err
		}, want: ErrQuota},
		{name: "put over", do: func() error { _, err := ten.Put(nil, []byte(strings.Repeat("d", 101+ScrollCost))); return err }, want: ErrQuota},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); !errors.Is(err, st.want) {
				t.Fatalf("err = %v, want %v", err, st.want)
			}
			if got := mustGet(t, ten, ""); got != before {
				t.Fatalf("state changed: %q", got)
			}
		})
	}
	// Exactly up to the quota fits; shrinking and deleting free space.
	if _, err := ten.Insert(nil, coord(2), []byte(strings.Repeat("b", 40))); err != nil {
		t.Fatal(err)
	}
	u, _ := ten.Usage()
	if u.Bytes != quota || u.QuotaBytes != quota || u.Scrolls != 2 || u.Phexts != 1 {
		t.Errorf("usage %+v", u)
	}
	if _, err := ten.Update(nil, coord(1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := ten.Delete(nil, coord(2)); err != nil {
		t.Fatal(err)
	}
	if u, _ := ten.Usage(); u.Bytes != 1+ScrollCost {
		t.Errorf("usage after shrink %+v", u)
	}
	// A Put is charged ScrollCost a scroll too: one scroll of
	// quota-ScrollCost bytes fills the quota, one byte more does not fit.
	if _, err := ten.Put(nil, []byte(strings.Repeat("p", quota-ScrollCost+1))); !errors.Is(err, ErrQuota) {
		t.Fatalf("put of text + scroll cost over the quota: %v", err)
	}
	if _, err := ten.Put(nil, []byte(strings.Repeat("p", quota-ScrollCost))); err != nil {
		t.Fatal(err)
	}
	// Raising the quota in place.
	if t2, err := db.AddTenant(TenantConfig{Name: "t1", DataDir: db.dir(), QuotaBytes: quota + 200}); err != nil || t2 != ten {
		t.Fatalf("re-add: %v %v", t2 == ten, err)
	}
	if _, err := ten.Insert(nil, coord(5), []byte(strings.Repeat("q", 100))); err != nil {
		t.Fatal(err)
	}
	db.MustReopen()
	if u, _ := db.ten.Usage(); u.Bytes > 200+walHeaderSize*2+400 {
		t.Errorf("usage after reopen %+v", u)
	}
}

func MustOpenQuota(tb testing.TB, quota int64) *testDB {
	tb.Helper()
	db := &testDB{tb: tb, root: tb.TempDir(), quota: quota}
	db.open()
	tb.Cleanup(func() {
		if !db.closed {
			db.check()
			db.Close()
		}
	})
	return db
}

func TestClosed(t *testing.T) {
	db := MustOpen(t, nil)
	ten := db.ten
	if _, err := ten.Insert(nil, coord(1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := db.RemoveTenant("t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := ten.Insert(nil, coord(1), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("insert after remove: %v", err)
	}
	if _, err := ten.AppendSelect(nil, nil, coord(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("select after remove: %v", err)
	}
	if db.Tenant("t1") != nil {
		t.Error("tenant still listed")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second close: %v", err)
	}
	if _, err := db.AddTenant(TenantConfig{Name: "x", DataDir: t.TempDir()}); !errors.Is(err, ErrClosed) {
		t.Errorf("add after close: %v", err)
	}
}

func TestDurabilityParse(t *testing.T) {
	for _, d := range []Durability{DurabilityAlways, DurabilityEverySec, DurabilityNo} {
		got, err := ParseDurability(d.String())
		if err != nil || got != d {
			t.Errorf("%v: %v %v", d, got, err)
		}
	}
	if _, err := ParseDurability("sometimes"); err == nil {
		t.Error("want error")
	}
}

// TestSymlinks: links planted in a data dir are never followed.
func TestSymlinks(t *testing.T) {
	db := MustOpen(t, nil)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	os.WriteFile(secret, []byte("top secret"), 0o600)
	os.Symlink(secret, filepath.Join(db.dir(), "leak.phext"))
	os.WriteFile(filepath.Join(db.dir(), "clobber.phext"), nil, 0o640)
	os.Symlink(secret, filepath.Join(db.dir(), "clobber.phext.wal"))
	if got, err := db.ten.AppendGet(nil, []byte("leak")); err == nil || strings.Contains(string(got), "secret") {
		t.Errorf("read through a link: %q %v", got, err)
	}
	if _, err := db.ten.Insert([]byte("clobber"), coord(1), []byte("x")); err == nil {
		t.Error("wrote through a link")
	}
	if b, _ := os.ReadFile(secret); string(b) != "top secret" {
		t.Errorf("target changed: %q", b)
	}
}

// TestCaseFoldingDir: on a case-insensitive data dir, names differing only
// in case are one phext.
func TestCaseFoldingDir(t *testing.T) {
	db := MustOpen(t, &Options{FS: foldFS{}})
	if _, err := db.ten.Insert([]byte("Notes"), coord(1), []byte("upper ")); err != nil {
		t.Fatal(err)
	}
	// The probe runs on the tenant's first request.
	if !db.ten.fold {
		t.Fatal("probe did not detect folding")
	}
	if _, err := db.ten.Insert([]byte("notes"), coord(1), []byte("lower")); err != nil {
		t.Fatal(err)
	}
	if got := mustSelect(t, db.ten, "NOTES", coord(1)); got != "upper lower" {
		t.Errorf("got %q", got)
	}
	db.MustReopen()
	if got := mustSelect(t, db.ten, "notes", coord(1)); got != "upper lower" {
		t.Errorf("after reopen %q", got)
	}
	plain := MustOpen(t, nil)
	if _, err := plain.ten.AppendSelect(nil, nil, coord(1)); err != nil {
		t.Fatal(err)
	}
	if plain.ten.fold {
		t.Error("case-sensitive dir seen as folding")
	}
}

// foldFS lower-cases the base name of every path, like a case-insensitive
// mount.
type foldFS struct{ osFS }

func fold(p string) string { return filepath.Join(filepath.Dir(p), strings.ToLower(filepath.Base(p))) }

func (f foldFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	return f.osFS.OpenFile(fold(name), flag, perm)
}
func (f foldFS) Rename(o, n string) error { return f.osFS.Rename(fold(o), fold(n)) }
func (f foldFS) Remove(name string) error { return f.osFS.Remove(fold(name)) }
