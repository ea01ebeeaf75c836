package phext

import (
	"strings"
	"testing"
)

// TestValidName: each byte class of the name rule, and the length bound.
func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "empty default", in: "", want: true},
		{name: "simple", in: "notes", want: true},
		{name: "all classes", in: "A-z_0.9.phext", want: true},
		{name: "leading dash", in: "-x", want: true},
		{name: "leading underscore", in: "_x", want: true},
		{name: "leading dot", in: ".phext", want: false},
		{name: "slash", in: "a/b", want: false},
		{name: "space", in: "a b", want: false},
		{name: "non-ascii", in: "é", want: false},
		{name: "64 bytes", in: strings.Repeat("a", 64), want: true},
		{name: "65 bytes", in: strings.Repeat("a", 65), want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidName([]byte(tc.in)); got != tc.want {
				t.Fatalf("ValidName(%q) = %v", tc.in, got)
			}
		})
	}
}

// TestNames: names that would leave the data directory are refused.
func TestNames(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{name: "", ok: true},
		{name: "a", ok: true},
		{name: "_x-1.phext", ok: true},
		{name: "-", ok: true},
		{name: strings.Repeat("z", 64), ok: true},
		{name: strings.Repeat("z", 65), ok: false},
		{name: ".", ok: false},
		{name: ".phext", ok: false},
		{name: "a/b", ok: false},
		{name: "a\\b", ok: false},
		{name: "a b", ok: false},
		{name: "a\x00", ok: false},
		{name: "ü", ok: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidName([]byte(tc.name)); got != tc.ok {
				t.Errorf("ValidName(%q) = %v", tc.name, got)
			}
		})
	}
}
