package store

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/phext/sq/phext"
)

// Reading a phext's changes back from the commit log, for a watcher that
// resumes from a position older than its feed's memory (issue 18).
//
// A log record holds what the writer sent (an insert's appended text, an
// update's new text, a put's document), while a change carries the
// scroll's state after it. Updates, deletes and puts give that state
// themselves; an insert's is derived:
//
//   - forwards, from an earlier record of the same scroll that gave its
//     state (an update, a delete, a put, or an insert already derived),
//     older records than the position asked for included;
//   - backwards, from the phext's state now: the state after the last
//     insert of a scroll is its text now when only inserts follow, and an
//     insert's payload is the end of the state after it.
//
// An insert neither reaches (its scroll replaced later, with nothing
// before it in the log) cannot be derived: ErrNotInLog, and the feed
// sends a resync. So does any disagreement between the two ways.

// readBackRetries bounds the attempts of ReadChanges when writes to the
// phext land between its read of the files and its look at the phext.
const readBackRetries = 3

// ReadChanges returns, in position order, every change of phext name (the
// name FeedName gives) with a position above from, read back from the
// commit log, with the content Publish gives them (a put as a put, also
// when it was a compact), and the position cut up to which the list is
// complete: every change of the phext with a position in (from, cut] is
// in it. maxBytes bounds the phext's log records it keeps in memory. A
// name that breaks the name rule is ErrBadName, before any file is
// touched, as for every other method that takes a name.
//
// ErrNotInLog when that cannot be vouched for (see its doc). One call
// reads the log files at a time (others get ErrNotInLog): call it from a
// goroutine that may wait for I/O, never from an event loop.
func (t *Tenant) ReadChanges(name string, from uint64, maxBytes int64) ([]Change, uint64, error) {
	if !phext.ValidName([]byte(name)) {
		return nil, 0, ErrBadName
	}
	l := t.s.wlog
	if !l.readBack.TryLock() {
		return nil, 0, ErrNotInLog
	}
	defer l.readBack.Unlock()
	for range readBackRetries {
		p, err := t.get([]byte(name))
		if err != nil {
			return nil, 0, err
		}
		chs, cut, retry, err := t.readChanges(p, name, from, maxBytes)
		if !retry {
			return chs, cut, err
		}
	}
	return nil, 0, ErrNotInLog
}

// readChanges is one attempt of ReadChanges; retry says that p was
// written or closed meanwhile.
func (t *Tenant) readChanges(p *pfile, name string, from uint64, maxBytes int64) (_ []Change, cut uint64, retry bool, err error) {
	l := t.s.wlog
	faults := l.faults.Load()
	recs, err := t.s.logRecordsOf(t.dir, name, from, maxBytes)
	if err != nil {
		return nil, 0, false, err
	}
	var last uint64
	for i := range recs {
		if recs[i].kind != opCkpt {
			last = recs[i].lsn
		}
	}
	d := newDeriver(recs)
	if err := d.forward(); err != nil {
		return nil, 0, false, err
	}
	// The phext's state now, for the backward pass: with fmu held no
	// write of p is in flight, so its state is every record of it logged
	// so far applied; they must all be among recs (lastLSN, 0 when p was
	// not written since it was opened), and no record of recs may be one
	// whose write failed and was cut back after the read (faults). A
	// write an event loop applied whose round has not written it yet
	// (LoopRound) is missing from recs: lastLSN differs, and it retries.
	p.fmu.Lock()
	p.mu.RLock()
	switch {
	case p.state.Load() != stateReady, l.faults.Load() != faults, p.lastLSN != 0 && p.lastLSN != last:
		retry = true
	default:
		cut = t.s.lsn.Load()
		d.now(p.lookup)
	}
	p.mu.RUnlock()
	p.fmu.Unlock()
	if retry {
		return nil, 0, true, nil
	}
	if err := d.backward(); err != nil {
		return nil, 0, false, err
	}
	chs, err := d.changes(name, from)
	return chs, cut, false, err
}

