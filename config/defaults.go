package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// GenerateToken returns a new API token of the form pmb-v1-NNN-<24 hex>,
// where NNN is index zero-padded to three digits, from crypto/rand.
func GenerateToken(index int) (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("pmb-v1-%03d-%s", index, hex.EncodeToString(b[:])), nil
}

// DefaultFileName is the file the embedded default keeps under its root.
const DefaultFileName = "tenants.json"

// EnsureDefault prepares the embedded default used when `sq host`
// runs without --config: root (created 0o750 if missing) holds
// tenants.json with one tenant named "dev" whose data dir is root/dev. The
// token is generated once and saved, so restarts keep it. It returns the
// config path and the dev tenant's token.
func EnsureDefault(root string) (path, token string, err error) {
	if err := os.MkdirAll(root, 0o750); err != nil {
		return "", "", err
	}
	path = filepath.Join(root, DefaultFileName)
	if _, err := os.Stat(path); err == nil {
		c, err := Load(path)
		if err != nil {
			return "", "", err
		}
		for _, tok := range c.SortedTokens() {
			if c.Tenants[tok].Name == "dev" {
				return path, tok, nil
			}
		}
		return path, "", nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", "", err
	}
	token, err = GenerateToken(0)
	if err != nil {
		return "", "", err
	}
	c := &Config{Tenants: map[string]TenantEntry{
		token: {Name: "dev", DataDir: "dev"},
	}}
	if err := WriteFile(path, c); err != nil {
		return "", "", err
	}
	return path, token, nil
}
