package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phext/sq/config"
)

// writeShardInput writes a config of n tenants named t-001.. with relative
// data dirs and returns its path.
func writeShardInput(t *testing.T, n int, admin string) (string, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{Tenants: map[string]config.TenantEntry{}, AdminToken: admin}
	off := false
	for i := 1; i <= n; i++ {
		e := config.TenantEntry{Name: fmt.Sprintf("t-%03d", i), DataDir: fmt.Sprintf("data/t-%03d", i)}
		if i == 2 {
			e.Enabled = &off
			e.QuotaMB = 5
		}
		cfg.Tenants[fmt.Sprintf("pmb-v1-%03d-%024x", i, i*7919)] = e
	}
	path := filepath.Join(dir, "tenants.json")
	if err := config.WriteFile(path, cfg); err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

func readMap(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("map line %q: want 2 fields", line)
		}
		if _, dup := m[f[0]]; dup {
			t.Fatalf("token %s twice in the map", f[0])
		}
		m[f[0]] = f[1]
	}
	return m
}

func TestTenantsShardSplitsEveryTenantOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hosts    int
		tenants  int
		strategy string
		maxSkew  int // largest allowed |count - tenants/hosts|
	}{
		{name: "rendezvous-2x500", hosts: 2, tenants: 500, strategy: "rendezvous", maxSkew: 50},
		{name: "rendezvous-3x90", hosts: 3, tenants: 90, strategy: "rendezvous", maxSkew: 20},
		{name: "round-robin-2x500", hosts: 2, tenants: 500, strategy: "round-robin", maxSkew: 0},
		{name: "round-robin-3x10", hosts: 3, tenants: 10, strategy: "round-robin", maxSkew: 1},
		{name: "one-host", hosts: 1, tenants: 7, strategy: "rendezvous", maxSkew: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, orig := writeShardInput(t, tc.tenants, "adm-secret-token-1")
			out := filepath.Join(t.TempDir(), "shards")
			var stdout, stderr bytes.Buffer
			code := runTenantsShard([]string{"--hosts", fmt.Sprint(tc.hosts), "--config", in,
				"--out", out, "--strategy", tc.strategy}, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			m := readMap(t, filepath.Join(out, "tokens.map"))
			if len(m) != tc.tenants {
				t.Fatalf("map has %d tokens, want %d", len(m), tc.tenants)
			}
			seen := map[string]bool{}
			for h := 0; h < tc.hosts; h++ {
				hc, err := config.Load(filepath.Join(out, shardConfigName(h)))
				if err != nil {
					t.Fatal(err)
				}
				if hc.AdminToken != "adm-secret-token-1" {
					t.Errorf("host %d: admin token %q not copied", h+1, hc.AdminToken)
				}
				want := tc.tenants / tc.hosts
				if d := len(hc.Tenants) - want; d > tc.maxSkew || -d > tc.maxSkew {
					t.Errorf("host %d has %d tenants, want %d±%d", h+1, len(hc.Tenants), want, tc.maxSkew)
				}
				for tok, e := range hc.Tenants {
					if seen[tok] {
						t.Fatalf("token of %s on two hosts", e.Name)
					}
					seen[tok] = true
					if m[tok] != shardBackend(h) {
						t.Errorf("%s: map says %s, config is host %d", e.Name, m[tok], h+1)
					}
					o := orig.Tenants[tok]
					wantDir := filepath.Join(filepath.Dir(in), o.DataDir)
					if e.Name != o.Name || e.DataDir != wantDir || e.QuotaMB != o.QuotaMB || e.IsEnabled() != o.IsEnabled() {
						t.Errorf("%s changed: got %+v, want %+v with dir %s", o.Name, e, o, wantDir)
					}
				}
			}
			if len(seen) != tc.tenants {
				t.Fatalf("%d tenants placed, want %d", len(seen), tc.tenants)
			}
			if !strings.Contains(stdout.String(), "tokens.map") {
				t.Errorf("summary does not name the map: %q", stdout.String())
			}
		})
	}
}

func TestTenantsShardRendezvousMovesFewOnGrowth(t *testing.T) {
	moved := 0
	const n = 1000
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("tenant-%04d", i)
		a, b := shardHost(name, 4), shardHost(name, 5)
		if a != b {
			if b != 4 {
				t.Fatalf("%s moved from host %d to old host %d on growth", name, a+1, b+1)
			}
			moved++
		}
	}
	// Expect about n/5 = 200.
	if moved < 120 || moved > 280 {
		t.Fatalf("%d of %d tenants moved going 4->5 hosts, want about %d", moved, n, n/5)
	}
}

