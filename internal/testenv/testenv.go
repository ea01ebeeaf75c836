// Package testenv builds what the server's tests run over: a tenants.json
// of named tenants with generated tokens in a temp dir, and the store their
// data dirs live in. Only _test.go files import it.
//
// It does not import package server, so that package server's own
// (internal) tests and server/httpapi's tests can both use it: a helper
// that imports server could not be imported by server's tests (an import
// cycle), and sqtest, which store's internal tests import, cannot import
// config (config imports store). Each suite starts its server over an Env
// (server.Start(env.Store, env.Cfg, …)) and stops it with Env.Stop.
package testenv

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/store"
)

// MetricsToken is the metrics_token of every Env's config.
const MetricsToken = "metrics-token-for-tests"

// Options says what Open builds. The zero value is tenants alpha and beta
// in mode always on the OS's file system.
type Options struct {
	// Tenants are the tenants' names; token i+1 of config.GenerateToken
	// goes to Tenants[i]. Empty means alpha and beta.
	Tenants []string
	// Durability is the store's mode; DurabilityDefault means always.
	Durability store.Durability
	// FS is the store's file system (nil: the OS).
	FS store.FS
	// LogKeep, when set, puts the commit log in Dir/log (so that
	// ReopenStore finds it) and is the store's LogKeepBytes.
	LogKeep int64
}

// Env is a tenants file and an open store in a temp dir.
type Env struct {
	Dir     string            // the temp dir: tenant data dirs are Dir/<name>
	CfgPath string            // Dir/tenants.json, holding Cfg
	Cfg     *config.Config    // the tenants and MetricsToken
	Store   *store.Store      // closed by Stop
	Tokens  map[string]string // tenant name → token
	sopts   store.Options     // what Open opened Store with
}

// Open writes the tenants file and opens the store; it fails t on error.
// The caller closes Store (Stop does, after its server).
func Open(t testing.TB, o Options) *Env {
	t.Helper()
	if len(o.Tenants) == 0 {
		o.Tenants = []string{"alpha", "beta"}
	}
	e := &Env{Dir: t.TempDir(), Tokens: map[string]string{}}
	e.Cfg = &config.Config{Tenants: map[string]config.TenantEntry{}, MetricsToken: MetricsToken}
	for i, name := range o.Tenants {
		tok, err := config.GenerateToken(i + 1)
		if err != nil {
			t.Fatal(err)
		}
		e.Tokens[name] = tok
		e.Cfg.Tenants[tok] = config.TenantEntry{Name: name, DataDir: filepath.Join(e.Dir, name)}
	}
	e.CfgPath = filepath.Join(e.Dir, "tenants.json")
	if err := config.WriteFile(e.CfgPath, e.Cfg); err != nil {
		t.Fatal(err)
	}
	dur := o.Durability
	if dur == store.DurabilityDefault {
		dur = store.DurabilityAlways
	}
	// Two loop logs, one per event loop of the server tests' default.
	e.sopts = store.Options{Durability: dur, Logger: QuietLogger(), FS: o.FS, LoopLogs: 2}
	if o.LogKeep != 0 {
		e.sopts.LogDir, e.sopts.LogKeepBytes = filepath.Join(e.Dir, "log"), o.LogKeep
	}
	so := e.sopts
	db, err := store.Open(&so)
	if err != nil {
		t.Fatal(err)
	}
	e.Store = db
	return e
}

// ReopenStore opens the store again after Stop, on the same dirs (with
// Options.LogKeep: the same commit log), with LogKeepBytes logKeep: a
// restart.
func (e *Env) ReopenStore(t testing.TB, logKeep int64) {
	t.Helper()
	e.sopts.LogKeepBytes = logKeep
	so := e.sopts
	db, err := store.Open(&so)
	if err != nil {
		t.Fatal(err)
	}
	e.Store = db
}

// LoadConfig reads the tenants file again (a server's Options.LoadConfig,
// for reloads).
func (e *Env) LoadConfig() (*config.Config, error) { return config.Load(e.CfgPath) }

// Shutdowner is a server that Stop can stop.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// Stop shuts srv down (10 s at most), then closes the store, and reports
// either's error on t.
func (e *Env) Stop(t testing.TB, srv Shutdowner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := e.Store.Close(); err != nil {
		t.Errorf("store close: %v", err)
	}
}

// ReopenTenant opens tenant name's data dir in a fresh store, closed when
// t ends (after Stop, to read what the server left on disk).
func (e *Env) ReopenTenant(t testing.TB, name string) *store.Tenant {
	t.Helper()
	db, err := store.Open(&store.Options{Logger: QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tn, err := db.AddTenant(store.TenantConfig{Name: name, DataDir: filepath.Join(e.Dir, name)})
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// QuietLogger discards what it is given, unless SQ_TEST_LOG is set: then it
// writes everything (debug and up) to stderr.
func QuietLogger() *slog.Logger {
	if os.Getenv("SQ_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// MustCoord parses s (phext.ParseCoordinate) and fails t if it does not.
func MustCoord(t testing.TB, s string) phext.Coordinate {
	t.Helper()
	c, err := phext.ParseCoordinate(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
