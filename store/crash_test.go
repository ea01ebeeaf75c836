package store

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/phext"
)

const crashEnv = "SQ_STORE_CRASH_CHILD"

// crashCoord is where writer g of round r appends its tokens.
func crashCoord(r, g int) phext.Coordinate { return coord(uint16(r+1), uint16(g+1)) }

func crashToken(g, i int) string { return fmt.Sprintf("g%di%d;", g, i) }

// TestCrashChild is the writer the crash test runs in a child process and
// kills: four goroutines append tokens in always mode and print one line
// per acknowledged write. The small CompactMinWAL makes compactions happen
// while it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only run as the crash test's child")
	}
	round, _ := strconv.Atoi(os.Getenv(crashEnv + "_ROUND"))
	// A small LogRotateBytes makes rotations (new generations, old ones
	// truncated away) happen while it is killed too.
	s, err := Open(&Options{Durability: DurabilityAlways, CompactMinWAL: 1024, LogRotateBytes: 16 << 10,
		LogDir: filepath.Join(dir, "log"), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ten, err := s.AddTenant(TenantConfig{Name: "c", DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if _, err := ten.Insert([]byte("crash"), crashCoord(round, g), []byte(crashToken(g, i))); err != nil {
					fmt.Fprintln(os.Stderr, "insert:", err)
					os.Exit(3)
				}
				// Every few writes, replace a scroll too.
				if i%7 == 0 {
					if _, err := ten.Update([]byte("crash"), coord(9, uint16(round+1), uint16(g+1)), []byte(crashToken(g, i))); err != nil {
						os.Exit(3)
					}
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %d\n", g, i)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrash kills the writer child at random moments and checks that every
// write it acknowledged (always mode) survived, in order, with no partial
// record. 10 kills by default, SQ_CRASH_KILLS to change.
func TestCrash(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("child")
	}
	kills := 10
	if v, err := strconv.Atoi(os.Getenv("SQ_CRASH_KILLS")); err == nil && v > 0 {
		kills = v
	} else if !testing.Short() && os.Getenv("SQ_CRASH_LONG") != "" {
		kills = 100
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	acked := make([][4]int, kills) // per round, per writer: acknowledged count
	for r := 0; r < kills; r++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashEnv+"_ROUND="+strconv.Itoa(r))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait for the first acknowledgement, then kill at a random moment.
		first, ok := <-lines
		if !ok {
			cmd.Wait()
			t.Fatalf("round %d: child wrote nothing: %s", r, stderr.String())
		}
		time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		record := func(l string) {
			var g, i int
			if _, err := fmt.Sscanf(l, "%d %d", &g, &i); err == nil && i+1 > acked[r][g] {
				acked[r][g] = i + 1
			}
		}
		record(first)
		for l := range lines {
			record(l)
		}
		cmd.Wait()
		// Reopen and verify every round so far.
		s, err := Open(&Options{Logger: discardLogger(), LogDir: filepath.Join(dir, "log")})
		if err != nil {
			t.Fatal(err)
		}
		ten, err := s.AddTenant(TenantConfig{Name: "c", DataDir: filepath.Join(dir, "data")})
		if err != nil {
			t.Fatal(err)
		}
		for rr := 0; rr <= r; rr++ {
			for g := 0; g < 4; g++ {
				got, err := ten.AppendSelect(nil, []byte("crash"), crashCoord(rr, g))
				if err != nil {
					t.Fatalf("round %d: %v", r, err)
				}
				// The scroll is g's tokens 0..k-1 for some k >= acked.
				var want strings.Builder
				k := 0
				for want.Len() < len(got) {
					want.WriteString(crashToken(g, k))
					k++
				}
				if want.String() != string(got) || k < acked[rr][g] {
					t.Fatalf("round %d, writer %d of round %d: %d tokens survive, %d acknowledged; scroll %q",
						r, g, rr, k, acked[rr][g], got)
				}
			}
		}
		s.Close()
	}
	fi, err := os.Stat(filepath.Join(dir, "data", "crash.phext"))
	if err != nil || fi.Size() == 0 {
		t.Errorf("no compaction happened in the child (snapshot %v, %v)", fi, err)
	}
	t.Logf("%d kills; acknowledged writes per round: %v; snapshot %d bytes", kills, acked, fi.Size())
}
