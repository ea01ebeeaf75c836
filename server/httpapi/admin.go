package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/phext/sq/config"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
)

// The admin API answers JSON and needs the config's admin_token
// ("Authorization: Bearer <admin_token>"):
//
//	GET  /admin/tenants                 every tenant with its usage
//	GET  /admin/tenants/{name}          one tenant with per-operation counters
//	POST /admin/tenants/{name}/disable  persist enabled=false, then reload
//	POST /admin/tenants/{name}/enable   persist enabled (absent), then reload

// AdminTenant is one tenant in the admin API's answers.
type AdminTenant struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	DataDir string `json:"data_dir"`
	// QuotaBytes is the configured quota (0 = unlimited).
	QuotaBytes int64 `json:"quota_bytes"`
	// The fields below are live values of an enabled tenant (0 otherwise).
	Bytes       int64  `json:"bytes"`
	Scrolls     int64  `json:"scrolls"`
	Phexts      int    `json:"phexts"`
	Connections int64  `json:"connections"`
	Requests    uint64 `json:"requests"`
	Errors      uint64 `json:"errors"`
	// Ops holds per-operation counters (one tenant's answer only).
	Ops map[string]AdminOpStats `json:"ops,omitempty"`
}

// AdminOpStats are the counters of one operation of one tenant, over both
// protocols.
type AdminOpStats struct {
	Requests uint64            `json:"requests"`
	BytesIn  uint64            `json:"bytes_in"`
	BytesOut uint64            `json:"bytes_out"`
	Statuses map[string]uint64 `json:"statuses"`
	// LatencySumMicros is the summed latency in microseconds.
	LatencySumMicros uint64 `json:"latency_us_sum"`
}

// AdminChange is the answer to enable and disable.
type AdminChange struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	Changed bool   `json:"changed"`
	Reload  string `json:"reload,omitempty"`
}

type adminError struct {
	Error string `json:"error"`
}

func (h *httpAPI) isAdmin(r *http.Request) bool {
	for _, v := range r.Header["Authorization"] {
		if h.s.IsAdminToken(bearer(v)) {
			return true
		}
	}
	return false
}

// mayReadMetrics: the metrics or the admin token, or trusted loopback.
func (h *httpAPI) mayReadMetrics(r *http.Request) bool {
	if h.trusted(r) {
		return true
	}
	for _, v := range r.Header["Authorization"] {
		if tok := bearer(v); h.s.IsMetricsToken(tok) || h.s.IsAdminToken(tok) {
			return true
		}
	}
	return false
}

func (h *httpAPI) adminJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		body = []byte(`{"error": "encoding the answer failed"}`)
	}
	body = append(body, '\n')
	h.count(routeAdmin, code)
	hd := w.Header()
	hd["Content-Type"] = appJSON
	hd["X-Content-Type-Options"] = noSniff
	w.WriteHeader(code)
	w.Write(body)
}

func (h *httpAPI) adminFail(w http.ResponseWriter, code int, format string, args ...any) {
	h.adminJSON(w, code, adminError{Error: fmt.Sprintf(format, args...)})
}

