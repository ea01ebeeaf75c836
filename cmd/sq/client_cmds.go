package main

// The client commands: each opens one connection to a running server, runs
// one operation (slurp: several) and prints the result.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// defaultAddr is where the client commands look for a server when neither
// --addr nor SQ_ADDR is set.
const defaultAddr = "127.0.0.1:1337"

// clientEnv is what a client command reads from and writes to; tests
// substitute every part.
type clientEnv struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// connFlags are the connection settings every client command takes. Flags
// override the environment, which overrides the defaults.
type connFlags struct {
	addr       string
	token      string
	phext      string
	json       bool
	timeout    time.Duration
	noCompress bool
}

// register adds the connection flags to fs with defaults from env.
func (f *connFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	addr := getenv("SQ_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	fs.StringVar(&f.addr, "addr", addr, "server address host:port (env SQ_ADDR)")
	fs.StringVar(&f.token, "token", getenv("SQ_TOKEN"), "tenant API token (env SQ_TOKEN)")
	fs.StringVar(&f.phext, "phext", getenv("SQ_PHEXT"), "phext name; empty is the tenant's default phext (env SQ_PHEXT)")
	fs.BoolVar(&f.json, "json", false, "print the result as one JSON object")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up on the server after this long")
	fs.BoolVar(&f.noCompress, "no-compress", false, "do not offer wire compression")
}

// clientCmd describes one client command.
type clientCmd struct {
	args  string // positional arguments, for the usage line
	about string // what it does, for sq help
	// nargs is the number of positional arguments (optional ones are
	// counted in maxArgs).
	nargs, maxArgs int
	flags          func(fs *flag.FlagSet, x *cmdExtra)
	run            func(ctx context.Context, r *cmdRun) error
	// follow: the command runs until interrupted and makes its own
	// connections (r.c is nil; --timeout bounds each dial only).
	follow bool
}

// cmdExtra holds the flags only some commands have.
type cmdExtra struct {
	algo  string
	limit int
	// watch
	prefix string
	from   uint64
	text   bool
	count  int
}

// cmdRun is one invocation: the connection, the parsed flags and the
// positional arguments.
type cmdRun struct {
	name  string
	c     *client.Conn
	cf    connFlags
	x     cmdExtra
	args  []string
	env   clientEnv
	coord phext.Coordinate // parsed first argument, for commands taking one
}

// usageError marks errors in how the command was called (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

var clientCmds map[string]*clientCmd

func init() {
	whereFlags := func(fs *flag.FlagSet, x *cmdExtra) {
		fs.StringVar(&x.algo, "algo", "xor", "inference algorithm: xor | checksum")
		fs.IntVar(&x.limit, "limit", phext.DefaultWhereLimit, "xor: minimum phoken length that counts")
	}
	clientCmds = map[string]*clientCmd{
		"select": {args: "<coord>", nargs: 1, run: cmdSelect,
			about: "Prints the text of the scroll at <coord> exactly as stored (nothing when it is empty)."},
		"insert": {args: "<coord> <text>", nargs: 2, run: cmdWrite(protocol.OpInsert),
			about: "Appends <text> to the scroll at <coord> and prints \"<coord>: Inserted N bytes\"."},
		"update": {args: "<coord> <text>", nargs: 2, run: cmdWrite(protocol.OpUpdate),
			about: "Replaces the scroll at <coord> with <text> and prints \"<coord>: Updated N bytes\"."},
		"delete": {args: "<coord>", nargs: 1, run: cmdDelete,
			about: "Empties the scroll at <coord> and prints \"<coord>: Removed N bytes\"."},
		"toc": {run: cmdTOC,
			about: "Prints the phext's table of contents: one \"* <coord>: <summary>\" line per scroll."},
		"get": {args: "[file]", maxArgs: 1, run: cmdGet,
			about: "Prints the whole serialized phext, or writes it to [file]."},
		"put": {args: "<file>", nargs: 1, run: cmdPut,
			about: "Replaces the whole phext with the phext document in <file> (- reads stdin)."},
		"checksum": {run: cmdChecksum,
			about: "Prints the phext's checksum: xxh3-128 of the serialized document, 32 hex digits."},
		"delta": {args: "<file>", nargs: 1, run: cmdDelta,
			about: "Sends the \"<coord>: <checksum>\" lines of <file> (- reads stdin) and prints the phext\n" +
				"document of the scrolls that differ (missing ones as ---sq:Scroll-Missing---)."},
		"where": {args: "<text>", nargs: 1, flags: whereFlags, run: cmdWhere,
			about: "Prints the coordinate SQ infers for <text>."},
		"push": {args: "<coord> <file>", nargs: 2, run: cmdPush,
			about: "Stores the text of <file> (- reads stdin) as the scroll at <coord>, replacing it.\n" +
				"The file must be UTF-8 without phext delimiters (else BAD_SCROLL)."},
		"pull": {args: "<coord> <file>", nargs: 2, run: cmdPull,
			about: "Writes the scroll at <coord> to <file>."},
		"slurp": {args: "<coord> <dir>", nargs: 2, run: cmdSlurp,
			about: slurpAbout},
		"status": {run: cmdStatus,
			about: "Prints the tenant's usage: phexts, scrolls, bytes and quota."},
		"version": {run: cmdVersion,
			about: "Prints this client's version and the server's."},
		"list": {run: cmdList,
			about: "Lists the tenant's phexts, one name a line; the default phext is shown as (default)."},
		"compact": {run: cmdCompact,
			about: "Asks the server to compact the phext now (fold its write-ahead log into the file)."},
		"reload": {run: cmdReload,
			about: "Asks the server to reload its tenant config. Needs the config's admin_token as\n" +
				"--token (a tenant token is refused with AUTH), unless the server runs with\n" +
				"--trust-loopback (the dev default) and this runs on the same host."},
		"ping": {run: cmdPing,
			about: "Checks that the server answers and prints the round-trip time."},
		"watch": {flags: watchFlags, run: cmdWatch, follow: true,
			about: watchAbout},
	}
	for _, c := range clientCmds {
		if c.maxArgs < c.nargs {
			c.maxArgs = c.nargs
		}
	}
}

const slurpAbout = `Imports the files of <dir> into consecutive scrolls after <coord> and writes a
table of contents to <coord>, as SQ's slurp does: one "<coord> <filename>" line per
file, media files (.jpg .png .gif .webp .mp3 .mp4) listed as "(Resource)" with a
coordinate but no content. Differences from SQ: files are taken in name order
(SQ: directory order), subdirectories take no coordinate, each file lands at the
coordinate its TOC line names (SQ stores each file one coordinate behind), files
that are not UTF-8 or hold phext delimiters are skipped with a warning, and the
next coordinate carries into section, chapter, book... only when the lower part
is at 999.`

// flagSet builds the FlagSet of command name.
func (c *clientCmd) flagSet(name string, env clientEnv, cf *connFlags, x *cmdExtra) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cf.register(fs, env.getenv)
	if c.flags != nil {
		c.flags(fs, x)
	}
	return fs
}

