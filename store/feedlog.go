package store

import (
	"bytes"
	"cmp"
	"slices"
	"time"

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

// readBackWait bounds how long a ReadChanges waits for another one's read
// of the log files to end before it gives up (ErrNotInLog: a resync).
var readBackWait = 5 * time.Second

// maxReadBackWaiters bounds the ReadChanges calls waiting for their turn;
// past it a call gets ErrNotInLog at once. A caller reserves memory for
// its read before the call (the server: 8 MiB of the tenant's budget
// share), so this bounds what waiting holds reserved (64 MiB).
const maxReadBackWaiters = 8

// readBackRetries bounds the attempts of ReadChanges when writes to the
// phext land between its read of the files and its look at the phext.
const readBackRetries = 3

// ReadChanges returns, in position order, every change of phext name (the
// name FeedName gives) with a position above from, read back from the
// commit log, with the content Publish gives them (a put as a put, also
// when it was a compact), and the position cut up to which the list is
// complete: every change of the phext with a position in (from, cut] is
// in it. maxBytes bounds the phext's log records it keeps in memory, and
// separately the scroll texts it copies from the phext's state. A
// name that breaks the name rule is ErrBadName, before any file is
// touched, as for every other method that takes a name.
//
// ErrNotInLog when that cannot be vouched for (see its doc). One call
// reads the log files at a time (a log file is held in memory while it
// is read); up to maxReadBackWaiters others wait their turn, in arrival
// order, at most readBackWait, then get ErrNotInLog too (so do calls past
// those waiting). So one tenant's resume never
// turns another's into a resync at once (after a restart, every watcher
// reconnects together). Call it from a goroutine that may wait, never
// from an event loop.
func (t *Tenant) ReadChanges(name string, from uint64, maxBytes int64) ([]Change, uint64, error) {
	if !phext.ValidName([]byte(name)) {
		return nil, 0, ErrBadName
	}
	l := t.s.wlog
	select {
	case l.readBack <- struct{}{}:
	default:
		// Waiters are few: each may hold its caller's memory reservation
		// for the read while it waits.
		if l.readBackWaiters.Add(1) > maxReadBackWaiters {
			l.readBackWaiters.Add(-1)
			return nil, 0, ErrNotInLog
		}
		defer l.readBackWaiters.Add(-1)
		tm := time.NewTimer(readBackWait)
		select {
		case l.readBack <- struct{}{}:
			tm.Stop()
		case <-tm.C:
			return nil, 0, ErrNotInLog
		}
	}
	defer func() { <-l.readBack }()
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
	faults := t.s.logFaults()
	recs, last, err := t.s.logRecordsOf(t.dir, name, from, maxBytes)
	if err != nil {
		return nil, 0, false, err
	}
	d := newDeriver(recs)
	if err := d.forward(); err != nil {
		return nil, 0, false, err
	}
	if d.brk > from {
		// The snapshot changed outside the log after from (see forward):
		// a change no record holds.
		return nil, 0, false, ErrNotInLog
	}
	// The phext's state now, for the backward pass: with fmu held no
	// write of p is in flight, so its state is every record of it logged
	// so far applied; they must all be among recs (lastLSN, 0 when p was
	// not written since it was opened), and no record of recs may be one
	// whose write failed and was cut back after the read (faults). A
	// write an event loop applied whose round has not written it yet
	// (LoopRound) is missing from recs: lastLSN differs, and it retries.
	//
	// cmu (no checkpoint running) makes snapID the snapshot the last
	// checkpoint record of p names, or the one p opened: a p with no
	// record since its last checkpoint or open must be on the snapshot the
	// log's last checkpoint record names, else the file was replaced
	// outside the log (restored while the server was stopped) after every
	// record.
	p.cmu.Lock()
	p.fmu.Lock()
	p.mu.RLock()
	replaced, tooBig := false, false
	switch {
	case p.state.Load() != stateReady, t.s.logFaults() != faults, p.lastLSN != 0 && p.lastLSN != last:
		retry = true
	case p.oldestGen == 0 && d.idKnown && p.snapID != d.lastID:
		replaced = true
	default:
		cut = t.s.lsn.Load()
		tooBig = !d.now(p.lookup, maxBytes)
	}
	p.mu.RUnlock()
	p.fmu.Unlock()
	p.cmu.Unlock()
	if retry {
		return nil, 0, true, nil
	}
	if replaced || tooBig {
		return nil, 0, false, ErrNotInLog
	}
	if err := d.backward(); err != nil {
		return nil, 0, false, err
	}
	chs, err := d.changes(name, from)
	return chs, cut, false, err
}

// logRecordsOf returns the data records (insert, update, delete, put) of
// phext name of data dir dir in the log files (the live log and the
// feed's history, loghist.go), in LSN order, with their payloads copied,
// with its checkpoint records (the snapshot identities, for forward's
// check that nothing changed the snapshot outside the log) and an anchor
// for each empty snapshot, after checking that the files hold every
// record with an LSN above from: generations go oldest first, and every
// record of a generation no longer there has an LSN below the first LSN
// of the oldest one left (its header's).
//
// maxBytes bounds what it keeps. Records at or below from only help to
// derive later inserts' states (backward from the phext's state now
// derives them too): past maxBytes they are no longer kept, and only
// when the records above from and the checkpoint records alone exceed it
// is the answer ErrNotInLog.
func (s *Store) logRecordsOf(dir, name string, from uint64, maxBytes int64) (_ []logRec, last uint64, _ error) {
	files, err := s.feedLogFiles()
	if err != nil || len(files) == 0 {
		return nil, 0, ErrNotInLog
	}
	var recs []logRec
	var kept int64
	dropOld := false
	for i, lf := range files {
		// One file in memory at a time (a generation is up to its rotation
		// size); only this phext's records are kept.
		data, err := s.readLogFile(lf)
		if err != nil {
			return nil, 0, ErrNotInLog // dropped from the history meanwhile
		}
		w, err := scanLog(data, lf.path)
		if err != nil || (i == 0 && (!w.hdrOK || w.firstLSN > from+1)) {
			return nil, 0, ErrNotInLog
		}
		for _, r := range w.recs {
			if r.dir != dir || r.name != name {
				continue
			}
			switch r.kind {
			case opInsert, opUpdate, opDelete, opPut:
				last = max(last, r.lsn)
				if dropOld && r.lsn <= from {
					continue
				}
			case opCkpt:
				// An empty snapshot that holds every record up to covers:
				// the phext was empty there (a new phext's first record
				// names it), which anchors its scrolls' states.
				if covers, id, _ := r.ckpt(); id.size == 0 {
					recs = append(recs, logRec{kind: opCkpt, lsn: covers, dir: r.dir, name: r.name})
					kept += 64
				}
			default:
				continue
			}
			kept += int64(len(r.payload)) + 64
			r.payload = bytes.Clone(r.payload)
			recs = append(recs, r)
			if kept > maxBytes && !dropOld {
				dropOld = true
				recs = slices.DeleteFunc(recs, func(r logRec) bool {
					if r.kind != opCkpt && r.lsn <= from {
						kept -= int64(len(r.payload)) + 64
						return true
					}
					return false
				})
			}
			if kept > maxBytes {
				return nil, 0, ErrNotInLog
			}
		}
	}
	// Carried records appear twice (their old file and the new one). An
	// empty-snapshot anchor sorts after the record it covers.
	order := func(a, b logRec) int {
		return cmp.Or(cmp.Compare(a.lsn, b.lsn), cmp.Compare(isAnchor(a), isAnchor(b)))
	}
	slices.SortStableFunc(recs, order)
	recs = slices.CompactFunc(recs, func(a, b logRec) bool { return order(a, b) == 0 })
	recs, ok := chainWhole(recs, from)
	if !ok {
		return nil, 0, ErrNotInLog
	}
	return recs, last, nil
}

// chainWhole checks that each data record finds the record before it (its
// previous LSN, chainCut; 0: none to find) as the phext's data record
// before it in recs. Generation numbers do not show a hole inside a
// generation: with one log per event loop a generation has several files,
// and one of them may be missing from the history (its rename failed and
// it was deleted) while the others are there. Nor does a record whose
// write failed and could not be cut back (never applied) show: its
// successor names the record before it. A predecessor missing above from
// is a change the list would skip or invent: false. At or below from (the
// reader has it), the records before the break say nothing of the states
// after it: only the checkpoint records proper stay (the snapshot chain).
func chainWhole(recs []logRec, from uint64) ([]logRec, bool) {
	var prevData uint64
	gap := 0
	for i := range recs {
		r := &recs[i]
		if r.kind == opCkpt {
			continue
		}
		if r.prev != 0 && r.prev != prevData && (prevData != 0 || r.prev > from) {
			if r.prev > from {
				return nil, false
			}
			gap = i
		}
		prevData = r.lsn
	}
	if gap > 0 {
		before := slices.DeleteFunc(recs[:gap], func(r logRec) bool { return r.kind != opCkpt || r.payload == nil })
		recs = append(before, recs[gap:]...)
	}
	return recs, true
}

// isAnchor: an empty snapshot's anchor (a checkpoint record proper keeps
// its payload).
func isAnchor(r logRec) int {
	if r.kind == opCkpt && r.payload == nil {
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
	index []index       // per put record: its document's index
	cur   map[phext.Coordinate]scrollState
	// The snapshot identity the checkpoint records name, in order: each
	// names the snapshot it replaces (a phext's first record after an
	// open or a checkpoint names the one it starts from), which must be
	// the one named before. Where it is not (brk: the last such record),
	// the snapshot changed outside the log (replaced while the server was
	// stopped, or restored after a crash that lost a rename): what the
	// phext held before brk says nothing about after it.
	lastID  walID
	idKnown bool
	brk     uint64
	brks    []bool // per record: a break
}

func newDeriver(recs []logRec) *deriver {
	return &deriver{recs: recs, post: make([]scrollState, len(recs)), index: make([]index, len(recs)), brks: make([]bool, len(recs))}
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
		case opCkpt:
			if r.payload == nil { // an empty-snapshot anchor
				base, putSeen = nil, true
				clear(state)
				continue
			}
			_, id, prev := r.ckpt()
			if d.idKnown && prev != d.lastID {
				d.brk, d.brks[i] = r.lsn, true
				base, putSeen = nil, false
				clear(state)
			}
			d.lastID, d.idKnown = id, true
		case opPut:
			idx, err := indexDoc(r.payload, "", false, 0)
			if err != nil {
				return ErrNotInLog // checked when logged; not expected
			}
			d.index[i] = idx
			base = make(map[phext.Coordinate][]byte, idx.scrolls)
			walkDoc(r.payload, &idx, nil, nil, func(c phext.Coordinate, text []byte) {
				base[c] = text
			})
			putSeen = true
			clear(state)
		}
	}
	return nil
}

