package bench

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReadConfigTokensSortedByName: tenant i is the same tenant whatever
// order the config's map yields, and each keeps its own token.
func TestReadConfigTokensSortedByName(t *testing.T) {
	dir := t.TempDir()
	ts, err := NewTenants(filepath.Join(dir, "data"), 1200)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tenants.json")
	if err := WriteConfig(path, ts); err != nil {
		t.Fatal(err)
	}
	got, err := ReadConfigTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ts) {
		t.Fatalf("%d tenants, want %d", len(got), len(ts))
	}
	if !slices.IsSortedFunc(got, func(a, b Tenant) int { return strings.Compare(a.Name, b.Name) }) {
		t.Fatal("not sorted by name")
	}
	want := map[string]string{}
	for _, tn := range ts {
		want[tn.Name] = tn.Token
	}
	for _, tn := range got {
		if want[tn.Name] != tn.Token {
			t.Fatalf("%s: token %q, want %q", tn.Name, tn.Token, want[tn.Name])
		}
	}
}
