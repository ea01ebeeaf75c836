package main

// The figures of issue 13's hostile-tenant rows in docs/RELIABILITY.md: a
// real `sq host` child with a client memory budget, one attack at a time
// while a good tenant writes and reads, the server's peak RSS
// (/proc/PID/status VmHWM, reset before each attack) and the good tenant's
// p99 against its quiet p99 (measured before and after the attack). The
// attacker runs in a child process at nice 19 (runAttacker), so the figure
// measures the server's isolation, not the load generator's CPU. It builds
// its documents once and spends its CPU sending them (tinyDocs), and it
// reports its rounds and, for the PUT attacks, the bytes it sent: the
// attack's strength goes next to the figure. Long form only
// (SQ_RELIABILITY=long): it sends gigabytes. SQ_HOST_DIAG=DIR also
// records the server's execution trace, CPU profile and run-queue waits
// for every quiet and attack window (hostDiag).
//
// The attacker's connections write at most 64 KiB a write() call
// (attackWrite: a long system call of the attacker holds a CPU on this
// kernel whatever its priority). Diagnostics (docs/RELIABILITY.md, M4
// seventh pass): SQ_HOSTILE_WRITE=0 writes whole frames (the harness
// before), SQ_HOSTILE_SCHED=idle runs the attacker child under SCHED_IDLE
// instead of nice 19, and SQ_HOSTILE_VARIANT (variantEnv) replaces the
// attack by a pure CPU burner or sends only one of M4's two documents.
// Measured with them: two spinning goroutines at nice 19 or SCHED_IDLE
// leave the good tenant's p99 where it was (0.68× and 0.97×) and
// SCHED_IDLE does not lower M4's, so the child stays at nice 19; M4 written
// in 64 KiB calls halved the good p99 under attack (medians of 6 windows,
// 2.42 ms whole-frame against 1.20 ms, load 8.6–12).

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/internal/sqtest"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
)

// procKiB reads a "Name: N kB" field of /proc/pid/status.
func procKiB(t testing.TB, pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// goodLog is what the good tenant has had acknowledged: next is the
// number of its next insert, want what each scroll must hold.
type goodLog struct {
	next int
	want map[phext.Coordinate][]byte
}

// goodScrollTokens is how many inserts go to one scroll before the good
// tenant moves to the next: its SELECTs stay a few KiB however long the
// figures run. With one scroll for the whole run the scroll grew to
// ~0.5 MB over SQ_HOSTILE_REPEAT=3's 21 windows and the quiet p99 with
// it (0.5 ms at the first attack, 10 ms at the last), so later ratios
// compared against a slow reader, not a quiet server.
const goodScrollTokens = 500

// goodScroll is the scroll of the good tenant's n-th insert.
func goodScroll(n int) phext.Coordinate {
	s := n / goodScrollTokens
	return phext.Coordinate{1, 1, 1, 1, 1, 1, 1, uint16(1 + s/999), uint16(1 + s%999)}
}

// goodTenant inserts numbered tokens into its scrolls (goodScroll) and
// selects each back until stop, recording round trips in lat and what it
// had acknowledged in g. One goodTenant runs at a time.
func goodTenant(ctx context.Context, t testing.TB, c *client.Conn, stop <-chan struct{}, lat *[]time.Duration, g *goodLog) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		coord := goodScroll(g.next)
		tok := strconv.Itoa(g.next) + ";"
		t0 := time.Now()
		if _, err := c.Insert(ctx, "good", coord, []byte(tok)); err != nil {
			t.Errorf("good insert: %v", err)
			return
		}
		*lat = append(*lat, time.Since(t0))
		noteSlow(t0, "insert")
		g.want[coord] = append(g.want[coord], tok...)
		g.next++
		t0 = time.Now()
		if _, err := c.Select(ctx, "good", coord); err != nil {
			t.Errorf("good select: %v", err)
			return
		}
		*lat = append(*lat, time.Since(t0))
		noteSlow(t0, "select")
		time.Sleep(time.Millisecond)
	}
}

