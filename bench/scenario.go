package bench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
)

// Scenario is a named workload preset. Its fields are defaults that
// explicit flags override.
type Scenario struct {
	Name    string    // the --scenario value
	Summary string    // one line for `sq help bench`
	Mix     Mix       // default --mix
	Size    SizeRange // default --size
	Tenants int       // default --tenants
	Scrolls int       // default --scrolls (per tenant)
}

// Scenarios lists the presets of `sq bench --scenario`.
var Scenarios = []Scenario{
	{Name: "mixed", Summary: "80% SELECT, 15% UPDATE, 4% INSERT, 1% DELETE of 1 KiB scrolls (default)",
		Mix: DefaultMix, Size: SizeRange{1024, 1024}, Tenants: 500, Scrolls: 20},
	{Name: "read-heavy", Summary: "95% SELECT, 5% UPDATE of 1 KiB scrolls",
		Mix: Mix{OpSelect: 95, OpUpdate: 5}, Size: SizeRange{1024, 1024}, Tenants: 500, Scrolls: 20},
	{Name: "write-heavy", Summary: "20% SELECT, 50% UPDATE, 25% INSERT, 5% DELETE of 1 KiB scrolls",
		Mix: Mix{OpSelect: 20, OpUpdate: 50, OpInsert: 25, OpDelete: 5}, Size: SizeRange{1024, 1024}, Tenants: 500, Scrolls: 20},
	{Name: "large-scrolls", Summary: "the mixed mix on 1 MiB scrolls, 20 tenants with 4 scrolls each",
		Mix: DefaultMix, Size: SizeRange{1 << 20, 1 << 20}, Tenants: 20, Scrolls: 4},
	{Name: "big-phext", Summary: "write latency of one tenant as its phext grows 1 KB → 10 MB → 100 MB",
		Mix: Mix{OpSelect: 20, OpUpdate: 60, OpInsert: 20}, Size: SizeRange{1024, 1024}, Tenants: 1, Scrolls: 20},
	{Name: "idle", Summary: "10,000 idle authenticated connections next to 500 working tenants: RSS and p99 cost",
		Mix: DefaultMix, Size: SizeRange{1024, 1024}, Tenants: 500, Scrolls: 20},
	{Name: "reload", Summary: "the mixed scenario while the config is reloaded every second",
		Mix: DefaultMix, Size: SizeRange{1024, 1024}, Tenants: 500, Scrolls: 20},
	{Name: "watch", Summary: "change feed: --watch-writers writers and --watchers watchers per tenant; events/s, send-to-delivery p50/p99, every change seen in order; phases with and without watchers interleaved",
		Mix: Mix{OpUpdate: 100}, Size: SizeRange{64, 64}, Tenants: 500, Scrolls: 1},
}

