package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadChangesAcrossRestart: the changes of a clean run are read back
// after a clean Close and Open (the feed's history), exactly and in order,
// joined with the changes of the new run; a crash-free restart twice
// neither replays the history into the snapshots nor loses it; a position
// older than what the history keeps, and a snapshot replaced while the
// store was stopped, are ErrNotInLog (the watcher's one resync).
func TestReadChangesAcrossRestart(t *testing.T) {
	db := MustOpen(t, &Options{LogKeepBytes: DefaultLogKeep})
	f := &recFeed{}
	head := db.ten.SetFeed(f)
	name := []byte("n")
	mustOK := mustWrite(t)
	mustOK(db.ten.Insert(name, coord(1), []byte("a")))
	mustOK(db.ten.Insert(name, coord(1), []byte("b")))
	mustOK(db.ten.Update(name, coord(2), []byte("x")))
	mustOK(db.ten.Insert([]byte("other"), coord(2), []byte("not n")))
	mustOK(db.ten.Delete(name, coord(2)))
	mustOK(db.ten.Insert(name, coord(3), []byte("c")))

	check := func(from uint64, want []Change) {
		t.Helper()
		checkReadChanges(t, db.ten, "n", from, want)
	}
	published := func(f *recFeed) []Change { return f.of("n") }
	run1 := published(f)
	if len(run1) != 5 {
		t.Fatalf("published %d changes of n", len(run1))
	}

	db.MustReopen() // clean: every phext checkpointed, the log emptied
	if n := len(liveRecords(t, db)); n != 0 {
		t.Fatalf("the live log holds %d records after a clean restart, want none (nothing to replay)", n)
	}
	if db.ten.Position() <= run1[len(run1)-1].Pos {
		t.Fatalf("position %d after restart not above %d", db.ten.Position(), run1[len(run1)-1].Pos)
	}
	check(head, run1)
	for i := range run1 {
		check(run1[i].Pos, run1[i+1:])
	}

	// The new run's changes follow the old ones.
	f2 := &recFeed{}
	db.ten.SetFeed(f2)
	mustOK(db.ten.Insert(name, coord(1), []byte("d"))) // onto the text of run 1
	mustOK(db.ten.Insert(name, coord(3), []byte("e")))
	all := append(append([]Change(nil), run1...), published(f2)...)
	if len(all) != 7 || string(all[5].Text) != "abd" || string(all[6].Text) != "ce" {
		t.Fatalf("run 2 changes: %+v", all[5:])
	}
	for i := range all {
		check(all[i].Pos, all[i+1:])
	}
	check(head, all)

	// Twice more: the history is never replayed (MustReopen compares every
	// phext before and after), and the first run is still there.
	db.MustReopen()
	db.MustReopen()
	check(head, all)

	// Older than the history keeps: a reopen with a history of 1 byte drops
	// the generations of the runs before.
	db.Close()
	db.opts.LogKeepBytes = 1
	db.open()
	if _, _, err := db.ten.ReadChanges("n", head, 1<<20); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("from before the history: %v, want ErrNotInLog", err)
	}
	db.Close()
	db.opts.LogKeepBytes = DefaultLogKeep
	db.open()

	// A snapshot replaced while the store was stopped is a change the log
	// does not hold: a resume from before it is refused, with or without
	// a write after the restart.
	mark := db.ten.Position()
	mustOK(db.ten.Insert(name, coord(1), []byte("f")))
	after := db.ten.Position()
	db.MustReopen()
	check(after, nil)
	// The file gets one more scroll, which no record holds.
	doc, err := db.ten.AppendGet(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	snap, _, _ := (&Tenant{s: db.Store, dir: db.dir()}).filePaths("n")
	if err := os.WriteFile(snap, append(doc, "\x17restored"...), 0o600); err != nil {
		t.Fatal(err)
	}
	db.open()
	if _, _, err := db.ten.ReadChanges("n", mark, 1<<20); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("snapshot replaced while stopped: %v, want ErrNotInLog", err)
	}
	f3 := &recFeed{}
	db.ten.SetFeed(f3)
	mustOK(db.ten.Insert(name, coord(1), []byte("g")))
	if _, _, err := db.ten.ReadChanges("n", after, 1<<20); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("snapshot replaced while stopped, then written: %v, want ErrNotInLog", err)
	}
	// From after the replacement (the record naming the new file is
	// logged just before the insert): fine.
	g := published(f3)
	check(g[0].Pos-1, g)
}

// liveRecords returns the data records of the live log files.
func liveRecords(t *testing.T, db *testDB) []logRec {
	t.Helper()
	files, err := db.listLogs()
	if err != nil {
		t.Fatal(err)
	}
	var out []logRec
	for _, lf := range files {
		if strings.HasPrefix(filepath.Base(lf.path), histPrefix) {
			t.Fatalf("listLogs lists history file %s", lf.path)
		}
		data, err := os.ReadFile(lf.path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := scanLog(data, lf.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range w.recs {
			if r.kind != opCkpt {
				out = append(out, r)
			}
		}
	}
	return out
}

// TestLogHistoryBoundsAndGaps: the history keeps the newest whole
// generations within LogKeepBytes; a generation missing between kept files
// (a rename that failed) limits read back to the generations after it;
// with the history off nothing is renamed.
func TestLogHistoryBoundsAndGaps(t *testing.T) {
	db := MustOpen(t, &Options{LogKeepBytes: DefaultLogKeep})
	f := &recFeed{}
	head := db.ten.SetFeed(f)
	name := []byte("n")
	mustOK := mustWrite(t)
	for i := 0; i < 4; i++ {
		mustOK(db.ten.Update(name, coord(1), []byte(fmt.Sprintf("v%d", i))))
		if err := db.rotate(); err != nil {
			t.Fatal(err)
		}
	}
	all := f.of("n")
	checkReadChanges(t, db.ten, "n", head, all)
	hs, err := db.listHist()
	if err != nil || len(hs) < 4 {
		t.Fatalf("history %v, %v: want the 4 rotated generations", hs, err)
	}
	for i := 1; i < len(hs); i++ {
		if hs[i].gen != hs[i-1].gen+1 {
			t.Fatalf("history generations not consecutive: %v", hs)
		}
	}

	// A gap: the second generation of the history missing.
	if err := os.Remove(hs[1].path); err != nil {
		t.Fatal(err)
	}
	files, err := db.feedLogFiles()
	if err != nil || len(files) == 0 || files[0].gen != hs[2].gen {
		t.Fatalf("feed log files %v, %v: want them from generation %d on", files, err, hs[2].gen)
	}
	if _, _, err := db.ten.ReadChanges("n", head, 1<<20); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("from before a gap: %v, want ErrNotInLog", err)
	}
	checkReadChanges(t, db.ten, "n", all[2].Pos, all[3:])

	// Bounded: room for the newest generation only.
	newest := hs[len(hs)-1]
	db.Store.opts.LogKeepBytes = newest.size
	db.pruneHist(db.gen.Load())
	if hs, _ := db.listHist(); len(hs) != 1 || hs[0].gen != newest.gen {
		t.Fatalf("history after pruning to %d bytes: %v, want generation %d only", newest.size, hs, newest.gen)
	}

	// Off: a rotation deletes, and an earlier history goes.
	db.Store.opts.LogKeepBytes = 0
	mustOK(db.ten.Update(name, coord(1), []byte("off")))
	if err := db.rotate(); err != nil {
		t.Fatal(err)
	}
	if hs, _ := db.listHist(); len(hs) != 0 {
		t.Fatalf("history with LogKeepBytes 0: %v", hs)
	}
}
