package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/phext/sq/phext"
)

const phextUsage = `usage: sq phext <tool> [COORD] FILE

Offline tools on a phext file (no server). Output equals SQ 0.5.6 / libphext
0.3.0 on the same file, except that documents they would silently damage are
refused (see docs/PHEXT.md).

tools:
  toc FILE          table of contents, as SQ's toc of the loaded file
  checksum FILE     xxh3-128 of the document as SQ writes it (32 hex digits)
  explode FILE      JSON lines {"coord": "...", "scroll": "..."} in document order
  normalize FILE    the document with minimal breaks, to stdout
  select COORD FILE the scroll at COORD (L.S.R/C.V.B/Ch.Sn.Sc, '/' or ';'), to stdout,
                    coordinate first as in sq select (FILE COORD is accepted too)

Exit status: 0 ok, 1 error (missing file, bad coordinate, invalid UTF-8, a
coordinate part past 999), 2 bad usage.
`

// runPhext runs `sq phext <tool> ...`. Errors go to stderr as one line.
func runPhext(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sq phext", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), phextUsage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, phextUsage)
			return 0
		}
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	tool, rest := rest[0], rest[1:]
	want := 1
	switch tool {
	case "toc", "checksum", "explode", "normalize":
	case "select":
		want = 2
	default:
		fmt.Fprintf(stderr, "sq phext: unknown tool %q%s\n", tool,
			didYouMean(tool, []string{"toc", "checksum", "explode", "normalize", "select"}))
		fs.Usage()
		return 2
	}
	if len(rest) != want {
		fmt.Fprintf(stderr, "sq phext %s: want %d argument(s), got %d\n", tool, want, len(rest))
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "sq phext %s: %v\n", tool, err)
		return 1
	}
	var coord phext.Coordinate
	path := rest[0]
	if tool == "select" {
		c, err := selectArgs(rest[0], rest[1], &path)
		if err != nil {
			return fail(err)
		}
		coord = c
	}
	doc, err := readPhextFile(path)
	if err != nil {
		return fail(err)
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	switch tool {
	case "toc":
		scrolls, err := phext.Explode(doc)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", path, err))
		}
		_, _ = w.Write(phext.AppendTOC(nil, scrolls))
	case "checksum":
		norm, err := phext.Normalize(doc)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", path, err))
		}
		_, _ = w.Write(phext.AppendChecksum(nil, norm))
		_ = w.WriteByte('\n')
	case "normalize":
		norm, err := phext.Normalize(doc)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", path, err))
		}
		_, _ = w.Write(norm)
	case "explode":
		// The reference explode, empty token included.
		all, err := phext.ExplodeRef(doc)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", path, err))
		}
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, s := range all {
			if err := enc.Encode(explodeLine{Coord: s.Coord.String(), Scroll: string(s.Text)}); err != nil {
				return fail(err)
			}
		}
	case "select":
		text, err := phext.Select(doc, coord)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", path, err))
		}
		_, _ = w.Write(text)
		if len(text) > 0 && text[len(text)-1] != '\n' && isTerminal(stdout) {
			_ = w.WriteByte('\n')
		}
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	return 0
}

// selectArgs reads the arguments of `sq phext select`: COORD FILE, like
// `sq select COORD`, or the older FILE COORD. It sets *path to the file.
func selectArgs(a, b string, path *string) (phext.Coordinate, error) {
	c, err := phext.ParseCoordinate(a)
	if err == nil {
		*path = b
		return c, nil
	}
	c, err2 := phext.ParseCoordinate(b)
	if err2 == nil {
		*path = a
		return c, nil
	}
	if _, serr := os.Stat(a); serr == nil {
		// FILE COORD with a bad COORD.
		return c, fmt.Errorf("bad coordinate %q: %w (want the form 1.1.1/1.1.1/1.1.1)", b, err2)
	}
	return c, fmt.Errorf("bad coordinate %q: %w (usage: sq phext select COORD FILE, COORD like 1.1.1/1.1.1/1.1.1)", a, err)
}

// explodeLine is one line of `sq phext explode`.
type explodeLine struct {
	Coord  string `json:"coord"`
	Scroll string `json:"scroll"`
}

// readPhextFile reads a phext file and refuses invalid UTF-8 (SQ would load
// such a file as an empty phext and overwrite it on the next write).
func readPhextFile(name string) ([]byte, error) {
	doc, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(doc) {
		return nil, fmt.Errorf("%s: not valid UTF-8 (first bad byte at offset %d)", name, len(phextValidPrefix(doc)))
	}
	return doc, nil
}

// phextValidPrefix returns the longest valid UTF-8 prefix of b.
func phextValidPrefix(b []byte) []byte {
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		i += n
	}
	return b[:i]
}