// clientCommandHelp returns the help text of a client command for
// `sq help <command>`.
func clientCommandHelp(name string) (string, bool) {
	c, ok := clientCmds[name]
	if !ok {
		if name == "tenants" {
			return tenantsHelp(), true
		}
		return "", false
	}
	var cf connFlags
	var x cmdExtra
	fs := c.flagSet(name, clientEnv{getenv: func(string) string { return "" }}, &cf, &x)
	var b strings.Builder
	fmt.Fprintf(&b, "usage: sq %s [flags] %s\n\n%s\n\nflags:\n", name, c.args, c.about)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	b.WriteString("\nFlags may come before or after the arguments; -- ends the flags.\n" +
		"Exit status: 0 success, 1 server or network error, 2 usage error.\n")
	return b.String(), true
}

// parseInterspersed parses flags anywhere among the positional arguments
// (sq select 1.1.1/1.1.1/1.1.1 --json). After "--" everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at the first non-flag or right after "--".
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// runClientCommand runs client command name with the process environment.
func runClientCommand(name string, args []string, stdout, stderr io.Writer) int {
	return runClientCommandEnv(name, args, clientEnv{getenv: os.Getenv, stdin: os.Stdin, stdout: stdout, stderr: stderr})
}

func runClientCommandEnv(name string, args []string, env clientEnv) int {
	c, ok := clientCmds[name]
	if !ok {
		fmt.Fprintf(env.stderr, "sq: unknown command %q\n", name)
		return 2
	}
	r := &cmdRun{name: name, env: env}
	fs := c.flagSet(name, env, &r.cf, &r.x)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			h, _ := clientCommandHelp(name)
			fmt.Fprint(env.stdout, h)
			return 0
		}
		fmt.Fprintf(env.stderr, "sq %s: %v\n(see sq help %s)\n", name, err, name)
		return 2
	}
	if len(pos) < c.nargs || len(pos) > c.maxArgs {
		fmt.Fprintf(env.stderr, "sq %s: want %d argument(s), got %d\nusage: sq %s [flags] %s\n", name, c.nargs, len(pos), name, c.args)
		return 2
	}
	r.args = pos
	if strings.HasPrefix(c.args, "<coord>") {
		if r.coord, err = phext.ParseCoordinate(pos[0]); err != nil {
			fmt.Fprintf(env.stderr, "sq %s: bad coordinate %q: %v\n", name, pos[0], err)
			return 2
		}
	}
	if r.cf.phext != "" && !phext.ValidName([]byte(r.cf.phext)) {
		fmt.Fprintf(env.stderr, "sq %s: bad phext name %q: want [A-Za-z0-9_-][A-Za-z0-9._-]*, at most 64 bytes\n", name, r.cf.phext)
		return 2
	}
	if name == "version" {
		return runVersion(r)
	}
	if r.cf.token == "" {
		fmt.Fprintf(env.stderr, "sq %s: no token: pass --token or set SQ_TOKEN\n", name)
		return 2
	}
	if c.follow {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return reportErr(env.stderr, "sq "+name, r.cf.addr, c.run(ctx, r))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cf.timeout)
	defer cancel()
	r.c, err = client.Dial(ctx, r.cf.addr, r.cf.token, client.WithCompression(!r.cf.noCompress))
	if err == nil {
		defer r.c.Close()
		err = c.run(ctx, r)
	}
	return reportErr(env.stderr, "sq "+name, r.cf.addr, err)
}

