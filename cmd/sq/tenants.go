package main

// sq tenants: generate tenant configs and edit them safely, then ask a
// running server to reload.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/protocol"
)

// tenantSubs documents the tenants subcommands (usage line, text).
var tenantSubs = []struct{ name, usage, about string }{
	{"gen", "sq tenants gen [--count N] [--dir DIR] [--prefix P] [--quota-mb Q] [--admin-token] [--out FILE]",
		"Prints (or writes to --out, mode 0600) a new config in the SQ format with N tenants named\n" +
			"P-001.., tokens pmb-v1-NNN-<24 hex> from crypto/rand and data_dir DIR/<name>. Output\n" +
			"redirected to a file gets mode 0600 too: it holds every token."},
	{"add", "sq tenants add --config FILE [--dir DIR | --data-dir D] [--token T] [--quota-mb Q] <name>",
		"Adds a tenant (creating FILE if missing) with a new token, prints \"<name> <token> <data_dir>\",\n" +
			"then asks the server to reload. Without --dir/--data-dir the data dir goes next to the\n" +
			"existing tenants' dirs."},
	{"disable", "sq tenants disable --config FILE <name>...",
		"Sets enabled=false for the named tenants (their connections are refused after the reload)."},
	{"enable", "sq tenants enable --config FILE <name>...",
		"Enables the named tenants again."},
	{"list", "sq tenants list --config FILE [--json] [--show-tokens]",
		"Lists the tenants: name, enabled, quota, data dir and (redacted) token."},
}

func tenantsHelp() string {
	var b strings.Builder
	b.WriteString("usage: sq tenants <gen|add|disable|enable|list|shard> [flags]\n\n")
	b.WriteString("Edits happen on a temporary file renamed over the config (under a lock file), then the\n" +
		"server at --addr is asked to RELOAD, using --reload-token, else the config's admin_token,\n" +
		"else a tenant token from the file (accepted only by a server run with --trust-loopback, the\n" +
		"dev default; give configs an admin_token: sq tenants gen --admin-token). A failed reload is\n" +
		"a warning: the edited file stands and the exit status is 0. --no-reload skips it.\n\n")
	for _, s := range tenantSubs {
		fmt.Fprintf(&b, "%s\n  %s\n\n", s.usage, strings.ReplaceAll(s.about, "\n", "\n  "))
	}
	for _, s := range tenantSubs {
		fs, _ := tenantFlags(s.name, clientEnv{getenv: func(string) string { return "" }})
		fmt.Fprintf(&b, "flags of %s:\n", s.name)
		fs.SetOutput(&b)
		fs.PrintDefaults()
		b.WriteString("\n")
	}
	b.WriteString("sq tenants shard splits a config into per-host configs and an HAProxy map;\n" +
		"see sq tenants shard -h.\n")
	return b.String()
}

type tenantOpts struct {
	config, dir, dataDir, prefix, token, out, addr, adminToken string
	count, start                                               int
	quotaMB                                                    float64
	admin, noReload, json, showTokens                          bool
}

