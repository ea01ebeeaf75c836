package server_test

// Quota abuse: writes past the quota, racing writers.
// Part of the live reliability suite; the harness is hostile_test.go.

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// TestQuotaAbuse: a tenant writes until its quota; the refused writes are
// QUOTA, store nothing partial, and other tenants are unaffected; concurrent
// writers racing to the quota never overshoot it.
func TestQuotaAbuse(t *testing.T) {
	const quotaMB = 0.25 // 262144 bytes
	quota := int(quotaMB * mib)
	h := startHostile(t, hostileOpts{quotaMB: map[string]float64{"mallory": quotaMB}})
	const writers = 8
	const size = 1000
	var acked atomic.Int64
	var quotaN atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		c := h.dial(t, "mallory")
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := bytes.Repeat([]byte{byte('a' + w)}, size)
			for i := 0; ; i++ {
				r, err := c.do(protocol.OpInsert, "q", c9(uint16(w+1), uint16(i%999+1)), text)
				if err != nil {
					t.Error(err)
					return
				}
				if r.Status == protocol.StatusQuota {
					quotaN.Add(1)
					if quotaN.Load() > 4*writers {
						return
					}
					continue
				}
				if r.Status != protocol.StatusOK {
					t.Errorf("status %v %s", r.Status, r.Body)
					return
				}
				acked.Add(size)
			}
		}()
	}
	// Meanwhile bob writes without noticing.
	bob := h.dial(t, "bob")
	for i := 0; i < 50; i++ {
		bob.must(t, protocol.StatusOK, protocol.OpInsert, "", c9(1), []byte("bob writes; "))
	}
	wg.Wait()
	c := h.dial(t, "mallory")
	doc := c.must(t, protocol.StatusOK, protocol.OpGet, "q", phext.Origin, nil)
	var sc phext.Scanner
	sc.Reset(doc)
	var stored int
	for sc.Next() {
		s := sc.Scroll()
		if len(s)%size != 0 || len(bytes.Trim(s, string(s[:1]))) != 0 {
			t.Fatalf("a partial or mixed scroll at %v: %d bytes", sc.Coordinate(), len(s))
		}
		stored += len(s)
	}
	t.Logf("quota %d B: %d B acknowledged and stored, %d QUOTA answers", quota, acked.Load(), quotaN.Load())
	// The quota charges each scroll store.ScrollCost on top of its text.
	charged := stored / size * (size + store.ScrollCost)
	if int64(stored) != acked.Load() || charged > quota || charged < quota-writers*(size+store.ScrollCost) {
		t.Fatalf("stored %d, acknowledged %d, quota %d", stored, acked.Load(), quota)
	}
	// A Put over the quota and an Update that grows a scroll are refused
	// whole; a write that shrinks usage still works.
	before := c.must(t, protocol.StatusOK, protocol.OpChecksum, "q", phext.Origin, nil)
	c.must(t, protocol.StatusQuota, protocol.OpPut, "other", phext.Origin, bytes.Repeat([]byte("p"), quota))
	c.must(t, protocol.StatusQuota, protocol.OpUpdate, "q", c9(1, 1), bytes.Repeat([]byte("u"), 3*size))
	if after := c.must(t, protocol.StatusOK, protocol.OpChecksum, "q", phext.Origin, nil); !bytes.Equal(before, after) {
		t.Fatal("a refused write changed the phext")
	}
	c.must(t, protocol.StatusOK, protocol.OpDelete, "q", c9(1, 1), nil)
	c.must(t, protocol.StatusOK, protocol.OpInsert, "q", c9(1, 1), []byte("fits again"))
	if got := bob.must(t, protocol.StatusOK, protocol.OpSelect, "", c9(1), nil); len(got) != 50*len("bob writes; ") {
		t.Fatalf("bob's scroll: %d bytes", len(got))
	}
}

