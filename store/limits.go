package store

import (
	"fmt"

	"github.com/phext/sq/phext"
)

// Limits on what one request may make the store allocate or write (issue
// 13). Reads that build a reply (GET, TOC, DELTA) measure it under the
// phext's read lock before allocating anything and refuse it with
// ErrTooLarge past their Limit; writes that could take the snapshot past
// Options.MaxSnapshot are refused with ErrTooLarge before they are logged.

// Limit bounds the memory of one read that builds a reply. The zero value
// means no limit beyond the format's.
type Limit struct {
	// Max is the largest reply in bytes (0: no limit).
	Max int
	// Reserve, when set, is called with the number of bytes the call is
	// about to allocate (a reply's exact size, a delta request's parsed
	// form) before it allocates them; a non-nil error aborts the call and
	// is returned as is. A server charges its memory budget here. It may
	// be called more than once per call, and while a phext lock is held,
	// so it must not block.
	Reserve func(n int) error
}

// Check refuses n bytes with ErrTooLarge past Max, then reserves them
// through Reserve.
func (l Limit) Check(n int64) error {
	if l.Max > 0 && n > int64(l.Max) {
		return fmt.Errorf("%w: reply of %d bytes is above the limit of %d", ErrTooLarge, n, l.Max)
	}
	if l.Reserve != nil {
		return l.Reserve(int(n))
	}
	return nil
}

// defaultMaxSnapshot is what a snapshot may hold: the index keeps uint32
// offsets into the mapping.
const defaultMaxSnapshot = 1<<32 - 1

// docSize returns the serialized size of the current document (what
// AppendGet appends and what a compaction writes). Read lock held.
func (p *pfile) docSize() int64 {
	var n int64
	prev := phext.Origin
	p.walk(func(c phext.Coordinate, text []byte) {
		n += int64(phext.DelimitersLen(prev, c) + len(text))
		prev = c
	})
	return n
}

// newScrollBreaks bounds the break bytes a scroll appearing at c adds to
// the serialized document: inserting c between stored neighbours a and b
// replaces the breaks a→b by a→c→b, which is longer by at most the breaks
// from the origin to c (the sum of c's parts minus one each). Removing a
// scroll never lengthens the document.
func newScrollBreaks(c phext.Coordinate) int64 {
	var n int64
	for _, part := range c {
		n += int64(part) - 1
	}
	return n
}

// sizeGrowth bounds how much o can grow the serialized document (read lock
// and qmu held).
func (p *pfile) sizeGrowth(o *op) int64 {
	switch o.kind {
	case opInsert, opUpdate:
		old := len(p.lookup(o.c))
		if len(o.text) == 0 {
			return 0
		}
		g := int64(len(o.text))
		if o.kind == opUpdate && p.putPending == 0 {
			g -= int64(old)
		}
		if old == 0 || p.putPending > 0 {
			g += newScrollBreaks(o.c)
		}
		return max(g, 0)
	case opPut:
		return int64(len(o.text))
	}
	return 0
}

// checkSnapshotSize refuses o with ErrTooLarge when it could take the
// snapshot past Options.MaxSnapshot (read lock and qmu held). The check
// keeps an upper bound, sizeExact + sizeAdded, of the document with every
// accepted write applied; it only grows, and is measured again (docSize)
// when a write would pass the limit while nothing is pending. So the
// common write costs an addition, and a phext near its limit is never
// written past it: the compaction that follows always fits the mapping.
func (p *pfile) checkSnapshotSize(o *op) error {
	g := p.sizeGrowth(o)
	limit := p.t.s.opts.MaxSnapshot
	if p.sizeExact+p.sizeAdded+g <= limit {
		p.sizeAdded += g
		return nil
	}
	if p.cur == nil && !p.flushing {
		p.sizeExact, p.sizeAdded = p.docSize(), 0
		if p.sizeExact+g <= limit {
			p.sizeAdded = g
			return nil
		}
	}
	return fmt.Errorf("%w: phext %q would pass the snapshot limit of %d bytes (now about %d)",
		ErrTooLarge, p.key, limit, p.sizeExact+p.sizeAdded)
}

// DocSize returns the serialized size of phext name (len of AppendGet's
// output) and its number of non-empty scrolls, without building it.
func (t *Tenant) DocSize(name []byte) (size, scrolls int64, err error) {
	p, err := t.reader(name)
	if err != nil {
		return 0, 0, err
	}
	defer p.mu.RUnlock()
	return p.docSize(), p.scrolls, nil
}

// Walk calls fn for every non-empty scroll of phext name in coordinate
// order, under the phext's read lock: text is valid only during the call,
// and fn must not call back into the store. A non-nil error from fn stops
// the walk and is returned. Use it to stream a document into another form
// (REST json-export) after sizing it with DocSize.
func (t *Tenant) Walk(name []byte, fn func(c phext.Coordinate, text []byte) error) error {
	p, err := t.reader(name)
	if err != nil {
		return err
	}
	defer p.mu.RUnlock()
	var ferr error
	p.walk(func(c phext.Coordinate, text []byte) {
		if ferr == nil {
			ferr = fn(c, text)
		}
	})
	return ferr
}

