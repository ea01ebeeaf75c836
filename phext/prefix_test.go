package phext

import (
	"errors"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in    string
		want  Coordinate
		depth int
		bad   bool
	}{
		{in: "", depth: 0},
		{in: "7", want: Coordinate{7}, depth: 1},
		{in: "1.1.1/1.1.1/1.2", want: Coordinate{1, 1, 1, 1, 1, 1, 1, 2}, depth: 8},
		{in: "1;2;3", want: Coordinate{1, 2, 3}, depth: 3},
		{in: "1.1.1/1.1.1/1.1.999", want: Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 999}, depth: 9},
		{in: "1.1.1/1.1.1/1.1.1.1", bad: true},
		{in: "1..2", bad: true},
		{in: "1.0", bad: true},
		{in: "1.1000", bad: true},
		{in: "1.x", bad: true},
		{in: "1.", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			c, d, err := ParsePrefix(tc.in)
			if tc.bad {
				if err == nil || !errors.Is(err, ErrBadCoordinate) {
					t.Fatalf("accepted: %v %d %v", c, d, err)
				}
				return
			}
			if err != nil || c != tc.want || d != tc.depth {
				t.Fatalf("got %v %d %v, want %v %d", c, d, err, tc.want, tc.depth)
			}
			full := Coordinate{1, 1, 1, 1, 1, 1, 1, 1, 1}
			copy(full[:d], c[:d])
			if !full.HasPrefix(c, d) {
				t.Fatalf("%v not under its own prefix", full)
			}
			if d > 0 {
				full[d-1]++
				if full.HasPrefix(c, d) {
					t.Fatalf("%v under %v/%d", full, c, d)
				}
			}
		})
	}
}
