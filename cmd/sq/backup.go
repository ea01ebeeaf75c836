package main

// sq backup / sq restore: a copy of a tenant's phexts taken over the
// protocol while the server runs, and its way back.
//
// Each phext is fetched with one GET, which the server answers from a
// single committed state of that phext, so every file of a backup is a
// consistent document even under concurrent writes. The backup is not a
// point in time across phexts: for that, disable the tenant, copy, enable
// (docs/OPERATIONS.md).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
)

// backupManifest is the file in a backup directory that lists each phext
// file with its checksum, in the format of sha256sum: "<32 hex>  <file>".
const backupManifest = "CHECKSUMS"

// errBackupUsage marks a usage error (exit status 2).
var errBackupUsage = errors.New("usage")

// backupFile returns the file name of phext name in a backup: the same
// names the store uses on disk ("<name>.phext", the default phext ".phext").
func backupFile(name string) string { return name + ".phext" }

type backupOpts struct {
	addr, token string
	phexts      string
	timeout     time.Duration
	force       bool
}

func backupFlags(cmd string, out io.Writer) (*flag.FlagSet, *backupOpts) {
	o := &backupOpts{}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(out)
	addr := os.Getenv("SQ_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	fs.StringVar(&o.addr, "addr", addr, "server address host:port (env SQ_ADDR)")
	fs.StringVar(&o.token, "token", os.Getenv("SQ_TOKEN"), "tenant API token (env SQ_TOKEN)")
	fs.StringVar(&o.phexts, "phexts", "", "comma-separated phext names to include (default: all; \"(default)\" is the default phext)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	if cmd == "backup" {
		fs.BoolVar(&o.force, "force", false, "write into a directory that already holds a backup")
	}
	return fs, o
}

const backupUsage = `usage: sq backup [--addr A] [--token T] [--phexts a,b] <dir>

Copies the tenant's phexts into <dir> while the server runs: LIST, then one
GET per phext (each GET is a consistent snapshot of that phext), checked
against the server's CHECKSUM and retried if a write landed in between.
Files are "<name>.phext" (the default phext is ".phext", as in a data dir),
each written to a temporary file and renamed; CHECKSUMS lists them in
sha256sum format ("<xxh3-128>  <file>"). Exit status 0 only when every
phext was copied and verified.

flags:
`

const restoreUsage = `usage: sq restore [--addr A] [--token T] [--phexts a,b] <dir>

Puts the phexts of a backup made by sq backup back on the server: first
every file is checked against CHECKSUMS (nothing is sent if one fails),
then each is sent with PUT (replacing that phext whole) and the server's
CHECKSUM is compared with the backup's. Phexts of the tenant that are not
in the backup are left alone.

flags:
`

// runBackup runs `sq backup`.
func runBackup(args []string, stdout, stderr io.Writer) int {
	fs, o := backupFlags("backup", stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), backupUsage); fs.PrintDefaults() }
	dir, code := parseBackupArgs(fs, o, args, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	err := backupTenant(ctx, o, dir, stdout)
	return backupExit(stderr, "sq backup", err)
}

// runRestore runs `sq restore`.
func runRestore(args []string, stdout, stderr io.Writer) int {
	fs, o := backupFlags("restore", stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), restoreUsage); fs.PrintDefaults() }
	dir, code := parseBackupArgs(fs, o, args, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	err := restoreTenant(ctx, o, dir, stdout)
	return backupExit(stderr, "sq restore", err)
}

// parseBackupArgs returns the directory argument, or an exit code ≥ 0.
func parseBackupArgs(fs *flag.FlagSet, o *backupOpts, args []string, stderr io.Writer) (string, int) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", 0
		}
		return "", 2
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "sq %s: want one directory argument, got %d\n", fs.Name(), len(pos))
		return "", 2
	}
	if o.token == "" {
		fmt.Fprintf(stderr, "sq %s: no token: pass --token or set SQ_TOKEN\n", fs.Name())
		return "", 2
	}
	return pos[0], -1
}

func backupExit(stderr io.Writer, prefix string, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
	if errors.Is(err, errBackupUsage) {
		return 2
	}
	return 1
}

// phextFilter parses --phexts; nil means all.
func phextFilter(s string) (map[string]bool, error) {
	if s == "" {
		return nil, nil
	}
	m := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "(default)" {
			n = ""
		} else if !phext.ValidName([]byte(n)) {
			return nil, fmt.Errorf("%w: --phexts: bad phext name %q", errBackupUsage, n)
		}
		m[n] = true
	}
	return m, nil
}

func phextDisplay(n string) string {
	if n == "" {
		return "(default)"
	}
	return n
}

