package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phext/sq/phext"
)

const phextVectors = "../../phext/testdata"

type pvBlob struct {
	Len    int     `json:"len"`
	Sha256 string  `json:"sha256"`
	B64    *string `json:"b64"`
	File   string  `json:"file"`
}

type pvResult struct {
	Ok json.RawMessage `json:"ok"`
}

type pvCase struct {
	ID         string   `json:"id"`
	Input      pvBlob   `json:"input"`
	UTF8Valid  bool     `json:"utf8_valid"`
	Explode    pvResult `json:"explode"`
	Normalize  pvResult `json:"normalize"`
	SQChecksum pvResult `json:"sq_checksum"`
	TOC        pvResult `json:"toc"`
}

func pvBytes(t *testing.T, b pvBlob) []byte {
	t.Helper()
	if b.File != "" {
		d, err := os.ReadFile(filepath.Join(phextVectors, b.File))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if b.B64 == nil {
		t.Fatal("blob without bytes")
	}
	d, err := base64.StdEncoding.DecodeString(*b.B64)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func pvCheck(t *testing.T, what string, got []byte, want pvBlob) {
	t.Helper()
	sum := sha256.Sum256(got)
	if len(got) != want.Len || hex.EncodeToString(sum[:]) != want.Sha256 {
		t.Errorf("%s: got %d bytes %.200q, want %d bytes sha %s", what, len(got), got, want.Len, want.Sha256)
	}
}

func runPhextT(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = runPhext(args, &o, &e)
	return code, o.String(), e.String()
}

// TestPhextToolsVectors runs every tool on every buffer of the golden
// vectors and compares with the reference outputs.
func TestPhextToolsVectors(t *testing.T) {
	f, err := os.Open(filepath.Join(phextVectors, "buffers.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	dir := t.TempDir()
	n := 0
	for sc.Scan() {
		var tc pvCase
		if err := json.Unmarshal(sc.Bytes(), &tc); err != nil {
			t.Fatal(err)
		}
		n++
		t.Run(tc.ID, func(t *testing.T) {
			in := pvBytes(t, tc.Input)
			path := filepath.Join(dir, tc.ID+".phext")
			if err := os.WriteFile(path, in, 0o600); err != nil {
				t.Fatal(err)
			}
			_, libErr := phext.Explode(in)
			if !tc.UTF8Valid || libErr != nil {
				// Invalid UTF-8 or a part past 999: refused by every tool.
				for _, tool := range []string{"toc", "checksum", "explode", "normalize"} {
					code, out, errOut := runPhextT(tool, path)
					if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 {
						t.Errorf("%s: exit %d, stdout %q, stderr %q", tool, code, out, errOut)
					}
					if !tc.UTF8Valid && !strings.Contains(errOut, "UTF-8") || libErr != nil && !strings.Contains(errOut, "offset") {
						t.Errorf("%s: stderr %q does not say why", tool, errOut)
					}
				}
				return
			}
			code, out, errOut := runPhextT("toc", path)
			if code != 0 {
				t.Fatalf("toc: exit %d %s", code, errOut)
			}
			if tc.TOC.Ok != nil {
				var b pvBlob
				_ = json.Unmarshal(tc.TOC.Ok, &b)
				pvCheck(t, "toc", []byte(out), b)
			} else {
				// The reference panics; the library's rule is tested there.
				scrolls, _ := phext.Explode(in)
				if out != string(phext.AppendTOC(nil, scrolls)) {
					t.Errorf("toc differs from the library")
				}
			}

			var sum string
			_ = json.Unmarshal(tc.SQChecksum.Ok, &sum)
			if code, out, _ := runPhextT("checksum", path); code != 0 || out != sum+"\n" {
				t.Errorf("checksum: exit %d %q, want %q", code, out, sum)
			}

			var norm pvBlob
			_ = json.Unmarshal(tc.Normalize.Ok, &norm)
			code, out, _ = runPhextT("normalize", path)
			if code != 0 {
				t.Fatalf("normalize exit %d", code)
			}
			pvCheck(t, "normalize", []byte(out), norm)

			var entries [][]json.RawMessage
			if err := json.Unmarshal(tc.Explode.Ok, &entries); err != nil {
				t.Fatal(err)
			}
			code, out, _ = runPhextT("explode", path)
			if code != 0 {
				t.Fatalf("explode exit %d", code)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != len(entries) {
				t.Fatalf("explode: %d lines, want %d", len(lines), len(entries))
			}
			for i, e := range entries {
				var coord string
				var b pvBlob
				_ = json.Unmarshal(e[0], &coord)
				_ = json.Unmarshal(e[1], &b)
				var got struct {
					Coord  string `json:"coord"`
					Scroll string `json:"scroll"`
				}
				if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
					t.Fatalf("explode line %d: %v", i, err)
				}
				if got.Coord != coord {
					t.Fatalf("explode line %d: coord %s, want %s", i, got.Coord, coord)
				}
				pvCheck(t, "explode "+coord, []byte(got.Scroll), b)
				// select: spot-check the first, last and every 97th.
				if i == 0 || i == len(entries)-1 || i%97 == 0 {
					code, sel, _ := runPhextT("select", path, coord)
					if code != 0 {
						t.Fatalf("select %s: exit %d", coord, code)
					}
					pvCheck(t, "select "+coord, []byte(sel), b)
				}
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 69 {
		t.Fatalf("%d cases, want 69", n)
	}
}

func TestPhextToolsErrors(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "doc.phext")
	if err := os.WriteFile(doc, []byte("a\x17b"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{name: "help", args: []string{"-h"}, code: 0},
		{name: "no args", args: nil, code: 2},
		{name: "unknown tool", args: []string{"frob", doc}, code: 2},
		{name: "missing file arg", args: []string{"toc"}, code: 2},
		{name: "extra arg", args: []string{"toc", doc, doc}, code: 2},
		{name: "select without coord", args: []string{"select", doc}, code: 2},
		{name: "missing file", args: []string{"toc", filepath.Join(dir, "nope")}, code: 1},
		{name: "bad coord", args: []string{"select", doc, "1.2.3"}, code: 1},
		{name: "coord 1000", args: []string{"select", doc, "1.1.1/1.1.1/1.1.1000"}, code: 1},
		{name: "select hit", args: []string{"select", doc, "1.1.1;1.1.1;1.1.2"}, code: 0, out: "b"},
		{name: "select absent", args: []string{"select", doc, "2.1.1/1.1.1/1.1.1"}, code: 0, out: ""},
		{name: "toc", args: []string{"toc", doc}, code: 0, out: "* 1.1.1/1.1.1/1.1.1: a\n* 1.1.1/1.1.1/1.1.2: b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runPhextT(tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			switch {
			case code == 1 && strings.Count(errOut, "\n") != 1:
				t.Errorf("want one error line, got %q", errOut)
			case code == 2 && !strings.Contains(errOut, "usage:"):
				t.Errorf("want usage on stderr, got %q", errOut)
			case code == 0 && tt.name != "help" && out != tt.out:
				t.Errorf("stdout %q, want %q", out, tt.out)
			case tt.name == "help" && !strings.Contains(out, "usage:"):
				t.Errorf("help: %q", out)
			}
		})
	}
	// The empty document: SQ's toc is the origin line, explode one empty entry.
	empty := filepath.Join(dir, "empty.phext")
	_ = os.WriteFile(empty, nil, 0o600)
	if _, out, _ := runPhextT("toc", empty); out != "* 1.1.1/1.1.1/1.1.1: \n" {
		t.Errorf("toc of empty: %q", out)
	}
	if _, out, _ := runPhextT("explode", empty); out != `{"coord":"1.1.1/1.1.1/1.1.1","scroll":""}`+"\n" {
		t.Errorf("explode of empty: %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("test wrote a file it should not have")
	}
}
