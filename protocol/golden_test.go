package protocol

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/phext/sq/phext"
)

// golden is a frame whose hex dump appears in docs/PROTOCOL.md under a
// "<!-- golden:NAME -->" marker.
type golden struct {
	name  string
	frame func() []byte
	// check decodes the frame the way its receiver would and fails on any
	// mismatch with what the spec says it holds.
	check func(t *testing.T, f []byte)
}

var goldenFrames = []golden{
	{name: "hello-request", frame: func() []byte {
		return AppendHello(nil, 1, []byte("pmb-v1-001-demo"), AcceptZstd|AcceptS2)
	}, check: func(t *testing.T, f []byte) {
		h, id, err := DecodeHello(f)
		if err != nil || id != 1 || string(h.Token) != "pmb-v1-001-demo" || h.Codecs != 3 || h.Version != 1 {
			t.Fatalf("%+v %d %v", h, id, err)
		}
	}},
	{name: "hello-reply", frame: func() []byte {
		return AppendHelloReply(nil, 1, &HelloReply{Version: 1, Codec: CodecS2, MaxFrame: DefaultMaxFrame,
			TenantName: "demo", ServerVersion: "sq-go 0.1.0", CompressThreshold: CompressThreshold,
			MaxInFlight: 256, Ops: AllOps})
	}, check: func(t *testing.T, f []byte) {
		r, err := DecodeHelloReply(f[HeaderSize:])
		if err != nil || r.Codec != CodecS2 || r.MaxFrame != 64<<20 || r.TenantName != "demo" || len(r.Ops) != 19 {
			t.Fatalf("%+v %v", r, err)
		}
	}},
	{name: "select-request", frame: func() []byte {
		return AppendRequest(nil, OpSelect, 2, []byte("notes"), coord(1, 1, 1, 1, 1, 1, 1, 1, 2), nil)
	}, check: func(t *testing.T, f []byte) {
		var d Decoder
		var r Request
		if err := d.Decode(f, &r); err != nil || r.Op != OpSelect || string(r.Name) != "notes" || r.Coord.String() != "1.1.1/1.1.1/1.1.2" {
			t.Fatalf("%+v %v", r, err)
		}
	}},
	{name: "select-response", frame: func() []byte {
		return AppendResponse(nil, 2, StatusOK, []byte("hello"))
	}},
	{name: "insert-request", frame: func() []byte {
		return AppendRequest(nil, OpInsert, 3, nil, c123, []byte("Hello, phext!"))
	}, check: func(t *testing.T, f []byte) {
		var d Decoder
		var r Request
		if err := d.Decode(f, &r); err != nil || r.Op != OpInsert || len(r.Name) != 0 || r.Coord.String() != "1.2.3/4.5.6/7.8.9" || string(r.Payload) != "Hello, phext!" {
			t.Fatalf("%+v %v", r, err)
		}
	}},
	{name: "insert-response", frame: func() []byte {
		return AppendResponse(nil, 3, StatusOK, AppendCount(nil, 13))
	}},
	{name: "bad-coord-request", frame: func() []byte {
		return AppendRequest(nil, OpSelect, 4, nil, coord(1, 1, 1, 1, 1, 1, 1, 1, 0), nil)
	}, check: func(t *testing.T, f []byte) {
		var d Decoder
		var r Request
		err := d.Decode(f, &r)
		wantStatus(t, err, StatusBadCoord)
		if r.ID != 4 {
			t.Fatal(r.ID)
		}
	}},
	{name: "error-response", frame: func() []byte {
		return AppendError(nil, 4, StatusBadCoord, "coordinate part outside 1..999")
	}},
	{name: "where-request", frame: func() []byte {
		return AppendRequest(nil, OpWhere, 5, nil, phext.Origin, AppendWherePayload(nil, WhereChecksum, 100, []byte("hi")))
	}},
	{name: "list-response", frame: func() []byte {
		return AppendResponse(nil, 6, StatusOK, AppendList(nil, []string{"", "notes"}))
	}},
	{name: "status-response", frame: func() []byte {
		return AppendResponse(nil, 7, StatusOK, AppendStatusInfo(nil, StatusInfo{Phexts: 2, Scrolls: 3, Bytes: 4096, Quota: 1 << 30}))
	}},
	{name: "watch-request", frame: func() []byte {
		return AppendRequest(nil, OpWatch, 9, []byte("notes"), coord(1, 1, 1, 1, 1, 1, 1, 2, 1),
			AppendWatchPayload(nil, 7, 8, WatchText|WatchFrom, 0x1234))
	}, check: func(t *testing.T, f []byte) {
		var d Decoder
		var r Request
		if err := d.Decode(f, &r); err != nil || r.Op != OpWatch || string(r.Name) != "notes" {
			t.Fatalf("%+v %v", r, err)
		}
		w, err := DecodeWatch(r.Payload, r.Coord)
		if err != nil || w.Sub != 7 || w.Depth != 8 || w.Flags != WatchText|WatchFrom || w.From != 0x1234 ||
			w.Prefix != (phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 2, 0}) {
			t.Fatalf("%+v %v", w, err)
		}
	}},
	{name: "change-event", frame: func() []byte {
		return AppendChangeEvent(nil, 7, 0x1235, 1, []byte("notes"), coord(1, 1, 1, 1, 1, 1, 1, 2, 3), 2,
			[]byte(phext.Checksum([]byte("hi"))), TextHere, []byte("hi"))
	}, check: func(t *testing.T, f []byte) {
		var d Decoder
		var r Response
		var ev Event
		if err := d.DecodeResponse(f, &r); err != nil || !IsEvent(&r) {
			t.Fatalf("%+v %v", r, err)
		}
		if err := DecodeEvent(r.Body, &ev); err != nil || ev.Kind != EventChange || ev.Sub != 7 || ev.Pos != 0x1235 ||
			ev.Op != 1 || string(ev.Phext) != "notes" || ev.Coord.String() != "1.1.1/1.1.1/1.2.3" || ev.Len != 2 ||
			string(ev.Sum) != phext.Checksum([]byte("hi")) || ev.TextAt != TextHere || string(ev.Text) != "hi" {
			t.Fatalf("%+v %v", ev, err)
		}
	}},
	{name: "resync-event", frame: func() []byte {
		return AppendResyncEvent(nil, 7, 0x1240, ResyncSlow, true)
	}, check: func(t *testing.T, f []byte) {
		var d Decoder
		var r Response
		var ev Event
		if err := d.DecodeResponse(f, &r); err != nil || !IsEvent(&r) {
			t.Fatalf("%+v %v", r, err)
		}
		if err := DecodeEvent(r.Body, &ev); err != nil || ev.Kind != EventResync || ev.Sub != 7 || ev.Pos != 0x1240 ||
			ev.Reason != ResyncSlow || !ev.Ended {
			t.Fatalf("%+v %v", ev, err)
		}
	}},
	{name: "compressed-response", frame: func() []byte {
		return AppendCompressedResponse(nil, 8, StatusOK, []byte(strings.Repeat("phext ", 700)), CodecS2)
	}, check: func(t *testing.T, f []byte) {
		d := Decoder{Codec: CodecS2}
		var r Response
		if err := d.DecodeResponse(f, &r); err != nil || f[5] != FlagCompressed || string(r.Body) != strings.Repeat("phext ", 700) {
			t.Fatalf("%v flags %d", err, f[5])
		}
	}},
}