// oneByteScrolls is a document of sections × 999 one-byte scrolls
// (sections ≤ 999).
func oneByteScrolls(sections int) []byte {
	sec := append(bytes.Repeat([]byte{'x', phext.ScrollBreak}, 998), 'x', phext.SectionBreak)
	return bytes.Repeat(sec, sections)
}

// TestPutOverQuotaRefusedWhileArriving is issue 13's M4 on the wire: a
// large PUT whose document is charged more than the tenant's whole quota
// is answered QUOTA as soon as enough of it has arrived, before the
// client has sent the rest; the rest is dropped as it arrives, the
// connection goes on, and the stored phext is unchanged. On the old code
// the server received the whole frame (60 MB in the attack, copied into
// a mapping on an event loop) before the store refused it, so no reply
// came while the frame was incomplete. A PUT that fits the quota, in the
// same large-frame path, is still stored.
func TestPutOverQuotaRefusedWhileArriving(t *testing.T) {
	h := startHostile(t, hostileOpts{quotaMB: map[string]float64{"mallory": 1}})
	c := h.dial(t, "mallory")
	// Fits: 200 scrolls of 4,000 bytes (800 KB of text and 12.8 KB of
	// scroll cost in a 1 MiB quota), a frame above the 64 KiB of the
	// large-frame path.
	fits := bytes.Repeat(append(bytes.Repeat([]byte("f"), 4000), phext.ScrollBreak), 200)
	c.must(t, protocol.StatusOK, protocol.OpPut, "dots", phext.Origin, fits)
	before := c.must(t, protocol.StatusOK, protocol.OpChecksum, "dots", phext.Origin, nil)
	memBefore := h.srv.Memory().Used

	// 16 MiB declared; 1 MB of one-byte scrolls (~33 MB charged) sent.
	const declared = 16 << 20
	sent := startOverQuotaPut(t, c, "dots", declared)
	// The rest of the frame, whatever it holds, is dropped.
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(bytes.Repeat([]byte("x"), declared-sent)); err != nil {
		t.Fatal(err)
	}
	if after := c.must(t, protocol.StatusOK, protocol.OpChecksum, "dots", phext.Origin, nil); !bytes.Equal(before, after) {
		t.Fatal("the refused PUT changed the phext")
	}
	if got := c.must(t, protocol.StatusOK, protocol.OpGet, "dots", phext.Origin, nil); !bytes.Equal(got, fits[:len(fits)-1]) {
		t.Fatalf("stored %d bytes, want the %d put before", len(got), len(fits)-1)
	}
	// What the frame reserved at its header (16 MiB) is given back; its
	// mapping may stay idle for the next large frame (framepool.go),
	// counted apart.
	sqtest.CheckFor(t, 5*time.Second, "the refused frame's reservation released", func() bool {
		m := h.srv.Memory()
		return m.Used-m.FrameBytesIdle <= memBefore+1<<20
	})
}

// startOverQuotaPut sends the header of a PUT of name declaring a
// document of declared bytes, and its first MB of one-byte scrolls
// (~33 MB charged, past a quota of 1 MB), then reads its QUOTA, which
// must come while the rest is unsent. It returns the bytes of the frame
// sent after the header.
func startOverQuotaPut(t *testing.T, c *pconn, name string, declared int) int {
	t.Helper()
	prefix := oneByteScrolls(500)
	c.id++
	frame := protocol.AppendRequestHeader(nil, protocol.OpPut, c.id, []byte(name), phext.Origin, declared)
	frame = append(frame, prefix...)
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	r, err := c.recv(5 * time.Second)
	if err != nil {
		t.Fatalf("no reply while the rest of the over-quota PUT was unsent: %v", err)
	}
	if r.Status != protocol.StatusQuota || r.ID != c.id {
		t.Fatalf("reply %v id %d (%s), want QUOTA for id %d", r.Status, r.ID, r.Body, c.id)
	}
	return len(prefix)
}