func tenantFlags(sub string, env clientEnv) (*flag.FlagSet, *tenantOpts) {
	o := &tenantOpts{}
	fs := flag.NewFlagSet("tenants "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	switch sub {
	case "gen":
		fs.IntVar(&o.count, "count", 1, "number of tenants")
		fs.IntVar(&o.start, "start", 1, "number of the first tenant (NNN in name and token)")
		fs.StringVar(&o.dir, "dir", "/var/lib/sq/tenants", "parent of the tenants' data dirs")
		fs.StringVar(&o.prefix, "prefix", "tenant", "tenant name prefix: <prefix>-NNN")
		fs.Float64Var(&o.quotaMB, "quota-mb", 0, "quota per tenant in MiB (0 = unlimited)")
		fs.BoolVar(&o.admin, "admin-token", false, "also generate an admin_token (may RELOAD from any address)")
		fs.StringVar(&o.out, "out", "", "write the config to this file (safely) instead of stdout")
		return fs, o
	case "add", "disable", "enable", "list":
	default:
		return nil, nil
	}
	fs.StringVar(&o.config, "config", env.getenv("SQ_CONFIG"), "tenant config file (env SQ_CONFIG)")
	if sub == "list" {
		fs.BoolVar(&o.json, "json", false, "print JSON")
		fs.BoolVar(&o.showTokens, "show-tokens", false, "print whole tokens")
		return fs, o
	}
	if sub == "add" {
		fs.StringVar(&o.dir, "dir", "", "parent of the data dir: data_dir = DIR/<name>")
		fs.StringVar(&o.dataDir, "data-dir", "", "the tenant's data dir")
		fs.StringVar(&o.token, "token", "", "use this token instead of generating one")
		fs.Float64Var(&o.quotaMB, "quota-mb", 0, "quota in MiB (0 = unlimited)")
		fs.BoolVar(&o.json, "json", false, "print JSON")
	}
	addr := env.getenv("SQ_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	fs.StringVar(&o.addr, "addr", addr, "server to ask for a reload (env SQ_ADDR)")
	fs.StringVar(&o.adminToken, "reload-token", env.getenv("SQ_TOKEN"), "token for the RELOAD connection (env SQ_TOKEN)")
	fs.BoolVar(&o.noReload, "no-reload", false, "edit the file only; do not ask the server to reload")
	return fs, o
}

// runTenants runs `sq tenants <sub> ...` with the process environment.
func runTenants(args []string, stdout, stderr io.Writer) int {
	return runTenantsEnv(args, clientEnv{getenv: os.Getenv, stdin: os.Stdin, stdout: stdout, stderr: stderr})
}

func runTenantsEnv(args []string, env clientEnv) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(env.stdout, tenantsHelp())
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := args[0]
	if sub == "shard" { // shard.go
		return runTenantsShard(args[1:], env.stdout, env.stderr)
	}
	fs, o := tenantFlags(sub, env)
	if fs == nil {
		fmt.Fprintf(env.stderr, "sq tenants: unknown subcommand %q%s (gen, add, disable, enable, list, shard)\n", sub,
			didYouMean(sub, []string{"gen", "add", "disable", "enable", "list", "shard"}))
		return 2
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(env.stdout, tenantsHelp())
			return 0
		}
		fmt.Fprintf(env.stderr, "sq tenants %s: %v\n", sub, err)
		return 2
	}
	switch sub {
	case "gen":
		err = tenantsGen(o, pos, env)
	case "list":
		err = tenantsList(o, pos, env)
	default:
		err = tenantsEdit(sub, o, pos, env)
	}
	return reportErr(env.stderr, "sq tenants "+sub, o.addr, err)
}

func tenantsGen(o *tenantOpts, pos []string, env clientEnv) error {
	if len(pos) != 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if o.count < 1 || o.start < 0 {
		return usagef("--count must be ≥ 1 and --start ≥ 0")
	}
	if o.quotaMB < 0 {
		return usagef("--quota-mb must not be negative")
	}
	cfg := &config.Config{Tenants: make(map[string]config.TenantEntry, o.count)}
	for i := o.start; i < o.start+o.count; i++ {
		tok, err := config.GenerateToken(i)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("%s-%03d", o.prefix, i)
		cfg.Tenants[tok] = config.TenantEntry{Name: name, DataDir: filepath.Join(o.dir, name), QuotaMB: o.quotaMB}
	}
	if o.admin {
		tok, err := config.GenerateToken(0)
		if err != nil {
			return err
		}
		cfg.AdminToken = "admin-" + tok
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	if o.out != "" {
		if err := config.WriteFile(o.out, cfg); err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "wrote %d tenants to %s\n", o.count, o.out)
		return nil
	}
	b, err := cfg.Marshal()
	if err != nil {
		return err
	}
	if f, ok := env.stdout.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			// `sq tenants gen > tenants.json`: the shell created the file
			// with the umask (often 0644), but it holds every token, and
			// sq host refuses a world-readable config.
			if err := f.Chmod(0o600); err != nil {
				fmt.Fprintf(env.stderr, "sq tenants gen: warning: the output file holds tokens but its mode could not be set to 0600: %v (use --out FILE)\n", err)
			}
		}
	}
	_, err = env.stdout.Write(b)
	return err
}