func (h *httpAPI) serveAdmin(w http.ResponseWriter, r *http.Request) {
	if !h.isAdmin(r) {
		if len(r.Header["Authorization"]) > 0 {
			h.authFailed(r)
		}
		h.adminFail(w, http.StatusUnauthorized, "admin token required (Authorization: Bearer <admin_token>)")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/admin/tenants")
	if !ok {
		h.adminFail(w, http.StatusNotFound, "no such admin route %s", r.URL.Path)
		return
	}
	rest = strings.Trim(rest, "/")
	parts := strings.Split(rest, "/")
	switch {
	case rest == "":
		if !h.adminMethod(w, r, http.MethodGet) {
			return
		}
		list, err := h.adminList()
		if err != nil {
			h.adminFail(w, http.StatusInternalServerError, "%v", err)
			return
		}
		h.adminJSON(w, http.StatusOK, struct {
			Tenants []AdminTenant `json:"tenants"`
		}{list})
	case len(parts) == 1:
		if !h.adminMethod(w, r, http.MethodGet) {
			return
		}
		h.adminOne(w, parts[0])
	case len(parts) == 2 && (parts[1] == "enable" || parts[1] == "disable"):
		if !h.adminMethod(w, r, http.MethodPost) {
			return
		}
		h.adminSetEnabled(w, parts[0], parts[1] == "enable")
	default:
		h.adminFail(w, http.StatusNotFound, "no such admin route %s", r.URL.Path)
	}
}

func (h *httpAPI) adminMethod(w http.ResponseWriter, r *http.Request, m string) bool {
	if r.Method == m {
		return true
	}
	w.Header().Set("Allow", m)
	h.adminFail(w, http.StatusMethodNotAllowed, "use %s", m)
	return false
}

// liveTenant fills the live fields of a from the running tenant tn.
func liveTenant(a *AdminTenant, tn server.Tenant, withOps bool) {
	a.Enabled = true
	a.Connections = tn.Connections()
	if u, err := tn.Store().Usage(); err == nil {
		a.Bytes, a.Scrolls, a.Phexts = u.Bytes, u.Scrolls, u.Phexts
	}
	if withOps {
		a.Ops = map[string]AdminOpStats{}
	}
	tn.EachOp(func(name string, o *server.OpStats) {
		n := o.Requests.Load()
		if n == 0 {
			return
		}
		a.Requests += n
		a.Errors += n - o.Status[protocol.StatusOK].Load()
		if !withOps {
			return
		}
		st := AdminOpStats{Requests: n, BytesIn: o.BytesIn.Load(), BytesOut: o.BytesOut.Load(),
			LatencySumMicros: o.LatSum.Load(), Statuses: map[string]uint64{}}
		for s := range o.Status {
			if v := o.Status[s].Load(); v > 0 {
				st.Statuses[protocol.Status(s).String()] = v
			}
		}
		a.Ops[name] = st
	})
}

// adminList returns every tenant sorted by name: the running ones, plus the
// disabled ones of the config file when ConfigPath is set.
func (h *httpAPI) adminList() ([]AdminTenant, error) {
	running := map[string]server.Tenant{}
	for _, tn := range h.s.Tenants() {
		running[tn.Name()] = tn
	}
	seen := make(map[string]bool, len(running))
	var out []AdminTenant
	if h.o.ConfigPath != "" {
		cfg, err := config.Load(h.o.ConfigPath)
		if err != nil {
			return nil, err
		}
		for _, tok := range cfg.SortedTokens() {
			e := cfg.Tenants[tok]
			a := AdminTenant{Name: e.Name, DataDir: e.DataDir, QuotaBytes: e.QuotaBytes()}
			if tn, ok := running[e.Name]; ok && e.IsEnabled() {
				a.DataDir, a.QuotaBytes = tn.Entry().DataDir, tn.Entry().QuotaBytes()
				liveTenant(&a, tn, false)
			}
			seen[e.Name] = true
			out = append(out, a)
		}
	}
	for name, tn := range running {
		if seen[name] {
			continue
		}
		a := AdminTenant{Name: name, DataDir: tn.Entry().DataDir, QuotaBytes: tn.Entry().QuotaBytes()}
		liveTenant(&a, tn, false)
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (h *httpAPI) adminOne(w http.ResponseWriter, name string) {
	if tn, ok := h.s.TenantByName(name); ok {
		a := AdminTenant{Name: name, DataDir: tn.Entry().DataDir, QuotaBytes: tn.Entry().QuotaBytes()}
		liveTenant(&a, tn, true)
		h.adminJSON(w, http.StatusOK, a)
		return
	}
	if h.o.ConfigPath != "" {
		cfg, err := config.Load(h.o.ConfigPath)
		if err != nil {
			h.adminFail(w, http.StatusInternalServerError, "%v", err)
			return
		}
		for _, e := range cfg.Tenants {
			if e.Name == name {
				h.adminJSON(w, http.StatusOK, AdminTenant{Name: name, Enabled: false,
					DataDir: e.DataDir, QuotaBytes: e.QuotaBytes()})
				return
			}
		}
	}
	h.adminFail(w, http.StatusNotFound, "no tenant %q", name)
}

// errNoTenant is returned by setEnabled for a name the config lacks.
var errNoTenant = errors.New("no such tenant")

// adminSetEnabled persists the tenant's enabled flag in the config file
// (atomically: temp file, fsync, rename) and reloads. If the reload fails,
// the previous file is put back and the running config is unchanged.
func (h *httpAPI) adminSetEnabled(w http.ResponseWriter, name string, enable bool) {
	if h.o.ConfigPath == "" {
		h.adminFail(w, http.StatusServiceUnavailable, "no config file: the server was started without a config path for the HTTP API")
		return
	}
	res, err := h.setEnabled(name, enable)
	switch {
	case errors.Is(err, errNoTenant):
		h.adminFail(w, http.StatusNotFound, "no tenant %q in %s", name, h.o.ConfigPath)
	case err != nil:
		h.adminFail(w, http.StatusInternalServerError, "%v", err)
	default:
		h.adminJSON(w, http.StatusOK, res)
	}
}

func (h *httpAPI) setEnabled(name string, enable bool) (AdminChange, error) {
	res := AdminChange{Name: name, Enabled: enable}
	h.adminMu.Lock()
	defer h.adminMu.Unlock()
	path := h.o.ConfigPath
	data, err := os.ReadFile(path)
	if err != nil {
		return res, fmt.Errorf("%w: %v", config.ErrInvalid, err)
	}
	// config.Parse, not config.Load: relative data dirs stay relative in the
	// file we write back.
	cfg, err := config.Parse(data)
	if err != nil {
		return res, err
	}
	tok := ""
	for t, e := range cfg.Tenants {
		if e.Name == name {
			tok = t
		}
	}
	if tok == "" {
		return res, errNoTenant
	}
	e := cfg.Tenants[tok]
	if e.IsEnabled() == enable {
		return res, nil
	}
	if enable {
		e.Enabled = nil // absent means enabled, as in SQ's format
	} else {
		off := false
		e.Enabled = &off
	}
	cfg.Tenants[tok] = e
	if err := config.WriteFile(path, cfg); err != nil {
		return res, err
	}
	res.Reload, err = h.s.ReloadFile(path)
	if err != nil {
		// Put the old file back so that file and running config agree.
		if old, perr := config.Parse(data); perr == nil {
			if werr := config.WriteFile(path, old); werr != nil {
				h.log.Error("admin: restoring the config file failed", "path", path, "err", werr)
			}
		}
		return res, fmt.Errorf("reload failed, change undone: %w", err)
	}
	res.Changed = true
	h.log.Info("admin: tenant enabled flag changed", "tenant", name, "enabled", enable)
	return res, nil
}
