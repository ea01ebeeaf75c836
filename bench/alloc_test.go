package bench

import (
	"bufio"
	"bytes"
	"context"
	"testing"
	"time"
)

// memWire is an allocation-free in-memory server for one connection: it
// applies each request when it is sent (the real server executes one
// connection's requests in order too) and queues the answer.
type memWire struct {
	store   map[*target][]byte
	answers []answer
	bodies  [][]byte
	head, n int
	id      uint32
}

func newMemWire(depth int) *memWire {
	w := &memWire{store: map[*target][]byte{}, answers: make([]answer, depth), bodies: make([][]byte, depth)}
	return w
}

func (w *memWire) send(op OpKind, t *target, text []byte) (uint32, error) {
	w.id++
	i := (w.head + w.n) % len(w.answers)
	a := answer{ok: true, id: w.id}
	cur := w.store[t]
	switch op {
	case OpSelect:
		w.bodies[i] = append(w.bodies[i][:0], cur...)
		a.body = w.bodies[i]
	case OpUpdate:
		w.store[t] = append(cur[:0], text...)
		a.count, a.hasCount = int64(len(text)), true
	case OpInsert:
		w.store[t] = append(cur, text...)
		a.count, a.hasCount = int64(len(text)), true
	case OpDelete:
		a.count, a.hasCount = int64(len(cur)), true
		w.store[t] = cur[:0]
	}
	w.answers[i] = a
	w.n++
	return w.id, nil
}

func (w *memWire) flush() error  { return nil }
func (w *memWire) buffered() int { return w.n }
func (w *memWire) close() error  { return nil }
func (w *memWire) recv(a *answer) error {
	*a = w.answers[w.head]
	w.head = (w.head + 1) % len(w.answers)
	w.n--
	return nil
}

// newTestConn builds a runner with one connection on wire w.
func newTestConn(t *testing.T, o *Options, w wire) *conn {
	t.Helper()
	o.dial = func(context.Context, string, string) (wire, error) { return w, nil }
	opts, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{o: opts, table: opts.Mix.table(), base: time.Now()}
	r.pool = newPool(max(1<<20, 4*opts.Size.Max)+opts.Size.Max, 1)
	r.shards = []*shard{{}}
	for k := range r.shards[0].h {
		r.shards[0].h[k] = newHist()
	}
	if err := r.dialAll(context.Background(), o.dial); err != nil {
		t.Fatal(err)
	}
	c := r.conns[0]
	for c.prepIdx < len(c.scrolls) {
		c.issue(phasePrepare, false)
		if err := c.w.flush(); err != nil {
			t.Fatal(err)
		}
		if err := c.recvOne(); err != nil {
			t.Fatal(err)
		}
	}
	r.phase.Store(phaseRun)
	r.recording.Store(true)
	return c
}

// A steady-state operation of the load loop allocates nothing: no
// per-request buffers, no per-answer state, latencies into fixed batches.
func TestRunAllocs(t *testing.T) {
	tests := []struct {
		name     string
		mix      Mix
		size     SizeRange
		pipeline int
	}{
		{name: "mixed", mix: DefaultMix, size: SizeRange{1024, 1024}, pipeline: 1},
		{name: "write-heavy-range", mix: Mix{OpSelect: 20, OpUpdate: 50, OpInsert: 25, OpDelete: 5}, size: SizeRange{10, 2000}, pipeline: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := &Options{Addr: "mem", Tenants: 1, Pipeline: tc.pipeline, Mix: tc.mix, Size: tc.size, Scrolls: 16}
			c := newTestConn(t, o, newMemWire(tc.pipeline))
			step := func() {
				for c.n < len(c.ring) {
					c.issue(phaseRun, true)
				}
				if err := c.recvOne(); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 20000; i++ { // warm: scroll capacities, map entries
				step()
			}
			if avg := testing.AllocsPerRun(5000, step); avg > 0 {
				t.Fatalf("%.3f allocations per operation, want 0", avg)
			}
			if c.r.problems.Load() != 0 {
				t.Fatalf("problems: %v", c.r.problemLines)
			}
		})
	}
}

// Over the real SQ wire (client.RawConn) against the in-process echo
// server, an operation allocates (next to) nothing on both sides.
func TestSQWireAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("network")
	}
	e, err := StartEcho("127.0.0.1:0", 1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	w, err := dialSQ(false, 0)(context.Background(), e.Addr(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	o := &Options{Addr: e.Addr(), Tenants: 1, Pipeline: 1, NoVerify: true, Scrolls: 4}
	c := newTestConn(t, o, w)
	step := func() {
		c.issue(phaseRun, true)
		if err := c.w.flush(); err != nil {
			t.Fatal(err)
		}
		if err := c.recvOne(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2000; i++ {
		step()
	}
	// gnet may allocate now and then (a frame straddling its ring buffer).
	if avg := testing.AllocsPerRun(2000, step); avg > 0.05 {
		t.Fatalf("%.3f allocations per operation over the wire, want ≤ 0.05", avg)
	}
}

// Decoding RESP answers allocates nothing either (same generator for
// Redis as for SQ).
func TestRESPRecvAllocs(t *testing.T) {
	in := []byte("+OK\r\n:1234\r\n$5\r\nhello\r\n$-1\r\n")
	rd := bytes.NewReader(in)
	w := &respWire{br: bufio.NewReaderSize(rd, 4096), fifo: make([]OpKind, 8)}
	var a answer
	step := func() {
		rd.Reset(in)
		w.br.Reset(rd)
		for i := 0; i < 4; i++ {
			w.n = 1
			if err := w.recv(&a); err != nil {
				t.Fatal(err)
			}
		}
	}
	step()
	if avg := testing.AllocsPerRun(1000, step); avg > 0 {
		t.Fatalf("%.2f allocations per 4 answers", avg)
	}
}