// TestPutRefusedWhileArrivingSplits: the frames around a large PUT that
// is refused QUOTA while it arrives (feaf87d) are parsed from the right
// byte wherever the reads cut the stream: a PING before it and one after
// it are answered in order, for cuts at every offset of the PUT's header,
// name (64 bytes, the longest) and coordinate, around the point where the
// quota check refuses it, and at every offset of the boundary with the
// next frame; the stored phext is unchanged after every refusal. Written
// in review; it passes on feaf87d.
func TestPutRefusedWhileArrivingSplits(t *testing.T) {
	h := startHostile(t, hostileOpts{quotaMB: map[string]float64{"mallory": 1}})
	c := h.dial(t, "mallory")
	name := bytes.Repeat([]byte("n"), phext.MaxNameLen)
	c.must(t, protocol.StatusOK, protocol.OpPut, string(name), phext.Origin, []byte("kept"))
	before := c.must(t, protocol.StatusOK, protocol.OpChecksum, string(name), phext.Origin, nil)
	// 80 KB of one-byte scrolls (above the 64 KiB of the large-frame
	// path), charged 2.6 MB: refused about 32 KB in.
	put := protocol.AppendRequest(nil, protocol.OpPut, 2, name, phext.Origin, oneByteScrolls(40))
	ping1 := protocol.AppendRequest(nil, protocol.OpPing, 1, nil, phext.Origin, nil)
	ping3 := protocol.AppendRequest(nil, protocol.OpPing, 3, nil, phext.Origin, nil)
	stream := append(append(append([]byte(nil), ping1...), put...), ping3...)
	start, end := len(ping1), len(ping1)+len(put)
	var cuts []int
	for k := start - 2; k <= start+protocol.RequestSize(len(name), 0)+2; k++ {
		cuts = append(cuts, k)
	}
	for k := 30_000; k <= 36_000; k += 250 { // where the check refuses it
		cuts = append(cuts, start+k)
	}
	for k := end - 3; k <= end+protocol.HeaderSize+2; k++ {
		cuts = append(cuts, k)
	}
	nc := c.nc.(*net.TCPConn)
	nc.SetNoDelay(true)
	for _, cut := range cuts {
		nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(stream[:cut]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // most often read apart
		if _, err := nc.Write(stream[cut:]); err != nil {
			t.Fatal(err)
		}
		for i, want := range []protocol.Status{protocol.StatusOK, protocol.StatusQuota, protocol.StatusOK} {
			r, err := c.recv(10 * time.Second)
			if err != nil || r.Status != want || r.ID != uint32(i+1) {
				t.Fatalf("cut at %d of %d: reply %d: %v %v id %d %q, want %v id %d", cut, len(stream), i, err, r.Status, r.ID, r.Body, want, i+1)
			}
		}
	}
	if after := c.must(t, protocol.StatusOK, protocol.OpChecksum, string(name), phext.Origin, nil); !bytes.Equal(before, after) {
		t.Fatal("a refused PUT changed the phext")
	}
}

// TestArrivingPutCountGoesWithItsFrame: a large uncompressed PUT counted
// against the quota on the event loop as it arrives is not counted again
// by the store (the loop hands its count over), and each count goes with
// its own frame: of two pipelined PUTs of the same length to one phext,
// the second, charged within the whole quota but more than is left for
// it, is refused QUOTA (with the first one's count, which has less text,
// it would have been stored; this fails if the counts are mixed up); a
// PUT charged exactly what is left of the quota is stored, one byte more
// is refused. The store's PutCounted answers as Put (store
// TestPutCountedSameAnswer). The same holds for compressed PUTs, whose
// documents are counted as they are decompressed and not again by the
// store.
func TestArrivingPutCountGoesWithItsFrame(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "compressed"}[compressed], func(t *testing.T) {
			putCountGoesWithItsFrame(t, compressed)
		})
	}
}

