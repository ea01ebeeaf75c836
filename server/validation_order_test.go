package server_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// wireCodecs are the codecs a HELLO may agree on, as accept bits.
var wireCodecs = []struct {
	name   string
	accept uint8
}{
	{name: "s2", accept: protocol.AcceptS2},
	{name: "zstd", accept: protocol.AcceptZstd},
}

// TestCompressedPutValidationOrderIgnoresQuota: the same compressed PUT
// gets the same status from a tenant with a quota (whose PUT is checked
// while it is decompressed, store.PutCheck) as from one without: a body
// that does not decompress is BAD_FRAME whatever name it starts with, and
// a bad name in a body that does is BAD_NAME (found in review: a bad
// name with a corrupt body answered BAD_NAME with a quota, BAD_FRAME
// without).
func TestCompressedPutValidationOrderIgnoresQuota(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"scroll ", "phext ", "shelf ", "library ", "volume ", "book "}
	var doc []byte
	for len(doc) < 400<<10 {
		doc = append(doc, words[rng.IntN(len(words))]...)
	}
	for _, codec := range wireCodecs {
		t.Run(codec.name, func(t *testing.T) {
			h := startHostile(t, hostileOpts{
				tenants: []string{"alice", "mallory"},
				quotaMB: map[string]float64{"mallory": 1},
				opts:    server.Options{Codecs: codec.accept},
			})
			for _, tc := range []struct {
				name    string
				phext   string
				corrupt bool
				plain   bool // uncompressed, 2 MiB
				want    protocol.Status
			}{
				{name: "bad-name-corrupt-body", phext: "bad name!", corrupt: true, want: protocol.StatusBadFrame},
				{name: "bad-name", phext: "bad name!", want: protocol.StatusBadName},
				{name: "corrupt-body", phext: "notes", corrupt: true, want: protocol.StatusBadFrame},
				// Over the quota, uncompressed: refused on the event
				// loop as it arrives (mallory) or by the worker (alice).
				{name: "bad-name-uncompressed-over-quota", phext: "bad name!", plain: true, want: protocol.StatusBadName},
			} {
				t.Run(tc.name, func(t *testing.T) {
					for _, tenant := range []string{"alice", "mallory"} {
						c, agreed := h.dialCompressed(t, tenant)
						c.id++
						var f []byte
						if tc.plain {
							f = protocol.AppendRequest(nil, protocol.OpPut, c.id, []byte(tc.phext), phext.Origin, bytes.Repeat(doc, 5))
						} else {
							f = protocol.AppendCompressedRequest(nil, protocol.OpPut, c.id, []byte(tc.phext), phext.Origin, doc, agreed)
							if f[5]&protocol.FlagCompressed == 0 {
								t.Fatal("the PUT was not compressed")
							}
						}
						if tc.corrupt {
							// Cut the end of the compressed stream: what
							// comes before it still decodes.
							f = f[:len(f)-64]
							binary.BigEndian.PutUint32(f, uint32(len(f)-4))
						}
						c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
						if _, err := c.nc.Write(f); err != nil {
							t.Fatal(err)
						}
						r, err := c.recv(10 * time.Second)
						if err != nil || r.ID != c.id {
							t.Fatalf("%s: PUT: %v, id %d want %d", tenant, err, r.ID, c.id)
						}
						if r.Status != tc.want {
							t.Errorf("%s (quota %v MB): %v (%s), want %v", tenant, h.cfg.Tenants[h.tokens[tenant]].QuotaMB, r.Status, r.Body, tc.want)
						}
					}
				})
			}
		})
	}
}
