package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// Config is a tenant configuration file in the Rust SQ v0.5.5 format:
//
//	{"tenants": {"<token>": {"name": "founding-1", "data_dir": "/var/lib/sq/tenants/founding-1"}}}
//
// Per tenant, the optional fields quota_mb, enabled and durability extend
// that format; SQ ignores them. AdminToken may call the admin operations
// (RELOAD, POST /api/v2/reload, /admin, /metrics); MetricsToken may read
// GET /metrics only. Without them those operations are refused, unless the
// server trusts loopback (server.Options.TrustLoopback): no privilege comes from
// a source address by default.
type Config struct {
	Tenants      map[string]TenantEntry `json:"tenants"`
	AdminToken   string                 `json:"admin_token,omitempty"`
	MetricsToken string                 `json:"metrics_token,omitempty"`
}

// TenantEntry is one tenant of a Config, keyed by its API token.
type TenantEntry struct {
	Name    string `json:"name"`
	DataDir string `json:"data_dir"`
	// QuotaMB caps the tenant's stored bytes in MiB; 0 or absent means
	// unlimited.
	QuotaMB float64 `json:"quota_mb,omitempty"`
	// Enabled defaults to true when absent.
	Enabled *bool `json:"enabled,omitempty"`
	// Durability overrides the server's mode: "always", "everysec" or "no".
	Durability string `json:"durability,omitempty"`
}

// IsEnabled reports whether the tenant may connect (absent means yes).
func (e TenantEntry) IsEnabled() bool { return e.Enabled == nil || *e.Enabled }

// QuotaBytes returns the quota in bytes (0 = unlimited).
func (e TenantEntry) QuotaBytes() int64 { return int64(e.QuotaMB * (1 << 20)) }

