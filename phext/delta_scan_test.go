package phext

import (
	"bytes"
	"testing"
)

// TestChunkedScans: the chunked scans of delta requests (countByte,
// indexByte, indexSep) agree with the bytes package wherever the byte or
// separator sits, across and at chunk boundaries.
func TestChunkedScans(t *testing.T) {
	b := bytes.Repeat([]byte{'x'}, 3*scanChunk+5)
	sep := []byte(": ")
	for _, at := range []int{0, 1, scanChunk - 2, scanChunk - 1, scanChunk, scanChunk + 1, 2*scanChunk - 1, 3 * scanChunk, len(b) - 2} {
		c := bytes.Clone(b)
		c[at], c[at+1] = ':', ' '
		c[len(c)-1] = '\n'
		if got, want := indexSep(c, sep), bytes.Index(c, sep); got != want {
			t.Errorf("indexSep with ': ' at %d: %d, want %d", at, got, want)
		}
		if got, want := indexByte(c, ' '), bytes.IndexByte(c, ' '); got != want {
			t.Errorf("indexByte with ' ' at %d: %d, want %d", at+1, got, want)
		}
		c[at] = '\n'
		if got, want := countByte(c, '\n'), bytes.Count(c, []byte{'\n'}); got != want {
			t.Errorf("countByte with newlines at %d: %d, want %d", at, got, want)
		}
	}
	if indexSep(b, sep) != -1 || indexByte(b, ':') != -1 || countByte(b, ':') != 0 || indexSep(nil, sep) != -1 {
		t.Error("found what is not there")
	}
}
