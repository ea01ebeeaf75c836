package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// heldRound opens a store whose phext f holds "a", applies an INSERT of
// "b" to it in a loop round it leaves unflushed, and starts a blocking
// INSERT of text into phext name, which queues behind the round; done
// gets its result.
func heldRound(t *testing.T, fs FS, name, text string) (*testDB, *LoopRound, chan error) {
	t.Helper()
	db := MustOpen(t, &Options{FS: fs, Durability: DurabilityEverySec, SyncInterval: time.Hour})
	if _, err := db.ten.Insert([]byte("f"), coord(1), []byte("a")); err != nil {
		t.Fatal(err)
	}
	r := new(LoopRound)
	t.Cleanup(func() { _ = r.Flush() }) // a failed check must not leave the log held
	w := Write{Kind: WriteInsert, Name: []byte("f"), Coord: coord(1), Text: []byte("b")}
	if ok, logged := db.ten.TryApply(r, &w); !ok || !logged {
		t.Fatalf("declined: %v %v", ok, logged)
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.ten.Insert([]byte(name), coord(1), []byte(text))
		done <- err
	}()
	waitQueued(t, db, done)
	return db, r, done
}

// waitQueued waits until a group commit is queued behind the log's
// current writer.
func waitQueued(t *testing.T, db *testDB, done <-chan error) {
	t.Helper()
	for {
		db.wlog.mu.Lock()
		queued := db.wlog.cur != nil
		db.wlog.mu.Unlock()
		if queued {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("blocking write finished before the round's Flush: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
}

// reopenCrashed opens a new Store on db's files after Crash (a kill -9:
// what was written is in the kernel, nothing else happened).
func reopenCrashed(t *testing.T, db *testDB) *testDB {
	t.Helper()
	Crash(db.Store)
	db.closed = true
	o := db.opts
	o.FS = nil
	nd := &testDB{tb: t, root: db.root, opts: o}
	nd.open()
	t.Cleanup(func() { nd.Close() })
	return nd
}

// TestLoopRoundOneWrite: the writes of one loop round, to several phexts
// of several tenants, are validated and applied at once and logged with
// one write() at Flush, none before; a kill -9 after Flush keeps them all.
func TestLoopRoundOneWrite(t *testing.T) {
	fs := &leadFS{}
	db := MustOpen(t, &Options{FS: fs, Durability: DurabilityEverySec, SyncInterval: time.Hour})
	b, err := db.AddTenant(TenantConfig{Name: "b", DataDir: filepath.Join(db.root, "b")})
	if err != nil {
		t.Fatal(err)
	}
	for _, ten := range []*Tenant{db.ten, b} {
		for _, name := range []string{"f", "g"} {
			if _, err := ten.Insert([]byte(name), coord(1), []byte("base")); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := fs.writes.Load()
	var r LoopRound
	t.Cleanup(func() { _ = r.Flush() }) // a failed check must not leave the log held
	want := map[string]string{}
	apply := func(ten *Tenant, w Write, n int, wantLogged bool, wantErr error) {
		t.Helper()
		ok, logged := ten.TryApply(&r, &w)
		if !ok || logged != wantLogged || w.N != n || !errors.Is(w.Err, wantErr) {
			t.Fatalf("%s %v: ok %v logged %v n %d err %v; want logged %v n %d err %v",
				w.Name, w.Kind, ok, logged, w.N, w.Err, wantLogged, n, wantErr)
		}
	}
	for i := 0; i < 40; i++ {
		ten, tn := db.ten, "t1"
		if i%2 == 1 {
			ten, tn = b, "b"
		}
		name := []string{"f", "g"}[i/2%2]
		text := fmt.Sprint("v", i)
		apply(ten, Write{Kind: WriteUpdate, Name: []byte(name), Coord: coord(2), Text: []byte(text)}, len(text), true, nil)
		want[tn+"/"+name] = text
	}
	apply(db.ten, Write{Kind: WriteInsert, Name: []byte("f"), Coord: coord(1), Text: []byte("+")}, 1, true, nil)
	apply(db.ten, Write{Kind: WriteDelete, Name: []byte("f"), Coord: coord(3)}, 0, false, nil)
	apply(db.ten, Write{Kind: WriteUpdate, Name: []byte("f"), Coord: coord(3), Text: []byte("a\x17")}, 0, false, ErrBadScroll)
	apply(b, Write{Kind: WriteDelete, Name: []byte("g"), Coord: coord(1)}, 4, true, nil)
	// Applied in memory (readers see them, as Redis serves them before
	// its AOF write), nothing written yet.
	if got := mustSelect(t, db.ten, "f", coord(1)); got != "base+" {
		t.Fatalf("before Flush: %q", got)
	}
	if n := fs.writes.Load() - before; n != 0 {
		t.Fatalf("%d log writes before Flush", n)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := fs.writes.Load() - before; n != 1 {
		t.Fatalf("%d log writes for one round, want 1", n)
	}
	if r.Held() {
		t.Fatal("round still holds the log after Flush")
	}
	nd := reopenCrashed(t, db)
	nb, err := nd.AddTenant(TenantConfig{Name: "b", DataDir: filepath.Join(db.root, "b")})
	if err != nil {
		t.Fatal(err)
	}
	for key, text := range want {
		tn, name, _ := strings.Cut(key, "/")
		ten := nd.ten
		if tn == "b" {
			ten = nb
		}
		if got := mustSelect(t, ten, name, coord(2)); got != text {
			t.Fatalf("%s after kill -9: %q, want %q", key, got, text)
		}
	}
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != "base+" {
		t.Fatalf("insert after kill -9: %q", got)
	}
	if got := mustSelect(t, nb, "g", coord(1)); got != "" {
		t.Fatalf("delete after kill -9: %q", got)
	}
}

// TestLoopRoundsRecoverInApplyOrder: two event loops (each with its own
// rounds) and a blocking writer append to the same scroll concurrently;
// after a kill -9 the recovered scroll equals the one in memory, token for
// token: recovery replays in the order the writes were applied (LSN order,
// assigned under the phext's lock), whichever writer logged them.
func TestLoopRoundsRecoverInApplyOrder(t *testing.T) { recoverInApplyOrder(t, 0, 0) }

// recoverInApplyOrder runs that test with loopLogs loop logs (the loops
// use 0 and 1) and a rotation every rotateEvery writes of the worker (0:
// none).
func recoverInApplyOrder(t *testing.T, loopLogs, rotateEvery int) {
	db := MustOpen(t, &Options{Durability: DurabilityEverySec, SyncInterval: 5 * time.Millisecond, LoopLogs: loopLogs})
	name := []byte("f")
	if _, err := db.ten.Insert(name, coord(1), []byte(">")); err != nil {
		t.Fatal(err)
	}
	const rounds, perRound = 60, 8
	var wg sync.WaitGroup
	var onLoop atomic.Int64
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r LoopRound
			r.SetLoop(g)
			for i := 0; i < rounds; i++ {
				for k := 0; k < perRound; k++ {
					w := Write{Kind: WriteInsert, Name: name, Coord: coord(1), Text: []byte(fmt.Sprintf("L%d.%d.%d;", g, i, k))}
					if ok, _ := db.ten.TryApply(&r, &w); ok {
						onLoop.Add(1)
						if w.Err != nil {
							t.Error(w.Err)
						}
						continue
					}
					// Declined: the server hands it to a worker, which runs
					// after the round's Flush.
					if err := r.Flush(); err != nil {
						t.Error(err)
					}
					if _, err := db.ten.Insert(name, coord(1), w.Text); err != nil {
						t.Error(err)
					}
				}
				if err := r.Flush(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < rounds*2; i++ {
			if _, err := db.ten.Insert(name, coord(1), []byte(fmt.Sprintf("W%d;", i))); err != nil {
				t.Error(err)
			}
			if rotateEvery > 0 && i%rotateEvery == 0 {
				if err := db.rotate(); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	wg.Wait()
	if onLoop.Load() == 0 {
		t.Fatal("no write was applied on a loop")
	}
	mem := mustSelect(t, db.ten, "f", coord(1))
	if n := strings.Count(mem, ";"); n != 2*rounds*perRound+2*rounds {
		t.Fatalf("%d tokens in memory", n)
	}
	nd := reopenCrashed(t, db)
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != mem {
		t.Fatalf("recovered scroll differs from the applied one:\n mem %q\n got %q", mem, got)
	}
}

// TestLoopRoundKeepsLaterRecordsBehind: while a round holds applied,
// unwritten records, a blocking write of the same phext (computed on the
// applied state) waits: a kill -9 at that moment recovers neither, never
// the later one without the earlier (a gap the client never saw).
func TestLoopRoundKeepsLaterRecordsBehind(t *testing.T) {
	db, r, done := heldRound(t, nil, "f", "c")
	// What a kill -9 now would leave: the log file as the kernel has it.
	db.wlog.mu.Lock()
	path := db.wlog.path
	db.wlog.mu.Unlock()
	img := logPayloads(t, path, "f")
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := mustSelect(t, db.ten, "f", coord(1)); got != "abc" {
		t.Fatalf("memory %q", got)
	}
	if img != "a" {
		t.Fatalf("log before the Flush holds %q, want only the acknowledged %q", img, "a")
	}
	if got := logPayloads(t, path, "f"); got != "abc" {
		t.Fatalf("log after the Flush holds %q", got)
	}
	nd := reopenCrashed(t, db)
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != "abc" {
		t.Fatalf("after kill -9: %q", got)
	}
}

// logPayloads returns the payloads of phext name's data records in the
// log file at path, in file order.
func logPayloads(t *testing.T, path, name string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := scanLog(data, path)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, r := range w.recs {
		if r.name == name && r.kind != opCkpt {
			out = append(out, r.payload...)
		}
	}
	return string(out)
}

// TestLoopRoundFailedWrite: a round whose write() fails answers its writes
// with the error; they were applied, so the log file takes nothing more
// (a group queued behind the round fails, nothing of it applied), writes
// are refused until the repair checkpointed every dirty phext from memory,
// and after it the state in memory is the state on disk.
func TestLoopRoundFailedWrite(t *testing.T) {
	fs := &leadFS{}
	db, r, done := heldRound(t, fs, "g", "queued")
	name := []byte("f")
	fs.fail.Store(true)
	if err := r.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush: %v, want ENOSPC", err)
	}
	if err := <-done; err == nil {
		t.Fatal("a group queued behind the failed round was written after it")
	}
	if got := mustGet(t, db.ten, "g"); got != "" {
		t.Fatalf("the failed group was applied: %q", got)
	}
	// The repair (started by the failure) checkpoints from memory; writes
	// are accepted again after it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := db.ten.Insert(name, coord(1), []byte("c"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still refused: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := mustSelect(t, db.ten, "f", coord(1)); got != "abc" {
		t.Fatalf("memory %q", got)
	}
	nd := reopenCrashed(t, db)
	if got := mustSelect(t, nd.ten, "f", coord(1)); got != "abc" {
		t.Fatalf("after the repair and a kill -9: %q, want %q", got, "abc")
	}
}

// BenchmarkLoopRound: a round of 16 small UPDATEs and its Flush; no
// allocation once the scrolls are in the overlay (checkpoints and
// rotations, which run on their own goroutines, are kept out).
func BenchmarkLoopRound(b *testing.B) { benchLoopRound(b, 0) }

// BenchmarkLoopRoundLoopLogs: the same on loop 1's own log.
func BenchmarkLoopRoundLoopLogs(b *testing.B) { benchLoopRound(b, 2) }

func benchLoopRound(b *testing.B, loopLogs int) {
	db := MustOpen(b, &Options{Durability: DurabilityEverySec, SyncInterval: time.Hour,
		CompactMinWAL: 1 << 40, LogRotateBytes: 1 << 40, LoopLogs: loopLogs})
	name := []byte("f")
	for i := 1; i <= 16; i++ {
		if _, err := db.ten.Update(name, coord(uint16(i)), []byte("hello world")); err != nil {
			b.Fatal(err)
		}
	}
	text := []byte("hello there")
	var r LoopRound
	r.SetLoop(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := 1; k <= 16; k++ {
			w := Write{Kind: WriteUpdate, Name: name, Coord: coord(uint16(k)), Text: text}
			if ok, _ := db.ten.TryApply(&r, &w); !ok {
				_ = r.Flush()
				b.Fatal("declined")
			}
		}
		if err := r.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLoopRoundAllocs: a round of writes allocates nothing, on the worker
// log (no loop logs) as on a loop's own.
func TestLoopRoundAllocs(t *testing.T) {
	for _, bf := range []func(*testing.B){BenchmarkLoopRound, BenchmarkLoopRoundLoopLogs} {
		res := testing.Benchmark(bf)
		if a := res.AllocsPerOp(); a != 0 {
			t.Fatalf("%d allocs per round of 16 writes", a)
		}
	}
}
