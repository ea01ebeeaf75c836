package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
)

// One commit log per event loop (issue 14): the tests of the cross-log
// order rule, the previous-LSN chain, rotation and the feed's read-back
// over several writer files.

// loopDB opens a store with two loop logs and no everysec fsync of its own.
func loopDB(t *testing.T, fs FS) *testDB {
	t.Helper()
	o := &Options{FS: fs, Durability: DurabilityEverySec, SyncInterval: time.Hour, LoopLogs: 2}
	db := MustOpen(t, o)
	for _, name := range []string{"f", "g"} {
		if _, err := db.ten.Insert([]byte(name), coord(1), []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// loopApply applies w in round r and fails unless it was taken and logged.
func loopApply(t *testing.T, ten *Tenant, r *LoopRound, name, text string) {
	t.Helper()
	w := Write{Kind: WriteInsert, Name: []byte(name), Coord: coord(1), Text: []byte(text)}
	if ok, logged := ten.TryApply(r, &w); !ok || !logged || w.Err != nil {
		t.Fatalf("%s %q: ok %v logged %v err %v", name, text, ok, logged, w.Err)
	}
}

func logPath(l *commitLog) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.path
}

// TestLoopLogsOwnFiles: two loops' rounds hold their own logs at the same
// time (neither declines for the other), each writes its own file
// (sq-<gen>-l0.log, -l1.log) with one write, and a kill -9 keeps both.
func TestLoopLogsOwnFiles(t *testing.T) {
	fs := &leadFS{}
	db := loopDB(t, fs)
	var r0, r1 LoopRound
	r0.SetLoop(0)
	r1.SetLoop(1)
	t.Cleanup(func() { _ = r0.Flush(); _ = r1.Flush() })
	before := fs.writes.Load()
	loopApply(t, db.ten, &r0, "f", "0")
	loopApply(t, db.ten, &r1, "g", "1") // r0 still holds its log
	w := Write{Kind: WriteInsert, Name: []byte("g"), Coord: coord(1), Text: []byte("x")}
	if ok, _ := db.ten.TryApply(&r0, &w); ok {
		t.Fatal("loop 0 took g while g's latest record waits in loop 1's round")
	}
	if err := r1.Flush(); err != nil {
		t.Fatal(err)
	}
	loopApply(t, db.ten, &r0, "g", "2") // g's latest is written now
	if err := r0.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := fs.writes.Load() - before; n != 2 {
		t.Fatalf("%d log writes for two rounds", n)
	}
	for i, want := range []string{"02", "1"} {
		p := logPath(db.loopLogs[i])
		if !strings.HasSuffix(p, fmt.Sprintf("-l%d.log", i)) {
			t.Fatalf("loop %d writes %s", i, p)
		}
		f, g := logPayloads(t, p, "f"), logPayloads(t, p, "g")
		if f+g != want {
			t.Fatalf("%s holds %q+%q, want %q", p, f, g, want)
		}
	}
	nd := reopenCrashed(t, db)
	if f, g := mustSelect(t, nd.ten, "f", coord(1)), mustSelect(t, nd.ten, "g", coord(1)); f != "a0" || g != "a12" {
		t.Fatalf("after kill -9: f %q g %q", f, g)
	}
}

// TestLoopLogsOrderAcrossLogs: while phext f's latest record waits in loop
// 0's unflushed round, loop 1 declines f (another phext it takes) and a
// worker's write of f waits: no later record of f reaches a file first,
// so a kill -9 at that moment leaves neither (never the later without
// the earlier, which recovery would apply to a state that never was).
func TestLoopLogsOrderAcrossLogs(t *testing.T) {
	db := loopDB(t, nil)
	var r0, r1 LoopRound
	r0.SetLoop(0)
	r1.SetLoop(1)
	t.Cleanup(func() { _ = r0.Flush(); _ = r1.Flush() })
	loopApply(t, db.ten, &r0, "f", "b")
	w := Write{Kind: WriteInsert, Name: []byte("f"), Coord: coord(1), Text: []byte("x")}
	if ok, _ := db.ten.TryApply(&r1, &w); ok {
		t.Fatal("loop 1 took a write of f while f's latest record waits in loop 0's round")
	}
	loopApply(t, db.ten, &r1, "g", "y") // other phexts are not held up
	if err := r1.Flush(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.ten.Insert([]byte("f"), coord(1), []byte("c"))
		done <- err
	}()
	waitFmuHeld(t, db.ten, "f")
	select {
	case err := <-done:
		t.Fatalf("worker write of f finished before loop 0's round was written: %v", err)
	default:
	}
	// A kill -9 now: the worker log holds nothing of f after "a".
	if got := logPayloads(t, logPath(db.wlog), "f"); got != "a" {
		t.Fatalf("worker log before the round's Flush holds %q of f", got)
	}
	if err := r0.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// f's latest record is now in the worker log (written): loop 1 may
	// take f again.
	loopApply(t, db.ten, &r1, "f", "d")
	if err := r1.Flush(); err != nil {
		t.Fatal(err)
	}
	nd := reopenCrashed(t, db)
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != "abcd" {
		t.Fatalf("after kill -9: %q", got)
	}
}

// truncateTo cuts the file at path to n bytes (what a power loss leaves
// of a log whose last n bytes were never fsynced).
func truncateTo(t *testing.T, path string, n int64) {
	t.Helper()
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestLoopLogsPowerLossChain: each log is fsynced on its own, so a power
// loss can take loop 0's record of f (not yet fsynced) and keep the
// worker's later one (fsynced). Recovery stops f at the missing
// predecessor (the later record says which LSN came before it): f is as
// before the lost record, not the later write applied without it; other
// phexts and a PUT (which needs no predecessor) are not held up.
func TestLoopLogsPowerLossChain(t *testing.T) {
	db := loopDB(t, nil)
	var r0 LoopRound
	r0.SetLoop(0)
	t.Cleanup(func() { _ = r0.Flush() })
	l0 := logPath(db.loopLogs[0])
	lost := fileSize(t, l0)
	loopApply(t, db.ten, &r0, "f", "b")
	loopApply(t, db.ten, &r0, "g", "b")
	if err := r0.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ten.Insert([]byte("f"), coord(1), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ten.Put([]byte("g"), []byte("put")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ten.Insert([]byte("g"), coord(1), []byte("!")); err != nil {
		t.Fatal(err)
	}
	if err := db.ten.Sync(); err != nil {
		t.Fatal(err)
	}
	Crash(db.Store)
	db.closed = true
	truncateTo(t, l0, lost) // the power loss took loop 0's round
	nd := &testDB{tb: t, root: db.root, opts: db.opts}
	nd.opts.FS = nil
	nd.open()
	t.Cleanup(func() { nd.Close() })
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != "a" {
		t.Fatalf("f after the power loss: %q, want %q (the worker's record follows a lost one)", got, "a")
	}
	if got := mustSelect(t, nd.ten, "g", coord(1)); got != "put!" {
		t.Fatalf("g after the power loss: %q", got)
	}
	if n := nd.chainCuts.Load(); n != 1 {
		t.Fatalf("%d chain cuts, want 1", n)
	}
	// The cut is a tail, not damage: f takes writes, and a clean reopen
	// keeps them.
	if _, err := nd.ten.Insert([]byte("f"), coord(1), []byte("z")); err != nil {
		t.Fatal(err)
	}
	nd.MustReopen()
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != "az" {
		t.Fatalf("f after reopen: %q", got)
	}
}

// TestChainCutRules: the cases chainCut applies and refuses.
func TestChainCutRules(t *testing.T) {
	rec := func(kind byte, lsn, prev uint64) logRec { return logRec{kind: kind, lsn: lsn, prev: prev} }
	for _, tc := range []struct {
		name          string
		recs          []logRec
		covers, floor uint64
		want          int
	}{
		{"whole chain", []logRec{rec(opInsert, 10, 0), rec(opInsert, 11, 10), rec(opUpdate, 13, 11)}, 0, 5, 3},
		{"missing middle", []logRec{rec(opInsert, 10, 0), rec(opInsert, 12, 11), rec(opInsert, 13, 12)}, 0, 5, 1},
		{"predecessor covered by the snapshot", []logRec{rec(opInsert, 12, 11)}, 11, 5, 1},
		{"predecessor below the floor (truncated away)", []logRec{rec(opInsert, 12, 4)}, 0, 5, 1},
		{"put needs none", []logRec{rec(opPut, 12, 11), rec(opInsert, 13, 12)}, 0, 5, 2},
		{"version 1 record names none", []logRec{rec(opInsert, 12, 0)}, 0, 5, 1},
	} {
		if got := chainCut(tc.recs, tc.recs, tc.covers, tc.floor); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if f := chainFloor([]genFirst{{1, 3}, {2, 40}, {5, 90}, {6, 100}, {6, 100}}); f != 90 {
		t.Errorf("floor over a gap: %d, want 90", f)
	}
	if f := chainFloor([]genFirst{{4, 30}, {5, 50}}); f != 30 {
		t.Errorf("floor: %d, want 30", f)
	}
}

// TestLogVersion1Read: a log file of format version 1 (no previous LSN)
// written by an earlier version is replayed at Open.
func TestLogVersion1Read(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityEverySec, SyncInterval: time.Hour})
	if _, err := db.ten.Insert([]byte("f"), coord(1), []byte("a")); err != nil {
		t.Fatal(err)
	}
	dir := db.dir()
	logDir := db.logDir
	lsn := db.lsn.Load() + 10
	db.Close()
	db.closed = true
	// A version 1 file of a later generation than the empty one Close left.
	files, err := os.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	var gen uint64
	for _, e := range files {
		if g, _, ok := parseLogName(e.Name()); ok {
			gen = max(gen, g)
		}
	}
	b := append([]byte(logMagicV1), make([]byte, 20)...)
	binary.BigEndian.PutUint64(b[8:], gen+1)
	binary.BigEndian.PutUint64(b[16:], lsn)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	b = appendLogRecordV1(b, opDir, 0, 1, "", phext.Coordinate{}, []byte(dir))
	b = appendLogRecordV1(b, opInsert, lsn, 1, "f", coord(1), []byte("b"))
	b = appendLogRecordV1(b, opInsert, lsn+1, 1, "f", coord(1), []byte("c"))
	if err := os.WriteFile(logDir+"/"+logName(gen+1, workerLog), b, 0o640); err != nil {
		t.Fatal(err)
	}
	nd := &testDB{tb: t, root: db.root, opts: db.opts}
	nd.open()
	t.Cleanup(func() { nd.Close() })
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != "abc" {
		t.Fatalf("after replaying a version 1 log: %q", got)
	}
}

// appendLogRecordV1 encodes a record of log format version 1 (no
// previous LSN).
func appendLogRecordV1(dst []byte, kind byte, lsn uint64, dir uint32, name string, c phext.Coordinate, payload []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(logFixedV1+len(name)+len(payload)))
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, kind)
	dst = binary.BigEndian.AppendUint64(dst, lsn)
	dst = binary.BigEndian.AppendUint32(dst, dir)
	dst = append(dst, byte(len(name)))
	dst = append(dst, name...)
	head := len(dst)
	for _, v := range c {
		dst = binary.BigEndian.AppendUint16(dst, v)
	}
	dst = append(dst, payload...)
	hcrc := crc32.Update(crc32.Update(0, castagnoli, dst[start:start+4]), castagnoli, dst[start+logRecHeader:head])
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Update(hcrc, castagnoli, dst[head:]))
	binary.BigEndian.PutUint32(dst[start+8:], hcrc)
	return dst
}

// TestLoopLogsAlwaysSyncsOtherLog: a tenant switched from everysec to
// always whose phext's latest record sits in a loop log not yet fsynced:
// its next (worker) write makes that log durable before it is
// acknowledged, so a power loss cannot take the earlier record and keep
// the acknowledged one.
func TestLoopLogsAlwaysSyncsOtherLog(t *testing.T) {
	cfs := &syncCountFS{}
	db := loopDB(t, cfs)
	var r0 LoopRound
	r0.SetLoop(0)
	t.Cleanup(func() { _ = r0.Flush() })
	loopApply(t, db.ten, &r0, "f", "b")
	if err := r0.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := cfs.count("-l0.log"); n != 1 { // the header's, at Open
		t.Fatalf("%d fsyncs of l0 before", n)
	}
	db.ten.dur.Store(uint32(DurabilityAlways))
	if _, err := db.ten.Insert([]byte("g"), coord(1), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if n := cfs.count("-l0.log"); n != 1 {
		t.Fatalf("a write of another phext fsynced l0 (%d)", n)
	}
	if _, err := db.ten.Insert([]byte("f"), coord(1), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if n := cfs.count("-l0.log"); n != 2 {
		t.Fatalf("%d fsyncs of l0 after an always write of f, want 2", n)
	}
}

// syncCountFS counts fsyncs per file name.
type syncCountFS struct {
	osFS
	mu     sync.Mutex
	syncs  map[string]int
	size   map[string]int64 // each file's size at its last fsync (powerLoss)
	failL0 atomic.Bool      // fail the next write of an l0 log (ENOSPC)
}

type syncCountFile struct {
	File
	fs   *syncCountFS
	path string
}

func (f *syncCountFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fl, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &syncCountFile{File: fl, fs: f, path: name}, nil
}

func (f *syncCountFile) Sync() error {
	f.fs.mu.Lock()
	if f.fs.syncs == nil {
		f.fs.syncs, f.fs.size = map[string]int{}, map[string]int64{}
	}
	f.fs.syncs[f.path]++
	f.fs.mu.Unlock()
	if err := f.File.Sync(); err != nil {
		return err
	}
	if fi, err := f.File.Stat(); err == nil {
		f.fs.mu.Lock()
		f.fs.size[f.path] = fi.Size()
		f.fs.mu.Unlock()
	}
	return nil
}

// powerLoss cuts the files at paths back to their size at their last
// fsync (the store crashed first).
func (f *syncCountFS) powerLoss(t *testing.T, paths ...string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range paths {
		truncateTo(t, p, f.size[p])
	}
}

func (f *syncCountFile) Write(p []byte) (int, error) {
	if strings.HasSuffix(f.path, "-l0.log") && f.fs.failL0.Swap(false) {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(p)
}

// count sums the fsyncs of files whose name ends with suffix.
func (f *syncCountFS) count(suffix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for p, c := range f.syncs {
		if strings.HasSuffix(p, suffix) {
			n += c
		}
	}
	return n
}

// TestLoopLogsFailedRoundRefusesFollowers: loop 0's round write fails
// while a worker waits to log f's next record: the waiter is refused (the
// logs are suspect before the round counts as ended), never acknowledged
// after a record that is in no file; loop 1 declines f too. After the
// repair memory and disk agree.
func TestLoopLogsFailedRoundRefusesFollowers(t *testing.T) {
	cfs := &syncCountFS{}
	db := loopDB(t, cfs)
	var r0, r1 LoopRound
	r0.SetLoop(0)
	r1.SetLoop(1)
	t.Cleanup(func() { _ = r0.Flush(); _ = r1.Flush() })
	loopApply(t, db.ten, &r0, "f", "b")
	done := make(chan error, 1)
	go func() {
		_, err := db.ten.Insert([]byte("f"), coord(1), []byte("c"))
		done <- err
	}()
	waitFmuHeld(t, db.ten, "f") // the worker waits for the round, f's fmu held
	// No background repair until loop 1 has been asked: the failure
	// below starts one (kickRotate), and on a loaded box it could end
	// before the TryApply, which may then take f (the logs are sound
	// again). The writes after it repair on their own goroutine.
	sqtest.CheckFor(t, 10*time.Second, "no rotation running", func() bool { return db.Store.rotating.CompareAndSwap(false, true) })
	cfs.failL0.Store(true)
	if err := r0.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush: %v", err)
	}
	if err := <-done; err == nil {
		t.Fatal("a write of f was acknowledged after f's failed round")
	}
	w := Write{Kind: WriteInsert, Name: []byte("f"), Coord: coord(1), Text: []byte("x")}
	if ok, _ := db.ten.TryApply(&r1, &w); ok {
		t.Fatal("loop 1 took f after loop 0's failed round")
	}
	_ = r1.Flush()
	db.Store.rotating.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := db.ten.Insert([]byte("f"), coord(1), []byte("d"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still refused: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mem := mustSelect(t, db.ten, "f", coord(1))
	if mem != "abd" {
		t.Fatalf("memory %q", mem)
	}
	nd := reopenCrashed(t, db)
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != mem {
		t.Fatalf("after the repair and a kill -9: %q, want %q", got, mem)
	}
}

// waitFmuHeld waits until phext name's fmu stays held (a worker waiting
// for a loop round in awaitLoopRound holds it).
func waitFmuHeld(t *testing.T, ten *Tenant, name string) {
	t.Helper()
	ten.mu.RLock()
	p := ten.files[name]
	ten.mu.RUnlock()
	deadline := time.Now().Add(20 * time.Second)
	for held := 0; held < 20; {
		if p.fmu.TryLock() {
			p.fmu.Unlock()
			held = 0
		} else {
			held++
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker never waited for the round")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLoopLogsConcurrentRecover: two loops (each its own log) and a
// worker append to one scroll at once, with rotations; after a kill -9 the
// recovered scroll equals the one in memory: the cross-log order rule
// keeps every phext's records in LSN order across the files.
func TestLoopLogsConcurrentRecover(t *testing.T) { recoverInApplyOrder(t, 2, 20) }

// TestLoopLogsRotation: a rotation starts a new generation of every log
// with one first LSN, the old files go once every phext's snapshot covers
// them, the feed reads a phext's changes back across the writer files of
// a generation, and Close leaves one empty worker file.
func TestLoopLogsRotation(t *testing.T) {
	db := loopDB(t, nil)
	from := db.lsn.Load()
	var r0, r1 LoopRound
	r0.SetLoop(0)
	r1.SetLoop(1)
	t.Cleanup(func() { _ = r0.Flush(); _ = r1.Flush() })
	loopApply(t, db.ten, &r0, "f", "b")
	if err := r0.Flush(); err != nil {
		t.Fatal(err)
	}
	loopApply(t, db.ten, &r1, "f", "c")
	if err := r1.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ten.Insert([]byte("f"), coord(1), []byte("d")); err != nil {
		t.Fatal(err)
	}
	chs, _, err := db.ten.ReadChanges("f", from, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, c := range chs {
		texts = append(texts, string(c.Text))
	}
	if got := strings.Join(texts, ","); got != "ab,abc,abcd" {
		t.Fatalf("changes read back: %s", got)
	}
	gen := db.gen.Load()
	if err := db.rotate(); err != nil {
		t.Fatal(err)
	}
	files, err := db.listLogs()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	firsts := map[uint64]bool{}
	for _, lf := range files {
		names = append(names, fmt.Sprintf("%d-%s", lf.gen-gen, lf.writer))
		w, err := scanLog(fileBytes(t, lf.path), lf.path)
		if err != nil {
			t.Fatal(err)
		}
		firsts[w.firstLSN] = true
	}
	if got := strings.Join(names, " "); got != "1-l0 1-l1 1-w" && got != "1-w 1-l0 1-l1" {
		sorted := map[string]bool{}
		for _, n := range names {
			sorted[n] = true
		}
		if len(names) != 3 || !sorted["1-w"] || !sorted["1-l0"] || !sorted["1-l1"] {
			t.Fatalf("log files after the rotation: %s", got)
		}
	}
	if len(firsts) != 1 {
		t.Fatalf("the new generation's files name %d first LSNs", len(firsts))
	}
	loopApply(t, db.ten, &r0, "f", "e")
	if err := r0.Flush(); err != nil {
		t.Fatal(err)
	}
	nd := reopenCrashed(t, db)
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != "abcde" {
		t.Fatalf("after kill -9: %q", got)
	}
	if err := nd.Close(); err != nil {
		t.Fatal(err)
	}
	nd.closed = true
	files, err = nd.listLogs()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].writer != workerLog {
		t.Fatalf("after Close: %v", files)
	}
}

// TestLoopLogsFsyncsPerSecond: the syncer fsyncs each written log once a
// round, whatever the number of tenants writing: with 40 tenants written
// on two loops and the worker, at most 3 log fsyncs per round.
func TestLoopLogsFsyncsPerSecond(t *testing.T) {
	cfs := &syncCountFS{}
	db := MustOpen(t, &Options{FS: cfs, Durability: DurabilityEverySec, SyncInterval: 20 * time.Millisecond, LoopLogs: 2})
	var tens []*Tenant
	for i := range 40 {
		ten, err := db.AddTenant(TenantConfig{Name: fmt.Sprint("x", i), DataDir: fmt.Sprintf("%s/x%d", db.root, i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ten.Insert([]byte("f"), coord(1), []byte("a")); err != nil {
			t.Fatal(err)
		}
		tens = append(tens, ten)
	}
	time.Sleep(50 * time.Millisecond)
	before, rounds := cfs.count(logSuffix), db.syncRounds.Load()
	var rs [2]LoopRound
	rs[0].SetLoop(0)
	rs[1].SetLoop(1)
	t.Cleanup(func() { _ = rs[0].Flush(); _ = rs[1].Flush() })
	for range 20 {
		for i, ten := range tens {
			r := &rs[i%2]
			w := Write{Kind: WriteUpdate, Name: []byte("f"), Coord: coord(2), Text: []byte("v")}
			if ok, _ := ten.TryApply(r, &w); !ok {
				// A busy lock (the syncer holds the log's mutex for a
				// moment): the worker path, as the server does.
				if err := r.Flush(); err != nil {
					t.Fatal(err)
				}
				if _, err := ten.Update(w.Name, w.Coord, w.Text); err != nil {
					t.Fatal(err)
				}
			}
			if i%5 == 0 {
				if _, err := ten.Insert([]byte("g"), coord(1), []byte("w")); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := range rs {
			if err := rs[i].Flush(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	n, sr := cfs.count(logSuffix)-before, db.syncRounds.Load()-rounds
	if n == 0 || n > 3*int(sr+1) {
		t.Fatalf("%d log fsyncs in %d syncer rounds (3 logs)", n, sr)
	}
	t.Logf("%d log fsyncs in %d syncer rounds", n, sr)
}

// TestLoopLogsFeedHoleInGeneration: a generation's file of one writer
// missing from the change-feed history (its rename failed and it was
// deleted) while the generation's other files are there: the read back
// sees the hole through the records' previous LSNs and answers
// ErrNotInLog (the watcher resyncs) instead of a list without the loop's
// update.
func TestLoopLogsFeedHoleInGeneration(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityEverySec, SyncInterval: time.Hour, LoopLogs: 2,
		LogKeepBytes: DefaultLogKeep})
	if _, err := db.ten.Update([]byte("f"), coord(1), []byte("a")); err != nil {
		t.Fatal(err)
	}
	from := db.lsn.Load()
	var r0 LoopRound
	r0.SetLoop(0)
	t.Cleanup(func() { _ = r0.Flush() })
	w := Write{Kind: WriteUpdate, Name: []byte("f"), Coord: coord(1), Text: []byte("b")}
	if ok, logged := db.ten.TryApply(&r0, &w); !ok || !logged {
		t.Fatal("declined")
	}
	if err := r0.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ten.Update([]byte("f"), coord(1), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := db.rotate(); err != nil {
		t.Fatal(err)
	}
	chs, _, err := db.ten.ReadChanges("f", from, 1<<20)
	if err != nil || len(chs) != 2 {
		t.Fatalf("whole history: %d changes, %v", len(chs), err)
	}
	hs, err := db.listHist()
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	for _, h := range hs {
		if h.writer == "l0" && h.size > logHeaderSize+100 {
			if err := os.Remove(h.path); err != nil {
				t.Fatal(err)
			}
			removed = true
		}
	}
	if !removed {
		t.Fatalf("no l0 file with records in the history: %v", hs)
	}
	if chs, _, err := db.ten.ReadChanges("f", from, 1<<20); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("read back over a missing l0 file: %d changes, %v; want ErrNotInLog", len(chs), err)
	}
}

// TestLoopLogsCapped: on a host with more event loops than MaxLoopLogs the
// store keeps MaxLoopLogs loop logs (the syncer's fsyncs per interval stay
// at most 1 + MaxLoopLogs whatever the core count), and a loop past them
// writes log i mod MaxLoopLogs.
func TestLoopLogsCapped(t *testing.T) {
	db := MustOpen(t, &Options{Durability: DurabilityEverySec, SyncInterval: time.Hour, LoopLogs: 64})
	if n := len(db.loopLogs); n != MaxLoopLogs {
		t.Fatalf("%d loop logs for 64 loops, want %d", n, MaxLoopLogs)
	}
	if n := len(db.logs); n != 1+MaxLoopLogs {
		t.Fatalf("%d logs in all, want %d", n, 1+MaxLoopLogs)
	}
	if _, err := db.ten.Update([]byte("f"), coord(1), []byte("a")); err != nil { // opens f
		t.Fatal(err)
	}
	var r LoopRound
	r.SetLoop(40)
	t.Cleanup(func() { _ = r.Flush() })
	w := Write{Kind: WriteUpdate, Name: []byte("f"), Coord: coord(1), Text: []byte("b")}
	if ok, _ := db.ten.TryApply(&r, &w); !ok {
		t.Fatal("declined")
	}
	if want := db.loopLogs[40%MaxLoopLogs]; r.l != want {
		t.Fatalf("loop 40 writes %q, want %q", r.l.writer, want.writer)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
}
