package cpus

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// childEnv asks a run of this test binary to check that N() is the
// number it holds, as the count of a process started under the
// conditions its parent set up.
const childEnv = "SQ_TEST_CPUS_WANT"

// TestChildN is the child's check; without childEnv it does nothing.
func TestChildN(t *testing.T) {
	want := os.Getenv(childEnv)
	if want == "" {
		t.Skip("run by the tests below as a child process")
	}
	if got := strconv.Itoa(N()); got != want {
		t.Fatalf("N() = %s, want %s (NumCPU %d, GOMAXPROCS %d)", got, want, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	}
}

// runChild runs cmd, a childCmd, expecting N() == want in it.
func runChild(cmd *exec.Cmd, want int) error {
	cmd.Env = append(cmd.Env, childEnv+"="+strconv.Itoa(want))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestChildN") {
		return fmt.Errorf("child: %v\n%s", err, out)
	}
	return nil
}

func childCmd() *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildN$", "-test.count=1", "-test.v")
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GOMAXPROCS=") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	return cmd
}

// TestNAtLeastOne: N is a count work can be divided by.
func TestNAtLeastOne(t *testing.T) {
	if N() < 1 {
		t.Fatalf("N() = %d", N())
	}
}

// TestNFixedAtStart: a process that sets GOMAXPROCS later (sq host adds a
// P for every event loop, server.Procs; go test -cpu) does not change N,
// and so not what is sized by it: more Ps are not more CPUs.
func TestNFixedAtStart(t *testing.T) {
	n := N()
	old := runtime.GOMAXPROCS(n + 3)
	defer runtime.GOMAXPROCS(old)
	if N() != n {
		t.Fatalf("N() = %d after GOMAXPROCS(%d), %d before", N(), n+3, n)
	}
}

// TestNFromGOMAXPROCS: a process started with $GOMAXPROCS counts that
// many, even more than the machine has (the operator's word).
func TestNFromGOMAXPROCS(t *testing.T) {
	want := runtime.NumCPU() + 2
	cmd := childCmd()
	cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(want))
	if err := runChild(cmd, want); err != nil {
		t.Fatal(err)
	}
}
