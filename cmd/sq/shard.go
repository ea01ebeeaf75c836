package main

// sq tenants shard: split one tenant config into per-host configs plus the
// HAProxy map that routes each connection to its host by the token in the
// HELLO frame (PROTOCOL-CONTRACT: token length at frame offset 11, token
// bytes from 12; HAProxy req.payload_lv(11,1)).

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/zeebo/xxh3"

	"github.com/phext/sq/config"
)

const shardUsage = `usage: sq tenants shard --hosts N [--config FILE] --out DIR [flags]

Splits a tenant config into N per-host configs and an HAProxy map, so that
each host serves a shard of the tenants and HAProxy routes each connection by
the token in its HELLO frame (req.payload_lv(11,1)). Writes into DIR:

  host-1.json .. host-N.json  per-host configs (same format as the input;
                              admin_token copied to every host)
  tokens.map                  "<token> sq_hostK" lines, one per tenant
  backends.cfg                HAProxy backend sections sq_host1..N and
                              sq_unknown; load it after deploy/haproxy/haproxy.cfg
                              (haproxy -f haproxy.cfg -f backends.cfg)
  backends-http.cfg           HTTP backends sq_host1_http..N and sq_unknown_http
                              for the REST API, routed by the same map on the
                              Authorization / X-SQ-API-Key token; load it after
                              deploy/haproxy/haproxy-rest.cfg

Placement is deterministic. "rendezvous" (default) hashes each tenant name
with each host number and picks the highest, so going from N to N+1 hosts
moves only about 1/(N+1) of the tenants; "round-robin" deals the tenants,
sorted by name, in turn (exactly balanced counts). Nothing is written unless
the whole input is valid; each file is replaced atomically.

flags:
`

type shardOpts struct {
	config, out, strategy, dir, backends, healthPorts string
	httpBackends                                      string
	hosts                                             int
}

func shardFlags(out io.Writer) (*flag.FlagSet, *shardOpts) {
	o := &shardOpts{}
	fs := flag.NewFlagSet("tenants shard", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&o.hosts, "hosts", 0, "number of hosts (1..999)")
	fs.StringVar(&o.config, "config", os.Getenv("SQ_CONFIG"), "the tenant config to split (env SQ_CONFIG)")
	fs.StringVar(&o.out, "out", "", "directory for the per-host configs, tokens.map and backends.cfg (created if missing)")
	fs.StringVar(&o.strategy, "strategy", "rendezvous", "placement: rendezvous | round-robin")
	fs.StringVar(&o.dir, "dir", "", "rewrite data dirs to DIR/<name>; {host} in DIR becomes the host number "+
		"(default: keep each data_dir, made absolute against the input file's directory)")
	fs.StringVar(&o.backends, "backends", "", "comma-separated host:port of hosts 1..N for backends.cfg "+
		"(default: \"${SQ_HOST1}\" .. environment placeholders that HAProxy expands at start)")
	fs.StringVar(&o.healthPorts, "health-ports", "1338", "port of each host's --http API, where HAProxy checks GET /readyz "+
		"(one port for all hosts, or one per host, comma-separated; 0 = plain TCP connect checks)")
	fs.StringVar(&o.httpBackends, "http-backends", "", "comma-separated host:port of the hosts' REST APIs (sq host --http) for backends-http.cfg "+
		"(default: \"${SQ_HTTP1}\" .. environment placeholders)")
	return fs, o
}