// ScenarioByName returns the preset called name.
func ScenarioByName(name string) (Scenario, bool) {
	for _, s := range Scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// GrowthPoint is one step of the big-phext curve.
type GrowthPoint struct {
	// Target is the size the phext was grown to before the step; Bytes is
	// what the server's STATUS reported.
	Target int64 `json:"target_bytes"`
	Bytes  int64 `json:"phext_bytes"`
	// Fill is how long writing the filler scrolls for this step took.
	FillSeconds float64 `json:"fill_seconds"`
	// Writes is the latency of UPDATE and INSERT together, Reads of
	// SELECT, measured by a Run at this size.
	Writes Latency `json:"write_latency"`
	Reads  Latency `json:"read_latency"`
	Ops    float64 `json:"ops_per_sec"`
	Result *Result `json:"run"`
	Err    string  `json:"error,omitempty"`
}

// DefaultGrowthSteps are the sizes of the big-phext curve.
var DefaultGrowthSteps = []int64{1 << 10, 10 << 10, 100 << 10, 1 << 20, 10 << 20, 100 << 20}

// RunBigPhext grows one tenant's phext o.Phext through steps (filler
// scrolls of up to fillSize bytes under library 2, which the measuring
// Run never touches) and after each step measures o (its Tokens[0] is the
// tenant) for o.Duration. Each point carries its Run's Result; the first
// failed step ends the curve with its error.
func RunBigPhext(ctx context.Context, o *Options, steps []int64, fillSize int) ([]GrowthPoint, error) {
	if len(o.Tokens) == 0 {
		return nil, fmt.Errorf("%w: big-phext needs a tenant token", ErrUsage)
	}
	if fillSize <= 0 {
		fillSize = 1 << 20
	}
	c, err := client.Dial(ctx, o.Addr, o.Tokens[0], client.WithCompression(o.Compression))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	p := newPool(fillSize+tagLen, o.Seed+7)
	var filled int64
	next := phext.Coordinate{2, 1, 1, 1, 1, 1, 1, 1, 1}
	var points []GrowthPoint
	for _, target := range steps {
		start := time.Now()
		for filled < target {
			n := int(min(int64(fillSize), target-filled))
			text := p.appendSegment(nil, 0, segment{off: 0, n: uint32(max(n, tagLen))})
			if _, err := c.Update(ctx, o.Phext, next, text); err != nil {
				return points, fmt.Errorf("bench: big-phext fill at %s: %w", next, err)
			}
			filled += int64(len(text))
			if !next.Advance(phext.LevelScroll) {
				next.Advance(phext.LevelSection)
			}
		}
		pt := GrowthPoint{Target: target, FillSeconds: time.Since(start).Seconds()}
		if st, err := c.Status(ctx); err == nil {
			pt.Bytes = int64(st.Bytes)
		}
		oo := *o
		oo.Tokens = o.Tokens[:1]
		oo.Conns = 1
		res, err := Run(ctx, &oo)
		if res != nil {
			pt.Result = res
			pt.Ops = res.OpsPerSec
			pt.Reads = latencyOf(res.hists[OpSelect])
			w := newHist()
			w.Merge(res.hists[OpUpdate])
			w.Merge(res.hists[OpInsert])
			pt.Writes = latencyOf(w)
		}
		if err != nil {
			pt.Err = err.Error()
			points = append(points, pt)
			return points, err
		}
		points = append(points, pt)
	}
	return points, nil
}

// WriteGrowthTable prints the big-phext curve.
func WriteGrowthTable(w io.Writer, pts []GrowthPoint) {
	fmt.Fprintln(w, "big-phext: write latency as one tenant's phext grows (1 conn, pipeline as given)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phext size\tfill\tops/s\twrite p50\twrite p99\twrite max\tread p50\tread p99\t")
	for _, p := range pts {
		fmt.Fprintf(tw, "%s\t%.2fs\t%s\t%s\t%s\t%s\t%s\t%s\t\n", FormatBytes(p.Bytes), p.FillSeconds, FormatRate(p.Ops),
			FormatMicros(p.Writes.P50), FormatMicros(p.Writes.P99), FormatMicros(p.Writes.Max),
			FormatMicros(p.Reads.P50), FormatMicros(p.Reads.P99))
	}
	tw.Flush()
	for _, p := range pts {
		if p.Err != "" {
			fmt.Fprintf(w, "step %s failed: %s\n", FormatBytes(p.Target), p.Err)
		}
	}
}

// IdleResult is the outcome of the idle scenario.
type IdleResult struct {
	IdleConns int `json:"idle_conns"`
	// RSSBefore and RSSAfter are the server's RSS (median of samples over
	// a quiet second) before the idle connections opened, on the fresh
	// server, and once they were all authenticated and had answered one
	// PING; PerConn is the difference per connection.
	RSSBefore int64 `json:"rss_before_bytes"`
	RSSAfter  int64 `json:"rss_after_bytes"`
	PerConn   int64 `json:"rss_per_idle_conn_bytes"`
	// With and Without are the working tenants' runs while the idle
	// connections are open and after they were closed.
	With    *Result `json:"with_idle"`
	Without *Result `json:"without_idle"`
	// PingErrors counts idle connections whose PING failed.
	PingErrors int64 `json:"ping_errors"`
}

// RunIdle measures what idle connections cost. On the server as it is
// (fresh, ideally) it samples RSS, opens idle authenticated connections
// spread over o.Tokens (each answers a PING, then PINGs again every
// pingEvery) and samples RSS again; then it measures o while they stay
// open, closes them and measures o again. rss reads the server's RSS
// (nil: not measured).
func RunIdle(ctx context.Context, o *Options, idle int, pingEvery time.Duration, rss func() (int64, error), progress func(string)) (*IdleResult, error) {
	say := func(f string, a ...any) {
		if progress != nil {
			progress(fmt.Sprintf(f, a...))
		}
	}
	if len(o.Tokens) == 0 || idle < 0 {
		return nil, fmt.Errorf("%w: idle needs tokens and idle ≥ 0", ErrUsage)
	}
	out := &IdleResult{IdleConns: idle}
	quietRSS := func() int64 {
		if rss == nil {
			return 0
		}
		var v []int64
		for i := 0; i < 5; i++ {
			time.Sleep(200 * time.Millisecond)
			if x, err := rss(); err == nil {
				v = append(v, x)
			}
		}
		if len(v) == 0 {
			return 0
		}
		for i := 1; i < len(v); i++ {
			for j := i; j > 0 && v[j] < v[j-1]; j-- {
				v[j], v[j-1] = v[j-1], v[j]
			}
		}
		return v[len(v)/2]
	}
	out.RSSBefore = quietRSS()
	say("idle: opening %d idle connections", idle)
	conns := make([]*client.RawConn, idle)
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	small := client.DefaultOptions
	small.NoCompression = true
	small.ReadBufferSize = 512
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rc, err := client.DialRaw(ctx, o.Addr, o.Tokens[i%len(o.Tokens)], client.WithOptions(small))
			if err == nil {
				err = pingRaw(rc)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("bench: idle connection %d: %w", i, err)
				}
				if rc != nil {
					rc.Close()
				}
				return
			}
			conns[i] = rc
		}()
	}
	wg.Wait()
	closeAll := func() {
		for i, rc := range conns {
			if rc != nil {
				rc.Close()
				conns[i] = nil
			}
		}
	}
	defer closeAll()
	if firstErr != nil {
		return out, firstErr
	}
	out.RSSAfter = quietRSS()
	if idle > 0 && out.RSSAfter > 0 {
		out.PerConn = (out.RSSAfter - out.RSSBefore) / int64(idle)
	}
	// Keep them mostly idle: each PINGs once per pingEvery, staggered.
	pctx, cancel := context.WithCancel(ctx)
	var pingErrs atomic.Int64
	var pwg sync.WaitGroup
	if pingEvery > 0 && idle > 0 {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			step := pingEvery / time.Duration(idle)
			if step < 50*time.Microsecond {
				step = 50 * time.Microsecond
			}
			t := time.NewTicker(step)
			defer t.Stop()
			for i := 0; ; i = (i + 1) % len(conns) {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
				}
				if err := pingRaw(conns[i]); err != nil {
					pingErrs.Add(1)
				}
			}
		}()
	}
	say("idle: run with %d idle connections", idle)
	res, err := Run(ctx, o)
	cancel()
	pwg.Wait()
	out.With = res
	out.PingErrors = pingErrs.Load()
	if err != nil {
		return out, err
	}
	closeAll()
	say("idle: run after closing the idle connections")
	res, err = Run(ctx, o)
	out.Without = res
	if err == nil && out.PingErrors > 0 {
		err = fmt.Errorf("%w: %d idle PINGs failed", ErrVerify, out.PingErrors)
	}
	return out, err
}

