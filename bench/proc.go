package bench

import (
	"sync"
	"time"
)

// ProcStats is what /proc says about a process at one moment.
type ProcStats struct {
	// CPU is user plus system time used so far.
	CPU time.Duration
	// RSS is the resident set size now (VmRSS), HWM its peak over the
	// process's life (VmHWM), both in bytes.
	RSS, HWM int64
	// Threads is the number of threads.
	Threads int
}

// rssSampler polls a process's RSS and keeps the maximum.
type rssSampler struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	peak  int64
}

func startRSSSampler(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if p, err := ReadProc(pid); err == nil && p.RSS > s.peak {
				s.peak = p.RSS
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the largest RSS seen.
func (s *rssSampler) stop() int64 {
	if s == nil {
		return 0
	}
	close(s.stopc)
	s.wg.Wait()
	return s.peak
}
