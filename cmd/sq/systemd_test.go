package main

// The shipped systemd unit against what the code writes: the unit's
// sandbox must let the service write every place sq host writes (data dirs,
// and the config dir that the admin API and `sq tenants` edit by temp file
// and rename), checked by parsing the unit and, where this machine allows
// (root, unshare), by running sq host inside the same read-only/read-write
// mount layout and using the admin API.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
)

const unitPath = "../../deploy/systemd/sq.service"

// unit is the [Service] section of a systemd unit: every value of each key.
type unit map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not key=value: %q", path, line)
		}
		if section == "[Service]" {
			u[k] = append(u[k], v)
		}
	}
	return u
}

// paths splits the space-separated path lists of key (a leading "-" means
// "ignore if missing").
func (u unit) paths(key string) []string {
	var out []string
	for _, v := range u[key] {
		for _, p := range strings.Fields(v) {
			out = append(out, strings.TrimPrefix(p, "-"))
		}
	}
	return out
}

// env returns the unit's default for an Environment= variable.
func (u unit) env(name string) string {
	for _, v := range u["Environment"] {
		if val, ok := strings.CutPrefix(v, name+"="); ok {
			return val
		}
	}
	return ""
}

func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// writable reports whether the unit lets the service write p: with
// ProtectSystem=strict only ReadWritePaths are writable, and the most
// specific of ReadWritePaths/ReadOnlyPaths wins.
func (u unit) writable(p string) bool {
	best, rw := "", false
	for _, d := range u.paths("ReadWritePaths") {
		if under(p, d) && len(d) >= len(best) {
			best, rw = d, true
		}
	}
	for _, d := range u.paths("ReadOnlyPaths") {
		if under(p, d) && len(d) >= len(best) {
			best, rw = d, false
		}
	}
	return rw
}

// TestSystemdUnitMatchesWritePaths: the unit's sandbox allows every write
// sq host makes in the documented layout (docs/OPERATIONS.md section 1),
// and its ExecStart parses as sq host flags.
func TestSystemdUnitMatchesWritePaths(t *testing.T) {
	u := parseUnit(t, unitPath)
	if got := u["ProtectSystem"]; len(got) != 1 || got[0] != "strict" {
		t.Fatalf("ProtectSystem = %q; this test assumes strict", got)
	}
	cfg := u.env("SQ_CONFIG")
	if cfg == "" {
		t.Fatal("the unit sets no SQ_CONFIG default")
	}
	// The admin API (POST /admin/tenants/{name}/disable) and sq tenants
	// write the config through a temp file in its directory, then rename.
	if !u.writable(filepath.Dir(cfg)) {
		t.Errorf("%s is read-only in the unit, but enable/disable rewrite %s there (temp file + rename)", filepath.Dir(cfg), cfg)
	}
	// sq tenants gen's default data dir parent.
	fs, _ := tenantFlags("gen", clientEnv{getenv: func(string) string { return "" }})
	if dir := fs.Lookup("dir").DefValue; !u.writable(filepath.Join(dir, "tenant-001")) {
		t.Errorf("default data dirs under %s are read-only in the unit", dir)
	}
	for _, wd := range u["WorkingDirectory"] {
		if !u.writable(wd) {
			t.Errorf("WorkingDirectory %s is read-only (the embedded default config lives there)", wd)
		}
	}
	// ExecStart is sq host with flags that exist.
	if len(u["ExecStart"]) != 1 {
		t.Fatalf("ExecStart: %q", u["ExecStart"])
	}
	argv := strings.Fields(u["ExecStart"][0])
	if len(argv) < 2 || argv[1] != "host" {
		t.Fatalf("ExecStart is not sq host: %q", argv)
	}
	var args []string
	for _, a := range argv[2:] {
		if a == "$SQ_OPTS" {
			continue
		}
		a = os.Expand(a, u.env)
		args = append(args, a)
	}
	hf := hostFlags(&bytes.Buffer{})
	if err := hf.Parse(args); err != nil || hf.NArg() != 0 {
		t.Errorf("ExecStart flags %q do not parse as sq host flags: %v (rest %q)", args, err, hf.Args())
	}
}

