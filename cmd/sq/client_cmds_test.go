package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/server"
	"github.com/phext/sq/server/httpapi"
	"github.com/phext/sq/store"
)

// testServer is a real server on 127.0.0.1:0 with tenants from a config
// file that RELOAD re-reads.
type testServer struct {
	srv      *server.Server
	addr     string
	httpAddr string // the REST API, when started with startTestServerHTTP
	cfgPath  string
	dir      string
	tokens   map[string]string // name → token
}

// testAdminToken is the admin_token of startTestServer's config.
const testAdminToken = "admin-token-for-cli-tests-0001"

func startTestServer(t *testing.T, names ...string) *testServer {
	t.Helper()
	return startTestServerWith(t, false, names...)
}

// startTestServerHTTP is startTestServer with the REST API on a free
// loopback port too.
func startTestServerHTTP(t *testing.T, names ...string) *testServer {
	t.Helper()
	return startTestServerWith(t, true, names...)
}

func startTestServerWith(t *testing.T, withHTTP bool, names ...string) *testServer {
	t.Helper()
	if len(names) == 0 {
		names = []string{"tenant-001"}
	}
	ts := &testServer{dir: t.TempDir(), tokens: map[string]string{}}
	cfg := &config.Config{Tenants: map[string]config.TenantEntry{}, AdminToken: testAdminToken}
	for i, n := range names {
		tok, err := config.GenerateToken(i + 1)
		if err != nil {
			t.Fatal(err)
		}
		ts.tokens[n] = tok
		cfg.Tenants[tok] = config.TenantEntry{Name: n, DataDir: filepath.Join(ts.dir, n)}
	}
	ts.cfgPath = filepath.Join(ts.dir, "tenants.json")
	if err := config.WriteFile(ts.cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(&store.Options{Durability: store.DurabilityNo, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(st, cfg, &server.Options{
		Listen: "127.0.0.1:0", EventLoops: 1, Logger: quiet,
		LoadConfig: func() (*config.Config, error) { return config.Load(ts.cfgPath) },
	})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ts.srv, ts.addr = srv, srv.Addr()
	var hs *http.Server
	if withHTTP {
		var ln net.Listener
		hs, ln, err = httpapi.Start(srv, "127.0.0.1:0", &httpapi.Options{ConfigPath: ts.cfgPath})
		if err != nil {
			t.Fatal(err)
		}
		ts.httpAddr = ln.Addr().String()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if hs != nil {
			hs.Shutdown(ctx)
		}
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		st.Close()
	})
	return ts
}

// cli runs one command with env vars from vars and returns status, stdout
// and stderr.
type cliResult struct {
	code           int
	stdout, stderr string
}

func runCLI(vars map[string]string, stdin string, name string, args ...string) cliResult {
	var out, errb bytes.Buffer
	env := clientEnv{
		getenv: func(k string) string { return vars[k] },
		stdin:  strings.NewReader(stdin),
		stdout: &out, stderr: &errb,
	}
	var code int
	if name == "tenants" {
		code = runTenantsEnv(args, env)
	} else {
		code = runClientCommandEnv(name, args, env)
	}
	return cliResult{code, out.String(), errb.String()}
}

func TestClientCommands(t *testing.T) {
	ts := startTestServer(t)
	dir := t.TempDir()
	env := map[string]string{"SQ_ADDR": ts.addr, "SQ_TOKEN": ts.tokens["tenant-001"], "SQ_PHEXT": "cli"}
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pushFile := file("push.txt", "pushed text")
	doc := "first\x17second\x18third"
	docFile := file("doc.phext", doc)
	pulled := filepath.Join(dir, "pulled.txt")
	gotDoc := filepath.Join(dir, "got.phext")

	steps := []struct {
		name    string
		cmd     string
		args    []string
		stdin   string
		code    int
		stdout  string // exact, unless contains is set
		has     []string
		errHas  string
		errLack string
		noCheck bool
	}{
		{name: "ping", cmd: "ping", has: []string{"PONG from " + ts.addr}},
		{name: "insert", cmd: "insert", args: []string{"1.1.1/1.1.1/1.1.1", "hello"}, stdout: "1.1.1/1.1.1/1.1.1: Inserted 5 bytes\n"},
		{name: "insert appends", cmd: "insert", args: []string{"1.1.1/1.1.1/1.1.1", " world"}, stdout: "1.1.1/1.1.1/1.1.1: Inserted 6 bytes\n"},
		{name: "select", cmd: "select", args: []string{"1.1.1/1.1.1/1.1.1"}, stdout: "hello world"},
		{name: "select json after arg", cmd: "select", args: []string{"1.1.1/1.1.1/1.1.1", "--json"}, stdout: `{"coord":"1.1.1/1.1.1/1.1.1","text":"hello world"}` + "\n"},
		{name: "update", cmd: "update", args: []string{"1.1.1/1.1.1/1.1.2", "two"}, stdout: "1.1.1/1.1.1/1.1.2: Updated 3 bytes\n"},
		{name: "update text starting with dash", cmd: "update", args: []string{"1.1.1/1.1.1/1.1.3", "--", "-dash"}, stdout: "1.1.1/1.1.1/1.1.3: Updated 5 bytes\n"},
		{name: "delete", cmd: "delete", args: []string{"1.1.1/1.1.1/1.1.3"}, stdout: "1.1.1/1.1.1/1.1.3: Removed 5 bytes\n"},
		{name: "toc", cmd: "toc", stdout: "* 1.1.1/1.1.1/1.1.1: hello world\n* 1.1.1/1.1.1/1.1.2: two\n"},
		{name: "checksum", cmd: "checksum", stdout: phext.Checksum([]byte("hello world\x17two")) + "\n"},
		{name: "get", cmd: "get", stdout: "hello world\x17two"},
		{name: "get to file", cmd: "get", args: []string{gotDoc}, stdout: "Wrote 15 bytes to " + gotDoc + "\n"},
		{name: "push", cmd: "push", args: []string{"2.1.1/1.1.1/1.1.1", pushFile}, stdout: "2.1.1/1.1.1/1.1.1: Updated 11 bytes\n"},
		{name: "pull", cmd: "pull", args: []string{"2.1.1/1.1.1/1.1.1", pulled}, stdout: "Exported scroll at 2.1.1/1.1.1/1.1.1 to " + pulled + ".\n"},
		{name: "put from file", cmd: "put", args: []string{docFile, "--phext", "doc"}, stdout: "Stored 3 scrolls (" + itoa(len(doc)) + " bytes) from " + docFile + "\n"},
		{name: "put from stdin", cmd: "put", args: []string{"-", "--phext", "stdin", "--json"}, stdin: "a\x17b", stdout: `{"scrolls":2,"bytes":3}` + "\n"},
		{name: "get other phext", cmd: "get", args: []string{"--phext", "doc"}, stdout: doc},
		{name: "delta", cmd: "delta", args: []string{"-", "--phext", "doc"}, stdin: "1.1.1/1.1.1/1.1.1: " + phext.Checksum([]byte("first")) + "\n", has: []string{"second", "third"}},
		{name: "where", cmd: "where", args: []string{"some text to place", "--algo", "checksum", "--json"}, has: []string{`"algo":"checksum"`, `"coord":"`}},
		{name: "list", cmd: "list", has: []string{"cli\n", "doc\n", "stdin\n"}},
		{name: "status", cmd: "status", has: []string{"tenant:  tenant-001", "phexts:", "quota:   unlimited"}},
		{name: "status json", cmd: "status", args: []string{"--json"}, has: []string{`"tenant":"tenant-001"`}},
		{name: "version", cmd: "version", has: []string{"client: sq " + server.Version + "\n", "server: ", server.Version}},
		{name: "compact", cmd: "compact", stdout: "Compacted cli\n"},
		{name: "reload with a tenant token", cmd: "reload", code: 1, errHas: "AUTH"},
		{name: "reload with the admin token", cmd: "reload", args: []string{"--token", testAdminToken}, noCheck: true},
		// Errors.
		{name: "bad scroll", cmd: "insert", args: []string{"1.1.1/1.1.1/1.1.1", "a\x17b"}, code: 1, errHas: "BAD_SCROLL"},
		{name: "bad coordinate", cmd: "select", args: []string{"0.1.1/1.1.1/1.1.1"}, code: 2, errHas: "bad coordinate"},
		{name: "loose coordinate refused", cmd: "select", args: []string{"1.1.1"}, code: 2, errHas: "in the form 1.1.1/1.1.1/1.1.1"},
		{name: "missing argument", cmd: "insert", args: []string{"1.1.1/1.1.1/1.1.1"}, code: 2, errHas: "want 2 argument"},
		{name: "extra argument", cmd: "toc", args: []string{"x"}, code: 2},
		{name: "unknown flag", cmd: "toc", args: []string{"--bogus"}, code: 2, errHas: "bogus"},
		{name: "bad phext name", cmd: "toc", args: []string{"--phext", ".x"}, code: 2, errHas: "bad phext name"},
		{name: "bad where algo", cmd: "where", args: []string{"x", "--algo", "md5"}, code: 2, errHas: "--algo"},
		{name: "missing file", cmd: "put", args: []string{filepath.Join(dir, "nope")}, code: 2},
		{name: "local file error not blamed on the server", cmd: "pull", args: []string{"2.1.1/1.1.1/1.1.1", filepath.Join(dir, "no-such-dir", "x.txt")}, code: 1, errHas: "no-such-dir", errLack: ts.addr},
		{name: "get to a local directory", cmd: "get", args: []string{dir}, code: 1, errHas: "is a directory", errLack: ts.addr},
		{name: "bad token", cmd: "ping", args: []string{"--token", "pmb-v1-999-x"}, code: 1, errHas: "AUTH"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := runCLI(env, s.stdin, s.cmd, s.args...)
			if r.code != s.code {
				t.Fatalf("exit %d, want %d\nstdout: %q\nstderr: %q", r.code, s.code, r.stdout, r.stderr)
			}
			if s.noCheck {
				return
			}
			if s.stdout != "" && r.stdout != s.stdout {
				t.Fatalf("stdout %q, want %q", r.stdout, s.stdout)
			}
			for _, h := range s.has {
				if !strings.Contains(r.stdout, h) {
					t.Fatalf("stdout %q lacks %q", r.stdout, h)
				}
			}
			if s.errHas != "" && !strings.Contains(r.stderr, s.errHas) {
				t.Fatalf("stderr %q lacks %q", r.stderr, s.errHas)
			}
			if s.errLack != "" && strings.Contains(r.stderr, s.errLack) {
				t.Fatalf("stderr %q names %q", r.stderr, s.errLack)
			}
			if s.code == 0 && r.stderr != "" {
				t.Fatalf("unexpected stderr %q", r.stderr)
			}
			if strings.Contains(strings.Join(s.args, " "), "--json") && s.code == 0 && !json.Valid([]byte(r.stdout)) {
				t.Fatalf("--json output is not JSON: %q", r.stdout)
			}
		})
	}
	if b, err := os.ReadFile(pulled); err != nil || string(b) != "pushed text" {
		t.Fatalf("pulled file = %q, %v", b, err)
	}
	if b, err := os.ReadFile(gotDoc); err != nil || string(b) != "hello world\x17two" {
		t.Fatalf("get file = %q, %v", b, err)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestClientFlagsOverrideEnv(t *testing.T) {
	ts := startTestServer(t)
	tok := ts.tokens["tenant-001"]
	// SQ_ADDR points nowhere useful; --addr wins.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	env := map[string]string{"SQ_ADDR": deadAddr, "SQ_TOKEN": tok, "SQ_PHEXT": "envphext"}
	if r := runCLI(env, "", "ping"); r.code != 1 || !strings.Contains(r.stderr, deadAddr) {
		t.Fatalf("ping via env addr: %+v", r)
	}
	if r := runCLI(env, "", "update", "1.1.1/1.1.1/1.1.1", "x", "--addr", ts.addr); r.code != 0 {
		t.Fatalf("update with --addr: %+v", r)
	}
	// SQ_PHEXT chose the phext; --phext overrides it.
	if r := runCLI(env, "", "select", "1.1.1/1.1.1/1.1.1", "--addr", ts.addr, "--phext", "envphext"); r.stdout != "x" {
		t.Fatalf("select in envphext: %+v", r)
	}
	if r := runCLI(env, "", "select", "1.1.1/1.1.1/1.1.1", "--addr", ts.addr, "--phext", "other"); r.code != 0 || r.stdout != "" {
		t.Fatalf("select in other: %+v", r)
	}
	// Without a token anywhere: usage error.
	if r := runCLI(map[string]string{"SQ_ADDR": ts.addr}, "", "ping"); r.code != 2 || !strings.Contains(r.stderr, "SQ_TOKEN") {
		t.Fatalf("no token: %+v", r)
	}
	// Default address when neither is set.
	var cf connFlags
	var x cmdExtra
	fs := clientCmds["ping"].flagSet("ping", clientEnv{getenv: func(string) string { return "" }}, &cf, &x)
	if err := fs.Parse(nil); err != nil || cf.addr != defaultAddr {
		t.Fatalf("default addr = %q, %v", cf.addr, err)
	}
}

func TestSlurp(t *testing.T) {
	ts := startTestServer(t)
	env := map[string]string{"SQ_ADDR": ts.addr, "SQ_TOKEN": ts.tokens["tenant-001"], "SQ_PHEXT": "slurp"}
	dir := t.TempDir()
	files := map[string]string{
		"b.txt":     "bee",
		"a.txt":     "ay",
		"pic.PNG":   "\x89PNG binary",
		"bad.bin":   "has\x17delimiter",
		"utf8.md":   "héllo",
		"zzz.empty": "",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := runCLI(env, "", "slurp", "3.1.1/1.1.1/1.1.1", dir, "--json")
	if r.code != 0 {
		t.Fatalf("slurp: %+v", r)
	}
	if !strings.Contains(r.stderr, "bad.bin") {
		t.Fatalf("no warning for the file with a delimiter: %q", r.stderr)
	}
	var out struct {
		TOC   string `json:"toc"`
		Files []slurpEntry
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Files) != 5 {
		t.Fatalf("files = %+v", out.Files)
	}
	wantTOC := "3.1.1/1.1.1/1.1.2 a.txt\n3.1.1/1.1.1/1.1.3 b.txt\n3.1.1/1.1.1/1.1.4 pic.PNG (Resource)\n" +
		"3.1.1/1.1.1/1.1.5 utf8.md\n3.1.1/1.1.1/1.1.6 zzz.empty\n"
	if r := runCLI(env, "", "select", "3.1.1/1.1.1/1.1.1"); r.stdout != wantTOC {
		t.Fatalf("TOC scroll = %q, want %q", r.stdout, wantTOC)
	}
	for coord, want := range map[string]string{"3.1.1/1.1.1/1.1.2": "ay", "3.1.1/1.1.1/1.1.3": "bee", "3.1.1/1.1.1/1.1.4": "", "3.1.1/1.1.1/1.1.5": "héllo"} {
		if r := runCLI(env, "", "select", coord); r.stdout != want {
			t.Fatalf("%s = %q, want %q", coord, r.stdout, want)
		}
	}
	if r := runCLI(env, "", "slurp", "3.1.1/1.1.1/1.1.1", filepath.Join(dir, "missing")); r.code != 2 {
		t.Fatalf("slurp of a missing dir: %+v", r)
	}
}

func TestNextSlurpCoord(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		ok   bool
	}{
		{name: "scroll", in: "1.1.1/1.1.1/1.1.1", want: "1.1.1/1.1.1/1.1.2", ok: true},
		{name: "carry into section", in: "1.1.1/1.1.1/1.1.999", want: "1.1.1/1.1.1/1.2.1", ok: true},
		{name: "carry twice", in: "1.1.1/1.1.1/1.999.999", want: "1.1.1/1.1.1/2.1.1", ok: true},
		{name: "exhausted", in: "999.999.999/999.999.999/999.999.999", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := phext.ParseCoordinate(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := nextSlurpCoord(c)
			if ok != tt.ok || (ok && got.String() != tt.want) {
				t.Fatalf("got %v %v, want %v %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestClientCommandHelp(t *testing.T) {
	for name := range clientCmds {
		t.Run(name, func(t *testing.T) {
			h, ok := clientCommandHelp(name)
			if !ok {
				t.Fatal("no help")
			}
			for _, f := range []string{"-addr", "-token", "-phext", "-json", "-timeout", "usage: sq " + name} {
				if !strings.Contains(h, f) {
					t.Fatalf("help lacks %q:\n%s", f, h)
				}
			}
			r := runCLI(nil, "", name, "-h")
			if r.code != 0 || r.stdout != h {
				t.Fatalf("%s -h: exit %d, %q", name, r.code, r.stdout)
			}
		})
	}
	if h, _ := clientCommandHelp("where"); !strings.Contains(h, "-algo") || !strings.Contains(h, "-limit") {
		t.Fatalf("where help lacks its flags: %s", h)
	}
	if _, ok := clientCommandHelp("nope"); ok {
		t.Fatal("help for an unknown command")
	}
	for name := range clientCommands { // main.go's list
		if _, ok := clientCmds[name]; !ok {
			t.Errorf("main.go lists %q but client_cmds.go does not implement it", name)
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name string
		args []string
		pos  []string
		json bool
	}{
		{name: "flags first", args: []string{"--json", "a", "b"}, pos: []string{"a", "b"}, json: true},
		{name: "flags between", args: []string{"a", "--json", "b"}, pos: []string{"a", "b"}, json: true},
		{name: "flags last", args: []string{"a", "b", "-json"}, pos: []string{"a", "b"}, json: true},
		{name: "double dash", args: []string{"a", "--", "--json"}, pos: []string{"a", "--json"}},
		{name: "none", args: nil, pos: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cf connFlags
			var x cmdExtra
			fs := clientCmds["select"].flagSet("select", clientEnv{getenv: func(string) string { return "" }}, &cf, &x)
			pos, err := parseInterspersed(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(pos, "|") != strings.Join(tt.pos, "|") || cf.json != tt.json {
				t.Fatalf("pos %q json %v", pos, cf.json)
			}
		})
	}
}

// The client commands report a broken server as exit 1 naming the address.
func TestClientNetworkError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := runCLI(map[string]string{"SQ_TOKEN": "x"}, "", "toc", "--addr", addr, "--timeout", "2s")
	if r.code != 1 || !strings.Contains(r.stderr, addr) {
		t.Fatalf("%+v", r)
	}
	var _ = client.ErrClosed
}
