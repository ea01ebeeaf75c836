package store

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// The hard ceiling of open phexts. The cap (MaxOpenPhexts) is kept by
// closing clean phexts and checkpointing dirty ones in the background
// (Store.register, evictLoop), which is no bound while checkpoints stall
// (a full disk, the evictor backing off): every phext written meanwhile
// stays open with its mapping, and mappings count against vm.max_map_count
// (past it every mmap, so every open, fails). Past the ceiling an opener
// of a phext that is not open yet waits for the evictor to close one, at
// most OpenWait, then gets ErrBusy. Phexts already open never wait, and
// neither do event loops: TryApply and TryAppendSelect only use open
// phexts.
//
// While an opener waits the evictor frees slots sooner (issue 13: a tenant
// that dirtied hundreds of phexts must not make another tenant's opener
// wait for all their checkpoints): its batches hold at most
// evictCkptUrgent snapshots instead of evictCkptBatch, and a batch already
// under way writes no more snapshot once that many are written (the rest
// are put back dirty, as a checkpoint that failed before its rename, and
// retried), so the waiter gets a slot after at most evictCkptUrgent
// snapshots plus the syncs of one batch. Nobody waiting, the batches stay
// big: one syncfs for up to evictCkptBatch snapshots.

// defaultOpenWait is the default Options.OpenWait.
const defaultOpenWait = 2 * time.Second

// maxMapCountPath is where Linux tells the most mappings a process may
// have (a test seam).
var maxMapCountPath = "/proc/sys/vm/max_map_count"

// readMaxMapCount returns the number in the file at path, or 0 when it
// cannot be read (not Linux).
func readMaxMapCount(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// openCeiling is the hard ceiling of open phexts for a cap of capN:
// max(2 × cap, cap + 256), never above half of maxMaps (the process's
// mapping limit, 0 when unknown; the other half is left to the runtime,
// the logs and the rest of the process), and at least 2.
func openCeiling(capN, maxMaps int) int {
	c := max(2*capN, capN+256)
	if maxMaps > 0 {
		c = min(c, maxMaps/2)
	}
	return max(c, 2)
}

// reserveOpen takes a slot under the ceiling for opening a phext that is
// not open yet; the opener gives it back with register (opened) or
// releaseOpen (failed or not needed). At the ceiling it closes a clean
// phext itself if it finds one, else it waits, holding no lock, until a
// phext closes, at most OpenWait: then ErrBusy. ErrClosed once the store
// is closing.
func (s *Store) reserveOpen() error {
	var deadline <-chan time.Time
	for {
		s.lmu.Lock()
		if s.shutting {
			s.lmu.Unlock()
			return ErrClosed
		}
		if len(s.open)+s.opening < s.openCeil {
			s.opening++
			s.lmu.Unlock()
			return nil
		}
		if cands := s.pickClean(nil); len(cands) > 0 {
			s.lmu.Unlock()
			if s.closeOneClean(cands) {
				continue
			}
			s.lmu.Lock()
			if len(s.open)+s.opening < s.openCeil || s.shutting {
				s.lmu.Unlock()
				continue
			}
		}
		if len(s.open) > s.opts.MaxOpenPhexts {
			s.startEvictor()
		}
		if s.freed == nil {
			s.freed = make(chan struct{})
		}
		ch := s.freed
		s.lmu.Unlock()
		if deadline == nil {
			s.openWaiting.Add(1) // before openWaits, which tests wait for
			s.openWaits.Add(1)
			defer s.openWaiting.Add(-1)
			t := time.NewTimer(s.opts.OpenWait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-ch:
		case <-s.stop:
			return ErrClosed
		case <-deadline:
			return ErrBusy
		}
	}
}

// releaseOpen gives back a slot reserveOpen took that register will not
// take over.
func (s *Store) releaseOpen() {
	s.lmu.Lock()
	s.opening--
	s.wakeOpeners()
	s.lmu.Unlock()
}

// wakeOpeners wakes the openers waiting at the ceiling (lmu held).
func (s *Store) wakeOpeners() {
	if s.freed != nil {
		close(s.freed)
		s.freed = nil
	}
}
