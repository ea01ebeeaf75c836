package server

import (
	"fmt"
	"testing"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// TestStatusOfBusy: a phext that cannot be opened because the store is at
// its ceiling of open phexts is BUSY (retryable), expected (no log line),
// also when wrapped.
func TestStatusOfBusy(t *testing.T) {
	for _, err := range []error{store.ErrBusy, fmt.Errorf("open p: %w", store.ErrBusy)} {
		if st, expected := StatusOf(err); st != protocol.StatusBusy || !expected {
			t.Errorf("StatusOf(%v) = %v, %v; want BUSY, expected", err, st, expected)
		}
	}
}
