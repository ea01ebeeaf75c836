package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phext/sq/server"
)

func runT(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestVersionWithoutTokenOrServer: sq --version and sq version answer with
// the client's version and need no token, config or server; with a token
// and a live server sq version adds the server's.
func TestVersionWithoutTokenOrServer(t *testing.T) {
	t.Setenv("SQ_TOKEN", "")
	t.Setenv("SQ_ADDR", "127.0.0.1:1") // nothing listens there
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, errb := runT(args...)
		if code != 0 || !strings.Contains(out, server.Version) {
			t.Fatalf("sq %s: exit %d, stdout %q, stderr %q", args[0], code, out, errb)
		}
	}
	// A token but no server: the client's version, a note, exit 0.
	t.Setenv("SQ_TOKEN", "pmb-v1-001-000000000000000000000000")
	code, out, errb := runT("version")
	if code != 0 || !strings.Contains(out, "client: sq "+server.Version) || !strings.Contains(errb, "127.0.0.1:1") {
		t.Fatalf("sq version with a dead server: exit %d, stdout %q, stderr %q", code, out, errb)
	}
	ts := startTestServer(t, "v")
	t.Setenv("SQ_TOKEN", ts.tokens["v"])
	t.Setenv("SQ_ADDR", ts.addr)
	code, out, errb = runT("version")
	if code != 0 || !strings.Contains(out, "server: sq "+server.Version+" at "+ts.addr) {
		t.Fatalf("sq version with a server: exit %d, stdout %q, stderr %q", code, out, errb)
	}
}

func TestDidYouMean(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "typo", args: []string{"slect"}, want: "did you mean select?"},
		{name: "transposed", args: []string{"tenatns"}, want: "did you mean tenants?"},
		{name: "prefix", args: []string{"rest"}, want: "did you mean restore?"},
		{name: "tenants sub", args: []string{"tenants", "enabel"}, want: "did you mean enable?"},
		{name: "phext tool", args: []string{"phext", "tco", "x"}, want: "did you mean toc?"},
		{name: "nothing close", args: []string{"zzzzzzzz"}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errb := runT(tc.args...)
			if code != 2 {
				t.Fatalf("exit %d", code)
			}
			if tc.want == "" && strings.Contains(errb, "did you mean") || !strings.Contains(errb, tc.want) {
				t.Fatalf("stderr %q, want %q", errb, tc.want)
			}
		})
	}
}

// TestHelpListsEverySubcommandForm: sq help names every form a user can
// type: each command, each tenants subcommand (shard included), each phext
// tool, bench compare.
func TestHelpListsEverySubcommandForm(t *testing.T) {
	code, out, _ := runT("help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var want []string
	for n := range commands() {
		want = append(want, n)
	}
	for _, s := range tenantSubs {
		want = append(want, "tenants "+s.name)
	}
	want = append(want, "tenants shard", "bench compare")
	for _, tool := range []string{"toc", "checksum", "explode", "normalize", "select"} {
		want = append(want, "phext "+tool)
	}
	for _, w := range want {
		if !strings.Contains(out, "\n  "+w+" ") {
			t.Errorf("sq help does not list %q", w)
		}
	}
}

// TestPhextSelectCoordFirst: sq phext select takes COORD FILE like sq
// select; the older FILE COORD still works; a scroll printed to a terminal
// ends with a newline, piped output is the raw scroll.
func TestPhextSelectCoordFirst(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "d.phext")
	must0(t, os.WriteFile(doc, []byte("a\x17b"), 0o600))
	for _, args := range [][]string{
		{"phext", "select", "1.1.1/1.1.1/1.1.2", doc},
		{"phext", "select", doc, "1.1.1/1.1.1/1.1.2"},
	} {
		code, out, errb := runT(args...)
		if code != 0 || out != "b" {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q", args, code, out, errb)
		}
	}
	code, _, errb := runT("phext", "select", "1.1.1", doc)
	if code != 1 || !strings.Contains(errb, "1.1.1/1.1.1/1.1.1") {
		t.Fatalf("bad coordinate: exit %d, stderr %q (want the expected form named)", code, errb)
	}
	withTerminal(t)
	if code, out, _ := runT("phext", "select", "1.1.1/1.1.1/1.1.2", doc); code != 0 || out != "b\n" {
		t.Fatalf("to a terminal: %q, want a final newline", out)
	}
}

// withTerminal makes every writer count as a terminal for the test.
func withTerminal(t *testing.T) {
	old := isTerminal
	isTerminal = func(io.Writer) bool { return true }
	t.Cleanup(func() { isTerminal = old })
}

// TestSelectNewlineOnlyOnTerminal: sq select adds a newline after a scroll
// that lacks one only when stdout is a terminal.
func TestSelectNewlineOnlyOnTerminal(t *testing.T) {
	ts := startTestServer(t, "n")
	env := map[string]string{"SQ_ADDR": ts.addr, "SQ_TOKEN": ts.tokens["n"]}
	if r := runCLI(env, "", "update", "1.1.1/1.1.1/1.1.1", "no newline"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := runCLI(env, "", "select", "1.1.1/1.1.1/1.1.1"); r.stdout != "no newline" {
		t.Fatalf("piped: %q, want the raw scroll", r.stdout)
	}
	withTerminal(t)
	if r := runCLI(env, "", "select", "1.1.1/1.1.1/1.1.1"); r.stdout != "no newline\n" {
		t.Fatalf("terminal: %q, want a final newline", r.stdout)
	}
	if r := runCLI(env, "", "select", "1.1.1/1.1.1/1.1.1", "--json"); !strings.HasSuffix(r.stdout, `"text":"no newline"}`+"\n") {
		t.Fatalf("json: %q", r.stdout)
	}
}

// TestHostRustPortForm: `sq host 1337 --config …` (the Rust SQ form) is
// answered with the flags that mean it here, not "unexpected argument".
func TestHostRustPortForm(t *testing.T) {
	code, _, errb := runT("host", "1337", "--config", "tenants.json")
	if code != 2 || !strings.Contains(errb, "--http 127.0.0.1:1337") || !strings.Contains(errb, "--listen") {
		t.Fatalf("exit %d, stderr %q", code, errb)
	}
}

// TestHostDevDefaultWarnsInBusyDir: sq host without --config in a
// directory holding other things says loudly that it serves the dev
// default; in an empty directory it only notes it.
func TestHostDevDefaultWarnsInBusyDir(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	for _, busy := range []bool{false, true} {
		dir := t.TempDir()
		if busy {
			must0(t, os.WriteFile(filepath.Join(dir, "tenants.json"), []byte("{}"), 0o600))
		}
		t.Chdir(dir)
		h := startHost(t, "--listen", "127.0.0.1:0", "--http=")
		h.kill()
		warned := strings.Contains(h.stderr.String(), "WARNING: serving the embedded DEV default config")
		if warned != busy {
			t.Fatalf("busy dir %v: warned %v; stderr %q", busy, warned, h.stderr.String())
		}
		if !strings.Contains(h.stdout.String(), "no --config given") {
			t.Fatalf("no note about the default config: %q", h.stdout.String())
		}
	}
}
