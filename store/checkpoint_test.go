package store

import (
	"testing"
)

// TestCheckpointWritesDuringIt: writes made while a checkpoint writes its
// frozen view out (inserts into frozen scrolls, updates, deletes of frozen
// and base scrolls, new scrolls) are served at once, survive the switch to
// the new snapshot, and are replayed from the new WAL after a reopen. A
// Put during the checkpoint makes it abandon its view, keeping the Put.
func TestCheckpointWritesDuringIt(t *testing.T) {
	for _, durability := range []Durability{DurabilityEverySec, DurabilityAlways} {
		t.Run(durability.String(), func(t *testing.T) {
			db := MustOpen(t, &Options{Durability: durability, CompactMinWAL: 1 << 40})
			ten := db.ten
			name := []byte("c")
			mustW := func(_ int, err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			mustW(ten.Update(name, coord(1), []byte("base-one")))
			mustW(ten.Update(name, coord(2), []byte("base-two")))
			mustW(ten.Update(name, coord(3), []byte("base-three")))
			if err := ten.Compact(name); err != nil {
				t.Fatal(err)
			}
			mustW(ten.Insert(name, coord(1), []byte("+frozen")))
			mustW(ten.Update(name, coord(4), []byte("frozen-four")))
			mustW(ten.Update(name, coord(5), []byte("frozen-five")))
			ran := false
			checkpointHook = func(p *pfile) {
				if p.t != ten || ran {
					return
				}
				ran = true
				if got := mustSelect(t, ten, "c", coord(1)); got != "base-one+frozen" {
					t.Errorf("during the checkpoint: %q", got)
				}
				mustW(ten.Insert(name, coord(1), []byte("+during")))     // a frozen scroll
				mustW(ten.Update(name, coord(4), []byte("four-during"))) // a frozen scroll
				mustW(ten.Delete(name, coord(5)))                        // a frozen scroll
				mustW(ten.Delete(name, coord(2)))                        // a base scroll
				mustW(ten.Update(name, coord(6), []byte("six")))         // a new scroll
				db.check()
			}
			defer func() { checkpointHook = nil }()
			if err := ten.Compact(name); err != nil {
				t.Fatal(err)
			}
			if !ran {
				t.Fatal("the hook never ran")
			}
			want := "base-one+frozen+during\x17\x17base-three\x17four-during\x17\x17six"
			if got := mustGet(t, ten, "c"); got != want {
				t.Fatalf("after the checkpoint:\n got  %q\n want %q", got, want)
			}
			snap := string(fileBytes(t, db.dir()+"/c.phext"))
			if snap != "base-one+frozen\x17base-two\x17base-three\x17frozen-four\x17frozen-five" {
				t.Fatalf("snapshot holds %q, want the frozen view", snap)
			}
			db.MustReopen()
			if got := mustGet(t, db.ten, "c"); got != want {
				t.Fatalf("after reopen %q", got)
			}

			// A Put while a checkpoint runs: the checkpoint is abandoned.
			ten = db.ten
			mustW(ten.Insert(name, coord(7), []byte("x")))
			ran = false
			checkpointHook = func(p *pfile) {
				if p.t != ten || ran {
					return
				}
				ran = true
				mustW(ten.Put(name, []byte("put\x17doc")))
			}
			if err := ten.Compact(name); err == nil {
				t.Fatal("a checkpoint whose view a Put replaced reported success")
			}
			if got := mustGet(t, ten, "c"); got != "put\x17doc" {
				t.Fatalf("after the abandoned checkpoint %q", got)
			}
			checkpointHook = nil
			if err := ten.Compact(name); err != nil {
				t.Fatal(err)
			}
			db.MustReopen()
			if got := mustGet(t, db.ten, "c"); got != "put\x17doc" {
				t.Fatalf("after reopen %q", got)
			}
		})
	}
}
