package server

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// reloadCfg writes cfg to the env's config file and reloads from it.
func (e *testEnv) reloadCfg(cfg *config.Config) (string, error) {
	e.t.Helper()
	if err := config.WriteFile(e.cfgPath, cfg); err != nil {
		e.t.Fatal(err)
	}
	return e.srv.ReloadFromSource()
}

// helloAs authenticates a new connection with token and returns it with
// the HELLO status and the tenant name the server reports.
func (e *testEnv) helloAs(token string) (*rawConn, protocol.Status, string) {
	e.t.Helper()
	c := dialRaw(e.t, e.srv.Addr())
	r := c.hello(token, 0)
	if r.Status != protocol.StatusOK {
		return c, r.Status, ""
	}
	hr, err := protocol.DecodeHelloReply(r.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return c, r.Status, hr.TenantName
}

// TestReloadRenameAndReuseName: one reload renames alpha to zulu (same
// token and dir) and gives the name alpha to a new token on a new dir.
// Before, the second store tenant opened under the name alpha was closed
// again when zulu's old name was released: the new alpha answered INTERNAL
// "store: closed" to everything, also after an identical second reload.
// The other name order (the renamed tenant sorting first) and a swap of two
// names are covered too.
func TestReloadRenameAndReuseName(t *testing.T) {
	for _, tc := range []struct {
		name, renameTo string
	}{
		{name: "renamed sorts after", renameTo: "zulu"},
		{name: "renamed sorts before", renameTo: "aaa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, envOptions{tenants: []string{"alpha", "beta"}})
			e.dial("alpha").ok(protocol.OpUpdate, "", phext.Origin, []byte("old alpha"))
			beta := e.dial("beta")
			beta.ok(protocol.OpUpdate, "", phext.Origin, []byte("beta"))

			cfg, err := config.Load(e.cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			a := cfg.Tenants[e.tokens["alpha"]]
			a.Name = tc.renameTo
			cfg.Tenants[e.tokens["alpha"]] = a
			newTok, _ := config.GenerateToken(42)
			cfg.Tenants[newTok] = config.TenantEntry{Name: "alpha", DataDir: filepath.Join(e.dir, "alpha-new")}
			for round := 1; round <= 2; round++ {
				if _, err := e.reloadCfg(cfg); err != nil {
					t.Fatalf("reload %d: %v", round, err)
				}
				c, status, name := e.helloAs(newTok)
				if status != protocol.StatusOK || name != "alpha" {
					t.Fatalf("reload %d: new alpha HELLO %v %q", round, status, name)
				}
				want := map[int]string{1: "", 2: "new alpha"}[round]
				if got := c.do(protocol.OpSelect, "", phext.Origin, nil); got.Status != protocol.StatusOK || string(got.Body) != want {
					t.Fatalf("reload %d: new alpha SELECT %v %q, want OK %q", round, got.Status, got.Body, want)
				}
				c.ok(protocol.OpUpdate, "", phext.Origin, []byte("new alpha"))
				c, status, name = e.helloAs(e.tokens["alpha"])
				if status != protocol.StatusOK || name != tc.renameTo {
					t.Fatalf("reload %d: renamed HELLO %v %q", round, status, name)
				}
				if got := c.ok(protocol.OpSelect, "", phext.Origin, nil); string(got) != "old alpha" {
					t.Fatalf("reload %d: renamed tenant reads %q", round, got)
				}
				// beta is untouched: its connection stays.
				if got := beta.ok(protocol.OpSelect, "", phext.Origin, nil); string(got) != "beta" {
					t.Fatalf("reload %d: beta reads %q", round, got)
				}
			}
		})
	}
	t.Run("swap names", func(t *testing.T) {
		e := startEnv(t, envOptions{tenants: []string{"alpha", "beta"}})
		e.dial("alpha").ok(protocol.OpUpdate, "", phext.Origin, []byte("A"))
		e.dial("beta").ok(protocol.OpUpdate, "", phext.Origin, []byte("B"))
		cfg, _ := config.Load(e.cfgPath)
		a, b := cfg.Tenants[e.tokens["alpha"]], cfg.Tenants[e.tokens["beta"]]
		a.Name, b.Name = b.Name, a.Name
		cfg.Tenants[e.tokens["alpha"]], cfg.Tenants[e.tokens["beta"]] = a, b
		if _, err := e.reloadCfg(cfg); err != nil {
			t.Fatal(err)
		}
		for tok, want := range map[string]string{e.tokens["alpha"]: "A", e.tokens["beta"]: "B"} {
			c, status, _ := e.helloAs(tok)
			if status != protocol.StatusOK {
				t.Fatalf("HELLO %v", status)
			}
			if got := c.ok(protocol.OpSelect, "", phext.Origin, nil); string(got) != want {
				t.Fatalf("reads %q, want %q", got, want)
			}
		}
	})
}

// reloadModel is the expected tenant table: token → entry, for enabled
// entries only, and the last value written per data dir.
type reloadModel struct {
	live map[string]config.TenantEntry
	data map[string]string
}

// TestReloadModel applies random reload sequences (adds, removals,
// disables, renames, moves, token rotations, names and dirs handed from
// one token to another, swaps, and reloads that must fail) and checks
// after each step, against a model of the expected table: every enabled
// token authenticates as its name and reads the data of its data dir;
// every other token is refused; a connection of a tenant whose token, name
// and dir did not change stays open and serves; the connections of every
// other tenant are closed; the store holds exactly the expected tenants.
// SQ_RELIABILITY=long runs many more steps.
func TestReloadModel(t *testing.T) {
	steps := 60
	if os.Getenv("SQ_RELIABILITY") == "long" {
		steps = 600
	}
	seed := time.Now().UnixNano()
	if v := os.Getenv("SQ_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	t.Logf("seed %d (SQ_SEED=%d reproduces)", seed, seed)
	rng := rand.New(rand.NewSource(seed))

	e := startEnv(t, envOptions{tenants: []string{"n0"}, opts: Options{AuthFailBudget: 1 << 30}})
	tokens := make([]string, 6)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("pmb-v1-%03d-model%02d", 100+i, i)
	}
	names := []string{"n0", "n1", "n2", "n3", "n4", "n5"}
	var dirs []string
	for i := 0; i < 6; i++ {
		dirs = append(dirs, filepath.Join(e.dir, fmt.Sprintf("d%d", i)))
	}
	blocker := filepath.Join(e.dir, "blocker")
	if err := os.WriteFile(blocker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := reloadModel{live: map[string]config.TenantEntry{}, data: map[string]string{}}
	conns := map[string]*rawConn{} // token → a connection opened at an earlier step
	// The initial tenant is replaced at step 0 like any other config.
	initial := e.cfg

	randomConfig := func() *config.Config {
		cfg := &config.Config{Tenants: map[string]config.TenantEntry{}}
		perm := rng.Perm(len(names))
		dperm := rng.Perm(len(dirs))
		n := rng.Intn(len(tokens) + 1)
		for i, ti := range rng.Perm(len(tokens))[:n] {
			en := config.TenantEntry{Name: names[perm[i]], DataDir: dirs[dperm[i]]}
			if rng.Intn(6) == 0 {
				f := false
				en.Enabled = &f
			}
			if rng.Intn(4) == 0 {
				en.QuotaMB = float64(1 + rng.Intn(4))
			}
			cfg.Tenants[tokens[ti]] = en
		}
		return cfg
	}
	// mutate derives the next config from the current one by a few edits,
	// so that most tenants stay (and keep their connections).
	mutate := func(cur map[string]config.TenantEntry) *config.Config {
		cfg := &config.Config{Tenants: map[string]config.TenantEntry{}}
		for tok, en := range cur {
			cfg.Tenants[tok] = en
		}
		for k := 1 + rng.Intn(2); k > 0; k-- {
			tok := tokens[rng.Intn(len(tokens))]
			en, ok := cfg.Tenants[tok]
			usedN, usedD := map[string]string{}, map[string]string{}
			for t2, e2 := range cfg.Tenants {
				usedN[e2.Name], usedD[e2.DataDir] = t2, t2
			}
			switch rng.Intn(6) {
			case 0: // remove
				delete(cfg.Tenants, tok)
			case 1: // toggle enabled
				if ok {
					if en.IsEnabled() {
						f := false
						en.Enabled = &f
					} else {
						en.Enabled = nil
					}
					cfg.Tenants[tok] = en
				}
			case 2, 3: // rename, possibly to a name another token gives up
				name := names[rng.Intn(len(names))]
				if other, taken := usedN[name]; taken && other != tok {
					o := cfg.Tenants[other]
					o.Name = en.Name // swap, or hand over
					if !ok {
						delete(cfg.Tenants, other)
					} else {
						cfg.Tenants[other] = o
					}
				}
				if !ok {
					en.DataDir = freeDir(dirs, cfg.Tenants)
					if en.DataDir == "" {
						continue
					}
				}
				en.Name = name
				cfg.Tenants[tok] = en
			case 4: // move, possibly to a dir another token gives up
				dir := dirs[rng.Intn(len(dirs))]
				if other, taken := usedD[dir]; taken && other != tok {
					if !ok {
						continue
					}
					o := cfg.Tenants[other]
					o.DataDir = en.DataDir
					cfg.Tenants[other] = o
				}
				if !ok {
					en.Name = freeName(names, cfg.Tenants)
					if en.Name == "" {
						continue
					}
				}
				en.DataDir = dir
				cfg.Tenants[tok] = en
			case 5: // rotate the token
				if ok {
					to := tokens[rng.Intn(len(tokens))]
					if _, taken := cfg.Tenants[to]; !taken {
						delete(cfg.Tenants, tok)
						cfg.Tenants[to] = en
					}
				}
			}
		}
		return cfg
	}

	var cur map[string]config.TenantEntry = initial.Tenants
	for step := 0; step < steps; step++ {
		var cfg *config.Config
		if step == 0 || rng.Intn(5) == 0 {
			cfg = randomConfig()
		} else {
			cfg = mutate(cur)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("step %d: test generated an invalid config: %v", step, err)
		}
		fail := step > 0 && rng.Intn(8) == 0 && len(cfg.Tenants) > 0
		if fail {
			// One entry gets a data dir that cannot be created: the
			// reload must be refused and the old table keep serving.
			toks := sortedKeys(cfg.Tenants)
			tok := toks[rng.Intn(len(toks))]
			en := cfg.Tenants[tok]
			en.DataDir = filepath.Join(blocker, fmt.Sprintf("sub%d", step))
			en.Enabled = nil
			cfg.Tenants[tok] = en
		}
		desc := describe(cfg)
		prev := m.live
		_, err := e.reloadCfg(cfg)
		if fail {
			if err == nil {
				t.Fatalf("step %d: reload with an uncreatable dir succeeded: %s", step, desc)
			}
		} else {
			if err != nil {
				t.Fatalf("step %d: reload %s: %v", step, desc, err)
			}
			next := map[string]config.TenantEntry{}
			for tok, en := range cfg.Tenants {
				if en.IsEnabled() {
					next[tok] = en
				}
			}
			m.live = next
			cur = cfg.Tenants
		}

		// Connections from earlier steps.
		for _, tok := range sortedKeys(conns) {
			c := conns[tok]
			before, now := prev[tok], m.live[tok]
			unchanged := before.Name != "" && now.Name == before.Name && sameDir(now.DataDir, before.DataDir)
			if unchanged && !fail {
				want := m.data[filepath.Clean(now.DataDir)]
				if r := c.do(protocol.OpSelect, "", phext.Origin, nil); r.Status != protocol.StatusOK || string(r.Body) != want {
					t.Fatalf("step %d (%s): kept connection of %s reads %v %q, want %q", step, desc, now.Name, r.Status, r.Body, want)
				}
				continue
			}
			if !unchanged {
				c.expectClosed(5 * time.Second)
			}
			c.nc.Close()
			delete(conns, tok)
		}
		// Every token, against the model.
		for _, tok := range tokens {
			en, ok := m.live[tok]
			c, status, name := e.helloAs(tok)
			if !ok {
				if status != protocol.StatusAuth {
					t.Fatalf("step %d (%s): token %s of no enabled tenant: HELLO %v as %q", step, desc, tok, status, name)
				}
				c.nc.Close()
				continue
			}
			if status != protocol.StatusOK || name != en.Name {
				t.Fatalf("step %d (%s): token %s: HELLO %v as %q, want %s", step, desc, tok, status, name, en.Name)
			}
			dir := filepath.Clean(en.DataDir)
			if r := c.do(protocol.OpSelect, "", phext.Origin, nil); r.Status != protocol.StatusOK || string(r.Body) != m.data[dir] {
				t.Fatalf("step %d (%s): %s (%s) reads %v %q, want %q", step, desc, en.Name, filepath.Base(dir), r.Status, r.Body, m.data[dir])
			}
			v := fmt.Sprintf("step %d %s", step, en.Name)
			c.ok(protocol.OpUpdate, "", phext.Origin, []byte(v))
			m.data[dir] = v
			if old := conns[tok]; old != nil {
				c.nc.Close()
			} else {
				conns[tok] = c
			}
		}
		// The store holds the live tenants and nothing else.
		want := map[string]bool{}
		for _, en := range m.live {
			want[en.Name] = true
		}
		for _, n := range append(names, "n0") {
			if got := e.store.Tenant(n) != nil; got != want[n] {
				t.Fatalf("step %d (%s): store tenant %s open=%v, want %v", step, desc, n, got, want[n])
			}
		}
	}
}

func freeDir(dirs []string, cfg map[string]config.TenantEntry) string {
	used := map[string]bool{}
	for _, en := range cfg {
		used[en.DataDir] = true
	}
	for _, d := range dirs {
		if !used[d] {
			return d
		}
	}
	return ""
}

func freeName(names []string, cfg map[string]config.TenantEntry) string {
	used := map[string]bool{}
	for _, en := range cfg {
		used[en.Name] = true
	}
	for _, n := range names {
		if !used[n] {
			return n
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// describe renders a config compactly for failure messages.
func describe(cfg *config.Config) string {
	var parts []string
	for _, tok := range sortedKeys(cfg.Tenants) {
		en := cfg.Tenants[tok]
		s := tok[len(tok)-2:] + ":" + en.Name + "@" + filepath.Base(en.DataDir)
		if !en.IsEnabled() {
			s += "(off)"
		}
		parts = append(parts, s)
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// sameDir reports whether two data dirs name one directory.
func sameDir(a, b string) bool { return filepath.Clean(a) == filepath.Clean(b) }
