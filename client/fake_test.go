package client

import (
	"bufio"
	"bytes"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// fakeServer speaks the real protocol (through package protocol) with an
// in-memory store, so the client is tested against real bytes without the
// gnet server. Knobs let tests inject failures.
type fakeServer struct {
	t        testing.TB
	ln       net.Listener
	token    string
	allow    uint8  // codecs the server allows (accept bits)
	maxFrame uint32 // announced max frame (DefaultMaxFrame when 0)

	// gate, when non-nil, is received from before answering a SELECT whose
	// library part is 999; answers behind it wait too (in-order replies).
	gate chan struct{}
	// badID makes every answer carry id+1000.
	badID atomic.Bool
	// drainAfterHello makes the server send an unsolicited SHUTTING_DOWN
	// right after the HELLO reply, then close.
	drainAfterHello bool
	// closeOnOp closes the connection instead of answering this op.
	closeOnOp atomic.Uint32

	compressedIn atomic.Int64 // requests that arrived compressed
	requests     atomic.Int64

	mu    sync.Mutex
	data  map[string]map[phext.Coordinate][]byte
	conns []net.Conn
	wg    sync.WaitGroup
}

func startFake(t *testing.T, configure func(*fakeServer)) *fakeServer {
	return startFakeTB(t, configure)
}

func startFakeTB(t testing.TB, configure func(*fakeServer)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, token: "pmb-v1-001-0123456789abcdef01234567",
		data: map[string]map[phext.Coordinate][]byte{}}
	if configure != nil {
		configure(s)
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// dropConns closes every accepted connection (a server crash, as the
// clients see it).
func (s *fakeServer) dropConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *fakeServer) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, nc)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer nc.Close()
			s.serve(nc)
		}()
	}
}

func (s *fakeServer) serve(nc net.Conn) {
	br := bufio.NewReader(nc)
	maxFrame := int(s.maxFrame)
	if maxFrame == 0 {
		maxFrame = protocol.DefaultMaxFrame
	}
	frame, err := readFrame(br, nil, maxFrame)
	if err != nil {
		return
	}
	hello, id, err := protocol.DecodeHello(frame)
	if err != nil {
		nc.Write(protocol.AppendErr(nil, id, err))
		return
	}
	if string(hello.Token) != s.token {
		nc.Write(protocol.AppendError(nil, id, protocol.StatusAuth, "unknown token"))
		return
	}
	codec := protocol.ChooseCodec(hello.Codecs, s.allow)
	nc.Write(protocol.AppendHelloReply(nil, id, &protocol.HelloReply{
		Version: 1, Codec: codec, MaxFrame: uint32(maxFrame), TenantName: "tenant-001",
		ServerVersion: "fake-1", CompressThreshold: protocol.CompressThreshold,
		MaxInFlight: 1024, Ops: protocol.AllOps,
	}))
	if s.drainAfterHello {
		nc.Write(protocol.AppendError(nil, 0, protocol.StatusShuttingDown, "draining"))
		return
	}
	dec := protocol.Decoder{MaxFrame: maxFrame, Codec: codec}
	var req protocol.Request
	var out []byte
	for {
		frame, err = readFrame(br, frame, maxFrame)
		if err != nil {
			return
		}
		s.requests.Add(1)
		err := dec.Decode(frame, &req)
		if req.Flags&protocol.FlagCompressed != 0 {
			s.compressedIn.Add(1)
		}
		if uint32(req.Op) == s.closeOnOp.Load() {
			return
		}
		rid := req.ID
		if s.badID.Load() {
			rid += 1000
		}
		if err != nil {
			out = protocol.AppendErr(out, rid, err)
		} else {
			if req.Op == protocol.OpSelect && req.Coord[0] == 999 && s.gate != nil {
				<-s.gate
			}
			st, body := s.handle(&req)
			out = protocol.AppendCompressedResponse(out, rid, st, body, codec)
		}
		// Batch the answers to pipelined requests into one write.
		if br.Buffered() >= 4 {
			continue
		}
		if _, err := nc.Write(out); err != nil {
			return
		}
		out = out[:0]
	}
}