// slowLog records the good tenant's requests above slowNote (wall-clock
// start and end, unix nanoseconds) in SQ_HOST_DIAG/slow.txt, to match them
// with the server's execution trace (its Sync events carry wall time).
var (
	slowMu  sync.Mutex
	slowLog *os.File
)

const slowNote = 1500 * time.Microsecond

func noteSlow(t0 time.Time, op string) {
	d := time.Since(t0)
	dir := os.Getenv("SQ_HOST_DIAG")
	if d < slowNote || dir == "" {
		return
	}
	slowMu.Lock()
	defer slowMu.Unlock()
	if slowLog == nil {
		slowLog, _ = os.Create(filepath.Join(dir, "slow.txt"))
	}
	fmt.Fprintf(slowLog, "%d %d %s\n", t0.UnixNano(), t0.Add(d).UnixNano(), op)
}

func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// hostileAttack is one attack of TestHostileTenantFigures. run sends one
// round of it; it runs in the attacker child (TestHostileAttackerChild).
type hostileAttack struct {
	name string
	bug  string // an open issue: over the budget is a skip with BUG: unless SQ_RELIABILITY_BUGS=1
	run  func(t testing.TB)
}

// hostileAttacks lists the attacks against the server at addr (binary)
// and httpAddr (REST, may be empty), as the tenants of tokens.
func hostileAttacks(addr, httpAddr string, tokens map[string]string) []hostileAttack {
	ctx := context.Background()
	h := struct{ addr string }{addr}
	return []hostileAttack{
		{name: "compressed size bomb: 64 conns × 50 frames of 40 B declaring 64 MiB", run: func(t testing.TB) {
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rc, err := dialBomber(t, h.addr, tokens["mallory"])
					if err != nil {
						return
					}
					defer rc.Close()
					if rc.WriteFrames(bombBatch()) != nil || rc.Flush() != nil {
						return
					}
					var r protocol.Response
					for range 50 {
						if rc.Recv(&r) != nil {
							return
						}
					}
				}()
			}
			wg.Wait()
		}},
		{name: "DELTA: 4 conns × 60 MiB of distinct coordinates", run: func(t testing.TB) {
			var req []byte
			for i := 0; len(req) < 60<<20; i++ {
				req = fmt.Appendf(req, "%d.%d.%d/1.1.1/1.1.1: x\n", 1+i%999, 1+(i/999)%999, 1+i/998001)
			}
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := client.Dial(ctx, h.addr, tokens["mallory"], client.WithCompression(false), attackerDialer())
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					for range 3 {
						_, err := c.Delta(ctx, "large", req)
						if st := client.StatusOf(err); err != nil && st != protocol.StatusTooLarge && st != protocol.StatusBusy {
							t.Errorf("delta: %v", err)
						}
					}
				}()
			}
			wg.Wait()
		}},
		{name: "GET of an 80 MiB phext (binary, REST get and json-export), 8 clients × 10", run: func(t testing.TB) {
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := client.Dial(ctx, h.addr, tokens["mallory"], attackerDialer())
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					for range 10 {
						if _, err := c.Get(ctx, "large"); client.StatusOf(err) != protocol.StatusTooLarge {
							t.Errorf("get: %v", err)
						}
						for _, p := range []string{"get", "json-export"} {
							if httpAddr == "" {
								continue
							}
							req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/api/v2/"+p+"?p=large", nil)
							req.Header.Set("Authorization", "Bearer "+tokens["mallory"])
							resp, err := http.DefaultClient.Do(req)
							if err != nil {
								t.Error(err)
								continue
							}
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if resp.StatusCode != http.StatusRequestEntityTooLarge {
								t.Errorf("REST %s: %d", p, resp.StatusCode)
							}
						}
					}
				}()
			}
			wg.Wait()
		}},
		{name: "PUT of 1-byte scrolls in a 30 MiB quota (30 M scrolls, then 400 k)", run: func(t testing.TB) {
			tiny, err := client.Dial(ctx, h.addr, tokens["tiny"], client.WithCompression(false), attackerDialer())
			if err != nil {
				t.Fatal(err)
			}
			defer tiny.Close()
			putTinyScrolls(ctx, t, tiny)
		}},
		{name: "compressed size bomb streamed: 64 conns × 50 frames a round trip, redialled when closed, 1 s a round", run: func(t testing.TB) {
			// The smarter form of the first attack: it keeps its
			// connections and sends the same garbage frames on them
			// without end, reconnecting only when the server closes one.
			end := time.Now().Add(time.Second)
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(end) {
						rc, err := dialBomber(t, h.addr, tokens["mallory"])
						if err != nil {
							continue
						}
						var r protocol.Response
					stream:
						for time.Now().Before(end) {
							if rc.WriteFrames(bombBatch()) != nil || rc.Flush() != nil {
								break
							}
							for range 50 {
								if rc.Recv(&r) != nil {
									break stream
								}
							}
						}
						rc.Close()
					}
				}()
			}
			wg.Wait()
		}},
		{name: "PUT of 1-byte scrolls in a 30 MiB quota, compressed (30 M scrolls, then 400 k)", run: func(t testing.TB) {
			// The smarter form of the PUT attack: the same documents
			// compressed with the codec agreed in HELLO, so the server
			// cannot count the document as it arrives (a few MB on the
			// wire) and must decompress it first.
			tiny, err := client.Dial(ctx, h.addr, tokens["tiny"], attackerDialer())
			if err != nil {
				t.Fatal(err)
			}
			defer tiny.Close()
			putTinyScrolls(ctx, t, tiny)
		}},
		{name: "refused dials at the tenant's connection limit: hold the limit's worth, 64 dialers, 1 s a round", run: func(t testing.TB) {
			// mallory holds as many connections as --max-conns-per-tenant
			// lets it (opened in the first round, kept for the child's
			// life) and dials more from 64 goroutines: every further
			// HELLO is refused with BUSY.
			if held == nil {
				for {
					rc, err := client.DialRaw(ctx, h.addr, tokens["mallory"], attackerDialer())
					if err != nil {
						if client.StatusOf(err) != protocol.StatusBusy {
							t.Fatal(err)
						}
						break
					}
					held = append(held, rc)
				}
				fmt.Printf("attacker note: holds %d connections\n", len(held))
			}
			end := time.Now().Add(time.Second)
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(end) {
						rc, err := client.DialRaw(ctx, h.addr, tokens["mallory"], attackerDialer())
						if err == nil {
							rc.Close() // a slot came free: not the attack's point
							continue
						}
						refusedDials.Add(1)
					}
				}()
			}
			wg.Wait()
		}},
	}
}

