package store

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/phext/sq/phext"
)

// ErrBadName is returned when a phext name breaks the rule
// [A-Za-z0-9_-][A-Za-z0-9._-]* (at most 64 bytes). Nothing touches the file
// system before this check.
var ErrBadName = errors.New("store: bad phext name")

// ErrBadCoord is returned when a coordinate part is outside 1..999.
var ErrBadCoord = errors.New("store: coordinate part outside 1..999 (want the form 1.1.1/1.1.1/1.1.1)")

// ErrBadScroll is returned when scroll text is not valid UTF-8 or holds a
// phext delimiter byte, and by Put when the document is not valid UTF-8.
var ErrBadScroll = errors.New("store: bad scroll text")

// ErrQuota is returned when a write would put the tenant over its quota. The
// write changed nothing.
var ErrQuota = errors.New("store: tenant quota exceeded")

// ErrTooLarge is returned when one write (a scroll, or a document for Put)
// is larger than a commit-log record may be (MaxRecord), or a snapshot is larger
// than 4 GiB - 1.
var ErrTooLarge = errors.New("store: too large")

// ErrCorrupt is returned when a snapshot, the commit log or a legacy
// per-phext WAL being replayed (wal.go) is damaged: a record in the middle
// of a log whose length or CRC32C does not check, a bad log header, a
// legacy WAL that belongs to another snapshot, or a snapshot that is not
// valid UTF-8. It is always wrapped with the file name and byte offset; the
// files are left untouched for an operator and the phext refuses to open.
var ErrCorrupt = errors.New("store: corrupt data")

// ErrBusy is returned when a phext that is not open yet cannot be opened
// within Options.OpenWait because as many phexts are open as the store
// allows (the hard ceiling of MaxOpenPhexts: checkpoints of the dirty
// ones are behind, typically a full or failing disk). Nothing changed;
// retry later.
var ErrBusy = errors.New("store: too many phexts open (checkpoints behind); try again")

// ErrClosed is returned by every method after the Store was closed or the
// Tenant removed.
var ErrClosed = errors.New("store: closed")

// ErrOverflow is returned when a snapshot or a Put document has a break that
// takes a coordinate part past 999. It is returned together with the
// *phext.OverflowError that names the byte offset, so both
// errors.Is(err, ErrOverflow) and errors.Is(err, phext.ErrOverflow) hold.
var ErrOverflow = errors.New("store: coordinate part past 999")

// ErrNotInLog is returned by Tenant.ReadChanges when it cannot read back
// every change asked for from the commit log: older generations were
// dropped, the phext's records there are above the size asked for, a write
// failed meanwhile, another read back is running, or a change's content
// cannot be derived from the records. A change feed answers it with a
// resync.
var ErrNotInLog = errors.New("store: changes not (all) in the commit log")

// errPfileClosed: the phext was closed (evicted) under the caller; get it
// again.
var errPfileClosed = errors.New("store: phext closed meanwhile")

// errReplaced: a Put replaced the phext while its checkpoint wrote the
// view it froze, so the new snapshot is not the document any more
// (checkpoint). Nothing is lost: the records stay in the log until a
// checkpoint of the new document succeeds.
var errReplaced = errors.New("the phext was replaced under it")

// overflowErr wraps a scanner error so that both ErrOverflow and
// phext.ErrOverflow match, naming the file.
func overflowErr(path string, err error) error {
	if errors.Is(err, phext.ErrOverflow) {
		return fmt.Errorf("%w: %s: %w", ErrOverflow, path, err)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// corruptErr wraps ErrCorrupt with the file and offset.
func corruptErr(path string, off int64, why string) error {
	return fmt.Errorf("%w: %s at offset %d: %s", ErrCorrupt, path, off, why)
}

// openErr explains an open failure; ELOOP means a symbolic link, which the
// store refuses to follow.
func openErr(path string, err error) error {
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("store: %s is a symbolic link; refusing to follow it: %w", path, err)
	}
	return fmt.Errorf("store: %w", err)
}
