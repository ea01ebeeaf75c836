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
	idx, err := indexDoc(base, "base", true, 0)
	if err != nil {
		return replayed{}, err
	}
	p := &pfile{base: base, index: idx, ov: map[phext.Coordinate][]byte{}, scrolls: idx.scrolls, bytes: idx.bytes}
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

// logSeed builds a valid commit log naming dir "/d" as id 1.
func logSeed(recs ...[]byte) []byte {
	w := appendLogHeader(nil, 1, 1)
	w = appendLogRecord(w, opDir, 0, 1, "", phext.Coordinate{}, []byte("/d"))
	for _, r := range recs {
		w = append(w, r...)
	}
	return w
}

// FuzzLogReplay feeds arbitrary commit log bytes to the parser and replays
// every phext's records, as recovery does: the parser either reports
// ErrCorrupt or yields records that apply without failing (per phext, in
// LSN order), and the valid prefix it found parses to the same records
// again (so a torn tail is cut the same way twice).
func FuzzLogReplay(f *testing.F) {
	ins := appendLogRecord(nil, opInsert, 2, 1, "f", coord(2), []byte("hello"))
	upd := appendLogRecord(nil, opUpdate, 3, 1, "f", coord(1, 1), []byte("ü"))
	del := appendLogRecord(nil, opDelete, 4, 1, "", coord(2), nil)
	put := appendLogRecord(nil, opPut, 5, 1, "g", phext.Coordinate{}, []byte("a\x17b\x01c"))
	ck := appendLogRecord(nil, opCkpt, 6, 1, "f", phext.Coordinate{}, ckptPayload(1, 2, 3, walID{4, 5}, walID{6, 7}))
	f.Add(logSeed())
	f.Add(logSeed(ins, upd, del))
	f.Add(logSeed(put, ins, ins, ck, del))
	f.Add(logSeed(ins, upd)[:70])
	f.Add(append(logSeed(ins), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	bad := logSeed(ins, upd, del)
	bad[logHeaderSize+40] ^= 1
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := scanLog(data, "fuzz.log")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error is not ErrCorrupt: %v", err)
			}
			return
		}
		docs := map[string]*pfile{}
		for i := range w.recs {
			r := &w.recs[i]
			if r.lsn > w.maxLSN {
				t.Fatalf("record LSN %d above the max %d", r.lsn, w.maxLSN)
			}
			if r.kind == opBad || r.kind == opCkpt {
				continue
			}
			k := r.dir + "\x00" + r.name
			p := docs[k]
			if p == nil {
				base := []byte("base\x17two")
				idx, _ := indexDoc(base, "base", true, 0)
				p = &pfile{base: base, index: idx, ov: map[phext.Coordinate][]byte{}, scrolls: idx.scrolls, bytes: idx.bytes}
				docs[k] = p
			}
			p.apply(r.kind, r.c, r.payload)
		}
		for _, p := range docs {
			if msg := pfileInvariant(p); msg != "" {
				t.Fatal(msg)
			}
		}
		w2, err := scanLog(data[:w.end], "fuzz.log")
		if err != nil || len(w2.recs) != len(w.recs) || w2.end != w.end {
			t.Fatalf("valid prefix parses differently: %v (%d/%d records)", err, len(w2.recs), len(w.recs))
		}
	})
}