// refusedDials counts the dials of the connection-limit attack that were
// refused (the attacker child prints it); held are its connections.
var (
	refusedDials atomic.Int64
	held         []*client.RawConn
)

// tinyDocs are the PUT attacks' documents: 30 M one-byte scrolls (over
// the quota) and 400 k (within it; 400 k × (1 + store.ScrollCost) fits
// 30 MiB, 1 M would not). Built once per attacker child, so the child
// spends its CPU sending, not building 60 MB each round.
var tinyDocs = sync.OnceValues(func() ([]byte, []byte) {
	return sqtest.TinyScrolls(30_000_000), sqtest.TinyScrolls(400_000)
})

// putTinyScrolls sends one round of the PUT attacks on c: a document of
// 30 M one-byte scrolls (QUOTA) and one of 400 k (accepted).
// SQ_HOSTILE_VARIANT=refused or accepted sends only that one (attribution
// runs, RELIABILITY.md M4 seventh pass).
func putTinyScrolls(ctx context.Context, t testing.TB, c *client.Conn) {
	over, fits := tinyDocs()
	v := os.Getenv(variantEnv)
	if v != "accepted" {
		if _, err := c.Put(ctx, "dots", over); client.StatusOf(err) != protocol.StatusQuota {
			t.Errorf("30 M scrolls: %v, want QUOTA", err)
		}
		sentBytes.Add(int64(len(over)))
	}
	if v != "refused" {
		if _, err := c.Put(ctx, "dots", fits); err != nil {
			t.Errorf("400 k scrolls: %v", err)
		}
		sentBytes.Add(int64(len(fits)))
	}
}

