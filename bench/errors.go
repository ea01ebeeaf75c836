package bench

import "errors"

var (
	// ErrUsage is returned when Options or a flag value cannot describe a
	// workload (a bad mix, size or count). The message names the field.
	ErrUsage = errors.New("bench: bad option")
	// ErrVerify is returned by Run, wrapped, when the run finished but saw
	// mismatches, cross-tenant bytes or error statuses; the Result is
	// complete and says which.
	ErrVerify = errors.New("bench: verification failed")
	// ErrHost is returned when the child server could not be started or
	// did not announce its address in time.
	ErrHost = errors.New("bench: server child")
	// ErrProc is returned when /proc could not be read for a process.
	ErrProc = errors.New("bench: /proc")
)
