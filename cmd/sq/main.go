// Command sq is the SQ server, its command-line client and its tools in one
// binary. Run `sq help` for the list of commands.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one `sq` subcommand.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	m := map[string]command{
		"host":    {"run the server (see sq help host)", runHost},
		"phext":   {"offline phext tools: toc, checksum, explode, normalize, select", runPhext},
		"tenants": {"generate and edit tenant configs: gen, add, disable, list", runTenants},
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
	"version":  "print the server's version",
	"list":     "list the tenant's phexts",
	"compact":  "compact the phext's write-ahead log now",
	"reload":   "ask the server to reload its tenant config",
	"ping":     "check that the server answers",
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
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
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "sq: unknown command %q (try sq help)\n", args[0])
		return 2
	}
	return c.run(args[1:], stdout, stderr)
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
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nsq help <command> documents a command and its flags.")
}

func help(name string, stdout, stderr io.Writer) int {
	switch name {
	case "host":
		fs := hostFlags(stdout)
		fmt.Fprintln(stdout, "usage: sq host [flags]\n\nRuns the SQ server. Without --config it uses the embedded default:\n"+
			"./sq-data/tenants.json with one dev tenant, whose token it prints.\n\nflags:")
		fs.PrintDefaults()
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
