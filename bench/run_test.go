package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func quickOptions(addr string, tokens []string) *Options {
	return &Options{
		Addr: addr, Tokens: tokens, Duration: 300 * time.Millisecond,
		Warmup: 50 * time.Millisecond, Scrolls: 8, ProgressEvery: 100 * time.Millisecond,
	}
}

func TestRunVerifiesAgainstFake(t *testing.T) {
	tests := []struct {
		name     string
		conns    int
		pipeline int
		mix      Mix
		size     SizeRange
		phexts   int
		preload  bool
	}{
		{name: "one-conn-per-tenant", conns: 0, pipeline: 1, mix: DefaultMix, size: SizeRange{1024, 1024}, phexts: 1, preload: true},
		{name: "pipelined", conns: 0, pipeline: 16, mix: DefaultMix, size: SizeRange{100, 3000}, phexts: 1, preload: true},
		{name: "conns-share-tenants", conns: 12, pipeline: 4, mix: Mix{OpSelect: 40, OpUpdate: 20, OpInsert: 30, OpDelete: 10}, size: SizeRange{1, 64}, phexts: 3, preload: false},
		{name: "insert-only-hits-cap", conns: 0, pipeline: 8, mix: Mix{OpSelect: 10, OpInsert: 90}, size: SizeRange{4000, 5000}, phexts: 1, preload: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, toks := startFakeSQ(t, 4)
			o := quickOptions(f.addr(), toks)
			o.Conns, o.Pipeline, o.Mix, o.Size, o.Phexts, o.NoPreload = tc.conns, tc.pipeline, tc.mix, tc.size, tc.phexts, !tc.preload
			var progress int
			o.Progress = func(Progress) { progress++ }
			res, err := Run(context.Background(), o)
			if err != nil {
				t.Fatalf("Run: %v\n%v", err, res)
			}
			if res.Ops == 0 || res.OpsPerSec <= 0 || res.All.P50 <= 0 {
				t.Fatalf("no work measured: %+v", res)
			}
			var sum int64
			for _, s := range res.PerOp {
				sum += s.Count
				if tc.mix[opIndex(t, s.Op)] == 0 && s.Count > 0 && !(s.Op == "update" && tc.mix[OpInsert] > 0) {
					t.Errorf("%s ran but has no weight", s.Op)
				}
			}
			if sum != res.Ops {
				t.Errorf("per-op counts sum to %d, total %d", sum, res.Ops)
			}
			if !res.Verified || res.Failed() {
				t.Errorf("verified=%v failed=%v: %v", res.Verified, res.Failed(), res.Problems)
			}
			if progress == 0 {
				t.Errorf("Progress never called")
			}
			if tc.name == "insert-only-hits-cap" {
				// Inserts past MaxScroll become updates.
				if res.PerOp[opPos(res, "update")].Count == 0 {
					t.Errorf("no insert was turned into an update: %+v", res.PerOp)
				}
			}
		})
	}
}

func opIndex(t *testing.T, name string) OpKind {
	for k, n := range opNames {
		if n == name {
			return OpKind(k)
		}
	}
	t.Fatalf("unknown op %q", name)
	return 0
}

func opPos(r *Result, name string) int {
	for i, s := range r.PerOp {
		if s.Op == name {
			return i
		}
	}
	return -1
}

// The bench must notice a server that misbehaves: that is what makes its
// "verified" trustworthy.
func TestRunDetectsFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault func(f *fakeSQ)
		check func(t *testing.T, r *Result)
	}{
		{name: "cross-tenant", fault: func(f *fakeSQ) { f.leakEvery.Store(50) }, check: func(t *testing.T, r *Result) {
			if r.CrossTenant == 0 || r.Mismatches == 0 {
				t.Errorf("cross-tenant=%d mismatches=%d", r.CrossTenant, r.Mismatches)
			}
		}},
		{name: "corrupt", fault: func(f *fakeSQ) { f.corruptEvery.Store(50) }, check: func(t *testing.T, r *Result) {
			if r.Mismatches == 0 || r.CrossTenant != 0 {
				t.Errorf("mismatches=%d cross=%d", r.Mismatches, r.CrossTenant)
			}
		}},
		{name: "busy", fault: func(f *fakeSQ) { f.busyEvery.Store(20) }, check: func(t *testing.T, r *Result) {
			if r.ErrorCount() == 0 || r.Mismatches != 0 {
				t.Errorf("errors=%v mismatches=%d (a refused write must not move the model)", r.Errors, r.Mismatches)
			}
			for k := range r.Errors {
				if !strings.HasSuffix(k, " BUSY") {
					t.Errorf("error key %q", k)
				}
			}
		}},
		{name: "bad-count", fault: func(f *fakeSQ) { f.badCount.Store(true) }, check: func(t *testing.T, r *Result) {
			if r.CountErrors == 0 {
				t.Errorf("count errors = 0")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, toks := startFakeSQ(t, 3)
			tc.fault(f)
			o := quickOptions(f.addr(), toks)
			o.Pipeline = 4
			res, err := Run(context.Background(), o)
			if !errors.Is(err, ErrVerify) {
				t.Fatalf("err = %v, want ErrVerify", err)
			}
			if res == nil || !res.Failed() || len(res.Problems) == 0 {
				t.Fatalf("result does not say it failed: %+v", res)
			}
			tc.check(t, res)
		})
	}
}

