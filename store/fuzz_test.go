package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/phext/sq/phext"
)

// walSeed builds a valid WAL over the empty snapshot.
func walSeed(recs ...[]byte) []byte {
	w := appendWALHeader(nil, walID{0, xxh3Hash(nil)})
	for _, r := range recs {
		w = append(w, r...)
	}
	return w
}

// FuzzWALReplay feeds arbitrary WAL bytes to the parser and replay: it must
// either report ErrCorrupt or yield a consistent state, and replaying the
// valid prefix it found again must give the same state (so the truncation
// on open is idempotent).
func FuzzWALReplay(f *testing.F) {
	ins := appendRecord(nil, opInsert, coord(2), []byte("hello"))
	upd := appendRecord(nil, opUpdate, coord(1, 1), []byte("ü"))
	del := appendRecord(nil, opDelete, coord(2), nil)
	put := appendRecord(nil, opPut, phext.Coordinate{}, []byte("a\x17b\x01c"))
	cmp := appendRecord(nil, opCompact, phext.Coordinate{}, compactPayload(walID{3, 4}))
	f.Add(walSeed())
	f.Add(walSeed(ins, upd, del))
	f.Add(walSeed(put, ins, ins, cmp, del))
	f.Add(walSeed(ins, upd)[:60])
	f.Add(append(walSeed(ins), 0, 0, 0, 0, 0, 0, 0, 0, 0))
	bad := walSeed(ins, upd, del)
	bad[walHeaderSize+10] ^= 1
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		base := []byte("base\x17two")
		st1, err := replayBytes(base, data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error is not ErrCorrupt: %v", err)
			}
			return
		}
		if msg := pfileInvariant(st1.p); msg != "" {
			t.Fatal(msg)
		}
		st2, err := replayBytes(base, data[:st1.end])
		if err != nil {
			t.Fatalf("valid prefix does not replay: %v", err)
		}
		if !bytes.Equal(st1.doc(), st2.doc()) {
			t.Fatal("prefix replays differently")
		}
	})
}

type replayed struct {
	p   *pfile
	end int64
}

func (r replayed) doc() []byte {
	var out []byte
	prev := phext.Origin
	r.p.walk(func(c phext.Coordinate, text []byte) {
		out = phext.AppendDelimiters(out, prev, c)
		out = append(out, text...)
		prev = c
	})
	return out
}

// replayBytes replays a WAL image over a heap base document, in memory.
func replayBytes(base, wal []byte) (replayed, error) {
	idx, err := indexDoc(base, "base", true)
	if err != nil {
		return replayed{}, err
	}
	p := &pfile{base: base, index: idx, ov: map[phext.Coordinate][]byte{}, scrolls: int64(len(idx))}
	for _, e := range idx {
		p.bytes += int64(e.end - e.start)
	}
	w, err := scanWAL(wal, "fuzz.phext.wal")
	if err != nil {
		return replayed{}, err
	}
	for i := range w.recs {
		r := &w.recs[i]
		p.apply(r.kind, r.c, r.payload)
	}
	return replayed{p: p, end: w.end}, nil
}
