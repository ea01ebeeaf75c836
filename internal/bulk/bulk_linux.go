package bulk

import "syscall"

// lowerThread sets the calling thread's nice value to nice (SetNice). On
// Linux a thread id names one thread for setpriority (PRIO_PROCESS), so the
// process's other threads keep theirs.
func lowerThread() error {
	n := int(nice.Load())
	if n == 0 {
		return nil
	}
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), n)
}

// mainThread reports whether the calling thread is the process's first.
func mainThread() bool { return syscall.Gettid() == syscall.Getpid() }