func count(n int) []byte { return protocol.AppendCount(nil, uint32(n)) }

// handle runs one decoded request against the in-memory store.
func (s *fakeServer) handle(r *protocol.Request) (protocol.Status, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ph := s.data[string(r.Name)]
	if ph == nil {
		ph = map[phext.Coordinate][]byte{}
		s.data[string(r.Name)] = ph
	}
	switch r.Op {
	case protocol.OpPing:
		return protocol.StatusOK, nil
	case protocol.OpSelect:
		return protocol.StatusOK, ph[r.Coord]
	case protocol.OpInsert, protocol.OpUpdate:
		if !phext.ValidScroll(r.Payload) {
			return protocol.StatusBadScroll, []byte("scroll text must be UTF-8 without delimiters")
		}
		if bytes.Equal(r.Payload, []byte("over quota")) {
			return protocol.StatusQuota, []byte("quota of 1 MiB reached")
		}
		if r.Op == protocol.OpInsert {
			ph[r.Coord] = append(ph[r.Coord], r.Payload...)
		} else {
			ph[r.Coord] = append([]byte(nil), r.Payload...)
		}
		return protocol.StatusOK, count(len(r.Payload))
	case protocol.OpDelete:
		n := len(ph[r.Coord])
		delete(ph, r.Coord)
		return protocol.StatusOK, count(n)
	case protocol.OpTOC:
		var toc []byte
		for _, c := range sortedCoords(ph) {
			toc = phext.AppendTOCLine(toc, c, ph[c])
		}
		return protocol.StatusOK, toc
	case protocol.OpGet:
		var sc []phext.Scroll
		for _, c := range sortedCoords(ph) {
			sc = append(sc, phext.Scroll{Coord: c, Text: ph[c]})
		}
		return protocol.StatusOK, phext.Implode(sc)
	case protocol.OpPut:
		sc, err := phext.Explode(r.Payload)
		if err != nil {
			return protocol.StatusBadScroll, []byte(err.Error())
		}
		ph = map[phext.Coordinate][]byte{}
		for _, x := range sc {
			ph[x.Coord] = append([]byte(nil), x.Text...)
		}
		s.data[string(r.Name)] = ph
		return protocol.StatusOK, count(len(sc))
	case protocol.OpChecksum:
		var sc []phext.Scroll
		for _, c := range sortedCoords(ph) {
			sc = append(sc, phext.Scroll{Coord: c, Text: ph[c]})
		}
		return protocol.StatusOK, []byte(phext.Checksum(phext.Implode(sc)))
	case protocol.OpDelta:
		return protocol.StatusOK, append([]byte("delta:"), r.Payload...)
	case protocol.OpWhere:
		algo, limit, text, err := protocol.DecodeWherePayload(r.Payload)
		if err != nil {
			return protocol.StatusOf(err), []byte(err.Error())
		}
		c := phext.Coordinate{uint16(algo) + 1, uint16(limit % 1000), uint16(len(text)), 1, 1, 1, 1, 1, 1}
		return protocol.StatusOK, protocol.AppendCoordinate(nil, c)
	case protocol.OpList:
		var names []string
		for n := range s.data {
			names = append(names, n)
		}
		sort.Strings(names)
		return protocol.StatusOK, protocol.AppendList(nil, names)
	case protocol.OpStatus:
		return protocol.StatusOK, protocol.AppendStatusInfo(nil, protocol.StatusInfo{Phexts: uint32(len(s.data)), Scrolls: uint64(len(ph)), Bytes: 42, Quota: 1 << 20})
	case protocol.OpVersion:
		return protocol.StatusOK, []byte("fake-1")
	case protocol.OpCompact:
		return protocol.StatusOK, nil
	case protocol.OpReload:
		return protocol.StatusOK, []byte("reloaded 1 tenant")
	}
	return protocol.StatusUnknownOp, []byte("unknown op")
}

func sortedCoords(m map[phext.Coordinate][]byte) []phext.Coordinate {
	cs := make([]phext.Coordinate, 0, len(m))
	for c := range m {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Less(cs[j]) })
	return cs
}
