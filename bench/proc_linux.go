package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// ReadProc reads pid's CPU time from /proc/PID/stat and its memory from
// /proc/PID/status.
func ReadProc(pid int) (ProcStats, error) {
	var p ProcStats
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return p, fmt.Errorf("%w: %v", ErrProc, err)
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return p, err
	}
	p.CPU = cpu
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return p, fmt.Errorf("%w: %v", ErrProc, err)
	}
	p.RSS = statusKB(status, "VmRSS:") << 10
	p.HWM = statusKB(status, "VmHWM:") << 10
	p.Threads = int(statusKB(status, "Threads:"))
	return p, nil
}

// parseStatCPU returns utime+stime (fields 14 and 15) of a /proc/PID/stat
// line. The command name (field 2) is in parentheses and may hold spaces
// and parentheses, so fields are counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat without a command name", ErrProc)
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: stat has %d fields after the name", ErrProc, len(f))
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: utime/stime %q %q", ErrProc, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// statusKB returns the number after key in /proc/PID/status ("VmRSS:
// 1234 kB" gives 1234), or 0.
func statusKB(status []byte, key string) int64 {
	i := bytes.Index(status, []byte("\n"+key))
	if i < 0 {
		if !bytes.HasPrefix(status, []byte(key)) {
			return 0
		}
	} else {
		status = status[i+1:]
	}
	line := status[len(key):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	f := bytes.Fields(line)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(string(f[0]), 10, 64)
	return n
}

// MemTotal returns the machine's memory from /proc/meminfo, in bytes.
func MemTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	return statusKB(b, "MemTotal:") << 10
}
