package store

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
)

// TestReadChangesBoundsCopiedTexts (review18b): ReadChanges keeps at most
// maxBytes of the phext's log records, and the texts it copies from the
// phext's state (the backward pass: inserts whose scroll's earlier state
// is not in the log) count too. It used to copy every such scroll's whole
// text, so a resume over a few one-byte inserts into big scrolls made the
// server allocate (and copy under the phext's locks) the phext's size,
// whatever the 8 MiB reservation said: here 16 MiB for 64 bytes of
// records. Past the bound the answer is ErrNotInLog (one resync).
func TestReadChangesBoundsCopiedTexts(t *testing.T) {
	db := MustOpen(t, &Options{LogKeepBytes: 1})
	name := []byte("big")
	mustOK := mustWrite(t)
	const scrolls, size = 64, 256 << 10
	big := bytes.Repeat([]byte("b"), size)
	for i := 0; i < scrolls; i++ {
		mustOK(db.ten.Update(name, coord(uint16(i+1)), big))
	}
	db.MustReopen() // the updates leave the log (and its 1-byte history)
	from := db.ten.Position()
	for i := 0; i < scrolls; i++ {
		mustOK(db.ten.Insert(name, coord(uint16(i+1)), []byte("i")))
	}
	const maxBytes = 256 << 10
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	chs, _, err := db.ten.ReadChanges("big", from, maxBytes)
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4*maxBytes+(1<<20) {
		t.Fatalf("ReadChanges with maxBytes %d allocated %d bytes (%d changes, err %v)", maxBytes, alloc, len(chs), err)
	}
	if !errors.Is(err, ErrNotInLog) {
		t.Fatalf("ReadChanges past its bound: %d changes, %v; want ErrNotInLog", len(chs), err)
	}
	// Within the bound the same read back works.
	chs, _, err = db.ten.ReadChanges("big", from, 64<<20)
	if err != nil || len(chs) != scrolls || chs[0].Len != size+1 {
		t.Fatalf("ReadChanges within its bound: %d changes, %v", len(chs), err)
	}
}
