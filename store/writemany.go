package store

import (
	"bytes"

	"github.com/phext/sq/phext"
)

// WriteKind says what one Write of WriteMany does.
type WriteKind uint8

// The kinds of Write, as the Insert, Update and Delete methods.
const (
	WriteInsert WriteKind = iota + 1
	WriteUpdate
	WriteDelete
)

// Write is one write of a WriteMany call: its request (Kind, Name, Coord,
// Text) and, after the call, its result (N, Err) exactly as the matching
// Insert, Update or Delete would return them.
type Write struct {
	Kind  WriteKind
	Name  []byte
	Coord phext.Coordinate
	Text  []byte

	N   int
	Err error
}

// maxGroup bounds the writes queued in one group before they are flushed:
// the per-call bookkeeping lives in a fixed array.
const maxGroup = 64

// WriteMany runs ws in order with the results Insert, Update and Delete
// would give one by one, but consecutive writes to one phext join a single
// group commit: a pipeline of writes costs one log write (and one fsync in
// always mode) instead of one each. Results are stored in each ws[i].
func (t *Tenant) WriteMany(ws []Write) {
	for i := 0; i < len(ws); {
		j := i + 1
		for j < len(ws) && j-i < maxGroup && bytes.Equal(ws[j].Name, ws[i].Name) {
			j++
		}
		t.writeGroup(ws[i:j])
		i = j
	}
}

// writeGroup runs writes to one phext (len(ws) ≤ maxGroup).
func (t *Tenant) writeGroup(ws []Write) {
	var ops [maxGroup]op
	var queued [maxGroup]struct {
		b   *batch
		idx int
	}
	for i := range ws {
		w := &ws[i]
		w.N, w.Err = 0, nil
		switch w.Kind {
		case WriteInsert, WriteUpdate:
			w.Err = checkScrollWrite(w.Name, w.Coord, w.Text)
			kind := byte(opInsert)
			if w.Kind == WriteUpdate {
				kind = opUpdate
			}
			ops[i] = op{kind: kind, c: w.Coord, text: w.Text}
		case WriteDelete:
			if !phext.ValidName(w.Name) {
				w.Err = ErrBadName
			} else if !w.Coord.Valid() {
				w.Err = ErrBadCoord
			}
			ops[i] = op{kind: opDelete, c: w.Coord}
		default:
			w.Err = ErrBadScroll
		}
	}
	t.s.repair()
	var lead *batch
	var p *pfile
	rest := len(ws) // index of the first write not queued: run one by one
	for i := range ws {
		if ws[i].Err != nil {
			continue
		}
		if p == nil {
			var err error
			if p, err = t.get(ws[i].Name); err != nil {
				for k := i; k < len(ws); k++ {
					if ws[k].Err == nil {
						ws[k].Err = err
					}
				}
				break
			}
		}
		b, idx, leader, retry, n, err := p.enqueue(&ops[i])
		if retry {
			// The phext is closing under us: flush what is queued, then
			// run the rest one by one (write reopens it).
			rest = i
			break
		}
		if b == nil {
			ws[i].N, ws[i].Err = n, err
			continue
		}
		if leader {
			lead = b
		}
		queued[i].b, queued[i].idx = b, idx
	}
	if lead != nil {
		p.runFlush(lead)
	}
	for i := range ws[:rest] {
		if b := queued[i].b; b != nil {
			ws[i].N, ws[i].Err = b.wait(queued[i].idx)
		}
	}
	for i := rest; i < len(ws); i++ {
		if ws[i].Err == nil {
			ws[i].N, ws[i].Err = t.write(ws[i].Name, &ops[i])
		}
	}
}
