package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/phext/sq/config"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Tenant is one entry of a generated config.
type Tenant struct {
	Token   string
	Name    string
	DataDir string
}

// NewTenants makes n tenants named tenant-001 … with data dirs under dir
// and random tokens pmb-v1-NNN-<24 hex> (NNN counts from 001; it keeps
// growing past 999).
func NewTenants(dir string, n int) ([]Tenant, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: tenant count %d", ErrUsage, n)
	}
	ts := make([]Tenant, n)
	for i := range ts {
		tok, err := config.GenerateToken(i + 1)
		if err != nil {
			return nil, err
		}
		num := fmt.Sprintf("%03d", i+1)
		ts[i] = Tenant{
			Token:   tok,
			Name:    "tenant-" + num,
			DataDir: filepath.Join(dir, "tenant-"+num),
		}
	}
	return ts, nil
}

// WriteConfig writes tenants as a tenants.json in the SQ format
// {"tenants": {"<token>": {"name": …, "data_dir": …}}} to path with
// config.WriteFile (through a temporary file and a rename, so a server
// reloading it never reads half a file).
func WriteConfig(path string, tenants []Tenant) error {
	c := &config.Config{Tenants: make(map[string]config.TenantEntry, len(tenants))}
	for _, t := range tenants {
		c.Tenants[t.Token] = config.TenantEntry{Name: t.Name, DataDir: t.DataDir}
	}
	return config.WriteFile(path, c)
}

// ReadConfigTokens reads the tokens of an SQ tenants.json, sorted by
// tenant name so that tenant i is the same across runs.
func ReadConfigTokens(path string) ([]Tenant, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// Decoded, not validated (config.Parse would refuse what a server
	// refuses): bench only needs the enabled tenants' tokens.
	var c config.Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var ts []Tenant
	for tok, e := range c.Tenants {
		if !e.IsEnabled() {
			continue
		}
		ts = append(ts, Tenant{Token: tok, Name: e.Name, DataDir: e.DataDir})
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("%w: %s has no enabled tenants", ErrUsage, path)
	}
	// A server requires unique names (config.Validate), so any sort gives
	// the same order (this was an insertion sort: O(n²) at 10,000 tenants).
	slices.SortFunc(ts, func(a, b Tenant) int { return strings.Compare(a.Name, b.Name) })
	return ts, nil
}

// FreePort returns a 127.0.0.1 address with a port that was free a moment
// ago (the kernel picks it; another process could take it before use).
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// Host is a server child process.
type Host struct {
	// Addr is where the child said it listens.
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	logs *tailBuffer
}

// StartHost runs `exe host --config config --listen 127.0.0.1:0` plus
// args as a child process and waits (up to timeout) for its "sq:
// listening on ADDR" line. The child's stderr (its log) goes to logw when
// set; the last 8 KiB of it are kept for error messages either way.
func StartHost(ctx context.Context, exe, config string, args []string, logw io.Writer, timeout time.Duration) (*Host, error) {
	// Port 0: the server binds a free port itself and prints it, so no
	// other process can take the port between choosing and binding.
	argv := append([]string{"host", "--config", config, "--listen", "127.0.0.1:0"}, args...)
	cmd := exec.Command(exe, argv...)
	h := &Host{cmd: cmd, done: make(chan struct{}), logs: &tailBuffer{max: 8 << 10}}
	var errw io.Writer = h.logs
	if logw != nil {
		errw = io.MultiWriter(h.logs, logw)
	}
	cmd.Stderr = errw
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHost, err)
	}
	// Its own process group, so a Ctrl-C at the terminal reaches the bench
	// (which then stops the child in order) and not the child directly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHost, err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "sq: listening on "); ok && !found {
				found = true
				lines <- strings.TrimSpace(s)
			}
		}
		close(lines)
	}()
	go func() {
		h.err = cmd.Wait()
		close(h.done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a, ok := <-lines:
		if ok {
			h.Addr = a
			return h, nil
		}
		<-h.done
		return nil, fmt.Errorf("%w: exited before listening (%v): %s", ErrHost, h.err, h.logs.String())
	case <-t.C:
		h.Stop(5 * time.Second)
		return nil, fmt.Errorf("%w: no \"sq: listening on\" line within %v: %s", ErrHost, timeout, h.logs.String())
	case <-ctx.Done():
		h.Stop(5 * time.Second)
		return nil, ctx.Err()
	}
}

// PID returns the child's process id.
func (h *Host) PID() int { return h.cmd.Process.Pid }

// Exited reports whether the child has ended.
func (h *Host) Exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// Logs returns the last lines the child wrote to stderr.
func (h *Host) Logs() string { return h.logs.String() }

// Signal sends sig to the child.
func (h *Host) Signal(sig os.Signal) error { return h.cmd.Process.Signal(sig) }

// Stop sends SIGTERM, waits up to grace for the child to drain and exit,
// then kills it. It returns the child's exit error (nil for a clean exit
// after SIGTERM).
func (h *Host) Stop(grace time.Duration) error {
	if h.Exited() {
		return h.err
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-h.done:
		return h.err
	case <-t.C:
		_ = h.cmd.Process.Kill()
		<-h.done
		return fmt.Errorf("%w: did not exit within %v of SIGTERM; killed", ErrHost, grace)
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