// docDumps reads every golden hex dump from docs/PROTOCOL.md.
func docDumps(t *testing.T) map[string][]byte {
	t.Helper()
	raw, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatalf("read spec: %v", err)
	}
	dumps := map[string][]byte{}
	var name string
	inBlock := false
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "<!-- golden:"):
			name = strings.TrimSuffix(strings.TrimPrefix(line, "<!-- golden:"), " -->")
		case name != "" && strings.HasPrefix(line, "```"):
			if inBlock {
				name, inBlock = "", false
			} else {
				inBlock = true
			}
		case inBlock:
			// hexdump -C layout: offset, up to 16 hex bytes, |ascii|.
			if i := strings.Index(line, "|"); i >= 0 {
				line = line[:i]
			}
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue
			}
			b, err := hex.DecodeString(strings.Join(fields[1:], ""))
			if err != nil {
				t.Fatalf("golden %s: bad hex line %q: %v", name, line, err)
			}
			dumps[name] = append(dumps[name], b...)
		}
	}
	return dumps
}

// TestGolden checks that the hex dumps in docs/PROTOCOL.md are exactly what
// the encoders produce and that they decode as the spec says. Run with
// SQ_GOLDEN_PRINT=1 -v to print the dumps for the spec.
func TestGolden(t *testing.T) {
	dumps := docDumps(t)
	for _, g := range goldenFrames {
		t.Run(g.name, func(t *testing.T) {
			f := g.frame()
			if os.Getenv("SQ_GOLDEN_PRINT") != "" {
				t.Logf("<!-- golden:%s -->\n```\n%s```", g.name, hex.Dump(f))
			}
			doc, ok := dumps[g.name]
			if !ok {
				t.Fatalf("no golden:%s dump in docs/PROTOCOL.md", g.name)
			}
			if !bytes.Equal(doc, f) {
				t.Fatalf("spec dump differs from encoder:\nspec:\n%s\ncode:\n%s", hex.Dump(doc), hex.Dump(f))
			}
			if g.check != nil {
				g.check(t, doc)
			}
			var d Decoder
			var r Response
			if err := d.DecodeResponse(doc, &r); err != nil && StatusOf(err) != StatusBadFrame {
				t.Fatal(err) // every golden frame is well delimited
			}
		})
	}
	if len(dumps) != len(goldenFrames) {
		t.Fatalf("spec has %d golden dumps, test knows %d", len(dumps), len(goldenFrames))
	}
}

// TestSpecRestatesContract checks that docs/PROTOCOL.md holds the fixed
// contract byte for byte (testdata/PROTOCOL-CONTRACT.md is a copy of
// shared/PROTOCOL-CONTRACT.md, compared too when that file is present).
func TestSpecRestatesContract(t *testing.T) {
	contract, err := os.ReadFile("testdata/PROTOCOL-CONTRACT.md")
	if err != nil {
		t.Fatal(err)
	}
	if shared, err := os.ReadFile("../../shared/PROTOCOL-CONTRACT.md"); err == nil && !bytes.Equal(shared, contract) {
		t.Fatal("testdata/PROTOCOL-CONTRACT.md differs from ../shared/PROTOCOL-CONTRACT.md")
	}
	spec, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(spec, contract) {
		t.Fatal("docs/PROTOCOL.md does not restate the contract byte for byte")
	}
}
