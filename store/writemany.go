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

// check validates w and returns the op it asks for. It is the one
// validation of a scroll write (WriteMany, TryApply; Insert, Update and
// Delete call checkScrollWrite, which it uses): name, coordinate and, for
// an insert or update, text, in that order, with the errors those methods
// return; an unknown Kind is ErrBadScroll.
func (w *Write) check() (op, error) {
	switch w.Kind {
	case WriteInsert:
		return op{kind: opInsert, c: w.Coord, text: w.Text}, checkScrollWrite(w.Name, w.Coord, w.Text)
	case WriteUpdate:
		return op{kind: opUpdate, c: w.Coord, text: w.Text}, checkScrollWrite(w.Name, w.Coord, w.Text)
	case WriteDelete:
		return op{kind: opDelete, c: w.Coord}, checkScrollWrite(w.Name, w.Coord, nil)
	}
	return op{}, ErrBadScroll
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
		w.N = 0
		ops[i], w.Err = w.check()
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
