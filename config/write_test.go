package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFileAtomic: the file is replaced whole with the mode asked for,
// no temporary file is left behind, and a failure names the path.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backends.cfg")
	if err := os.WriteFile(path, []byte("old contents, longer than the new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "new" {
		t.Fatalf("contents %q, %v; want %q", got, err, "new")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, %v; want 0644", fi.Mode().Perm(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the file (a temp file left behind?)", len(ents))
	}
	missing := filepath.Join(dir, "no-such-dir", "x.cfg")
	if err := WriteFileAtomic(missing, []byte("x"), 0o600); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("write into a missing dir: %v; want an error naming %s", err, missing)
	}
}

// TestWriteFileValidatesAndHidesTokens: WriteFile refuses an invalid
// config without touching the file, and writes a valid one mode 0600.
func TestWriteFileValidatesAndHidesTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.json")
	bad := &Config{Tenants: map[string]TenantEntry{"": {Name: "x", DataDir: "/d"}}}
	if err := WriteFile(path, bad); err == nil {
		t.Fatal("an empty token was written")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a refused config left a file: %v", err)
	}
	good := &Config{Tenants: map[string]TenantEntry{"pmb-v1-001-abc": {Name: "a", DataDir: "a"}}}
	if err := WriteFile(path, good); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600 (the file holds every token)", fi.Mode().Perm(), err)
	}
	back, err := Load(path)
	if err != nil || back.Tenants["pmb-v1-001-abc"].DataDir != filepath.Join(filepath.Dir(path), "a") {
		t.Fatalf("Load after WriteFile: %+v, %v", back, err)
	}
}