// pingRaw sends one PING and waits for its OK answer.
func pingRaw(rc *client.RawConn) error {
	if err := rc.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	if _, err := rc.Send(opPing, nil, phext.Origin, nil); err != nil {
		return err
	}
	if err := rc.Flush(); err != nil {
		return err
	}
	var resp respFrame
	if err := rc.Recv(&resp); err != nil {
		return err
	}
	if resp.Status != statusOK {
		return fmt.Errorf("PING answered %s: %s", resp.Status, resp.Body)
	}
	return rc.SetDeadline(time.Time{})
}

// WriteIdleTable prints the idle scenario's outcome.
func WriteIdleTable(w io.Writer, r *IdleResult) {
	fmt.Fprintf(w, "idle: %d idle authenticated connections: server RSS %s → %s, %s per idle connection; %d idle PING errors\n",
		r.IdleConns, FormatBytes(r.RSSBefore), FormatBytes(r.RSSAfter), FormatBytes(r.PerConn), r.PingErrors)
	if r.Without != nil && r.With != nil {
		fmt.Fprintf(w, "working tenants without → with idle: %s → %s ops/s, p99 %s → %s, p99.9 %s → %s\n",
			FormatRate(r.Without.OpsPerSec), FormatRate(r.With.OpsPerSec),
			FormatMicros(r.Without.All.P99), FormatMicros(r.With.All.P99),
			FormatMicros(r.Without.All.P999), FormatMicros(r.With.All.P999))
	}
}

// ReloadLoop rewrites the config at path every interval, alternately with
// and without one extra tenant (the others stay as they are), and asks the
// server to reload through a connection of tenants[0] (the server must
// trust loopback: sq host --trust-loopback). It returns when ctx
// ends, with the number of reloads done and the errors seen.
func ReloadLoop(ctx context.Context, addr, path string, tenants []Tenant, extraDir string, interval time.Duration) (int, []string) {
	var errs []string
	c, err := client.Dial(ctx, addr, tenants[0].Token)
	if err != nil {
		return 0, []string{"reload: dial: " + err.Error()}
	}
	defer c.Close()
	extra, err := NewTenants(extraDir, 1)
	if err != nil {
		return 0, []string{err.Error()}
	}
	extra[0].Name = "bench-reload-extra"
	extra[0].DataDir = filepath.Join(extraDir, "bench-reload-extra")
	t := time.NewTicker(interval)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n, errs
		case <-t.C:
		}
		ts := tenants
		if n%2 == 0 {
			ts = append(append([]Tenant(nil), tenants...), extra[0])
		}
		if path != "" {
			if err := WriteConfig(path, ts); err != nil {
				errs = append(errs, "reload: write config: "+err.Error())
				continue
			}
		}
		if _, err := c.Reload(ctx); err != nil && ctx.Err() == nil {
			errs = append(errs, "reload: "+err.Error())
		}
		n++
	}
}