func putCountGoesWithItsFrame(t *testing.T, compressed bool) {
	const quota = 1 << 20
	h := startHostile(t, hostileOpts{quotaMB: map[string]float64{"mallory": 1}})
	c, agreed := h.dial(t, "mallory"), protocol.CodecNone
	if compressed {
		c, agreed = h.dialCompressed(t, "mallory")
	}
	scrolls := func(text, n int) []byte { // n scrolls of text bytes each
		var d []byte
		for i := range n {
			d = append(d, bytes.Repeat([]byte("t"), text)...)
			if (i+1)%999 == 0 {
				d = append(d, phext.SectionBreak)
			} else {
				d = append(d, phext.ScrollBreak)
			}
		}
		return d
	}
	charge := func(text, n int) int { return text*n + store.ScrollCost*n }
	c.must(t, protocol.StatusOK, protocol.OpPut, "a", phext.Origin, scrolls(100_000, 5))
	left := quota - charge(100_000, 5)
	pipelined := func(puts ...[]byte) []protocol.Status {
		t.Helper()
		var b []byte
		for _, doc := range puts {
			c.id++
			if !compressed {
				b = protocol.AppendRequest(b, protocol.OpPut, c.id, []byte("p"), phext.Origin, doc)
				continue
			}
			n := len(b)
			b = protocol.AppendCompressedRequest(b, protocol.OpPut, c.id, []byte("p"), phext.Origin, doc, agreed)
			if b[n+5]&protocol.FlagCompressed == 0 {
				t.Fatal("the PUT was not compressed")
			}
		}
		c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.nc.Write(b); err != nil {
			t.Fatal(err)
		}
		var got []protocol.Status
		for range puts {
			r, err := c.recv(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, r.Status)
		}
		return got
	}
	// 500,000 bytes each, to phext p: one scroll of 300,000 bytes and
	// 200,000 empty sections (charged 300,064), then 1,000 scrolls of 499
	// bytes (charged 563,000: within the quota, over the 548,256 bytes
	// left for p; with the first one's count, 364,000, it would fit).
	low := bytes.Repeat([]byte("l"), 300_000)
	for i := range 200_000 {
		if (i+1)%999 == 0 {
			low = append(low, phext.ChapterBreak)
		} else {
			low = append(low, phext.SectionBreak)
		}
	}
	high := scrolls(499, 1000)
	if len(low) != len(high) || charge(499, 1000) > quota || charge(499, 1000) <= left {
		t.Fatalf("test documents: %d and %d bytes", len(low), len(high))
	}
	if got := pipelined(low, high); got[0] != protocol.StatusOK || got[1] != protocol.StatusQuota {
		t.Fatalf("two PUTs of the same length: %v, want [OK QUOTA]", got)
	}
	// Replacing p, one scroll of that much text fills the quota exactly.
	exact := bytes.Repeat([]byte("e"), left-store.ScrollCost)
	over := append(bytes.Clone(exact), 'o')
	if got := pipelined(over, exact); got[0] != protocol.StatusQuota || got[1] != protocol.StatusOK {
		t.Fatalf("PUTs of one byte more than the quota holds and of exactly that: %v, want [QUOTA OK]", got)
	}
	if st, err := protocol.DecodeStatusInfo(c.must(t, protocol.StatusOK, protocol.OpStatus, "", phext.Origin, nil)); err != nil || st.Bytes != quota {
		t.Fatalf("usage %d bytes (%v), want the quota, %d", st.Bytes, err, quota)
	}
}

