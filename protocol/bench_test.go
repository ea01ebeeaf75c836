package protocol

import (
	"bytes"
	"strings"
	"testing"
)

func BenchmarkDecode(b *testing.B) {
	kib := bytes.Repeat([]byte("x"), 1024)
	benches := []struct {
		name  string
		frame []byte
	}{
		{name: "SELECT", frame: AppendRequest(nil, OpSelect, 1, []byte("notes"), c123, nil)},
		{name: "INSERT-1KiB", frame: AppendRequest(nil, OpInsert, 1, []byte("notes"), c123, kib)},
	}
	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			var d Decoder
			var req Request
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.frame)))
			for b.Loop() {
				if err := d.Decode(bc.frame, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("response-1KiB", func(b *testing.B) {
		f := AppendResponse(nil, 1, StatusOK, kib)
		var d Decoder
		var r Response
		b.ReportAllocs()
		b.SetBytes(int64(len(f)))
		for b.Loop() {
			if err := d.DecodeResponse(f, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRebase: re-pointing a decoded request at a copy of its frame,
// what a frame the server's event loop decoded and queued costs its worker
// instead of a second Decode (BenchmarkDecode/SELECT).
func BenchmarkRebase(b *testing.B) {
	frame := AppendRequest(nil, OpSelect, 1, []byte("notes"), c123, nil)
	cp := bytes.Clone(frame)
	var d Decoder
	var req Request
	if err := d.Decode(frame, &req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		req.Rebase(cp)
	}
}

func BenchmarkEncode(b *testing.B) {
	kib := bytes.Repeat([]byte("x"), 1024)
	name := []byte("notes")
	buf := make([]byte, 0, 4096)
	b.Run("SELECT", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(RequestSize(len(name), 0)))
		for b.Loop() {
			buf = AppendRequest(buf[:0], OpSelect, 1, name, c123, nil)
		}
	})
	b.Run("INSERT-1KiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(RequestSize(len(name), len(kib))))
		for b.Loop() {
			buf = AppendRequest(buf[:0], OpInsert, 1, name, c123, kib)
		}
	})
	b.Run("SELECT-response-1KiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(HeaderSize + len(kib)))
		for b.Loop() {
			buf = AppendResponse(buf[:0], 1, StatusOK, kib)
		}
	})
}

// BenchmarkCompression measures a 64 KiB phext-like body through each codec
// (encode = AppendCompressedResponse, decode = DecodeResponse).
func BenchmarkCompression(b *testing.B) {
	// Text made of words drawn pseudo-randomly from a small vocabulary,
	// scrolls separated by scroll breaks: compresses roughly like prose.
	words := strings.Fields("the of and a to in is you that it he was for on are as with his they I at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part phext scroll coordinate library shelf series")
	var sb strings.Builder
	x := uint32(7)
	for i := 0; sb.Len() < 64<<10; i++ {
		x = x*1664525 + 1013904223
		sb.WriteString(words[int(x>>16)%len(words)])
		if x%97 == 0 {
			sb.WriteByte(0x17)
		} else {
			sb.WriteByte(' ')
		}
	}
	body := []byte(sb.String())
	for _, codec := range []uint8{CodecZstd, CodecS2} {
		frame := AppendCompressedResponse(nil, 1, StatusOK, body, codec)
		b.Run("encode-"+codecName(codec), func(b *testing.B) {
			buf := make([]byte, 0, 2*len(body))
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				buf = AppendCompressedResponse(buf[:0], 1, StatusOK, body, codec)
			}
			b.ReportMetric(float64(len(frame))/float64(len(body)+HeaderSize), "ratio")
		})
		b.Run("decode-"+codecName(codec), func(b *testing.B) {
			d := Decoder{Codec: codec}
			var r Response
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := d.DecodeResponse(frame, &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
