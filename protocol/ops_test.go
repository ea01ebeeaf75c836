package protocol

import (
	"reflect"
	"testing"
)

func TestWherePayload(t *testing.T) {
	p := AppendWherePayload(nil, WhereChecksum, 100, []byte("some text"))
	algo, limit, text, err := DecodeWherePayload(p)
	if err != nil || algo != WhereChecksum || limit != 100 || string(text) != "some text" {
		t.Fatalf("%d %d %q %v", algo, limit, text, err)
	}
	tests := []struct {
		name    string
		payload []byte
		status  Status
	}{
		{name: "empty text ok", payload: []byte{0, 0, 0, 0, 1}},
		{name: "short", payload: []byte{0, 0, 0, 1}, status: StatusBadFrame},
		{name: "unknown algo", payload: []byte{2, 0, 0, 0, 1}, status: StatusBadFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := DecodeWherePayload(tc.payload)
			wantStatus(t, err, tc.status)
		})
	}
	if WhereAlgoName(WhereXor) != "xor" || WhereAlgoName(WhereChecksum) != "checksum" || WhereAlgoName(9) != "" {
		t.Fatal("WhereAlgoName")
	}
}

func TestCoordinateBody(t *testing.T) {
	b := AppendCoordinate(nil, coord(0, 0, 1, 999, 1000, 65535, 2, 3, 4))
	if len(b) != CoordSize {
		t.Fatal(len(b))
	}
	c, err := DecodeCoordinate(b)
	if err != nil || c != coord(0, 0, 1, 999, 1000, 65535, 2, 3, 4) {
		t.Fatalf("%v %v", c, err)
	}
	if _, err := DecodeCoordinate(b[:17]); StatusOf(err) != StatusBadFrame {
		t.Fatal(err)
	}
}

func TestCountBody(t *testing.T) {
	n, err := DecodeCount(AppendCount(nil, 123456))
	if err != nil || n != 123456 {
		t.Fatal(n, err)
	}
	for _, b := range [][]byte{nil, {1, 2, 3}, {1, 2, 3, 4, 5}} {
		if _, err := DecodeCount(b); StatusOf(err) != StatusBadFrame {
			t.Fatalf("%v: %v", b, err)
		}
	}
}

func TestListBody(t *testing.T) {
	names := []string{"", "notes", "a.b-c_d"}
	got, err := DecodeList(AppendList(nil, names))
	if err != nil || !reflect.DeepEqual(got, names) {
		t.Fatalf("%q %v", got, err)
	}
	empty, err := DecodeList(AppendList(nil, nil))
	if err != nil || len(empty) != 0 {
		t.Fatal(empty, err)
	}
	tests := []struct {
		name string
		body []byte
	}{
		{name: "no count", body: []byte{0}},
		{name: "count over body", body: []byte{0xff, 0xff, 0}},
		{name: "name truncated", body: []byte{0, 1, 5, 'a', 'b'}},
		{name: "trailing", body: []byte{0, 1, 1, 'a', 'z'}},
		{name: "missing entry", body: []byte{0, 2, 1, 'a'}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeList(tc.body)
			wantStatus(t, err, StatusBadFrame)
		})
	}
}

func TestStatusInfoBody(t *testing.T) {
	s := StatusInfo{Phexts: 3, Scrolls: 1 << 40, Bytes: 12345, Quota: 0}
	b := AppendStatusInfo(nil, s)
	if len(b) != StatusInfoSize {
		t.Fatal(len(b))
	}
	got, err := DecodeStatusInfo(b)
	if err != nil || got != s {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := DecodeStatusInfo(b[:27]); StatusOf(err) != StatusBadFrame {
		t.Fatal(err)
	}
}

func TestOpAndStatusNames(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{name: "op select", got: OpSelect.String(), want: "SELECT"},
		{name: "op reload", got: OpReload.String(), want: "RELOAD"},
		{name: "op unknown", got: Op(0x7f).String(), want: "OP(0x7F)"},
		{name: "status ok", got: StatusOK.String(), want: "OK"},
		{name: "status shutting down", got: StatusShuttingDown.String(), want: "SHUTTING_DOWN"},
		{name: "status unknown", got: Status(0x0C).String(), want: "STATUS(0x0C)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("%q want %q", tc.got, tc.want)
			}
		})
	}
	for _, o := range AllOps {
		if !o.Known() {
			t.Fatalf("%v not known", o)
		}
	}
	n := 0
	for i := 0; i < 256; i++ {
		if Op(i).Known() {
			n++
		}
	}
	if n != len(AllOps) {
		t.Fatalf("%d known ops, AllOps has %d", n, len(AllOps))
	}
}

func TestBufferPool(t *testing.T) {
	b := GetBuffer()
	b.B = append(b.B, "abc"...)
	PutBuffer(b)
	b2 := GetBuffer()
	if len(b2.B) != 0 {
		t.Fatal("pooled buffer not reset")
	}
	big := GetBuffer()
	big.B = make([]byte, 0, 2<<20)
	PutBuffer(big) // dropped
	PutBuffer(nil)
	PutBuffer(b2)
}