func TestTenantsShardDirTemplateAndBackends(t *testing.T) {
	in, _ := writeShardInput(t, 20, "")
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := runTenantsShard([]string{"--hosts=2", "--config=" + in, "--out=" + out,
		"--dir=/srv/sq/h{host}/tenants", "--backends=10.0.0.1:1337,10.0.0.2:1337"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for h := 0; h < 2; h++ {
		hc, err := config.Load(filepath.Join(out, shardConfigName(h)))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range hc.Tenants {
			want := fmt.Sprintf("/srv/sq/h%d/tenants/%s", h+1, e.Name)
			if e.DataDir != want {
				t.Errorf("%s: data_dir %s, want %s", e.Name, e.DataDir, want)
			}
		}
	}
	be, err := os.ReadFile(filepath.Join(out, "backends.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"backend sq_host1\n", "server h1 10.0.0.1:1337 check",
		"backend sq_host2\n", "server h2 10.0.0.2:1337 check", "backend sq_unknown\n"} {
		if !bytes.Contains(be, []byte(want)) {
			t.Errorf("backends.cfg lacks %q:\n%s", want, be)
		}
	}
	// Without --backends the addresses are HAProxy environment placeholders.
	out2 := t.TempDir()
	if code := runTenantsShard([]string{"--hosts=2", "--config=" + in, "--out=" + out2}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	be, _ = os.ReadFile(filepath.Join(out2, "backends.cfg"))
	if !bytes.Contains(be, []byte(`server h2 "${SQ_HOST2}" check`)) {
		t.Errorf("backends.cfg without --backends:\n%s", be)
	}
}

func TestTenantsShardRefusesBadInputAndWritesNothing(t *testing.T) {
	good, _ := writeShardInput(t, 4, "")
	dir := t.TempDir()
	spaced := filepath.Join(dir, "spaced.json")
	if err := os.WriteFile(spaced, []byte(`{"tenants":{"tok en":{"name":"a","data_dir":"a"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	hash := filepath.Join(dir, "hash.json")
	if err := os.WriteFile(hash, []byte(`{"tenants":{"#tok":{"name":"a","data_dir":"a"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared.json")
	if err := os.WriteFile(shared, []byte(`{"tenants":{"t1":{"name":"a","data_dir":"x"},"t2":{"name":"b","data_dir":"x"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "no-hosts", args: []string{"--config", good, "--out", "OUT"}, wantCode: 2, wantErr: "--hosts"},
		{name: "too-many-hosts", args: []string{"--hosts", "1000", "--config", good, "--out", "OUT"}, wantCode: 2, wantErr: "--hosts"},
		{name: "no-out", args: []string{"--hosts", "2", "--config", good}, wantCode: 2, wantErr: "--out"},
		{name: "bad-strategy", args: []string{"--hosts", "2", "--config", good, "--out", "OUT", "--strategy", "random"}, wantCode: 2, wantErr: "strategy"},
		{name: "backends-count", args: []string{"--hosts", "2", "--config", good, "--out", "OUT", "--backends", "a:1"}, wantCode: 2, wantErr: "1 addresses for 2 hosts"},
		{name: "backend-no-port", args: []string{"--hosts", "1", "--config", good, "--out", "OUT", "--backends", "hostonly"}, wantCode: 2, wantErr: "host:port"},
		{name: "missing-config", args: []string{"--hosts", "2", "--config", filepath.Join(dir, "nope.json"), "--out", "OUT"}, wantCode: 1, wantErr: "nope.json"},
		{name: "token-with-blank", args: []string{"--hosts", "2", "--config", spaced, "--out", "OUT"}, wantCode: 1, wantErr: "blank"},
		{name: "token-with-hash", args: []string{"--hosts", "2", "--config", hash, "--out", "OUT"}, wantCode: 1, wantErr: "'#'"},
		{name: "shared-data-dir", args: []string{"--hosts", "2", "--config", shared, "--out", "OUT"}, wantCode: 1, wantErr: "share data_dir"},
		{name: "stray-arg", args: []string{"--hosts", "2", "--config", good, "--out", "OUT", "extra"}, wantCode: 2, wantErr: "unexpected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string(nil), tc.args...)
			for i, a := range args {
				if a == "OUT" {
					args[i] = out
				}
			}
			var stdout, stderr bytes.Buffer
			code := runTenantsShard(args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tc.wantErr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output directory was created on bad input (err %v)", err)
			}
		})
	}
}

func TestTenantsShardHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runTenantsShard([]string{"-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stderr.String(), "req.payload_lv(11,1)") || !strings.Contains(stderr.String(), "-hosts") {
		t.Errorf("help text incomplete:\n%s", stderr.String())
	}
}

func BenchmarkShardPlan500(b *testing.B) {
	cfg := &config.Config{Tenants: map[string]config.TenantEntry{}}
	for i := 1; i <= 500; i++ {
		cfg.Tenants[fmt.Sprintf("pmb-v1-%03d-%024x", i, i)] = config.TenantEntry{
			Name: fmt.Sprintf("t-%03d", i), DataDir: fmt.Sprintf("/d/t-%03d", i)}
	}
	b.ReportAllocs()
	b.SetBytes(500)
	for i := 0; i < b.N; i++ {
		if _, err := planShards(cfg, shardSpec{Hosts: 4}); err != nil {
			b.Fatal(err)
		}
	}
}