// ScrollCost is what the quota charges for each stored scroll on top of
// its text: the memory the store holds per scroll whatever its length. A
// snapshot's scroll costs at most an index entry (28 bytes; the index is
// sparse, 1.75 bytes a one-byte scroll: index.go); a scroll written
// since the last compaction costs an overlay map slot and its own
// allocation, measured at 60–110 bytes on amd64 (TestWriteTinyScrollsQuota).
// Without it a tenant could hold ~100 bytes of heap per quota byte in
// 1-byte scrolls (issue 13: 1-byte scrolls in a 30 MiB quota took
// 936 MiB). So the quota bounds memory, not only disk: a tenant's usage is
// its scroll bytes plus ScrollCost times its non-empty scrolls.
const ScrollCost = 64

// charge is what phext p counts against its tenant's quota (read lock
// held): its scroll bytes plus ScrollCost a scroll. apply returns changes
// of it; every write path's growth (Insert, Update, Put, the loop's fast
// path) is computed with newScrollCharge and putCharge.
func (p *pfile) charge() int64 {
	return p.bytes + ScrollCost*p.scrolls
}

// newScrollCharge is the per-scroll charge o adds when it may create a
// scroll: a non-empty text at a coordinate that is empty in the applied
// state (or anywhere while a Put is pending, when the applied state says
// little). Read lock and qmu held.
func (p *pfile) newScrollCharge(o *op) int64 {
	if len(o.text) == 0 {
		return 0
	}
	if p.putPending > 0 || len(p.lookup(o.c)) == 0 {
		return ScrollCost
	}
	return 0
}

// putCharge is what a Put's document will charge once applied: its text
// and ScrollCost for each of its scrolls. It is checked before the
// document is indexed, so a document of tiny scrolls that fits the quota
// by its text alone is refused before it costs memory.
func putCharge(o *op) int64 {
	return docCharge(o.putBytes, int64(o.putScrolls))
}

// docCharge is what a document of text bytes in scrolls non-empty
// scrolls is charged.
func docCharge(text, scrolls int64) int64 {
	return text + ScrollCost*scrolls
}

// putCheckChunk is how much of a Put's document putCheck counts between
// two looks at its charge: past the quota it has read at most this much
// too far.
const putCheckChunk = 64 << 10

// PutCheck refuses a Put's document with ErrQuota as soon as the part of
// it seen so far is charged more than the tenant's whole quota (text bytes
// plus ScrollCost a scroll, counted by phext.Count): whatever the tenant
// holds, it would hold at least that after the Put. It is the rule Put
// applies first (putCheck), offered to a server that receives a document
// in pieces so that it can refuse one before the rest arrives (issue 13,
// M4: a 60 MB document of 30 M one-byte scrolls in a 30 MiB quota is over
// it after ~1 MB). The exact check, against the tenant's usage and the
// phext the Put replaces, is made when the write is queued. Get one from
// Tenant.PutCheck; it is a value, owned by one goroutine.
type PutCheck struct {
	n     phext.Count
	quota int64 // 0: no quota, Add never refuses
	seen  int64
}

// PutCheck returns a check of a Put's document against t's quota as it is
// now (a reload may change it; Put checks again).
func (t *Tenant) PutCheck() PutCheck {
	return PutCheck{quota: max(t.quota.Load(), 0)}
}

// Active reports whether Add can refuse anything (the tenant has a quota).
func (c *PutCheck) Active() bool { return c.quota > 0 }

// Add counts b, the next piece of the document, and returns an error
// wrapping ErrQuota once the pieces added are charged more than the quota
// (again on every later call). It allocates only that error.
func (c *PutCheck) Add(b []byte) error {
	if c.quota <= 0 {
		return nil
	}
	c.n.Add(b)
	c.seen += int64(len(b))
	if ch := docCharge(c.n.Text, c.n.Scrolls); ch > c.quota {
		return fmt.Errorf("%w: the document is charged more than the quota of %d bytes (%d bytes in its first %d)",
			ErrQuota, c.quota, ch, c.seen)
	}
	return nil
}

// putCheck counts doc's scrolls and text bytes (what Scanner yields, for a
// document it accepts) and refuses doc with ErrQuota by PutCheck's rule,
// looking every putCheckChunk bytes: it reads at most about
// 2×quota/(1+ScrollCost) bytes of a document of one-byte scrolls before
// refusing it, whatever its length. With no quota it counts the whole
// document.
func (t *Tenant) putCheck(doc []byte) (phext.Count, error) {
	c := t.PutCheck()
	if !c.Active() {
		c.n.Add(doc)
		return c.n, nil
	}
	for off := 0; off < len(doc); off += putCheckChunk {
		if err := c.Add(doc[off:min(off+putCheckChunk, len(doc))]); err != nil {
			return c.n, err
		}
	}
	return c.n, nil
}

// putCount is putCheck's count and answer for doc, taken from c when c
// counted all of doc (PutCounted) and the quota as it is now passes its
// count: a charge within the quota is within it at every 64 KiB step
// putCheck would have looked at, so its answer is the same.
func (t *Tenant) putCount(doc []byte, c *PutCheck) (phext.Count, error) {
	if c == nil || !c.Active() || c.seen != int64(len(doc)) {
		return t.putCheck(doc)
	}
	if q := t.quota.Load(); q > 0 && docCharge(c.n.Text, c.n.Scrolls) > q {
		return t.putCheck(doc) // refused: with putCheck's exact message
	}
	return c.n, nil
}

// TextSize returns the scroll text bytes and the non-empty scrolls of
// phext name in constant time: a lower bound for any export of it.
func (t *Tenant) TextSize(name []byte) (bytes, scrolls int64, err error) {
	p, err := t.reader(name)
	if err != nil {
		return 0, 0, err
	}
	defer p.mu.RUnlock()
	return p.bytes, p.scrolls, nil
}
