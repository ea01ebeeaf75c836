package server_test

// Name attacks: phext names that must never reach the file system, over the
// binary protocol and REST.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phext/sq/protocol"
)

// badNames are phext names that must never reach the file system.
var badNames = []string{
	"..", "../x", "../../etc/passwd", "/etc/passwd", "a/b", `a\b`, ".", ".hidden",
	"a\x00b", "\x00", "x\n", "a b", "ü", "%2e%2e", "x*", strings.Repeat("n", 65), "CON:", "a\x17b",
}

// TestNameAttacksBinary sends every bad name with every operation taking a
// name: BAD_NAME, and nothing appears anywhere on disk.
func TestNameAttacksBinary(t *testing.T) {
	h := startHostile(t, hostileOpts{})
	c := h.dial(t, "mallory")
	c.must(t, protocol.StatusOK, protocol.OpInsert, "legit", c9(1), []byte("x"))
	before := treeOf(t, h.dir)
	ops := []protocol.Op{protocol.OpSelect, protocol.OpInsert, protocol.OpUpdate, protocol.OpDelete,
		protocol.OpTOC, protocol.OpGet, protocol.OpPut, protocol.OpChecksum, protocol.OpDelta, protocol.OpCompact}
	for _, name := range badNames {
		for _, op := range ops {
			if len(name) > 64 {
				// A name length over 64 is a malformed body.
				r, err := c.do(op, name, c9(1), []byte("x"))
				if err != nil {
					t.Fatalf("%v %q: %v", op, name, err)
				}
				if r.Status != protocol.StatusBadName && r.Status != protocol.StatusBadFrame {
					t.Errorf("%v %q: status %v", op, name, r.Status)
				}
				continue
			}
			c.must(t, protocol.StatusBadName, op, name, c9(1), []byte("x"))
		}
	}
	if after := treeOf(t, h.dir); !maps2Equal(before, after) {
		t.Fatalf("files changed:\n before %v\n after  %v", before, after)
	}
}

// TestNameAttacksREST does the same through the REST API (403, nothing on
// disk), with the name raw and percent-encoded.
func TestNameAttacksREST(t *testing.T) {
	h := startHostile(t, hostileOpts{http: true})
	before := treeOf(t, h.dir)
	routes := []string{"select", "insert", "update", "delete", "toc", "get", "checksum", "delta", "load", "status", "json-export"}
	for _, name := range badNames {
		for _, rt := range routes {
			for _, q := range []string{url.QueryEscape(name), strings.ReplaceAll(name, "\x00", "%00")} {
				target := "http://" + h.httpAddr + "/api/v2/" + rt + "?p=" + q + "&c=1.1.1/1.1.1/1.1.1&s=x"
				req, err := http.NewRequest("GET", target, nil)
				if err != nil {
					continue // not even a URL: the client refuses it
				}
				req.Header.Set("Authorization", "Bearer "+h.tokens["mallory"])
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Logf("%s p=%q: the HTTP client refused to send it: %v", rt, q, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusBadRequest {
					t.Errorf("%s p=%q: %d %s", rt, q, resp.StatusCode, body)
				}
			}
		}
	}
	if after := treeOf(t, h.dir); !maps2Equal(before, after) {
		t.Fatalf("files changed:\n before %v\n after  %v", before, after)
	}
}

// treeOf lists every file under root with its size.
func treeOf(t testing.TB, root string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasSuffix(p, "tenants.json") {
			m[p] = fi.Size()
		}
		return nil
	})
	return m
}

func maps2Equal(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
