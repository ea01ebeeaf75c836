package store

import (
	"encoding/hex"

	"github.com/phext/sq/phext"
)

// The change feed (issue 18): the store tells a Feed about every committed
// change of a tenant, so that watchers can follow a phext without polling.
//
// The store calls Feed.Publish once per committed change, in per-phext
// position order, after the change is logged (in mode "always": after its
// fsync) and applied, with the phext's log and document locks held: a
// reader that sees the change's effect can never see a later change
// published before it. Publish must therefore do memory work only: never
// I/O, never a store call, never a wait on anything a writer holds.
//
// Positions are the records' LSNs in the shared commit log (log.go):
// store-wide, so per phext they grow in apply order, and they continue
// across restarts (recovery resumes the counter above every LSN found; a
// log dir with no log at all starts it at the wall clock in nanoseconds),
// so positions of an earlier run are always below every position of this
// run. Positions have gaps: other tenants' records, checkpoint records.
//
// A tenant without a Feed pays one atomic load per write: no position, no
// hashing, no allocation (TestFeedOffCostsNothing).

// ChangeOp says what a committed change did. The values are the change
// feed's wire values (protocol.ChangeInsert…; the server checks this in
// TestChangeOpsMatchWire).
type ChangeOp uint8

// Change operations.
const (
	ChangeInsert ChangeOp = 1 // text appended to the scroll
	ChangeUpdate ChangeOp = 2 // the scroll replaced (empty text removes it)
	ChangeDelete ChangeOp = 3 // the scroll removed
	ChangePut    ChangeOp = 4 // the whole phext replaced
	// ChangeCompact is the whole phext written again as one record of the
	// commit log, with a new position, without changing what it holds:
	// the repair after a failed log fsync logs from memory each phext
	// whose checkpoint failed (Store.carryFromMemory). Watchers treat it
	// like ChangePut. (A checkpoint that succeeds logs no data record and
	// publishes nothing.)
	ChangeCompact ChangeOp = 5
)

// MaxDocText is the largest serialized phext a whole-phext change
// (ChangePut, ChangeCompact) carries as its Text; above it Text is nil and
// TextOmitted is set. It is the change feed's limit on an event's text
// (protocol.MaxEventText; the server checks that they agree): copying a
// larger document for every change that replaces it would cost watchers
// that do not ask for texts, and writers, a document's size each time.
const MaxDocText = 64 << 10

// Change is one committed change, as passed to Feed.Publish.
type Change struct {
	// Pos is the change's position: store-wide, so per tenant and per
	// phext it only grows (with gaps: other tenants' changes).
	Pos uint64
	// Phext is the phext's name ("" for the tenant's default phext).
	Phext string
	Op    ChangeOp
	// Coord is the scroll changed; phext.Origin for a whole-phext change
	// (ChangePut, ChangeCompact).
	Coord phext.Coordinate
	// Len is the scroll's length in bytes after the change; for a
	// whole-phext change the text bytes of the whole phext.
	Len int64
	// Sum is the xxh3-128 checksum (32 lowercase hex) of the scroll's text
	// after the change, as DELTA uses; for a whole-phext change that of
	// the serialized phext, as CHECKSUM returns. HasSum is always set.
	Sum    [32]byte
	HasSum bool
	// Text is the scroll's text after the change (nil for ChangeDelete);
	// for a whole-phext change the serialized phext, as GET returns it,
	// unless it is above MaxDocText (then nil, and TextOmitted is set).
	// It is valid only during Publish (copy what must outlive it).
	Text        []byte
	TextOmitted bool
}

// Feed receives a tenant's committed changes. See the comment at the top
// of this file for when Publish runs and what it may do.
type Feed interface {
	Publish(c *Change)
}

// feedHook boxes a Feed so it can sit behind an atomic pointer.
type feedHook struct{ f Feed }

