package protocol

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestHelloRoundTrip(t *testing.T) {
	f := AppendHello(nil, 42, []byte("pmb-v1-001-abc"), AcceptZstd|AcceptS2)
	h, id, err := DecodeHello(f)
	if err != nil {
		t.Fatal(err)
	}
	if id != 42 || h.Version != Version || string(h.Token) != "pmb-v1-001-abc" || h.Codecs != 3 {
		t.Fatalf("%+v id %d", h, id)
	}
	// The token sits at offset 11 with its length, where an L4 proxy reads it.
	if f[11] != 14 || string(f[12:26]) != "pmb-v1-001-abc" {
		t.Fatal("token not at the contract's offset")
	}
}

func TestDecodeHelloMalformed(t *testing.T) {
	good := AppendHello(nil, 42, []byte("tok"), 0)
	mod := func(i int, b byte) []byte { g := bytes.Clone(good); g[i] = b; return g }
	withTrailer := append(frameWith(good, uint32(len(good)-4+3)), 9, 9, 9)
	tests := []struct {
		name    string
		frame   []byte
		status  Status
		version uint8
	}{
		{name: "ok", frame: good, version: 1},
		{name: "v2 client", frame: mod(10, 2), version: 2},
		{name: "trailing bytes ignored", frame: withTrailer, version: 1},
		{name: "version 0", frame: mod(10, 0), status: StatusBadFrame},
		{name: "not hello", frame: AppendRequest(nil, OpPing, 42, nil, c123, nil), status: StatusAuth},
		{name: "flags set", frame: mod(5, 1), status: StatusBadFrame},
		{name: "empty token", frame: append(appendHeader(nil, 1, 0, 42, 3), 1, 0, 0), status: StatusAuth},
		{name: "token past end", frame: mod(11, 200), status: StatusBadFrame},
		{name: "no codecs byte", frame: frameWith(good[:len(good)-1], uint32(len(good)-5)), status: StatusBadFrame},
		{name: "length mismatch", frame: good[:len(good)-1], status: StatusBadFrame},
		{name: "body 1 byte", frame: append(appendHeader(nil, 1, 0, 42, 1), 1), status: StatusBadFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, id, err := DecodeHello(tc.frame)
			wantStatus(t, err, tc.status)
			if id != 42 {
				t.Fatalf("id %d", id)
			}
			if err == nil && h.Version != tc.version {
				t.Fatalf("version %d", h.Version)
			}
		})
	}
	if _, _, err := DecodeHello(good[:5]); StatusOf(err) != StatusBadFrame {
		t.Fatalf("short: %v", err)
	}
}

func TestHelloReplyRoundTrip(t *testing.T) {
	r := HelloReply{Version: 1, Codec: CodecS2, MaxFrame: DefaultMaxFrame, TenantName: "acme",
		ServerVersion: "sq-go 0.1.0", CompressThreshold: CompressThreshold, MaxInFlight: 1024, Ops: AllOps}
	f := AppendHelloReply(nil, 7, &r)
	var d Decoder
	var resp Response
	if err := d.DecodeResponse(f, &resp); err != nil || resp.Status != StatusOK || resp.ID != 7 {
		t.Fatalf("%v %+v", err, resp)
	}
	got, err := DecodeHelloReply(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("got %+v\nwant %+v", got, r)
	}
	// Growth rule: trailing bytes are ignored.
	got2, err := DecodeHelloReply(append(bytes.Clone(resp.Body), 1, 2, 3))
	if err != nil || !reflect.DeepEqual(got2, r) {
		t.Fatalf("with trailer: %v %+v", err, got2)
	}
	// Contract-only reply (fixed part ends at the tenant name).
	min := []byte{1, 0, 0, 0, 1, 0, 1, 'a'}
	got3, err := DecodeHelloReply(min)
	if err != nil || got3.TenantName != "a" || got3.MaxFrame != 256 || got3.Ops != nil {
		t.Fatalf("minimal: %v %+v", err, got3)
	}
	// Every truncation of the full body after the fixed part fails cleanly.
	for i := 0; i < len(resp.Body); i++ {
		_, err := DecodeHelloReply(resp.Body[:i])
		fixedEnd := 7 + len(r.TenantName)
		if (err == nil) != (i == fixedEnd) {
			t.Fatalf("truncated at %d: err %v", i, err)
		}
	}
	// Over-long strings are cut, not corrupting the layout.
	long := HelloReply{TenantName: strings.Repeat("t", 300), ServerVersion: strings.Repeat("v", 300)}
	f = AppendHelloReply(nil, 1, &long)
	got4, err := DecodeHelloReply(f[HeaderSize:])
	if err != nil || len(got4.TenantName) != 255 || len(got4.ServerVersion) != 255 {
		t.Fatalf("%v %d %d", err, len(got4.TenantName), len(got4.ServerVersion))
	}
}

func TestChooseCodec(t *testing.T) {
	tests := []struct {
		name           string
		client, server uint8
		want           uint8
	}{
		{name: "none", client: 0, server: 3, want: CodecNone},
		{name: "both prefer s2", client: 3, server: 3, want: CodecS2},
		{name: "zstd only client", client: AcceptZstd, server: 3, want: CodecZstd},
		{name: "server zstd only", client: 3, server: AcceptZstd, want: CodecZstd},
		{name: "disjoint", client: AcceptS2, server: AcceptZstd, want: CodecNone},
		{name: "unknown bits ignored", client: 0xFC, server: 0xFF, want: CodecNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ChooseCodec(tc.client, tc.server); got != tc.want {
				t.Fatalf("got %d want %d", got, tc.want)
			}
		})
	}
}

func TestNegotiateVersion(t *testing.T) {
	tests := []struct {
		name   string
		client uint8
		want   uint8
	}{
		{name: "v1 client", client: 1, want: 1},
		{name: "v2 client meets v1 server", client: 2, want: 1},
		{name: "v255 client", client: 255, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NegotiateVersion(tc.client); got != tc.want {
				t.Fatalf("got %d want %d", got, tc.want)
			}
		})
	}
}
