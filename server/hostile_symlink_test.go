package server_test

// Symlinks planted in a tenant's data dir.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phext/sq/protocol"
)

// TestSymlinkInDataDir plants symlinks inside a tenant's data dir that point
// outside it. The server must refuse to follow them: no read of the target
// and no write through it.
func TestSymlinkInDataDir(t *testing.T) {
	h := startHostile(t, hostileOpts{http: true})
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.txt")
	victim := filepath.Join(outside, "victim.txt")
	os.WriteFile(secret, []byte("top secret"), 0o600)
	os.WriteFile(victim, []byte("precious"), 0o600)
	dir := filepath.Join(h.dir, "data", "mallory")
	os.MkdirAll(dir, 0o750)
	must(t, os.Symlink(secret, filepath.Join(dir, "leak.phext")))
	os.WriteFile(filepath.Join(dir, "clobber.phext"), nil, 0o640)
	must(t, os.Symlink(victim, filepath.Join(dir, "clobber.phext.wal")))
	must(t, os.Symlink(outside, filepath.Join(dir, "sub")))
	c := h.dial(t, "mallory")
	var leaks []string
	for _, op := range []protocol.Op{protocol.OpGet, protocol.OpSelect, protocol.OpTOC} {
		r, err := c.do(op, "leak", c9(1), nil)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(r.Body, []byte("secret")) {
			leaks = append(leaks, fmt.Sprintf("%v returned the symlink target's bytes", op))
		}
	}
	req, _ := http.NewRequest("GET", "http://"+h.httpAddr+"/api/v2/get?p=leak", nil)
	req.Header.Set("Authorization", h.tokens["mallory"])
	if resp, err := http.DefaultClient.Do(req); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(b, []byte("secret")) {
			leaks = append(leaks, "REST get returned the symlink target's bytes")
		}
	}
	r, err := c.do(protocol.OpInsert, "clobber", c9(1), []byte("written through a symlink"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		leaks = append(leaks, fmt.Sprintf("INSERT (status %v) wrote through clobber.phext.wal into a file outside the data dir: now %q", r.Status, b))
	}
	if b, _ := os.ReadFile(secret); string(b) != "top secret" {
		leaks = append(leaks, "the secret file outside the data dir was changed")
	}
	if len(leaks) > 0 {
		msg := "BUG: store follows symlinks planted in a data dir (store/fs.go osFS.OpenFile uses os.OpenFile without O_NOFOLLOW; pfile.go mapSnapshot/replayWAL/createWAL): " + strings.Join(leaks, "; ")
		if os.Getenv("SQ_RELIABILITY_BUGS") == "" {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
}
