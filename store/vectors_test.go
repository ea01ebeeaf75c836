package store

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/phext/sq/phext"
)

type vblob struct {
	Len int    `json:"len"`
	B64 string `json:"b64"`
}

type vresult struct {
	OK json.RawMessage `json:"ok"`
}

// TestVectors puts every reference buffer that we accept and compares GET,
// TOC and CHECKSUM with SQ's implode_ref, toc and checksum, and SELECT of
// every scroll with implode_ref's, from the Put's document and from its
// snapshot after a compaction.
func TestVectors(t *testing.T) {
	f, err := os.Open("../phext/testdata/buffers.jsonl")
	if err != nil {
		t.Skip("no vectors:", err)
	}
	defer f.Close()
	db := MustOpen(t, nil)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	checked := 0
	for sc.Scan() {
		var v struct {
			ID         string  `json:"id"`
			HashOnly   bool    `json:"hash_only"`
			UTF8       bool    `json:"utf8_valid"`
			Input      vblob   `json:"input"`
			ImplodeRef vresult `json:"implode_ref"`
			TOC        vresult `json:"toc"`
			SQChecksum vresult `json:"sq_checksum"`
		}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		if v.HashOnly || !v.UTF8 || v.ImplodeRef.OK == nil || v.TOC.OK == nil {
			continue
		}
		t.Run(v.ID, func(t *testing.T) {
			in, _ := base64.StdEncoding.DecodeString(v.Input.B64)
			if _, err := db.ten.Put([]byte("v"), in); err != nil {
				if errors.Is(err, ErrOverflow) {
					t.Skip("saturating input refused:", err)
				}
				t.Fatal(err)
			}
			var want vblob
			json.Unmarshal(v.ImplodeRef.OK, &want)
			wantDoc, _ := base64.StdEncoding.DecodeString(want.B64)
			json.Unmarshal(v.TOC.OK, &want)
			wantTOC, _ := base64.StdEncoding.DecodeString(want.B64)
			var wantSum string
			json.Unmarshal(v.SQChecksum.OK, &wantSum)
			// From the Put's document, then from its snapshot (the
			// checkpoint's mapping and index).
			for _, from := range []string{"put", "snapshot"} {
				if from == "snapshot" {
					if err := db.ten.Compact([]byte("v")); err != nil {
						t.Fatal(err)
					}
				}
				if got := mustGet(t, db.ten, "v"); got != string(wantDoc) {
					t.Errorf("%s: get %q, want %q", from, got, wantDoc)
				}
				if got, _ := db.ten.AppendTOC(nil, []byte("v")); string(got) != string(wantTOC) {
					t.Errorf("%s: toc %q, want %q", from, got, wantTOC)
				}
				if got, _ := db.ten.AppendChecksum(nil, []byte("v")); string(got) != wantSum {
					t.Errorf("%s: checksum %s, want %s", from, got, wantSum)
				}
				var sc phext.Scanner
				for sc.Reset(wantDoc); sc.Next(); {
					if got, err := db.ten.AppendSelect(nil, []byte("v"), sc.Coordinate()); err != nil || string(got) != string(sc.Scroll()) {
						t.Errorf("%s: select %s = %q (%v), want %q", from, sc.Coordinate(), got, err, sc.Scroll())
					}
				}
			}
			checked++
		})
	}
	if checked < 10 {
		t.Errorf("only %d vectors checked", checked)
	}
	db.MustReopen()
}