// logRecordsOf returns the data records (insert, update, delete, put) of
// phext name of data dir dir in the log files, in LSN order, with their
// payloads copied, after checking that the files hold every record with an
// LSN above from: generations are dropped oldest first, and every record
// of a dropped generation has an LSN below the first LSN of the oldest one
// left (its header's).
func (s *Store) logRecordsOf(dir, name string, from uint64, maxBytes int64) ([]logRec, error) {
	files, err := s.listLogs()
	if err != nil || len(files) == 0 {
		return nil, ErrNotInLog
	}
	var recs []logRec
	var kept int64
	for i, lf := range files {
		// One file in memory at a time (a generation is up to its rotation
		// size); only this phext's records are kept.
		data, err := readAll(s.fs, lf.path)
		if err != nil {
			return nil, ErrNotInLog // dropped by a rotation meanwhile
		}
		w, err := scanLog(data, lf.path)
		if err != nil || (i == 0 && (!w.hdrOK || w.firstLSN > from+1)) {
			return nil, ErrNotInLog
		}
		for _, r := range w.recs {
			if r.dir != dir || r.name != name {
				continue
			}
			switch r.kind {
			case opInsert, opUpdate, opDelete, opPut:
			case opCkpt:
				// An empty snapshot that holds every record up to covers:
				// the phext was empty there (a new phext's first record
				// names it), which anchors its scrolls' states.
				covers, id, _ := r.ckpt()
				if id.size != 0 {
					continue
				}
				r.lsn, r.payload = covers, nil
			default:
				continue
			}
			kept += int64(len(r.payload)) + 64
			if kept > maxBytes {
				return nil, ErrNotInLog
			}
			r.payload = bytes.Clone(r.payload)
			recs = append(recs, r)
		}
	}
	// Carried records appear twice (their old file and the new one). An
	// empty-snapshot anchor sorts after the record it covers.
	order := func(a, b logRec) int {
		return cmp.Or(cmp.Compare(a.lsn, b.lsn), cmp.Compare(isAnchor(a), isAnchor(b)))
	}
	slices.SortStableFunc(recs, order)
	return slices.CompactFunc(recs, func(a, b logRec) bool { return order(a, b) == 0 }), nil
}

func isAnchor(r logRec) int {
	if r.kind == opCkpt {
		return 1
	}
	return 0
}

// scrollState is what is known of a scroll's text at some point.
type scrollState struct {
	text  []byte
	known bool
}

// deriver computes the state after each record of one phext (see the
// comment at the top of this file).
type deriver struct {
	recs  []logRec
	post  []scrollState // per record: a scroll op's state after it
	index [][]entry     // per put record: its document's index
	cur   map[phext.Coordinate]scrollState
}

func newDeriver(recs []logRec) *deriver {
	return &deriver{recs: recs, post: make([]scrollState, len(recs)), index: make([][]entry, len(recs))}
}

// forward derives states from earlier records.
func (d *deriver) forward() error {
	var base map[phext.Coordinate][]byte // the last put's scrolls
	putSeen := false
	state := map[phext.Coordinate]scrollState{}
	look := func(c phext.Coordinate) scrollState {
		if s, ok := state[c]; ok {
			return s
		}
		if putSeen {
			return scrollState{text: base[c], known: true}
		}
		return scrollState{}
	}
	for i := range d.recs {
		r := &d.recs[i]
		switch r.kind {
		case opInsert:
			s := look(r.c)
			if !s.known {
				state[r.c] = s
				continue
			}
			// Appending in place is safe: earlier states are views no
			// longer than their own length.
			v := append(s.text, r.payload...)
			d.post[i] = scrollState{text: v[:len(v):len(v)], known: true}
			state[r.c] = scrollState{text: v, known: true}
		case opUpdate:
			d.post[i] = scrollState{text: r.payload[:len(r.payload):len(r.payload)], known: true}
			state[r.c] = d.post[i]
		case opDelete:
			d.post[i] = scrollState{known: true}
			state[r.c] = d.post[i]
		case opCkpt: // an empty-snapshot anchor
			base, putSeen = nil, true
			clear(state)
		case opPut:
			idx, err := indexDoc(r.payload, "", false)
			if err != nil {
				return ErrNotInLog // checked when logged; not expected
			}
			d.index[i] = idx
			base = make(map[phext.Coordinate][]byte, len(idx))
			for _, e := range idx {
				base[e.c] = r.payload[e.start:e.end:e.end]
			}
			putSeen = true
			clear(state)
		}
	}
	return nil
}