// SetFeed makes f receive the tenant's committed changes from now on; nil
// stops them. With a non-nil f it returns a fresh position P, drawn after
// the hook is in place: every change with a position above P is published
// to f, and no published change has position P, so a consumer may treat
// "everything above P" as complete. (Changes committed while SetFeed runs
// may or may not be published; they are below P.) Safe for concurrent use.
func (t *Tenant) SetFeed(f Feed) uint64 {
	if f == nil {
		t.feed.Store(nil)
		return 0
	}
	t.feed.Store(&feedHook{f: f})
	return t.s.lsn.Add(1) // an LSN no record gets
}

// FeedName returns the name the feed gives the changes of phext name
// (Change.Phext): name itself, or on a case-insensitive data dir the
// lower-case name the store keeps it under (see Tenant.key). A watcher of
// "Notes" there must match the changes written as "notes" and as "Notes".
// The first call for a tenant may probe its data dir (Tenant.prepare).
func (t *Tenant) FeedName(name []byte) (string, error) {
	if !phext.ValidName(name) {
		return "", ErrBadName
	}
	if err := t.prepare(); err != nil {
		return "", err
	}
	var buf [phext.MaxNameLen]byte
	return string(t.key(name, &buf)), nil
}

// Position returns the highest position (LSN) drawn so far, store-wide:
// every change published later has a larger one.
func (t *Tenant) Position() uint64 { return t.s.lsn.Load() }

// publish tells the tenant's feed, if any, about one applied change of p
// whose log record has LSN lsn (p.fmu and p.mu held, the change logged and
// applied). Put changes pass kind opPut and ignore c.
func (p *pfile) publish(kind byte, c phext.Coordinate, lsn uint64) {
	h := p.t.feed.Load()
	if h == nil {
		return
	}
	p.publishTo(h.f, kind, c, lsn)
}

// publishTo builds the change and hands it to f. Kept out of publish so
// the unwatched path stays a load and a branch.
func (p *pfile) publishTo(f Feed, kind byte, c phext.Coordinate, lsn uint64) {
	ch := Change{Pos: lsn, Phext: p.key, Coord: c}
	switch kind {
	case opInsert:
		ch.Op = ChangeInsert
	case opUpdate:
		ch.Op = ChangeUpdate
	case opDelete:
		ch.Op = ChangeDelete
	case opPut:
		ch.Op = ChangePut
		p.wholeDoc(&ch, nil)
		f.Publish(&ch)
		return
	default:
		return
	}
	text := p.lookup(c)
	ch.Len = int64(len(text))
	phext.AppendChecksum(ch.Sum[:0], text)
	ch.HasSum = true
	if len(text) > 0 {
		ch.Text = text
	}
	f.Publish(&ch)
}

// publishCompact tells the tenant's feed, if any, that p's whole document
// doc (serialized, as GET returns it) was logged again as record lsn
// without changing (p.fmu held, p.mu not held: taken here for reading).
func (p *pfile) publishCompact(doc []byte, lsn uint64) {
	h := p.t.feed.Load()
	if h == nil {
		return
	}
	ch := Change{Pos: lsn, Phext: p.key, Op: ChangeCompact}
	p.mu.RLock()
	p.wholeDoc(&ch, doc)
	h.f.Publish(&ch)
	p.mu.RUnlock()
}

// wholeDoc fills in a whole-phext change from p's current document (p.mu
// held): the text bytes, the document's checksum (what CHECKSUM returns)
// and, up to MaxDocText, the serialized document: doc when the caller has
// it, else serialized here.
func (p *pfile) wholeDoc(ch *Change, doc []byte) {
	ch.Coord, ch.Len, ch.HasSum = phext.Origin, p.bytes, true
	if doc != nil {
		phext.AppendChecksum(ch.Sum[:0], doc)
	} else {
		sum := p.docHash().Sum128().Bytes()
		hex.AppendEncode(ch.Sum[:0], sum[:])
		if p.docSize() <= MaxDocText {
			doc = p.appendDoc(make([]byte, 0, MaxDocText/4))
		}
	}
	if doc == nil || len(doc) > MaxDocText {
		ch.TextOmitted = true
		return
	}
	ch.Text = doc
}