// Parse decodes and validates a configuration.
func Parse(data []byte) (*Config, error) {
	c, ok := decodeConfigFast(data)
	if !ok {
		// Anything but the plain shape, and every malformed file, goes
		// through encoding/json: its behaviour and messages are the rule.
		c = Config{}
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	if c.Tenants == nil {
		return nil, fmt.Errorf("%w: no \"tenants\" object", ErrInvalid)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads, decodes and validates the configuration file at path.
// Relative data dirs are taken relative to the file's directory.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	defer f.Close()
	return loadConfigFrom(path, f)
}

func loadConfigFrom(path string, f *os.File) (*Config, error) {
	// One buffer of the file's size (plus one byte to see EOF): ReadAll
	// alone grows it from 512 bytes, copying a 1.3 MB config 12 times.
	var data []byte
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 && fi.Size() < 1<<30 {
		data = make([]byte, 0, fi.Size()+1)
	}
	data, err := readAll(f, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	base := filepath.Dir(path)
	for tok, e := range c.Tenants {
		if !filepath.IsAbs(e.DataDir) {
			e.DataDir = filepath.Join(base, e.DataDir)
			c.Tenants[tok] = e
		}
	}
	return c, nil
}

// readAll is io.ReadAll appending to buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// LoadServing is Load for the file a server serves, used at
// start and at every reload alike: unless allowWorldReadable, it refuses a
// file that every user may read (ErrWorldReadable), since it holds the
// tenants' tokens. The mode is taken from the opened file, so the check and
// the read see the same file even if it is replaced in between.
func LoadServing(path string, allowWorldReadable bool) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if fi.Mode().Perm()&0o004 != 0 && !allowWorldReadable {
		return nil, fmt.Errorf("%w: %s (mode %v) holds API tokens: chmod o-r it (sq tenants gen --out writes mode 0600), or pass --allow-world-readable-config for development",
			ErrWorldReadable, path, fi.Mode().Perm())
	}
	return loadConfigFrom(path, f)
}

// Validate refuses an empty token, an entry without a name or data dir, two
// entries with one name or one data dir, an unknown durability mode, and an
// admin or metrics token that is also a tenant's token (a tenant must never
// hold the admin's rights) or each other's. The error names the entry.
func (c *Config) Validate() error {
	for _, priv := range []struct{ field, tok string }{{"admin_token", c.AdminToken}, {"metrics_token", c.MetricsToken}} {
		if priv.tok == "" {
			continue
		}
		if len(priv.tok) > protocol.MaxTokenLen {
			return fmt.Errorf("%w: %s is over %d bytes", ErrInvalid, priv.field, protocol.MaxTokenLen)
		}
		if e, ok := c.Tenants[priv.tok]; ok {
			return fmt.Errorf("%w: %s is also the token of tenant %q", ErrInvalid, priv.field, e.Name)
		}
	}
	if c.AdminToken != "" && c.AdminToken == c.MetricsToken {
		return fmt.Errorf("%w: admin_token and metrics_token are the same", ErrInvalid)
	}
	// Whether an entry is refused does not depend on the order of the
	// checks, only which one the message names: check in map order, and
	// only when something is wrong again in name order, so the message is
	// the same at every run. (Sorting 10,000 tokens was a tenth of a
	// start.)
	if c.tenantsValid() {
		return nil
	}
	names := make(map[string]string, len(c.Tenants))
	dirs := make(map[string]string, len(c.Tenants))
	for _, tok := range c.SortedTokens() {
		e := c.Tenants[tok]
		if err := checkEntry(tok, e); err != nil {
			return err
		}
		if prev, ok := names[e.Name]; ok {
			return fmt.Errorf("%w: tenant name %q is used twice (tokens %s and %s)", ErrInvalid, e.Name, redact(prev), redact(tok))
		}
		names[e.Name] = tok
		dir := filepath.Clean(e.DataDir)
		if other, ok := dirs[dir]; ok {
			return fmt.Errorf("%w: tenants %q and %q share data_dir %s", ErrInvalid, c.Tenants[other].Name, e.Name, dir)
		}
		dirs[dir] = tok
		if err := checkEntryValues(e); err != nil {
			return err
		}
	}
	return nil
}

// tenantsValid reports whether every entry passes Validate's checks, in
// map order, with sets instead of the maps that name the first offender.
func (c *Config) tenantsValid() bool {
	names := make(map[string]struct{}, len(c.Tenants))
	dirs := make(map[string]struct{}, len(c.Tenants))
	for tok, e := range c.Tenants {
		if checkEntry(tok, e) != nil || checkEntryValues(e) != nil {
			return false
		}
		if _, ok := names[e.Name]; ok {
			return false
		}
		names[e.Name] = struct{}{}
		dir := filepath.Clean(e.DataDir)
		if _, ok := dirs[dir]; ok {
			return false
		}
		dirs[dir] = struct{}{}
	}
	return true
}

// checkEntry is Validate's check of an entry's token, name and data dir.
func checkEntry(tok string, e TenantEntry) error {
	if tok == "" {
		return fmt.Errorf("%w: tenant %q has an empty token", ErrInvalid, e.Name)
	}
	if len(tok) > protocol.MaxTokenLen {
		return fmt.Errorf("%w: tenant %q has a token over %d bytes", ErrInvalid, e.Name, protocol.MaxTokenLen)
	}
	if e.Name == "" {
		return fmt.Errorf("%w: the tenant with token %s has no name", ErrInvalid, redact(tok))
	}
	if e.DataDir == "" {
		return fmt.Errorf("%w: tenant %q has no data_dir", ErrInvalid, e.Name)
	}
	return nil
}

// checkEntryValues is Validate's check of an entry's durability and quota,
// made after the duplicate checks.
func checkEntryValues(e TenantEntry) error {
	if e.Durability != "" {
		if _, err := store.ParseDurability(e.Durability); err != nil {
			return fmt.Errorf("%w: tenant %q: %v", ErrInvalid, e.Name, err)
		}
	}
	if e.QuotaMB < 0 {
		return fmt.Errorf("%w: tenant %q has a negative quota_mb", ErrInvalid, e.Name)
	}
	return nil
}

// SortedTokens returns the tokens ordered by tenant name, for stable output.
func (c *Config) SortedTokens() []string {
	// Sorting (name, token) pairs costs no map lookup per comparison: at
	// 10,000 tenants that was most of a reload's CPU time.
	type pair struct{ name, tok string }
	ps := make([]pair, 0, len(c.Tenants))
	for t, e := range c.Tenants {
		ps = append(ps, pair{name: e.Name, tok: t})
	}
	slices.SortFunc(ps, func(a, b pair) int {
		if a.name != b.name {
			return strings.Compare(a.name, b.name)
		}
		return strings.Compare(a.tok, b.tok)
	})
	toks := make([]string, len(ps))
	for i, p := range ps {
		toks[i] = p.tok
	}
	return toks
}

// Marshal encodes the configuration as indented JSON.
func (c *Config) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteFile validates c and writes it to path with WriteFileAtomic, mode
// 0600 (it holds every token).
func WriteFile(path string, c *Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	data, err := c.Marshal()
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, data, 0o600)
}

// WriteFileAtomic writes data to path safely: a temporary file in the same
// directory, written and fsynced, given mode perm, then renamed over path,
// and the directory fsynced. A reader never sees half a file and a crash
// leaves either the old or the new one. The error names path.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// CreateTemp made the file 0600; perm may be wider (an HAProxy map).
		err = os.Chmod(tmp, perm)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// The rename is durable once the directory is: without this a crash
	// could bring back the old file after the caller was told it was saved.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// redact names a token in messages without revealing any of it: a short
// fingerprint of its digest, enough to tell entries apart.
func redact(tok string) string {
	d := sha256.Sum256([]byte(tok))
	return "token#" + hex.EncodeToString(d[:4])
}