// now records the current text of every scroll whose inserts the forward
// pass left underived (the phext's locks held by the caller).
func (d *deriver) now(lookup func(phext.Coordinate) []byte) {
	d.cur = map[phext.Coordinate]scrollState{}
	for i := range d.recs {
		r := &d.recs[i]
		if r.kind != opInsert || d.post[i].known {
			continue
		}
		if _, ok := d.cur[r.c]; !ok {
			d.cur[r.c] = scrollState{text: bytes.Clone(lookup(r.c)), known: true}
		}
	}
}

// backward derives states from the phext's state now (d.now), newest
// record first, and checks them against what forward derived.
func (d *deriver) backward() error {
	for i := len(d.recs) - 1; i >= 0; i-- {
		r := &d.recs[i]
		if r.kind == opPut || r.kind == opCkpt {
			return nil // nothing before a put (or an anchor) is known from after it
		}
		s, ok := d.cur[r.c]
		if !ok || !s.known {
			continue // not needed, or not known
		}
		if d.post[i].known && !bytes.Equal(d.post[i].text, s.text) {
			return ErrNotInLog // the log and the state disagree
		}
		if r.kind != opInsert {
			d.cur[r.c] = scrollState{} // the state before it is not known from after
			continue
		}
		if !bytes.HasSuffix(s.text, r.payload) {
			return ErrNotInLog
		}
		d.post[i] = scrollState{text: s.text[:len(s.text):len(s.text)], known: true}
		d.cur[r.c] = scrollState{text: s.text[:len(s.text)-len(r.payload)], known: true}
	}
	return nil
}

// changes builds the changes of the records above from.
func (d *deriver) changes(name string, from uint64) ([]Change, error) {
	start, _ := slices.BinarySearchFunc(d.recs, from+1, func(r logRec, lsn uint64) int { return cmp.Compare(r.lsn, lsn) })
	out := make([]Change, 0, len(d.recs)-start)
	for i := start; i < len(d.recs); i++ {
		r := &d.recs[i]
		if r.kind == opCkpt {
			continue // an anchor, not a change
		}
		ch := Change{Pos: r.lsn, Phext: name, Coord: r.c, HasSum: true}
		if r.kind == opPut {
			ch.Op = ChangePut
			docChange(&ch, r.payload, d.index[i])
			out = append(out, ch)
			continue
		}
		if !d.post[i].known {
			return nil, ErrNotInLog
		}
		text := d.post[i].text
		switch r.kind {
		case opInsert:
			ch.Op = ChangeInsert
		case opUpdate:
			ch.Op = ChangeUpdate
		default:
			ch.Op = ChangeDelete
		}
		ch.Len = int64(len(text))
		phext.AppendChecksum(ch.Sum[:0], text)
		if len(text) > 0 {
			ch.Text = text
		}
		out = append(out, ch)
	}
	return out, nil
}

// docChange fills in a put change from the logged document doc (indexed
// by idx) as wholeDoc does from the applied one: the document serialized
// as the store keeps it (sorted non-empty scrolls), its checksum, its
// text bytes.
func docChange(ch *Change, doc []byte, idx []entry) {
	ch.Coord = phext.Origin
	var text []byte
	prev := phext.Origin
	walkDoc(doc, idx, nil, nil, func(c phext.Coordinate, scroll []byte) {
		text = phext.AppendDelimiters(text, prev, c)
		text = append(text, scroll...)
		prev = c
		ch.Len += int64(len(scroll))
	})
	phext.AppendChecksum(ch.Sum[:0], text)
	if len(text) > MaxDocText {
		ch.TextOmitted = true
		return
	}
	ch.Text = text
}