// reportErr prints err (if any) and returns the exit status: 2 for usage
// errors, 1 for everything else.
func reportErr(stderr io.Writer, prefix, addr string, err error) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
		return 2
	}
	var se *client.StatusError
	if errors.As(err, &se) {
		msg := se.Msg
		if msg == "" {
			msg = "(no message)"
		}
		fmt.Fprintf(stderr, "%s: server answered %s to %s: %s\n", prefix, se.Status, se.Op, msg)
		return 1
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		// A local file (pull, get FILE…): not the server's fault, so the
		// message does not name the server address.
		fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
		return 1
	}
	fmt.Fprintf(stderr, "%s: %s: %v\n", prefix, addr, err)
	return 1
}

// emit prints v as one JSON line when --json is set, else text.
func (r *cmdRun) emit(v any, text string) error {
	if r.cf.json {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b = append(b, '\n')
		_, err = r.env.stdout.Write(b)
		return err
	}
	_, err := io.WriteString(r.env.stdout, text)
	return err
}

// readInput reads a file argument; "-" is stdin.
func (r *cmdRun) readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(r.env.stdin)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return b, nil
}

func cmdSelect(ctx context.Context, r *cmdRun) error {
	text, err := r.c.Select(ctx, r.cf.phext, r.coord)
	if err != nil {
		return err
	}
	out := string(text)
	if len(text) > 0 && text[len(text)-1] != '\n' && isTerminal(r.env.stdout) {
		// A prompt would follow the text on the same line; piped or
		// redirected output stays byte for byte the scroll.
		out += "\n"
	}
	return r.emit(struct {
		Coord string `json:"coord"`
		Text  string `json:"text"`
	}{r.coord.String(), string(text)}, out)
}