func TestRunNoVerifyStillCountsErrors(t *testing.T) {
	f, toks := startFakeSQ(t, 2)
	f.corruptEvery.Store(10)
	o := quickOptions(f.addr(), toks)
	o.NoVerify = true
	if res, err := Run(context.Background(), o); err != nil || res.Verified {
		t.Fatalf("corruption without verification: err=%v verified=%v", err, res.Verified)
	}
	f.busyEvery.Store(10)
	if _, err := Run(context.Background(), o); !errors.Is(err, ErrVerify) {
		t.Fatalf("BUSY with --no-verify: err=%v, want ErrVerify", err)
	}
}

func TestRunRESP(t *testing.T) {
	f := startFakeRedis(t)
	o := &Options{Addr: f.ln.Addr().String(), Protocol: ProtoRESP, Tenants: 5, Conns: 10, Pipeline: 8,
		Duration: 300 * time.Millisecond, Mix: Mix{OpSelect: 50, OpUpdate: 20, OpInsert: 20, OpDelete: 10}, Scrolls: 6}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v %v", err, res.Problems)
	}
	if res.Ops == 0 || res.Protocol != ProtoRESP {
		t.Fatalf("%+v", res)
	}
}

func TestRunOps(t *testing.T) {
	f, toks := startFakeSQ(t, 3)
	o := quickOptions(f.addr(), toks)
	o.Duration, o.Ops, o.Pipeline = 0, 500, 4
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 500 {
		t.Fatalf("ops = %d, want exactly 500", res.Ops)
	}
}

func TestRunBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{name: "no-addr", o: Options{Tokens: []string{"x"}}},
		{name: "no-tokens", o: Options{Addr: "127.0.0.1:1"}},
		{name: "bad-protocol", o: Options{Addr: "127.0.0.1:1", Tokens: []string{"x"}, Protocol: "http"}},
		{name: "negative-pipeline", o: Options{Addr: "127.0.0.1:1", Tokens: []string{"x"}, Pipeline: -1}},
		{name: "too-many-conns-per-tenant", o: Options{Addr: "127.0.0.1:1", Tokens: []string{"x"}, Conns: 1000}},
		{name: "bad-size", o: Options{Addr: "127.0.0.1:1", Tokens: []string{"x"}, Size: SizeRange{10, 5}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), &tc.o); !errors.Is(err, ErrUsage) {
				t.Fatalf("err = %v, want ErrUsage", err)
			}
		})
	}
}

func TestRunDialFailure(t *testing.T) {
	f, _ := startFakeSQ(t, 1)
	o := quickOptions(f.addr(), []string{"wrong-token"})
	if _, err := Run(context.Background(), o); err == nil || errors.Is(err, ErrVerify) {
		t.Fatalf("err = %v, want a dial error", err)
	}
}

func TestRunCancel(t *testing.T) {
	f, toks := startFakeSQ(t, 2)
	o := quickOptions(f.addr(), toks)
	o.Duration = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := Run(ctx, o); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("cancel took %v", time.Since(start))
	}
}

func TestRunEcho(t *testing.T) {
	e, err := StartEcho("127.0.0.1:0", 1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	o := &Options{Addr: e.Addr(), Tokens: []string{"any"}, Conns: 8, Pipeline: 16, NoVerify: true,
		Duration: 300 * time.Millisecond}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	sel := res.PerOp[opPos(res, "select")]
	if sel.Count == 0 || res.BytesRead != sel.Count*1024 {
		t.Fatalf("select count %d, bytes read %d: echo must answer 1 KiB", sel.Count, res.BytesRead)
	}
}