// attackWrite is the most an attacker's connection writes in one write()
// call (attackerDialer). Why not a whole frame at once: on this kernel
// ("Dynamic Preempt: none") a process inside a system call is not
// preempted until the call returns or yields, so one write() of a 60 MB
// frame over loopback (a few MB a call, as the socket buffer takes it, and
// on loopback the receiving side's TCP work runs in the sender's call too)
// held a CPU for milliseconds whatever the attacker's priority: neither
// nice 19 nor SCHED_IDLE took it off the CPU, and the good tenant's p99
// under M4 halved with the same attack written in 64 KiB calls
// (docs/RELIABILITY.md, M4 seventh pass). A remote attacker costs the
// server's host no such call, and the host's own receive work comes in
// NAPI's small batches; TLS clients write 16 KiB records. The server's
// work is the same either way: every byte still arrives.
// SQ_HOSTILE_WRITE=N sets it (0: whole frames, the harness before
// 2026-11-24 #5).
var attackWrite = 64 << 10

// writeEnv overrides attackWrite.
const writeEnv = "SQ_HOSTILE_WRITE"

// attackerDialer is the attacks' dialer: its connections write in steps
// of attackWrite bytes (SQ_HOSTILE_WRITE).
func attackerDialer() client.Option {
	step := attackWrite
	if v := os.Getenv(writeEnv); v != "" {
		step, _ = strconv.Atoi(v)
	}
	var d net.Dialer
	return client.WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil || step <= 0 {
			return c, err
		}
		return steppedConn{c, step}, nil
	})
}

// steppedConn writes in steps of at most step bytes.
type steppedConn struct {
	net.Conn
	step int
}

func (c steppedConn) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Conn.Write(b[n:min(len(b), n+c.step)])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// sentBytes counts the attack documents' bytes the attacker child wrote
// (it prints the sum: the attack's strength next to its rounds).
var sentBytes atomic.Int64

// variantEnv names a diagnostic variant of the attacker child, for
// telling the attack's cost to the server from its load on the machine:
// "burn" replaces any attack by 2 goroutines spinning (no network) for
// the window; "refused" and "accepted" make the PUT attacks send only
// that one of their two documents. Unset: the attacks as listed.
const variantEnv = "SQ_HOSTILE_VARIANT"

// burn spins on 2 goroutines for d: a pure CPU load of the attacker's
// size and priority, with no request to the server.
func burn(d time.Duration) {
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := 0; time.Now().Before(end); x++ {
				for range 1000 {
					x = x*31 + 7
				}
			}
		}()
	}
	wg.Wait()
}

// dialBomber dials the size-bomb attacks' connection. BUSY is the answer
// of a server that paces the tenant's new connections (sq host
// --hello-rate, --bad-frame-rate): the attack goes on, it is no failure.
func dialBomber(t testing.TB, addr, token string) (*client.RawConn, error) {
	rc, err := client.DialRaw(context.Background(), addr, token, client.WithCodecs(protocol.AcceptZstd|protocol.AcceptS2), attackerDialer())
	if err != nil && client.StatusOf(err) != protocol.StatusBusy {
		t.Error(err)
	}
	return rc, err
}

// bombBatch is 50 compressed SELECT frames of 40 bytes whose body is
// garbage declaring 64 MiB.
func bombBatch() []byte {
	var batch []byte
	for j := range 50 {
		body := binary.BigEndian.AppendUint32(nil, protocol.DefaultMaxFrame-6)
		body = append(body, "\x28\xb5\x2f\xfd garbage, not a body!!"...)
		batch = binary.BigEndian.AppendUint32(batch, uint32(6+len(body)))
		batch = append(batch, byte(protocol.OpSelect), protocol.FlagCompressed)
		batch = binary.BigEndian.AppendUint32(batch, uint32(j+2))
		batch = append(batch, body...)
	}
	return batch
}

