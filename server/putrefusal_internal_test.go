package server

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/store"
)

// TestPutRefusalAnswersAsWorker: a PUT over its tenant's quota that is
// also refused for something else is answered the same whether the event
// loop refuses it as it arrives (checkPut, arrivingPutRefusal, then the
// worker answers the queued stub), the worker runs it whole, or the
// worker refuses it while decompressing it: BAD_NAME, BAD_FRAME (an unknown flag bit, counted in the tenant's bad-frame
// budget on every path), AUTH for a removed tenant, SHUTTING_DOWN while
// draining, and QUOTA only when nothing else refuses it. The stored phext
// is unchanged. Before, the loop answered QUOTA to all of them and the
// decompressing worker too, and the flag bit escaped the budget.
func TestPutRefusalAnswersAsWorker(t *testing.T) {
	e := startEnv(t, envOptions{durability: store.DurabilityNo})
	s := e.srv
	tn := s.table.Load().byName["alpha"]
	if _, err := e.store.AddTenant(store.TenantConfig{Name: "alpha", DataDir: filepath.Join(e.dir, "alpha"), QuotaBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	newConn := func(codec uint8) *connState {
		cs := &connState{s: s, tenant: tn, mem: tn.mem, frameMem: tn.frames, codec: codec}
		cs.held.b = tn.mem
		cs.dec = protocol.Decoder{MaxFrame: s.opts.MaxFrame, Codec: codec, Budget: cs.mem}
		cs.loopDec = protocol.Decoder{MaxFrame: s.opts.MaxFrame}
		return cs
	}
	status := func(out []byte) protocol.Status {
		t.Helper()
		if n, err := protocol.FrameSize(out, 0); err != nil || n != len(out) {
			t.Fatalf("reply of %d bytes: frame size %d (%v)", len(out), n, err)
		}
		return protocol.Status(protocol.ParseHeader(out).Op)
	}
	if st := status(s.handle(newConn(protocol.CodecNone), protocol.AppendRequest(nil, protocol.OpPut, 1, []byte("p"), phext.Origin, []byte("kept")), nil)); st != protocol.StatusOK {
		t.Fatalf("PUT of the kept document: %v", st)
	}
	sum := func() []byte {
		b, err := tn.store.AppendChecksum(nil, []byte("p"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := sum()
	// 100,000 one-byte scrolls: 200 KB (the loop's large-frame path),
	// charged ~6.5 MB against the 1 MiB quota.
	doc := sqtest.TinyScrolls(100_000)
	bad := phext.Origin
	bad[4] = 0
	for _, tc := range []struct {
		name  string
		pname string
		coord phext.Coordinate
		flags uint8
		set   func(on bool)
		want  protocol.Status
	}{
		{"over quota", "p", phext.Origin, 0, nil, protocol.StatusQuota},
		{"bad name", "a/b", phext.Origin, 0, nil, protocol.StatusBadName},
		// PUT takes no coordinate: the decoder does not check it.
		{"bad coordinate", "p", bad, 0, nil, protocol.StatusQuota},
		{"unknown flag bit", "p", phext.Origin, 0x02, nil, protocol.StatusBadFrame},
		{"removed tenant", "p", phext.Origin, 0, func(on bool) { tn.closed.Store(on) }, protocol.StatusAuth},
		{"draining", "p", phext.Origin, 0, func(on bool) { s.draining.Store(on) }, protocol.StatusShuttingDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.set != nil {
				tc.set(true)
				defer tc.set(false)
			}
			frame := protocol.AppendRequest(nil, protocol.OpPut, 7, []byte(tc.pname), tc.coord, doc)
			frame[5] |= tc.flags
			badTAT := tn.pace.badTAT.Load()
			counted := func(path string) {
				t.Helper()
				now := tn.pace.badTAT.Load()
				if moved := now != badTAT; moved != (tc.want == protocol.StatusBadFrame) {
					t.Errorf("%s: bad-frame budget booked %v, want %v", path, moved, tc.want == protocol.StatusBadFrame)
				}
				badTAT = now
			}

			// The worker, whole frame.
			worker := status(s.handle(newConn(protocol.CodecNone), frame, nil))
			counted("worker")

			// The loop, as the frame arrives: the check refuses it after
			// some 64 KiB reads, its answer is queued as a stub, and the
			// worker answers the stub.
			cs := newConn(protocol.CodecNone)
			cs.putChk = tn.store.PutCheck()
			cs.putOn = cs.putChk.Active()
			var qerr error
			for got := protocol.HeaderSize; qerr == nil; got = min(got+64<<10, len(frame)) {
				if got == len(frame) {
					t.Fatal("the quota check never refused the document")
				}
				cs.big = frame[:got:len(frame)]
				qerr = cs.checkPut()
			}
			if !errors.Is(qerr, store.ErrQuota) {
				t.Fatalf("the check refused with %v", qerr)
			}
			st, msg := s.arrivingPutRefusal(cs, qerr)
			cs.enqueueRefusal(cs.big, st, msg)
			if len(cs.frames) != 1 {
				t.Fatalf("%d frames queued, want the stub", len(cs.frames))
			}
			loop := status(s.handle(cs, cs.frames[0], nil))
			counted("loop")

			// The worker, decompressing: refused after about a quota's worth.
			cframe := protocol.AppendCompressedRequest(nil, protocol.OpPut, 7, []byte(tc.pname), tc.coord, doc, protocol.CodecS2)
			if cframe[5]&protocol.FlagCompressed == 0 {
				t.Fatal("the document was not compressed")
			}
			cframe[5] |= tc.flags
			compressed := status(s.handle(newConn(protocol.CodecS2), cframe, nil))
			counted("compressed")

			if worker != tc.want || loop != tc.want || compressed != tc.want {
				t.Errorf("worker %v, loop %v, compressed %v; want %v", worker, loop, compressed, tc.want)
			}
			if after := sum(); !bytes.Equal(before, after) {
				t.Error("the refused PUT changed the phext")
			}
		})
	}
}
