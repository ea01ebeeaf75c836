package main

import (
	"flag"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/phext/sq/config"
	"github.com/phext/sq/server"
	"github.com/phext/sq/server/httpapi"
	"github.com/phext/sq/store"
)

// zeroNotDefault lists the numeric flags of sq host whose 0 is not their
// default, with what 0 does instead (each flag's help says it). Every
// other numeric flag given 0 takes its default: the one rule `sq help
// host` and docs/OPERATIONS.md ("Flags") state.
var zeroNotDefault = map[string]string{
	"log-keep":       "keeps no old log files",
	"hello-rate":     "turns pacing off",
	"bad-frame-rate": "turns the limit off",
	"refusal-rate":   "turns the budget off",
	"hello-burst":    "is refused at start",
	"refusal-burst":  "is refused at start",
}

// TestHostZeroFlagMeansDefault: each numeric flag of sq host given 0
// makes the server, the REST port and the drain what leaving it out
// makes them (--max-conns 0 is 20,000, --http-max-conns 0 4,096,
// --shutdown-timeout 0 30 s), except the flags of zeroNotDefault.
func TestHostZeroFlagMeansDefault(t *testing.T) {
	parse := func(args ...string) hostConfig {
		t.Helper()
		if err := hostFlags(io.Discard).Parse(args); err != nil {
			t.Fatal(err)
		}
		return hostCfg
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(&store.Options{LogDir: filepath.Join(t.TempDir(), "log"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// What the server makes of the options the flags give (its
	// defaults filled in), without listening.
	effective := func(c hostConfig) server.Options {
		t.Helper()
		so := c.serverOptions()
		so.Logger = quiet
		srv, err := server.New(db, &config.Config{Tenants: map[string]config.TenantEntry{}}, &so)
		if err != nil {
			t.Fatal(err)
		}
		o := srv.Options()
		o.Logger = nil
		return o
	}
	def := parse()
	defOpts := effective(def)
	if def.httpMaxConns != httpapi.DefaultMaxConns {
		t.Errorf("--http-max-conns default %d, httpapi's %d", def.httpMaxConns, httpapi.DefaultMaxConns)
	}
	var names []string
	hostFlags(io.Discard).VisitAll(func(f *flag.Flag) {
		switch f.Value.(flag.Getter).Get().(type) {
		case int, int64, float64, time.Duration:
			if zeroNotDefault[f.Name] == "" {
				names = append(names, f.Name)
			}
		}
	})
	if len(names) < 20 {
		t.Fatalf("only %d numeric flags found: %q", len(names), names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			z := parse("--"+name, "0")
			if o := effective(z); !reflect.DeepEqual(o, defOpts) {
				t.Errorf("server options with --%s 0:\n%+v\nwithout it:\n%+v", name, o, defOpts)
			}
			// The REST port reads MaxConns 0 as DefaultMaxConns
			// (httpapi's TestRESTMaxConnsZeroIsDefault).
			if z.httpMaxConns != def.httpMaxConns && z.httpMaxConns != 0 {
				t.Errorf("--http-max-conns %d with --%s 0", z.httpMaxConns, name)
			}
			if z.drainDeadline() != def.drainDeadline() {
				t.Errorf("drain deadline %v with --%s 0, %v without", z.drainDeadline(), name, def.drainDeadline())
			}
			if planFDs(z.maxOpen, 100).maxOpen != planFDs(def.maxOpen, 100).maxOpen {
				t.Errorf("--max-open-phexts plan differs with --%s 0", name)
			}
		})
	}
}
