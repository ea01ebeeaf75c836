package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/protocol"
)

// TestHostTrustLoopback: sq host with --config trusts no address: RELOAD
// on a tenant connection from 127.0.0.1 is refused with AUTH and nothing
// warns. The embedded dev config trusts loopback and says so at start;
// --trust-loopback=false turns that off.
func TestHostTrustLoopback(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("child")
	}
	reload := func(addr, token string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, addr, token)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Reload(ctx)
		return err
	}
	devToken := func(h *hostChild) string {
		for _, l := range strings.Split(h.stdout.String(), "\n") {
			if tok, ok := strings.CutPrefix(l, "sq: dev tenant token: "); ok {
				return tok
			}
		}
		t.Fatalf("no dev token in %q", h.stdout.String())
		return ""
	}
	t.Run("config", func(t *testing.T) {
		cfgPath, tokens := killTenants(t, t.TempDir(), 1)
		h := startHost(t, "--config", cfgPath, "--listen", "127.0.0.1:0")
		defer h.kill()
		if err := reload(h.addr, tokens[0]); !client.IsStatus(err, protocol.StatusAuth) {
			t.Fatalf("tenant RELOAD from loopback: %v, want AUTH", err)
		}
		sqtest.CheckFor(t, 10*time.Second, "the start log line", func() bool {
			return strings.Contains(h.stderr.String(), "sq started")
		})
		if strings.Contains(h.stderr.String(), "trusting loopback") {
			t.Fatalf("warned about trust without it:\n%s", h.stderr.String())
		}
	})
	t.Run("dev default", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "sq-data")
		h := startHost(t, "--data", dir, "--listen", "127.0.0.1:0")
		defer h.kill()
		// stderr is copied by its own goroutine: it may lag stdout.
		sqtest.CheckFor(t, 10*time.Second, "the trust-loopback warning", func() bool {
			return strings.Contains(h.stderr.String(), "WARNING: trusting loopback")
		})
		if err := reload(h.addr, devToken(h)); err != nil {
			t.Fatalf("dev RELOAD: %v", err)
		}
	})
	t.Run("dev default turned off", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "sq-data")
		h := startHost(t, "--data", dir, "--listen", "127.0.0.1:0", "--trust-loopback=false")
		defer h.kill()
		if err := reload(h.addr, devToken(h)); !client.IsStatus(err, protocol.StatusAuth) {
			t.Fatalf("RELOAD with --trust-loopback=false: %v, want AUTH", err)
		}
	})
}
