package schedslice

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

func set(d time.Duration) (int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := setThread(tid, d); err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue // the thread ended meanwhile
			}
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// setThread gives thread tid slice d, keeping its scheduling policy, nice
// value and flags: sched_setattr sets them all, and a thread of
// SCHED_BATCH or SCHED_IDLE (`chrt -b`, `chrt -i`, systemd's
// CPUSchedulingPolicy=) was moved to SCHED_OTHER, at nice 0 for IDLE. A
// slice is a setting of SCHED_OTHER and SCHED_BATCH only: a thread of
// SCHED_IDLE (which runs only when nothing else would), of a real-time or
// of the deadline policy is left as it is, without an error.
func setThread(tid int, d time.Duration) error {
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return err
	}
	if a.Policy != unix.SCHED_NORMAL && a.Policy != unix.SCHED_BATCH {
		return nil
	}
	a.Runtime = uint64(d.Nanoseconds())
	return unix.SchedSetAttr(tid, a, 0)
}

func supported() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var maj, min int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &maj, &min)
	return maj > 6 || maj == 6 && min >= 12
}
