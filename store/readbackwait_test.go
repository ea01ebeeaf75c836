package store

import (
	"errors"
	"testing"
	"time"
)

// TestReadChangesWaitsItsTurn: while one read back holds the log files,
// another tenant's (or the same tenant's) resume waits its turn and gets
// its changes instead of an immediate ErrNotInLog (a resync); past
// readBackWait it gives up with ErrNotInLog.
func TestReadChangesWaitsItsTurn(t *testing.T) {
	db := MustOpen(t, &Options{LogKeepBytes: DefaultLogKeep})
	f := &recFeed{}
	head := db.ten.SetFeed(f)
	mustOK := mustWrite(t)
	mustOK(db.ten.Insert([]byte("n"), coord(1), []byte("a")))
	mustOK(db.ten.Update([]byte("n"), coord(2), []byte("b")))
	want := f.of("n")

	l := db.wlog
	l.readBack <- struct{}{} // another read back is running
	type result struct {
		chs []Change
		err error
	}
	done := make(chan result, 1)
	go func() {
		chs, _, err := db.ten.ReadChanges("n", head, 1<<20)
		done <- result{chs, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("ReadChanges returned while another read back held the files: %d changes, err %v", len(r.chs), r.err)
	case <-time.After(50 * time.Millisecond):
	}
	<-l.readBack // the other read back ends
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ReadChanges still waiting after the other read back ended")
	}
	if r.err != nil {
		t.Fatalf("ReadChanges after waiting its turn: %v", r.err)
	}
	if len(r.chs) != len(want) {
		t.Fatalf("got %d changes, want %d", len(r.chs), len(want))
	}
	for i := range want {
		if r.chs[i].Pos != want[i].Pos || r.chs[i].Op != want[i].Op {
			t.Fatalf("change %d: got pos %d op %v, want pos %d op %v", i, r.chs[i].Pos, r.chs[i].Op, want[i].Pos, want[i].Op)
		}
	}

	// Past maxReadBackWaiters waiting, a call does not wait at all.
	l.readBack <- struct{}{}
	l.readBackWaiters.Add(maxReadBackWaiters)
	start := time.Now()
	_, _, err := db.ten.ReadChanges("n", head, 1<<20)
	l.readBackWaiters.Add(-maxReadBackWaiters)
	<-l.readBack
	if !errors.Is(err, ErrNotInLog) {
		t.Fatalf("ReadChanges past %d waiters: err %v, want ErrNotInLog", maxReadBackWaiters, err)
	}
	if d := time.Since(start); d > readBackWait/2 {
		t.Fatalf("ReadChanges past %d waiters waited %v", maxReadBackWaiters, d)
	}

	// A read back that never ends: the waiter gives up after readBackWait.
	old := readBackWait
	readBackWait = 20 * time.Millisecond
	defer func() { readBackWait = old }()
	l.readBack <- struct{}{}
	_, _, err = db.ten.ReadChanges("n", head, 1<<20)
	<-l.readBack
	if !errors.Is(err, ErrNotInLog) {
		t.Fatalf("ReadChanges past readBackWait: err %v, want ErrNotInLog", err)
	}
	// The token is free again: the next read back runs at once.
	if _, _, err := db.ten.ReadChanges("n", head, 1<<20); err != nil {
		t.Fatalf("ReadChanges after the timeout: %v", err)
	}
}
