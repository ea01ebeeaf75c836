package store

import (
	"errors"
	"fmt"
	"testing"
)

func TestWriteMany(t *testing.T) {
	cfs := newCountFS()
	db := MustOpen(t, &Options{FS: &cfs.faultFS, Durability: DurabilityAlways})
	name := []byte("wm")
	if _, err := db.ten.Update(name, coord(1), []byte("old")); err != nil {
		t.Fatal(err)
	}
	base := cfs.walSyncs.Load()
	ws := []Write{
		{Kind: WriteInsert, Name: name, Coord: coord(1), Text: []byte("+a")},
		{Kind: WriteUpdate, Name: name, Coord: coord(2), Text: []byte("two")},
		{Kind: WriteInsert, Name: name, Coord: coord(2), Text: []byte("\x17bad")},
		{Kind: WriteDelete, Name: name, Coord: coord(1)},
		{Kind: WriteInsert, Name: name, Coord: coord(1), Text: []byte("new")},
		{Kind: WriteUpdate, Name: []byte("../x"), Coord: coord(3), Text: []byte("no")},
		{Kind: WriteUpdate, Name: []byte("other"), Coord: coord(3), Text: []byte("o")},
		{Kind: WriteDelete, Name: name, Coord: coord(9)},
	}
	db.ten.WriteMany(ws[:5])
	// Five writes to one phext: one group commit, one fsync.
	if n := cfs.walSyncs.Load() - base; n != 1 {
		t.Errorf("%d WAL fsyncs for 5 writes to one phext in one WriteMany; want 1", n)
	}
	db.ten.WriteMany(ws[5:])
	want := []struct {
		n   int
		err error
	}{{2, nil}, {3, nil}, {0, ErrBadScroll}, {5, nil}, {3, nil}, {0, ErrBadName}, {1, nil}, {0, nil}}
	for i, w := range want {
		if ws[i].N != w.n || !errors.Is(ws[i].Err, w.err) || (w.err == nil && ws[i].Err != nil) {
			t.Errorf("write %d: got (%d, %v), want (%d, %v)", i, ws[i].N, ws[i].Err, w.n, w.err)
		}
	}
	for c, wantText := range map[uint16]string{1: "new", 2: "two", 9: ""} {
		if got := mustSelect(t, db.ten, "wm", coord(c)); got != wantText {
			t.Errorf("scroll %d = %q, want %q", c, got, wantText)
		}
	}
	if got := mustSelect(t, db.ten, "other", coord(3)); got != "o" {
		t.Errorf("other phext = %q", got)
	}
	db.MustReopen()
	if got := mustSelect(t, db.ten, "wm", coord(1)); got != "new" {
		t.Errorf("after reopen scroll 1 = %q", got)
	}
}

// BenchmarkWriteMany compares 16 updates one by one with the same 16 in one
// WriteMany, in always mode (one fsync per group commit).
func BenchmarkWriteMany(b *testing.B) {
	text := make([]byte, 1024)
	for i := range text {
		text[i] = 'w'
	}
	for _, mode := range []string{"one-by-one", "write-many"} {
		b.Run(mode, func(b *testing.B) {
			db := MustOpen(b, &Options{Durability: DurabilityAlways})
			ws := make([]Write, 16)
			b.ReportAllocs()
			b.SetBytes(int64(len(ws) * len(text)))
			for i := 0; i < b.N; i++ {
				for k := range ws {
					ws[k] = Write{Kind: WriteUpdate, Name: []byte("bm"), Coord: coord(uint16(k + 1)), Text: text}
				}
				if mode == "write-many" {
					db.ten.WriteMany(ws)
				} else {
					for k := range ws {
						ws[k].N, ws[k].Err = db.ten.Update(ws[k].Name, ws[k].Coord, ws[k].Text)
					}
				}
				for k := range ws {
					if ws[k].Err != nil {
						b.Fatal(fmt.Sprint(k, ws[k].Err))
					}
				}
			}
			b.ReportMetric(float64(b.N*len(ws))/b.Elapsed().Seconds(), "writes/s")
		})
	}
}