// backupTenant writes every selected phext of the tenant into dir.
func backupTenant(ctx context.Context, o *backupOpts, dir string, stdout io.Writer) error {
	want, err := phextFilter(o.phexts)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, backupManifest)); err == nil && !o.force {
		return fmt.Errorf("%w: %s already holds a backup (%s); use another directory or --force",
			errBackupUsage, dir, backupManifest)
	}
	c, err := client.Dial(ctx, o.addr, o.token)
	if err != nil {
		return err
	}
	defer c.Close()
	names, err := c.List(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	var manifest []byte
	total := 0
	for _, name := range names {
		if want != nil && !want[name] {
			continue
		}
		doc, sum, err := getVerified(ctx, c, name)
		if err != nil {
			return fmt.Errorf("phext %s: %w", phextDisplay(name), err)
		}
		file := backupFile(name)
		if err := config.WriteFileAtomic(filepath.Join(dir, file), doc, 0o640); err != nil {
			return err
		}
		manifest = fmt.Appendf(manifest, "%s  %s\n", sum, file)
		total += len(doc)
		fmt.Fprintf(stdout, "%s\t%d bytes\t%s\n", phextDisplay(name), len(doc), sum)
	}
	// The manifest goes last: a backup without it is incomplete.
	if err := config.WriteFileAtomic(filepath.Join(dir, backupManifest), manifest, 0o640); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	fmt.Fprintf(stdout, "backed up %d phexts, %d bytes, to %s\n", bytes.Count(manifest, []byte{'\n'}), total, dir)
	return nil
}

// getVerified GETs a phext and checks it against the server's CHECKSUM. A
// write between the two makes them differ; it then tries again.
func getVerified(ctx context.Context, c *client.Conn, name string) ([]byte, string, error) {
	const tries = 5
	for i := 0; ; i++ {
		doc, err := c.Get(ctx, name)
		if err != nil {
			return nil, "", err
		}
		local := phext.Checksum(doc)
		remote, err := c.Checksum(ctx, name)
		if err != nil {
			return nil, "", err
		}
		if local == remote {
			return doc, local, nil
		}
		if i == tries-1 {
			return nil, "", fmt.Errorf("still changing after %d tries (GET checksum %s, server %s); retry when writes calm down",
				tries, local, remote)
		}
	}
}

// backupEntry is one line of a manifest.
type backupEntry struct {
	sum, file, name string
}

// parseManifest parses the CHECKSUMS file of a backup. Every line must be
// "<32 hex>  <name>.phext" with a valid phext name (so no path can escape
// the backup directory); it keeps the entries want selects (nil: all),
// sorted by phext name.
func parseManifest(data []byte, want map[string]bool) ([]backupEntry, error) {
	var ents []backupEntry
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		sum, file, ok := strings.Cut(sc.Text(), "  ")
		name, isPhext := strings.CutSuffix(file, ".phext")
		if !ok || !isHex32(sum) || !isPhext || (name != "" && !phext.ValidName([]byte(name))) {
			return nil, fmt.Errorf("%s line %d: want \"<32 hex>  <name>.phext\", got %q", backupManifest, line, sc.Text())
		}
		if seen[name] {
			return nil, fmt.Errorf("%s line %d: %s listed twice", backupManifest, line, file)
		}
		seen[name] = true
		if want == nil || want[name] {
			ents = append(ents, backupEntry{sum: sum, file: file, name: name})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", backupManifest, err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].name < ents[j].name })
	return ents, nil
}

func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// readBackup reads and verifies the manifest and every file it names. It
// returns the entries and the documents, or the first problem.
func readBackup(dir string, want map[string]bool) ([]backupEntry, [][]byte, error) {
	data, err := os.ReadFile(filepath.Join(dir, backupManifest))
	if err != nil {
		return nil, nil, fmt.Errorf("%s is not a complete backup: %w", dir, err)
	}
	ents, err := parseManifest(data, want)
	if err != nil {
		return nil, nil, err
	}
	docs := make([][]byte, len(ents))
	for i, e := range ents {
		doc, err := os.ReadFile(filepath.Join(dir, e.file))
		if err != nil {
			return nil, nil, err
		}
		if got := phext.Checksum(doc); got != e.sum {
			return nil, nil, fmt.Errorf("%s: checksum %s, the manifest says %s (file damaged?)", e.file, got, e.sum)
		}
		docs[i] = doc
	}
	return ents, docs, nil
}

// restoreTenant PUTs every selected phext of the backup in dir.
func restoreTenant(ctx context.Context, o *backupOpts, dir string, stdout io.Writer) error {
	want, err := phextFilter(o.phexts)
	if err != nil {
		return err
	}
	ents, docs, err := readBackup(dir, want)
	if err != nil {
		return err
	}
	c, err := client.Dial(ctx, o.addr, o.token)
	if err != nil {
		return err
	}
	defer c.Close()
	for i, e := range ents {
		if _, err := c.Put(ctx, e.name, docs[i]); err != nil {
			return fmt.Errorf("phext %s: %w (%d of %d phexts restored)", phextDisplay(e.name), err, i, len(ents))
		}
		sum, err := c.Checksum(ctx, e.name)
		if err != nil {
			return fmt.Errorf("phext %s: %w", phextDisplay(e.name), err)
		}
		if sum != e.sum {
			return fmt.Errorf("phext %s: the server's checksum after PUT is %s, the backup's %s", phextDisplay(e.name), sum, e.sum)
		}
		fmt.Fprintf(stdout, "%s\t%d bytes\t%s\n", phextDisplay(e.name), len(docs[i]), sum)
	}
	fmt.Fprintf(stdout, "restored %d phexts from %s\n", len(ents), dir)
	return nil
}