// runTenantsShard runs `sq tenants shard`. The dispatcher in tenants.go
// calls it with the arguments after "shard".
func runTenantsShard(args []string, stdout, stderr io.Writer) int {
	fs, o := shardFlags(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), shardUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sq tenants shard: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	switch {
	case o.hosts < 1 || o.hosts > 999:
		fmt.Fprintf(stderr, "sq tenants shard: --hosts must be 1..999, got %d\n", o.hosts)
		return 2
	case o.config == "":
		fmt.Fprintln(stderr, "sq tenants shard: no --config (or SQ_CONFIG) given")
		return 2
	case o.out == "":
		fmt.Fprintln(stderr, "sq tenants shard: no --out directory given")
		return 2
	}
	var backends, httpBackends []string
	if o.backends != "" {
		backends = strings.Split(o.backends, ",")
	}
	if o.httpBackends != "" {
		httpBackends = strings.Split(o.httpBackends, ",")
	}
	health, err := parseHealthPorts(o.healthPorts, o.hosts)
	if err != nil {
		fmt.Fprintln(stderr, "sq tenants shard:", err)
		return 2
	}
	cfg, err := config.Load(o.config)
	if err != nil {
		fmt.Fprintln(stderr, "sq tenants shard:", err)
		return 1
	}
	plan, err := planShards(cfg, shardSpec{Hosts: o.hosts, Strategy: o.strategy, Dir: o.dir, Backends: backends, HealthPorts: health,
		HTTPBackends: httpBackends})
	if err != nil {
		fmt.Fprintln(stderr, "sq tenants shard:", err)
		if errors.Is(err, errShardUsage) {
			return 2
		}
		return 1
	}
	if err := plan.write(o.out); err != nil {
		fmt.Fprintln(stderr, "sq tenants shard:", err)
		return 1
	}
	for i, hc := range plan.Hosts {
		fmt.Fprintf(stdout, "%s\t%d tenants\t%s\n", shardBackend(i), len(hc.Tenants),
			filepath.Join(o.out, shardConfigName(i)))
	}
	fmt.Fprintf(stdout, "map\t%d tokens\t%s\n", len(plan.Map), filepath.Join(o.out, "tokens.map"))
	fmt.Fprintf(stdout, "backends\t%d hosts\t%s\n", len(plan.Hosts), filepath.Join(o.out, "backends.cfg"))
	fmt.Fprintf(stdout, "backends-http\t%d hosts\t%s\n", len(plan.Hosts), filepath.Join(o.out, "backends-http.cfg"))
	return 0
}

// errShardUsage marks a bad flag value (exit status 2).
var errShardUsage = errors.New("usage")

// shardSpec is what planShards needs besides the config.
type shardSpec struct {
	Hosts    int
	Strategy string   // "rendezvous" (default when empty) or "round-robin"
	Dir      string   // optional data dir root template, {host} = 1..N
	Backends []string // optional host:port per host
	// HealthPorts are the --http ports HAProxy checks GET /readyz on, one
	// per host; nil means TCP connect checks.
	HealthPorts []int
	// HTTPBackends are the hosts' REST addresses (optional host:port per
	// host) for backends-http.cfg.
	HTTPBackends []string
}

// mapEntry is one line of tokens.map.
type mapEntry struct{ Token, Backend string }

// shardPlan is the result of planShards: one config per host, the map
// lines sorted by token and the HAProxy backend sections.
type shardPlan struct {
	Hosts    []*config.Config
	Map      []mapEntry
	Backends []byte
	// HTTPBackends is backends-http.cfg, for deploy/haproxy/haproxy-rest.cfg.
	HTTPBackends []byte
}

// shardBackend names host i (0-based) in HAProxy: sq_host1, sq_host2...
func shardBackend(i int) string { return "sq_host" + strconv.Itoa(i+1) }

// shardConfigName is host i's config file name in the output directory.
func shardConfigName(i int) string { return "host-" + strconv.Itoa(i+1) + ".json" }

// shardHost returns the host (0-based) a tenant named name goes to under
// rendezvous hashing over n hosts: the host whose hash of (name, host) is
// largest. Depending only on the name keeps placement stable when tokens
// rotate, and adding a host moves only the tenants the new host wins.
func shardHost(name string, n int) int {
	best, bestH := 0, uint64(0)
	buf := make([]byte, 0, len(name)+8)
	for i := 0; i < n; i++ {
		buf = append(buf[:0], name...)
		buf = append(buf, 0)
		buf = strconv.AppendInt(buf, int64(i+1), 10)
		if h := xxh3.Hash(buf); i == 0 || h > bestH {
			best, bestH = i, h
		}
	}
	return best
}

// checkMapKey refuses a token that cannot be a key of an HAProxy map file:
// the key ends at the first blank and a line starting with '#' is a comment.
func checkMapKey(tok, name string) error {
	if strings.HasPrefix(tok, "#") {
		return fmt.Errorf("tenant %q: a token starting with '#' cannot go in an HAProxy map file", name)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("tenant %q: the token holds a blank or control byte (0x%02x at %d); "+
				"an HAProxy map file cannot match it", name, c, i)
		}
	}
	return nil
}

