package store

import (
	"errors"
)

// closeMany closes ps (the phexts of tenants being shut down: Store.Close,
// RemoveTenant) and forgets them; the dirty ones are checkpointed as one
// batch (checkpointBatch), not one by one: at 10,000 written phexts one
// snapshot fsync, log fsync, rename and directory fsync each made Close
// outlast a 30 s stop. Phexts another goroutine is closing are waited for.
func (s *Store) closeMany(ps []*pfile) error {
	var mine, others []*pfile
	for _, p := range ps {
		if p.state.Load() == stateOpening {
			<-p.opened
		}
		if p.state.CompareAndSwap(stateReady, stateClosing) {
			mine = append(mine, p)
		} else {
			others = append(others, p)
		}
	}
	for _, p := range mine {
		p.drain()
	}
	// Every one goes to the batch, whose freeze tells the dirty ones under
	// their checkpoint lock: a phext whose checkpoint (Compact, the
	// evictor's batch) is running looks clean until it ends, and if it
	// fails its records are back and this batch must take them.
	did, ckErrs := s.checkpointBatch(mine, batchClosing)
	s.countBatch(did, ckErrs)
	var errs []error
	for i, p := range mine {
		if err := p.finishClose(ckErrs[p]); err != nil {
			errs = append(errs, err)
		}
		p.t.forget(p)
		mine[i] = nil
	}
	for _, p := range others {
		<-p.gone
	}
	return errors.Join(errs...)
}

// countBatch counts the checkpoints of a batch (checkpointBatch's
// results) as done or failed.
func (s *Store) countBatch(did int, errs map[*pfile]error) {
	failed := 0
	for _, err := range errs {
		switch err {
		case errPfileClosed, errCkptBusy:
		case errCkptCut:
			did-- // not written: neither done nor failed
		default:
			failed++
		}
	}
	s.compactions.Add(uint64(did - failed))
	s.compactFailures.Add(uint64(failed))
}