// TestCompressedPutOverQuotaRefusedEarly is issue 13's M4c: the M4 PUT
// with its document compressed (16 MiB of one-byte scrolls is ~50 bytes
// of s2), which the event loop cannot count as it arrives. The worker
// counts the document as it decompresses it and answers QUOTA after
// about a quota's worth: the decompression buffer it charged to the
// memory budget and the heap it allocated stay far below the declared
// 16 MiB (on the old code it decompressed all of it into a fresh 16 MiB
// buffer before the store refused it). Stored data is unchanged and the
// connection goes on: a compressed PUT that fits is stored after it.
// (Before the fix: s2 allocated 33 MiB and peaked the budget at 16 MiB.)
func TestCompressedPutOverQuotaRefusedEarly(t *testing.T) {
	const declared = 16 << 20
	over := oneByteScrolls(declared / (2 * 999))
	fits := oneByteScrolls(5) // 4,995 scrolls: ~325 KB charged
	for _, codec := range wireCodecs {
		t.Run(codec.name, func(t *testing.T) {
			h := startHostile(t, hostileOpts{quotaMB: map[string]float64{"mallory": 1}, opts: server.Options{Codecs: codec.accept}})
			c, agreed := h.dialCompressed(t, "mallory")
			if agreed == protocol.CodecNone {
				t.Fatal("no codec agreed")
			}
			frame := func(doc []byte) []byte {
				c.id++
				f := protocol.AppendCompressedRequest(nil, protocol.OpPut, c.id, []byte("dots"), phext.Origin, doc, agreed)
				if f[5]&protocol.FlagCompressed == 0 {
					t.Fatal("the PUT was not compressed")
				}
				return f
			}
			put := func(f []byte) protocol.Response {
				t.Helper()
				c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.nc.Write(f); err != nil {
					t.Fatal(err)
				}
				r, err := c.recv(30 * time.Second)
				if err != nil || r.ID != c.id {
					t.Fatalf("PUT: %v, id %d want %d", err, r.ID, c.id)
				}
				return r
			}
			// A PUT that fits first (it also builds the server's zstd
			// decoder, which is kept for later frames).
			if r := put(frame(fits)); r.Status != protocol.StatusOK {
				t.Fatalf("a compressed PUT within the quota: %v (%s)", r.Status, r.Body)
			}
			before := c.must(t, protocol.StatusOK, protocol.OpChecksum, "dots", phext.Origin, nil)
			// The first refusals build the zstd decoders (ZstdStreams of
			// them, each with a window of at most protocol.MaxZstdWindow,
			// kept for later frames); the next one is measured.
			for range protocol.ZstdStreams() {
				if r := put(frame(over)); r.Status != protocol.StatusQuota {
					t.Fatalf("PUT of %d bytes of one-byte scrolls: %v (%s), want QUOTA", len(over), r.Status, r.Body)
				}
			}
			f := frame(over)
			peak0 := h.srv.Memory().Peak
			alloc0 := totalAlloc()
			if r := put(f); r.Status != protocol.StatusQuota {
				t.Fatalf("PUT of %d bytes of one-byte scrolls: %v (%s), want QUOTA", len(over), r.Status, r.Body)
			}
			alloc, peak := totalAlloc()-alloc0, h.srv.Memory().Peak
			t.Logf("%s: QUOTA; heap allocated %d KiB, budget peak %d → %d KiB for %d declared", codec.name, alloc>>10, peak0>>10, peak>>10, len(over))
			if peak > peak0+4<<20 {
				t.Fatalf("the memory budget's peak rose by %d bytes for a refused document of %d", peak-peak0, len(over))
			}
			if alloc > 4<<20 {
				t.Fatalf("%d bytes allocated to refuse a document of %d", alloc, len(over))
			}
			if after := c.must(t, protocol.StatusOK, protocol.OpChecksum, "dots", phext.Origin, nil); !bytes.Equal(before, after) {
				t.Fatal("the refused PUT changed the phext")
			}
			fits = oneByteScrolls(4)
			if r := put(frame(fits)); r.Status != protocol.StatusOK {
				t.Fatalf("a compressed PUT within the quota after the refusal: %v (%s)", r.Status, r.Body)
			}
			if got := c.must(t, protocol.StatusOK, protocol.OpGet, "dots", phext.Origin, nil); !bytes.Equal(got, fits[:len(fits)-1]) {
				t.Fatalf("stored %d bytes, want the %d put", len(got), len(fits)-1)
			}
		})
	}
}