func writeResult(r *cmdRun, verb string, n int) error {
	return r.emit(struct {
		Coord string `json:"coord"`
		Bytes int    `json:"bytes"`
	}{r.coord.String(), n}, fmt.Sprintf("%s: %s %d bytes\n", r.coord, verb, n))
}

func cmdWrite(op protocol.Op) func(context.Context, *cmdRun) error {
	return func(ctx context.Context, r *cmdRun) error {
		text := []byte(r.args[1])
		if op == protocol.OpInsert {
			n, err := r.c.Insert(ctx, r.cf.phext, r.coord, text)
			if err != nil {
				return err
			}
			return writeResult(r, "Inserted", n)
		}
		n, err := r.c.Update(ctx, r.cf.phext, r.coord, text)
		if err != nil {
			return err
		}
		return writeResult(r, "Updated", n)
	}
}

func cmdDelete(ctx context.Context, r *cmdRun) error {
	n, err := r.c.Delete(ctx, r.cf.phext, r.coord)
	if err != nil {
		return err
	}
	return writeResult(r, "Removed", n)
}

func cmdTOC(ctx context.Context, r *cmdRun) error {
	toc, err := r.c.TOC(ctx, r.cf.phext)
	if err != nil {
		return err
	}
	return r.emit(struct {
		TOC string `json:"toc"`
	}{string(toc)}, string(toc))
}

func cmdGet(ctx context.Context, r *cmdRun) error {
	doc, err := r.c.Get(ctx, r.cf.phext)
	if err != nil {
		return err
	}
	if len(r.args) == 1 {
		if err := os.WriteFile(r.args[0], doc, 0o644); err != nil {
			return err
		}
		return r.emit(struct {
			File  string `json:"file"`
			Bytes int    `json:"bytes"`
		}{r.args[0], len(doc)}, fmt.Sprintf("Wrote %d bytes to %s\n", len(doc), r.args[0]))
	}
	return r.emit(struct {
		Document string `json:"document"`
	}{string(doc)}, string(doc))
}

func cmdPut(ctx context.Context, r *cmdRun) error {
	doc, err := r.readInput(r.args[0])
	if err != nil {
		return err
	}
	n, err := r.c.Put(ctx, r.cf.phext, doc)
	if err != nil {
		return err
	}
	return r.emit(struct {
		Scrolls int `json:"scrolls"`
		Bytes   int `json:"bytes"`
	}{n, len(doc)}, fmt.Sprintf("Stored %d scrolls (%d bytes) from %s\n", n, len(doc), r.args[0]))
}

func cmdChecksum(ctx context.Context, r *cmdRun) error {
	sum, err := r.c.Checksum(ctx, r.cf.phext)
	if err != nil {
		return err
	}
	return r.emit(struct {
		Checksum string `json:"checksum"`
	}{sum}, sum+"\n")
}

func cmdDelta(ctx context.Context, r *cmdRun) error {
	req, err := r.readInput(r.args[0])
	if err != nil {
		return err
	}
	doc, err := r.c.Delta(ctx, r.cf.phext, req)
	if err != nil {
		return err
	}
	return r.emit(struct {
		Document string `json:"document"`
	}{string(doc)}, string(doc))
}

func cmdWhere(ctx context.Context, r *cmdRun) error {
	if r.x.algo != "xor" && r.x.algo != "checksum" {
		return usagef("--algo must be xor or checksum, not %q", r.x.algo)
	}
	if r.x.limit < 1 {
		return usagef("--limit must be at least 1")
	}
	c, err := r.c.Where(ctx, []byte(r.args[0]), r.x.algo, r.x.limit)
	if err != nil {
		return err
	}
	return r.emit(struct {
		Coord string `json:"coord"`
		Algo  string `json:"algo"`
		Limit int    `json:"limit"`
	}{c.String(), r.x.algo, r.x.limit}, c.String()+"\n")
}