// TestSystemdSandboxAdminEdit runs sq host in a private mount namespace laid
// out as the unit's sandbox (everything read-only, ReadWritePaths writable,
// ReadOnlyPaths read-only, rooted in a temp dir) and checks that clients
// write, and that the admin API's disable/enable (which rewrite the config
// file) answer 200, not 500 "read-only file system". Needs root and
// unshare(1); skipped otherwise.
func TestSystemdSandboxAdminEdit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare(1)")
	}
	if err := exec.Command("unshare", "-m", "true").Run(); err != nil {
		t.Skipf("unshare -m does not work here: %v", err)
	}
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	u := parseUnit(t, unitPath)
	root := t.TempDir()
	cfgPath := filepath.Join(root, u.env("SQ_CONFIG"))
	for _, d := range append(u.paths("ReadWritePaths"), u.paths("ReadOnlyPaths")...) {
		must0(t, os.MkdirAll(filepath.Join(root, d), 0o750))
	}
	dataDir := filepath.Join(root, "/var/lib/sq/tenants")
	cfg := &config.Config{Tenants: map[string]config.TenantEntry{}, AdminToken: "admin-secret-token-0123456789"}
	var tokens []string
	for i := 1; i <= 2; i++ {
		tok, err := config.GenerateToken(i)
		must0(t, err)
		tokens = append(tokens, tok)
		name := fmt.Sprintf("tenant-%03d", i)
		cfg.Tenants[tok] = config.TenantEntry{Name: name, DataDir: filepath.Join(dataDir, name)}
	}
	must0(t, config.WriteFile(cfgPath, cfg))

	// Mounts in systemd's order: the whole tree read-only
	// (ProtectSystem=strict), then each listed path, the more specific last.
	type mnt struct {
		path string
		rw   bool
	}
	var ms []mnt
	for _, p := range u.paths("ReadWritePaths") {
		ms = append(ms, mnt{p, true})
	}
	for _, p := range u.paths("ReadOnlyPaths") {
		ms = append(ms, mnt{p, false})
	}
	sort.SliceStable(ms, func(i, j int) bool { return len(ms[i].path) < len(ms[j].path) })
	script := fmt.Sprintf("set -e; mount --bind %[1]q %[1]q; mount -o remount,bind,ro %[1]q\n", root)
	for _, m := range ms {
		p := filepath.Join(root, m.path)
		// A bind mount inherits the flags of the mount it comes from.
		mode := "ro"
		if m.rw {
			mode = "rw"
		}
		script += fmt.Sprintf("mount --bind %[1]q %[1]q; mount -o remount,bind,%[2]s %[1]q\n", p, mode)
	}
	script += `exec "$@"`
	// The test binary re-executed as sq host (TestKillLoopHostChild).
	hostArgs := []string{"--config", cfgPath, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
		os.Args[0], "-test.run=^TestKillLoopHostChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+strings.Join(hostArgs, "\x1f"))
	cmd.Dir = root
	stdout, err := cmd.StdoutPipe()
	must0(t, err)
	var stderr lockedBuf
	cmd.Stderr = &stderr
	must0(t, cmd.Start())
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sq host log:\n%s", stderr.String())
		}
	}()
	addrs := make(chan [2]string, 1)
	go func() {
		var bin, rest string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "sq: REST API on http://"); ok {
				rest = a
			}
			if a, ok := strings.CutPrefix(sc.Text(), "sq: listening on "); ok {
				bin = a
				addrs <- [2]string{bin, rest}
			}
		}
	}()
	var binAddr, restAddr string
	select {
	case a := <-addrs:
		binAddr, restAddr = a[0], a[1]
	case <-exited:
		t.Fatalf("sq host exited in the sandbox:\n%s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("sq host did not listen within 30 s")
	}
	// The sandbox is real: the tree outside ReadWritePaths is read-only.
	probe := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		strings.TrimSuffix(script, `exec "$@"`)+fmt.Sprintf("touch %q", filepath.Join(root, "probe")))
	if probe.Run() == nil {
		t.Fatal("the emulated sandbox lets the service write outside ReadWritePaths")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, binAddr, tokens[0])
	must0(t, err)
	_, err = c.Insert(ctx, "", phext.Origin, []byte("written in the sandbox"))
	c.Close()
	must0(t, err)

	post := func(path string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+restAddr+path, nil)
		req.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		must0(t, err)
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, op := range []string{"disable", "enable"} {
		if code, body := post("/admin/tenants/tenant-002/" + op); code != http.StatusOK {
			t.Fatalf("admin %s in the unit's sandbox: %d %s", op, code, body)
		}
	}
	if _, err := client.Dial(ctx, binAddr, tokens[1]); err != nil {
		t.Fatalf("tenant-002 after disable+enable: %v", err)
	}
}