// readConfig reads the config at path without resolving relative data
// dirs (they are written back as they were). A missing file gives an empty
// config when allowMissing.
func readConfig(path string, allowMissing bool) (*config.Config, error) {
	if path == "" {
		return nil, usagef("--config is required (or set SQ_CONFIG)")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && allowMissing {
		return &config.Config{Tenants: map[string]config.TenantEntry{}}, nil
	}
	if err != nil {
		return nil, err
	}
	return config.Parse(data)
}

// lockConfig takes an exclusive lock on path+".lock" so that two edits do
// not read the same old file and lose one change. The returned func
// unlocks.
func lockConfig(path string) (func(), error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// tokenNumber returns NNN of a pmb-v1-NNN-… token, or -1.
func tokenNumber(tok string) int {
	rest, ok := strings.CutPrefix(tok, "pmb-v1-")
	if !ok {
		return -1
	}
	num, _, ok := strings.Cut(rest, "-")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return -1
	}
	return n
}

// findTenant returns the token of the tenant called name (or whose token is
// name).
func findTenant(cfg *config.Config, name string) (string, bool) {
	if _, ok := cfg.Tenants[name]; ok {
		return name, true
	}
	for tok, e := range cfg.Tenants {
		if e.Name == name {
			return tok, true
		}
	}
	return "", false
}

func tenantsEdit(sub string, o *tenantOpts, pos []string, env clientEnv) error {
	if sub == "add" && len(pos) != 1 {
		return usagef("want one tenant name, got %d arguments", len(pos))
	}
	if len(pos) == 0 {
		return usagef("name at least one tenant")
	}
	if o.config == "" {
		return usagef("--config is required (or set SQ_CONFIG)")
	}
	unlock, err := lockConfig(o.config)
	if err != nil {
		return err
	}
	defer unlock()
	cfg, err := readConfig(o.config, sub == "add")
	if err != nil {
		return err
	}
	// Tokens the running server accepts now, for the reload connection.
	var oldTokens []string
	for _, tok := range cfg.SortedTokens() {
		if cfg.Tenants[tok].IsEnabled() {
			oldTokens = append(oldTokens, tok)
		}
	}
	var out string
	var outJSON any
	switch sub {
	case "add":
		name := pos[0]
		if _, ok := findTenant(cfg, name); ok {
			return usagef("tenant %q already exists", name)
		}
		dataDir := o.dataDir
		if dataDir == "" && o.dir != "" {
			dataDir = filepath.Join(o.dir, name)
		}
		if dataDir == "" {
			toks := cfg.SortedTokens()
			if len(toks) == 0 {
				return usagef("--dir or --data-dir is required for the first tenant")
			}
			dataDir = filepath.Join(filepath.Dir(filepath.Clean(cfg.Tenants[toks[0]].DataDir)), name)
		}
		tok := o.token
		if tok == "" {
			next := 1
			for t := range cfg.Tenants {
				if n := tokenNumber(t); n >= next {
					next = n + 1
				}
			}
			if tok, err = config.GenerateToken(next); err != nil {
				return err
			}
		}
		if _, dup := cfg.Tenants[tok]; dup {
			return usagef("token already in use")
		}
		if o.quotaMB < 0 {
			return usagef("--quota-mb must not be negative")
		}
		cfg.Tenants[tok] = config.TenantEntry{Name: name, DataDir: dataDir, QuotaMB: o.quotaMB}
		out = fmt.Sprintf("%s %s %s\n", name, tok, dataDir)
		outJSON = struct {
			Name    string `json:"name"`
			Token   string `json:"token"`
			DataDir string `json:"data_dir"`
		}{name, tok, dataDir}
	case "disable", "enable":
		for _, name := range pos {
			tok, ok := findTenant(cfg, name)
			if !ok {
				return usagef("no tenant %q in %s", name, o.config)
			}
			e := cfg.Tenants[tok]
			if sub == "disable" {
				off := false
				e.Enabled = &off
			} else {
				e.Enabled = nil
			}
			cfg.Tenants[tok] = e
			out += fmt.Sprintf("%sd %s\n", sub, e.Name)
		}
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	if err := config.WriteFile(o.config, cfg); err != nil {
		return err
	}
	if o.json && outJSON != nil {
		b, _ := json.Marshal(outJSON)
		out = string(b) + "\n"
	}
	io.WriteString(env.stdout, out)
	if !o.noReload {
		reloadServer(o, cfg, oldTokens, env)
	}
	return nil
}

// reloadServer asks the server at o.addr to reload. Failures are warnings.
func reloadServer(o *tenantOpts, cfg *config.Config, oldTokens []string, env clientEnv) {
	var toks []string
	for _, t := range []string{o.adminToken, cfg.AdminToken} {
		if t != "" {
			toks = append(toks, t)
		}
	}
	// A tenant token works only if the server knows it now (old config)
	// and the reload keeps it (new config): a tenant being disabled would
	// have its own connection closed by the reload it asked for.
	n := 0
	for _, t := range oldTokens {
		if e, ok := cfg.Tenants[t]; ok && e.IsEnabled() && n < 3 {
			toks = append(toks, t)
			n++
		}
	}
	if len(toks) == 0 {
		fmt.Fprintln(env.stderr, "sq tenants: warning: no token to connect with for the reload; the config file was written (reload the server yourself)")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	for _, tok := range toks {
		var c *client.Conn
		c, err = client.Dial(ctx, o.addr, tok, client.WithCompression(false))
		if err != nil {
			if client.IsStatus(err, protocol.StatusAuth) { // AUTH: try the next token
				continue
			}
			break
		}
		var msg string
		msg, err = c.Reload(ctx)
		c.Close()
		if err == nil {
			fmt.Fprintf(env.stderr, "sq tenants: server reloaded: %s\n", msg)
			return
		}
		if client.IsStatus(err, protocol.StatusAuth) {
			continue // a tenant token the server does not let reload: try the next
		}
		break
	}
	fmt.Fprintf(env.stderr, "sq tenants: warning: reload at %s failed: %v; the config file was written\n", o.addr, err)
	if client.IsStatus(err, protocol.StatusAuth) {
		fmt.Fprintln(env.stderr, "sq tenants: RELOAD needs the admin token: set admin_token in the config (or pass --reload-token), or reload with SIGHUP (systemctl reload sq)")
	}
}

func redactToken(tok string) string {
	if len(tok) <= 14 {
		return "…"
	}
	return tok[:11] + "…" + tok[len(tok)-3:]
}

func tenantsList(o *tenantOpts, pos []string, env clientEnv) error {
	if len(pos) != 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	cfg, err := readConfig(o.config, false)
	if err != nil {
		return err
	}
	type row struct {
		Name    string  `json:"name"`
		Enabled bool    `json:"enabled"`
		QuotaMB float64 `json:"quota_mb"`
		DataDir string  `json:"data_dir"`
		Token   string  `json:"token"`
	}
	rows := []row{}
	for _, tok := range cfg.SortedTokens() {
		e := cfg.Tenants[tok]
		if !o.showTokens {
			tok = redactToken(tok)
		}
		rows = append(rows, row{e.Name, e.IsEnabled(), e.QuotaMB, e.DataDir, tok})
	}
	if o.json {
		b, err := json.Marshal(struct {
			Tenants []row `json:"tenants"`
		}{rows})
		if err != nil {
			return err
		}
		_, err = env.stdout.Write(append(b, '\n'))
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENABLED\tQUOTA_MB\tDATA_DIR\tTOKEN")
	for _, r := range rows {
		q := "-"
		if r.QuotaMB > 0 {
			q = strconv.FormatFloat(r.QuotaMB, 'f', -1, 64)
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\n", r.Name, r.Enabled, q, r.DataDir, r.Token)
	}
	return tw.Flush()
}