// now records the current text of every scroll whose inserts the forward
// pass left underived (the phext's locks held by the caller). false: those
// texts pass maxBytes, and nothing more is copied (a few small inserts
// into big scrolls must not copy the phext under its locks, beyond what
// the caller reserved).
func (d *deriver) now(lookup func(phext.Coordinate) []byte, maxBytes int64) bool {
	d.cur = map[phext.Coordinate]scrollState{}
	var copied int64
	for i := range d.recs {
		r := &d.recs[i]
		if r.kind != opInsert || d.post[i].known {
			continue
		}
		if _, ok := d.cur[r.c]; !ok {
			text := lookup(r.c)
			if copied += int64(len(text)); copied > maxBytes {
				return false
			}
			d.cur[r.c] = scrollState{text: bytes.Clone(text), known: true}
		}
	}
	return true
}

// backward derives states from the phext's state now (d.now), newest
// record first, and checks them against what forward derived.
func (d *deriver) backward() error {
	for i := len(d.recs) - 1; i >= 0; i-- {
		r := &d.recs[i]
		if r.kind == opPut || (r.kind == opCkpt && (r.payload == nil || d.brks[i])) {
			return nil // nothing before a put (an anchor, a break) is known from after it
		}
		if r.kind == opCkpt {
			continue
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
			docChange(&ch, r.payload, &d.index[i])
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
func docChange(ch *Change, doc []byte, idx *index) {
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