func cmdPush(ctx context.Context, r *cmdRun) error {
	text, err := r.readInput(r.args[1])
	if err != nil {
		return err
	}
	n, err := r.c.Update(ctx, r.cf.phext, r.coord, text)
	if err != nil {
		return err
	}
	return writeResult(r, "Updated", n)
}

func cmdPull(ctx context.Context, r *cmdRun) error {
	text, err := r.c.Select(ctx, r.cf.phext, r.coord)
	if err != nil {
		return err
	}
	if err := os.WriteFile(r.args[1], text, 0o644); err != nil {
		return err
	}
	return r.emit(struct {
		Coord string `json:"coord"`
		File  string `json:"file"`
		Bytes int    `json:"bytes"`
	}{r.coord.String(), r.args[1], len(text)}, fmt.Sprintf("Exported scroll at %s to %s.\n", r.coord, r.args[1]))
}

// isMediaResource is SQ's list of files slurp records without content.
func isMediaResource(lowerName string) bool {
	for _, ext := range []string{".jpg", ".mp4", ".mp3", ".gif", ".webp", ".png"} {
		if strings.HasSuffix(lowerName, ext) {
			return true
		}
	}
	return false
}

// nextSlurpCoord advances c by one scroll, carrying into the next higher
// part when a part is at 999.
func nextSlurpCoord(c phext.Coordinate) (phext.Coordinate, bool) {
	for level := phext.LevelScroll; level >= phext.LevelLibrary; level-- {
		if c.Advance(level) {
			return c, true
		}
	}
	return c, false
}

type slurpEntry struct {
	Coord    string `json:"coord"`
	File     string `json:"file"`
	Bytes    int    `json:"bytes"`
	Resource bool   `json:"resource,omitempty"`
}