// planShards places every tenant of cfg (enabled or not) on one of
// spec.Hosts hosts. It validates everything first and returns an error
// without a plan when anything is wrong.
func planShards(cfg *config.Config, spec shardSpec) (*shardPlan, error) {
	n := spec.Hosts
	if n < 1 || n > 999 {
		return nil, fmt.Errorf("%w: hosts must be 1..999, got %d", errShardUsage, n)
	}
	strategy := spec.Strategy
	if strategy == "" {
		strategy = "rendezvous"
	}
	if strategy != "rendezvous" && strategy != "round-robin" {
		return nil, fmt.Errorf("%w: --strategy %q is not rendezvous or round-robin", errShardUsage, spec.Strategy)
	}
	for _, list := range []struct {
		flag  string
		addrs []string
	}{{flag: "--backends", addrs: spec.Backends}, {flag: "--http-backends", addrs: spec.HTTPBackends}} {
		if list.addrs != nil && len(list.addrs) != n {
			return nil, fmt.Errorf("%w: %s lists %d addresses for %d hosts", errShardUsage, list.flag, len(list.addrs), n)
		}
		for i, b := range list.addrs {
			if strings.TrimSpace(b) == "" || strings.ContainsAny(b, " \t\"'#\n") || !strings.Contains(b, ":") {
				return nil, fmt.Errorf("%w: %s entry %d (%q) is not host:port", errShardUsage, list.flag, i+1, b)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	plan := &shardPlan{Hosts: make([]*config.Config, n)}
	for i := range plan.Hosts {
		plan.Hosts[i] = &config.Config{Tenants: map[string]config.TenantEntry{}, AdminToken: cfg.AdminToken, MetricsToken: cfg.MetricsToken}
	}
	for k, tok := range cfg.SortedTokens() {
		e := cfg.Tenants[tok]
		if err := checkMapKey(tok, e.Name); err != nil {
			return nil, err
		}
		if tok == cfg.AdminToken {
			return nil, fmt.Errorf("tenant %q uses the admin token as its token", e.Name)
		}
		h := k % n
		if strategy == "rendezvous" {
			h = shardHost(e.Name, n)
		}
		if spec.Dir != "" {
			root := strings.ReplaceAll(spec.Dir, "{host}", strconv.Itoa(h+1))
			e.DataDir = filepath.Join(root, e.Name)
		} else if abs, err := filepath.Abs(e.DataDir); err == nil {
			e.DataDir = abs
		}
		plan.Hosts[h].Tenants[tok] = e
		plan.Map = append(plan.Map, mapEntry{Token: tok, Backend: shardBackend(h)})
	}
	for i, hc := range plan.Hosts {
		// A {host}-less --dir could still make two tenants share a dir
		// only if the input did; check each output as the server will.
		if err := hc.Validate(); err != nil {
			return nil, fmt.Errorf("host %d: %w", i+1, err)
		}
	}
	sort.Slice(plan.Map, func(i, j int) bool { return plan.Map[i].Token < plan.Map[j].Token })
	plan.Backends = appendBackendsCfg(nil, n, spec.Backends, spec.HealthPorts)
	plan.HTTPBackends = appendHTTPBackendsCfg(nil, n, spec.HTTPBackends)
	return plan, nil
}

// appendMap appends the HAProxy map file: one "<token> <backend>" line per
// tenant.
func appendMap(dst []byte, m []mapEntry) []byte {
	dst = append(dst, "# sq tenants shard: token -> backend; HAProxy routes with\n"+
		"# req.payload_lv(11,1),map(<this file>,sq_unknown). Update a running HAProxy\n"+
		"# with \"set map <this file> <token> <backend>\" on its admin socket.\n"...)
	for _, e := range m {
		dst = append(dst, e.Token...)
		dst = append(dst, ' ')
		dst = append(dst, e.Backend...)
		dst = append(dst, '\n')
	}
	return dst
}

// parseHealthPorts reads --health-ports: one port for every host, or one
// per host; nil means plain TCP checks.
func parseHealthPorts(v string, hosts int) ([]int, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 1 && len(parts) != hosts {
		return nil, fmt.Errorf("--health-ports lists %d ports for %d hosts (give one, or one per host)", len(parts), hosts)
	}
	ports := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 || n > 65535 {
			return nil, fmt.Errorf("--health-ports entry %d (%q) is not a port", i+1, p)
		}
		ports[i] = n
	}
	if len(ports) == 1 {
		if ports[0] == 0 {
			return nil, nil
		}
		for len(ports) < hosts {
			ports = append(ports, ports[0])
		}
	}
	return ports, nil
}

// appendBackendsCfg appends one HAProxy backend per host and sq_unknown,
// which spreads tokens missing from the map over all hosts so that a server
// answers them with the AUTH status the protocol promises. With health
// ports, HAProxy checks each host's GET /readyz on that port (its --http
// API), so a draining host (sq host --drain-delay) gets no new connections;
// port 0 or no ports means a TCP connect check on the binary port.
func appendBackendsCfg(dst []byte, n int, addrs []string, health []int) []byte {
	dst = append(dst, "# sq tenants shard: one backend per host. Load after haproxy.cfg:\n"+
		"#   haproxy -f deploy/haproxy/haproxy.cfg -f backends.cfg\n"...)
	addr := func(i int) string {
		if addrs != nil {
			return strings.TrimSpace(addrs[i])
		}
		return "\"${SQ_HOST" + strconv.Itoa(i+1) + "}\""
	}
	check := func(i int) string {
		if i < len(health) && health[i] > 0 {
			return "check port " + strconv.Itoa(health[i]) + " inter 2s fall 2 rise 2"
		}
		return "check"
	}
	httpchk := ""
	if len(health) > 0 {
		// The check speaks HTTP to the --http port; traffic stays TCP.
		httpchk = "    option httpchk GET /readyz\n    http-check expect status 200\n"
	}
	for i := 0; i < n; i++ {
		dst = fmt.Appendf(dst, "\nbackend %s\n    mode tcp\n%s    server h%d %s %s\n", shardBackend(i), httpchk, i+1, addr(i), check(i))
	}
	dst = append(dst, "\n# Tokens not in the map: any host answers AUTH.\nbackend sq_unknown\n    mode tcp\n    balance roundrobin\n"...)
	dst = append(dst, httpchk...)
	for i := 0; i < n; i++ {
		dst = fmt.Appendf(dst, "    server h%d %s %s\n", i+1, addr(i), check(i))
	}
	return dst
}

// appendHTTPBackendsCfg appends one HAProxy HTTP backend per host's REST
// API, named after the map's value with "_http" appended (sq_host1_http),
// and sq_unknown_http for tokens not in the map. HAProxy checks GET
// /readyz on the same port, so a draining host gets no new requests.
func appendHTTPBackendsCfg(dst []byte, n int, addrs []string) []byte {
	dst = append(dst, "# sq tenants shard: one REST backend per host. Load after haproxy-rest.cfg:\n"+
		"#   haproxy -f deploy/haproxy/haproxy.cfg -f backends.cfg -f deploy/haproxy/haproxy-rest.cfg -f backends-http.cfg\n"...)
	addr := func(i int) string {
		if addrs != nil {
			return strings.TrimSpace(addrs[i])
		}
		return "\"${SQ_HTTP" + strconv.Itoa(i+1) + "}\""
	}
	const chk = "    option httpchk GET /readyz\n    http-check expect status 200\n"
	for i := 0; i < n; i++ {
		dst = fmt.Appendf(dst, "\nbackend %s_http\n    mode http\n%s    server h%d %s check inter 2s fall 2 rise 2\n",
			shardBackend(i), chk, i+1, addr(i))
	}
	dst = append(dst, "\n# Tokens not in the map: any host answers 401.\nbackend sq_unknown_http\n    mode http\n    balance roundrobin\n"+chk...)
	for i := 0; i < n; i++ {
		dst = fmt.Appendf(dst, "    server h%d %s check inter 2s fall 2 rise 2\n", i+1, addr(i))
	}
	return dst
}

// write saves the plan under dir: configs first, the map and backends
// last, each through a temporary file renamed into place.
func (p *shardPlan) write(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	for i, hc := range p.Hosts {
		if err := config.WriteFile(filepath.Join(dir, shardConfigName(i)), hc); err != nil {
			return fmt.Errorf("host %d: %w", i+1, err)
		}
	}
	if err := config.WriteFileAtomic(filepath.Join(dir, "tokens.map"), appendMap(nil, p.Map), 0o600); err != nil {
		return err
	}
	if err := config.WriteFileAtomic(filepath.Join(dir, "backends.cfg"), p.Backends, 0o644); err != nil {
		return err
	}
	return config.WriteFileAtomic(filepath.Join(dir, "backends-http.cfg"), p.HTTPBackends, 0o644)
}
