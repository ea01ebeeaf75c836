// Command sq is the SQ server, its command-line client and its tools in one
// binary. Run `sq help` for the list of commands.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/term"

	"github.com/phext/sq/server"
)

// command is one `sq` subcommand.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	m := map[string]command{
		"host":    {"run the server (see sq help host)", runHost},
		"phext":   {"offline tools on a phext file (forms below)", runPhext},
		"tenants": {"generate, edit and split tenant configs (forms below)", runTenants},
		"bench":   {"load-test a server with many tenants (see sq help bench)", runBench},
		"backup":  {"copy every phext of a tenant to a directory, verified by checksum", runBackup},
		"restore": {"put the phexts of a backup directory back, verified by checksum", runRestore},
	}
	for name, summary := range clientCommands {
		name := name
		m[name] = command{summary, func(args []string, stdout, stderr io.Writer) int {
			return runClientCommand(name, args, stdout, stderr)
		}}
	}
	return m
}

// clientCommands talk to a running server (client_cmds.go).
var clientCommands = map[string]string{
	"select":   "print the scroll at a coordinate",
	"insert":   "append text to the scroll at a coordinate",
	"update":   "replace the scroll at a coordinate",
	"delete":   "remove the scroll at a coordinate",
	"toc":      "print the table of contents of the phext",
	"get":      "print the whole phext document",
	"put":      "replace the whole phext with a file",
	"checksum": "print the phext's xxh3-128 checksum",
	"delta":    "print the scrolls that differ from a 'coord: checksum' file",
	"where":    "infer a coordinate for a text (SQ's where)",
	"push":     "store a file's text at a coordinate",
	"pull":     "write the scroll at a coordinate to a file",
	"slurp":    "import a directory's text files into consecutive scrolls",
	"status":   "print the tenant's usage and quota",
	"version":  "print this client's version, and the server's when one is configured",
	"list":     "list the tenant's phexts",
	"compact":  "compact the phext's write-ahead log now",
	"reload":   "ask the server to reload its tenant config",
	"ping":     "check that the server answers",
	"watch":    "print every change of the phext as it is committed",
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// isTerminal reports whether w is a terminal (tests replace it).
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	cmds := commands()
	switch args[0] {
	case "help", "-h", "--help", "-help":
		if len(args) > 1 {
			return help(args[1], stdout, stderr)
		}
		usage(stdout)
		return 0
	case "--version", "-version", "-V":
		// This binary's version, with no server, token or config needed
		// (sq version adds the server's when one is configured).
		fmt.Fprintf(stdout, "sq %s\n", server.Version)
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		names := make([]string, 0, len(cmds))
		for n := range cmds {
			names = append(names, n)
		}
		fmt.Fprintf(stderr, "sq: unknown command %q%s (sq help lists them)\n", args[0], didYouMean(args[0], names))
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}

// didYouMean returns ", did you mean X?" naming the candidates closest to
// typed (edit distance at most 2, or typed a prefix of one), or "".
func didYouMean(typed string, candidates []string) string {
	best, bestD := []string(nil), 3
	for _, c := range candidates {
		d := editDistance(strings.ToLower(typed), c)
		if len(typed) >= 2 && strings.HasPrefix(c, strings.ToLower(typed)) {
			d = min(d, 1)
		}
		switch {
		case d < bestD:
			best, bestD = []string{c}, d
		case d == bestD:
			best = append(best, c)
		}
	}
	if len(best) == 0 || bestD > len(typed)/2+1 {
		return ""
	}
	sort.Strings(best)
	return ", did you mean " + strings.Join(best, " or ") + "?"
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// subcommandForms lists, for commands with subcommands, every form and
// what it does, for the top-level help.
func subcommandForms() map[string][][2]string {
	return map[string][][2]string{
		"tenants": {
			{"gen", "generate a config of N tenants with new tokens (--out writes it 0600)"},
			{"add", "add a tenant to a config, then ask the server to reload"},
			{"disable", "disable tenants in a config (their connections close), then reload"},
			{"enable", "enable tenants again, then reload"},
			{"list", "list a config's tenants (tokens redacted)"},
			{"shard", "split a config into per-host configs and an HAProxy map"},
		},
		"phext": {
			{"toc", "table of contents of a phext file"},
			{"checksum", "xxh3-128 checksum of a phext file"},
			{"explode", "a phext file's scrolls as JSON lines"},
			{"normalize", "a phext file with minimal breaks"},
			{"select", "the scroll at COORD of a phext file (sq phext select COORD FILE)"},
		},
		"bench": {{"compare", "ratios of sq bench --json reports (SQ vs Redis vs echo)"}},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "sq: the SQ phext database server, client and tools")
	fmt.Fprintln(w, "\nusage: sq <command> [flags] [args]\n\ncommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	forms := subcommandForms()
	for _, n := range names {
		fmt.Fprintf(w, "  %-17s %s\n", n, cmds[n].summary)
		for _, f := range forms[n] {
			fmt.Fprintf(w, "  %-17s %s\n", n+" "+f[0], f[1])
		}
	}
	fmt.Fprintln(w, "\nsq help <command> documents a command and its flags; sq --version prints this binary's version.")
}

func help(name string, stdout, stderr io.Writer) int {
	switch name {
	case "host":
		fs := hostFlags(stdout)
		fmt.Fprintln(stdout, "usage: sq host [flags]\n\nRuns the SQ server. Without --config it uses the embedded default:\n"+
			"./sq-data/tenants.json with one dev tenant, whose token it prints (with a warning when the\n"+
			"directory holds anything else). Ports are flags: the Rust SQ's `sq host <port>` served the\n"+
			"REST API, here --http. GET /healthz and /readyz on --http are for load balancers.\n"+
			"SIGHUP reloads the config, SIGTERM drains and exits.\n\n"+
			"Privileges come from tokens, never from a source address: RELOAD (sq reload),\n"+
			"POST /api/v2/reload and the /admin API need the config's admin_token; GET /metrics\n"+
			"needs its metrics_token or the admin_token. Without --trust-loopback a tenant token\n"+
			"never reloads the server. --trust-loopback lets loopback peers reload (on any\n"+
			"connection) and scrape without a token; the embedded dev config turns it on (and\n"+
			"says so at start), --config leaves it off: behind stunnel, HAProxy or nginx on the\n"+
			"same host every client is loopback.\n\n"+
			"GOMAXPROCS is the CPUs plus --event-loops plus 1 (a P for every event loop and\n"+
			"the acceptor, which keep theirs while waiting in epoll_wait); a GOMAXPROCS above 0\n"+
			"in the environment is used as it is (docs/OPERATIONS.md, Threads).\n\n"+
			"A number flag given 0 takes its default, as if left out (--max-conns 0 is 20000,\n"+
			"--http-max-conns 0 is 4096), except where its text says what 0 does: --log-keep 0\n"+
			"keeps none, a rate's 0 turns its limit off, a burst must be at least 1.\n\nflags:")
		fs.PrintDefaults()
		fmt.Fprint(stdout, hostMemoryHelp)
		return 0
	case "phext":
		return runPhext([]string{"-h"}, stdout, stdout)
	}
	if h, ok := clientCommandHelp(name); ok {
		fmt.Fprintln(stdout, strings.TrimRight(h, "\n"))
		return 0
	}
	if _, ok := commands()[name]; ok {
		return commands()[name].run([]string{"-h"}, stdout, stderr)
	}
	fmt.Fprintf(stderr, "sq: no help for %q\n", name)
	return 2
}

// hostMemoryHelp explains the memory limits of sq host (docs/RELIABILITY.md
// has the figures).
const hostMemoryHelp = `
memory:
  What one client can make the server hold is bounded per connection:
  --max-frame bytes per frame (a compressed body's declared size is never
  trusted: it costs what it decodes to), --max-inflight requests, and
  2 × --max-frame of unread replies before a client that does not read is
  closed. Summed over all connections and REST requests,
  --max-client-memory bounds frames above 64 KiB (reserved when their
  header arrives, before their body), decompressed bodies, REST bodies and
  the replies of GET, TOC, DELTA and json-export (measured before they are
  built). A request that does not fit is answered BUSY (REST: 503 with
  Retry-After) at once, not queued; retry later. One tenant's connections
  and REST requests may hold at most --max-client-memory-per-tenant of it
  (default a quarter), so a tenant sending headers of large frames it never
  finishes gets BUSY itself while the other tenants are still served (the
  admin token is bounded by the whole budget only); of that share, its
  frames above 64 KiB may hold at most --max-frame-memory-per-tenant at
  once (default half; at least one max frame, so one tenant's single large
  write always fits), and a frame past it is answered BUSY at its header,
  its body dropped unread. A header reserves its
  frame until the frame arrives; stalled frames (arriving for over a
  second, slower than their size per 10 s) may hold at most
  --max-slow-frame-memory in all (default half the budget):
  past it, stalled senders are closed, so the rest stays for requests
  that arrive at speed. Frames of 1 MiB and more are received into memory
  mapped for them; once answered, that memory is kept (up to --frame-pool,
  default the per-tenant share) for the next frame of the same size, so
  the event loop copies into resident pages instead of faulting in fresh
  ones. Kept memory counts in the budget, gives way to any request that
  needs it and is unmapped after 10 s unused. A reply larger than --max-frame is TOO_LARGE
  (REST: 413); a write that would take a phext past 4 GiB − 1 serialized
  is TOO_LARGE and writes nothing. The quota counts each scroll's bytes
  plus 64 (the memory a scroll costs), so it bounds memory as well.

new connections:
  Each tenant's HELLOs are paced: --hello-burst at once, then --hello-rate
  a second (--hello-rate 0: no pacing; a burst must be at least 1). A HELLO past that is answered when its turn comes (the
  connection waits without costing CPU and counts as open); one whose turn
  is more than min(5 s, --hello-timeout/2) away is answered BUSY after that
  wait. Malformed frames (answered BAD_FRAME or TOO_LARGE) past
  --bad-frame-rate a second per tenant close the connection that sent
  one, after its answer and a BUSY saying why, and the tenant's next HELLO
  waits a second. Correct clients send none; a pool opening its
  connections at start fits the burst. The admin token is never paced.
  A HELLO past --max-conns-per-tenant is answered BUSY a second later (at
  most --hello-timeout/2), not at once; at most 256 such refusals of one
  tenant and --max-conns/8 of the server wait, later ones are answered at
  once.

refused requests:
  Requests refused at a limit (TOO_LARGE or QUOTA; REST 413 or 507) are
  budgeted per tenant, binary and REST together: --refusal-burst at once,
  then --refusal-rate a second (--refusal-rate 0: no budget; a burst must
  be at least 1). Past it each such answer is sent a second late (at most
  --frame-timeout/2), the connection waiting without costing CPU (REST:
  the request's goroutine; binary: the requests pipelined together wait
  one hold together and are answered in order). At most 128 answers of
  one tenant and --max-conns/8 of the server wait; past that the answer
  goes out at once and its connection is closed (binary: after a BUSY
  naming --refusal-rate, and the tenant's next HELLO waits a second). A
  correct client meets a limit now and then, not hundreds of times a
  second. A binary frame weighs one refusal plus one per MiB of it (a
  60 MiB frame refused weighs 61: the server read or dropped all of it),
  and such an answer past the budget waits until the budget has room for
  its weight (at least the second, at most --frame-timeout/2), so a
  tenant's large refused frames are answered at --refusal-rate MiB a
  second over all its connections; one the budget has no room for within
  --frame-timeout/2 goes out at once and closes its connection, as past
  the bounds above.
  BUSY is not counted (it is the server's load), except a frame over
  64 KiB refused BUSY at its header, whose dropped body weighs one per
  MiB; nor are bad names or coordinates; the admin token never is.

bad tokens and REST connections:
  Each address gets 10 failed authentications a minute (HELLO or REST
  token); past that each failure's answer (AUTH, REST 401) waits 250 ms
  longer, up to 5 s (binary: at most --hello-timeout/2; REST: at most
  --frame-timeout/2, so that the 401 meets the HTTP write deadline), the
  connection open meanwhile. Every such answer waits, however many: a
  connection that waits costs no more than one that sends nothing until
  --hello-timeout, and both count against --max-conns (REST:
  --http-max-conns). The REST
  port keeps at most --http-max-conns connections open (keep-alives and
  change-feed streams included): a connection past it is answered 503
  with Retry-After: 1 at once and closed; when --http-max-conns/8 such
  answers are already under way, it is closed unanswered, as the binary
  port closes a connection past --max-conns.
`
