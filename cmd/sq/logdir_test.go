package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A --log-dir other than the default beside the config while the default
// dir holds records refuses the start instead of silently skipping them
// (their acknowledged writes would not be replayed).
func TestDefaultLogDirAndLegacy(t *testing.T) {
	if got := defaultLogDir("/etc/sq/sq.toml", "d"); got != "/etc/sq/sq-log" {
		t.Fatalf("defaultLogDir = %q", got)
	}
	etc := t.TempDir()
	config := filepath.Join(etc, "sq.toml")
	logDir := filepath.Join(t.TempDir(), "log")
	if err := checkLegacyLogDir(config, logDir); err != nil {
		t.Fatalf("no legacy dir: %v", err)
	}
	old := filepath.Join(etc, "sq-log")
	if err := os.MkdirAll(old, 0o750); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(old, "sq-0000000000000003-w.log")
	if err := os.WriteFile(f, make([]byte, 32), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := checkLegacyLogDir(config, logDir); err != nil {
		t.Fatalf("header-only legacy log (clean stop): %v", err)
	}
	if err := os.WriteFile(f, make([]byte, 100), 0o640); err != nil {
		t.Fatal(err)
	}
	err := checkLegacyLogDir(config, logDir)
	if err == nil || !strings.Contains(err.Error(), "--log-dir "+old) {
		t.Fatalf("legacy log with records: %v", err)
	}
	if err := checkLegacyLogDir(config, old); err != nil {
		t.Fatalf("--log-dir naming the legacy dir: %v", err)
	}
	if err := checkLegacyLogDir("", logDir); err != nil {
		t.Fatalf("no config: %v", err)
	}
}