// attackerChildEnv names the attack (its index in hostileAttacks) the
// attacker child runs, with the addresses, tokens and duration as JSON.
const attackerChildEnv = "SQ_HOSTILE_ATTACKER"

type attackerArgs struct {
	Attack         int
	Addr, HTTPAddr string
	Tokens         map[string]string
	For            time.Duration
}

// schedEnv chooses the attacker child's CPU class: "idle" runs it under
// SCHED_IDLE (chrt --idle 0), otherwise nice 19.
const schedEnv = "SQ_HOSTILE_SCHED"

// runAttacker runs attack i for d in a child process at the lowest CPU
// priority (nice 19) and returns how many rounds it sent and the CPU time
// (user + system) the child used. The figure is
// meant to measure the server's isolation of the good tenant, not the
// load generator's: with the attackers' goroutines in the test process,
// the good client's own goroutine waited behind them for a core (run-queue
// wait, reported as "test process run-queue wait"), and that wait was part
// of every round trip it measured.
func runAttacker(t *testing.T, i int, addr, httpAddr string, tokens map[string]string, d time.Duration) (int, time.Duration) {
	args, err := json.Marshal(attackerArgs{Attack: i, Addr: addr, HTTPAddr: httpAddr, Tokens: tokens, For: d})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nice", "-n", "19", os.Args[0], "-test.run=^TestHostileAttackerChild$", "-test.count=1", "-test.v")
	if os.Getenv(schedEnv) == "idle" {
		cmd = exec.Command("chrt", "--idle", "0", os.Args[0], "-test.run=^TestHostileAttackerChild$", "-test.count=1", "-test.v")
	}
	cmd.Env = append(os.Environ(), attackerChildEnv+"="+string(args))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("attacker: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`attacker rounds: (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("attacker printed no rounds:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	for _, note := range regexp.MustCompile(`attacker note: (.*)`).FindAllSubmatch(out, -1) {
		t.Logf("attacker: %s", note[1])
	}
	return n, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// procCPU is the CPU time (user + system) process pid has used
// (/proc/PID/stat fields 14 and 15, in clock ticks of 10 ms).
func procCPU(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}

// TestHostileAttackerChild runs one attack of TestHostileTenantFigures
// (runAttacker) in its own process.
func TestHostileAttackerChild(t *testing.T) {
	env := os.Getenv(attackerChildEnv)
	if env == "" {
		t.Skip("only run as TestHostileTenantFigures' attacker child")
	}
	var a attackerArgs
	if err := json.Unmarshal([]byte(env), &a); err != nil {
		t.Fatal(err)
	}
	attack := hostileAttacks(a.Addr, a.HTTPAddr, a.Tokens)[a.Attack]
	if os.Getenv(variantEnv) == "burn" {
		attack.run = func(testing.TB) { burn(time.Second) }
	}
	t0 := time.Now()
	rounds := 0
	for rounds == 0 || time.Since(t0) < a.For {
		attack.run(t)
		rounds++
	}
	fmt.Printf("attacker rounds: %d\n", rounds)
	if n := sentBytes.Load(); n > 0 {
		fmt.Printf("attacker note: sent %d MB of documents\n", n/1e6)
	}
	if n := refusedDials.Load(); n > 0 {
		fmt.Printf("attacker note: %d refused dials\n", n)
	}
}

// loadAvg is the machine's 1-minute load average (/proc/loadavg).
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// schedLatencies reads this process's goroutine run-queue wait histogram.
func schedLatencies() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64Histogram()
}

// schedP99 is the 99th percentile of the waits recorded between a and b.
func schedP99(a, b *metrics.Float64Histogram) time.Duration {
	var total uint64
	d := make([]uint64, len(b.Counts))
	for i := range b.Counts {
		d[i] = b.Counts[i] - a.Counts[i]
		total += d[i]
	}
	var seen uint64
	for i, n := range d {
		seen += n
		if total > 0 && seen*100 >= total*99 {
			return time.Duration(b.Buckets[i+1] * float64(time.Second))
		}
	}
	return 0
}

// diag signals the server child (SIGUSR1) to start or stop its execution
// trace and print its run-queue waits when SQ_HOST_DIAG names a directory
// (see TestKillLoopHostChild).
func diag(t testing.TB, h *hostChild, stop bool) {
	if os.Getenv("SQ_HOST_DIAG") == "" {
		return
	}
	n := strings.Count(h.stderr.String(), "diag: ")
	h.cmd.Process.Signal(syscall.SIGUSR1)
	if !stop {
		time.Sleep(50 * time.Millisecond)
		return
	}
	for range 100 {
		if out := h.stderr.String(); strings.Count(out, "diag: ") > n {
			l := out[strings.LastIndex(out, "diag: "):]
			t.Logf("server %s", strings.TrimSpace(l[:strings.IndexByte(l, '\n')+1]))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHostileTenantFigures(t *testing.T) {
	if os.Getenv("SQ_RELIABILITY") != "long" {
		t.Skip("long form only (SQ_RELIABILITY=long)")
	}
	const budget = 256 << 20
	dir := t.TempDir()
	tokens := map[string]string{}
	cfg := &config.Config{Tenants: map[string]config.TenantEntry{}}
	for i, name := range []string{"good", "mallory", "tiny"} {
		tok, err := config.GenerateToken(i)
		if err != nil {
			t.Fatal(err)
		}
		tokens[name] = tok
		e := config.TenantEntry{Name: name, DataDir: filepath.Join(dir, "data", name)}
		if name == "tiny" {
			e.QuotaMB = 30
		}
		cfg.Tenants[tok] = e
	}
	cfgPath := filepath.Join(dir, "tenants.json")
	if err := config.WriteFile(cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	h := startHost(t, "--config", cfgPath, "--durability", "everysec", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0",
		"--max-client-memory", strconv.Itoa(budget),
		// The connection-limit attack holds this many of mallory's
		// connections; the others open at most 64 at once (and mal).
		"--max-conns-per-tenant", "256")
	defer h.kill()
	ctx := context.Background()
	good, err := client.Dial(ctx, h.addr, tokens["good"])
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	mal, err := client.Dial(ctx, h.addr, tokens["mallory"], client.WithCompression(false))
	if err != nil {
		t.Fatal(err)
	}
	defer mal.Close()
	// mallory's large phext for the GET attack: 80 MiB in 8 MiB scrolls.
	part := bytes.Repeat([]byte("L"), 8<<20)
	for i := range 10 {
		if _, err := mal.Update(ctx, "large", phext.Coordinate{1, 1, 1, 1, 1, 1, 1, 1, uint16(i + 1)}, part); err != nil {
			t.Fatal(err)
		}
	}
	httpAddr := ""
	for _, line := range strings.Split(h.stdout.String()+h.stderr.String(), "\n") {
		if i := strings.Index(line, "REST API on "); i >= 0 {
			httpAddr = strings.TrimPrefix(strings.Fields(line[i+len("REST API on "):])[0], "http://")
		}
	}

	attacks := hostileAttacks(h.addr, httpAddr, tokens)
	g := &goodLog{want: map[phext.Coordinate][]byte{}}
	quietFor := func(d time.Duration) []time.Duration {
		var lat []time.Duration
		stop := make(chan struct{})
		time.AfterFunc(d, func() { close(stop) })
		goodTenant(ctx, t, good, stop, &lat, g)
		return lat
	}
	quietFor(time.Second) // warm up

	only := os.Getenv("SQ_HOSTILE_ONLY") // e.g. "0,1": run only those attacks
	// SQ_HOSTILE_REPEAT=n runs each attack n times (quiet, attack, quiet
	// again each time) and logs the median ratio: one window's p99 on
	// this shared box varies by 2× from run to run.
	repeat := 1
	if v := os.Getenv("SQ_HOSTILE_REPEAT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SQ_HOSTILE_REPEAT=%q: want a count ≥ 1", v)
		}
		repeat = n
	}
	for i, a := range attacks {
		if only != "" && !slices.Contains(strings.Split(only, ","), strconv.Itoa(i)) {
			continue
		}
		var ratios []float64
		for range repeat {
			ratios = append(ratios, hostileFigure(t, h, a, i, budget, httpAddr, tokens, quietFor, good, g))
		}
		if repeat > 1 {
			slices.Sort(ratios)
			t.Logf("%s: median ratio %.2f× over %d runs %.2f", a.name, ratios[len(ratios)/2], len(ratios), ratios)
		}
	}
	if t.Failed() {
		t.Logf("server log:\n%s", h.stderr.String())
	}
	for coord, want := range g.want {
		got, err := good.Select(ctx, "good", coord)
		if err != nil || string(got) != string(want) {
			t.Fatalf("the good tenant's scroll %s: %d bytes, want %d (%v)", coord, len(got), len(want), err)
		}
	}
	t.Logf("good tenant: %d acknowledged inserts in %d scrolls, all present", g.next, len(g.want))
}

// attackFor is how long each attack of TestHostileTenantFigures runs.
const attackFor = 5 * time.Second

// hostileFigure runs attack a (index i) once in a subtest: the good
// tenant's p99 quiet, under attack and quiet again, and the server's peak
// RSS over its baseline. It returns the p99 ratio (attack ÷ quiet).
func hostileFigure(t *testing.T, h *hostChild, a hostileAttack, i int, budget int64, httpAddr string, tokens map[string]string,
	quietFor func(time.Duration) []time.Duration, good *client.Conn, g *goodLog) float64 {
	ctx := context.Background()
	pid := h.cmd.Process.Pid
	var ratio float64
	t.Run(a.name, func(t *testing.T) {
		diag(t, h, false)
		quiet := quietFor(3 * time.Second)
		diag(t, h, true)
		base := procKiB(t, pid, "VmRSS")
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			t.Logf("cannot reset VmHWM: %v", err)
		}
		var lat []time.Duration
		stop := make(chan struct{})
		doneGood := make(chan struct{})
		go func() { goodTenant(ctx, t, good, stop, &lat, g); close(doneGood) }()
		sched0 := schedLatencies()
		diag(t, h, false)
		t0 := time.Now()
		cpu0, delay0 := procCPU(t, pid), runDelay(os.Getpid())
		rounds, attackerCPU := runAttacker(t, i, h.addr, httpAddr, tokens, attackFor)
		took := time.Since(t0)
		serverCPU := procCPU(t, pid) - cpu0
		clientDelay := runDelay(os.Getpid()) - delay0
		diag(t, h, true)
		clientSched := schedP99(sched0, schedLatencies())
		close(stop)
		<-doneGood
		peak := procKiB(t, pid, "VmHWM")
		// Quiet again after the attack: the quiet p99 is taken over
		// both windows, so a change in the machine's load during
		// the run weighs on both sides of the ratio.
		after := quietFor(2 * time.Second)
		r := func(d []time.Duration) time.Duration { return p99(d).Round(10 * time.Microsecond) }
		all := append(slices.Clone(quiet), after...)
		t.Logf("%s: %d rounds in %.1f s (CPU: server %.2f s, attacker %.2f s); server RSS %d MiB before, peak %d MiB (+%d MiB; budget %d MiB); good tenant p99 quiet %v (before %v, after %v), under attack %v (%.2f×, %d / %d requests); test process run-queue wait p99 %v, its threads' kernel run-queue wait %.3f s; load average %s",
			a.name, rounds, took.Seconds(), serverCPU.Seconds(), attackerCPU.Seconds(), base>>10, peak>>10, (peak-base)>>10, budget>>20,
			r(all), r(quiet), r(after), r(lat),
			float64(p99(lat))/float64(p99(all)), len(all), len(lat), clientSched, clientDelay.Seconds(), loadAvg())
		ratio = float64(p99(lat)) / float64(p99(all))
		if (peak-base)<<10 > budget {
			if a.bug != "" && os.Getenv("SQ_RELIABILITY_BUGS") == "" {
				t.Skipf("BUG: peak RSS %d MiB above baseline + budget: %s", peak>>10, a.bug)
			}
			t.Errorf("peak RSS %d MiB above baseline + budget", peak>>10)
		}
	})
	return ratio
}
