package server_test

// Many tiny scrolls in one phext.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// TestManyTinyScrolls stores many one-byte scrolls in one phext (long form:
// a million) through a pipelined connection and checks STATUS, CHECKSUM,
// TOC and GET, and that a restart reopens it.
func TestManyTinyScrolls(t *testing.T) {
	n := pick(20_000, 1_000_000)
	h := startHostile(t, hostileOpts{durability: store.DurabilityNo})
	c := h.dial(t, "alice")
	coordOf := func(i int) phext.Coordinate {
		return c9(uint16(i/(999*999)+1), uint16(i/999%999+1), uint16(i%999+1))
	}
	t0 := time.Now()
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			r, err := c.recv(60 * time.Second)
			if err != nil || r.Status != protocol.StatusOK {
				errc <- fmt.Errorf("reply %d: %v %v", i, err, r.Status)
				return
			}
		}
		errc <- nil
	}()
	bw := bufio.NewWriterSize(c.nc, 64<<10)
	var buf []byte
	for i := 0; i < n; i++ {
		buf = protocol.AppendRequest(buf[:0], protocol.OpInsert, uint32(i+2), []byte("tiny"), coordOf(i), []byte{'a' + byte(i%26)})
		bw.Write(buf)
	}
	bw.Flush()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	wrote := time.Since(t0)
	c.id = uint32(n + 2)
	stBody := c.must(t, protocol.StatusOK, protocol.OpStatus, "", phext.Origin, nil)
	si, err := protocol.DecodeStatusInfo(stBody)
	if err != nil || si.Scrolls < uint64(n) {
		t.Fatalf("status %+v %v", si, err)
	}
	t1 := time.Now()
	sum := c.must(t, protocol.StatusOK, protocol.OpChecksum, "tiny", phext.Origin, nil)
	tsum := time.Since(t1)
	t1 = time.Now()
	doc := c.must(t, protocol.StatusOK, protocol.OpGet, "tiny", phext.Origin, nil)
	tget := time.Since(t1)
	toc := c.must(t, protocol.StatusOK, protocol.OpTOC, "tiny", phext.Origin, nil)
	if phext.Checksum(doc) != string(sum) || bytes.Count(toc, []byte("\n")) != n {
		t.Fatalf("checksum/TOC mismatch: %d TOC lines", bytes.Count(toc, []byte("\n")))
	}
	// Restart: close and reopen the store (compaction on close folds it).
	h.stop()
	t1 = time.Now()
	db, err := store.Open(&store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ten, err := db.AddTenant(store.TenantConfig{Name: "alice", DataDir: filepath.Join(h.dir, "data", "alice")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ten.AppendChecksum(nil, []byte("tiny"))
	if err != nil || string(got) != string(sum) {
		t.Fatalf("after restart: %s %v", got, err)
	}
	t.Logf("%d scrolls: written in %v (%.0f/s pipelined), CHECKSUM %v, GET %v (%d B), reopen+checksum %v",
		n, wrote.Round(time.Millisecond), float64(n)/wrote.Seconds(), tsum.Round(time.Microsecond), tget.Round(time.Microsecond), len(doc), time.Since(t1).Round(time.Millisecond))
}