func cmdSlurp(ctx context.Context, r *cmdRun) error {
	dir := r.args[1]
	entries, err := os.ReadDir(dir)
	if err != nil {
		return usagef("%v", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	var toc bytes.Buffer
	var done []slurpEntry
	at := r.coord
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		name := e.Name()
		media := isMediaResource(strings.ToLower(name))
		var text []byte
		if !media {
			if text, err = os.ReadFile(filepath.Join(dir, name)); err != nil {
				fmt.Fprintf(r.env.stderr, "sq slurp: warning: skipping %s: %v\n", name, err)
				continue
			}
			if !phext.ValidScroll(text) {
				fmt.Fprintf(r.env.stderr, "sq slurp: warning: skipping %s: not UTF-8 text or holds phext delimiters\n", name)
				continue
			}
		}
		next, ok := nextSlurpCoord(at)
		if !ok {
			return fmt.Errorf("ran out of coordinates after %s", at)
		}
		at = next
		ent := slurpEntry{Coord: at.String(), File: name, Bytes: len(text), Resource: media}
		if media {
			fmt.Fprintf(&toc, "%s %s (Resource)\n", at, name)
		} else {
			if _, err := r.c.Update(ctx, r.cf.phext, at, text); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			fmt.Fprintf(&toc, "%s %s\n", at, name)
		}
		done = append(done, ent)
	}
	if _, err := r.c.Update(ctx, r.cf.phext, r.coord, toc.Bytes()); err != nil {
		return fmt.Errorf("table of contents: %w", err)
	}
	text := fmt.Sprintf("Slurped %d files from %s; table of contents at %s:\n%s", len(done), dir, r.coord, toc.String())
	if done == nil {
		done = []slurpEntry{}
	}
	return r.emit(struct {
		TOC   string       `json:"toc"`
		Files []slurpEntry `json:"files"`
	}{r.coord.String(), done}, text)
}

func cmdStatus(ctx context.Context, r *cmdRun) error {
	st, err := r.c.Status(ctx)
	if err != nil {
		return err
	}
	h := r.c.Hello()
	quota := "unlimited"
	if st.Quota > 0 {
		quota = fmt.Sprintf("%d bytes (%.1f%% used)", st.Quota, 100*float64(st.Bytes)/float64(st.Quota))
	}
	text := fmt.Sprintf("tenant:  %s\nserver:  %s (%s)\nphexts:  %d\nscrolls: %d\nbytes:   %d\nquota:   %s\n",
		h.TenantName, r.cf.addr, h.ServerVersion, st.Phexts, st.Scrolls, st.Bytes, quota)
	return r.emit(struct {
		Tenant  string `json:"tenant"`
		Server  string `json:"server_version"`
		Phexts  uint32 `json:"phexts"`
		Scrolls uint64 `json:"scrolls"`
		Bytes   uint64 `json:"bytes"`
		Quota   uint64 `json:"quota_bytes"`
	}{h.TenantName, h.ServerVersion, st.Phexts, st.Scrolls, st.Bytes, st.Quota}, text)
}

// versionServerTimeout bounds sq version's question to the server unless
// --timeout is given: the client's version must not wait on a dead host.
const versionServerTimeout = 3 * time.Second

// runVersion is sq version: this client's version always, without a token
// or a server; the server's too when a token is configured and the server
// answers. A server that does not is reported on stderr (exit 0).
func runVersion(r *cmdRun) int {
	type answer struct {
		Client string `json:"client"`
		Server string `json:"server,omitempty"`
		Addr   string `json:"addr,omitempty"`
	}
	a := answer{Client: "sq " + server.Version}
	text := "client: " + a.Client + "\n"
	if r.cf.token != "" {
		timeout := r.cf.timeout
		if timeout == 30*time.Second { // the default: keep it short here
			timeout = versionServerTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := client.Dial(ctx, r.cf.addr, r.cf.token, client.WithCompression(!r.cf.noCompress))
		var v string
		if err == nil {
			v, err = c.Version(ctx)
			c.Close()
		}
		if err != nil {
			fmt.Fprintf(r.env.stderr, "sq version: server %s: %v\n", r.cf.addr, err)
		} else {
			a.Server, a.Addr = v, r.cf.addr
			text += "server: " + v + " at " + r.cf.addr + "\n"
		}
	}
	if err := r.emit(a, text); err != nil {
		return reportErr(r.env.stderr, "sq version", r.cf.addr, err)
	}
	return 0
}

// cmdVersion is not reached (runVersion runs before the dial); it keeps
// the command table uniform.
func cmdVersion(ctx context.Context, r *cmdRun) error { return nil }

func cmdList(ctx context.Context, r *cmdRun) error {
	names, err := r.c.List(ctx)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, n := range names {
		if n == "" {
			n = "(default)"
		}
		b.WriteString(n + "\n")
	}
	if names == nil {
		names = []string{}
	}
	return r.emit(struct {
		Phexts []string `json:"phexts"`
	}{names}, b.String())
}

func phextLabel(name string) string {
	if name == "" {
		return "(default)"
	}
	return name
}

func cmdCompact(ctx context.Context, r *cmdRun) error {
	if err := r.c.Compact(ctx, r.cf.phext); err != nil {
		return err
	}
	return r.emit(struct {
		Compacted string `json:"compacted"`
	}{r.cf.phext}, "Compacted "+phextLabel(r.cf.phext)+"\n")
}

func cmdReload(ctx context.Context, r *cmdRun) error {
	msg, err := r.c.Reload(ctx)
	if err != nil {
		return err
	}
	return r.emit(struct {
		Reloaded string `json:"reloaded"`
	}{msg}, msg+"\n")
}

func cmdPing(ctx context.Context, r *cmdRun) error {
	start := time.Now()
	if err := r.c.Ping(ctx); err != nil {
		return err
	}
	rtt := time.Since(start)
	return r.emit(struct {
		RTTMicros int64 `json:"rtt_us"`
	}{rtt.Microseconds()}, fmt.Sprintf("PONG from %s in %v\n", r.cf.addr, rtt.Round(time.Microsecond)))
}
