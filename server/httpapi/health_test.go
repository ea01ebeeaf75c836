package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHealthEndpoints: /healthz and /readyz answer without a token and
// name nothing; /readyz fails once the server is marked not ready and
// while it drains, /healthz does not; other methods get 405.
func TestHealthEndpoints(t *testing.T) {
	e := startEnv(t, envOptions{})
	h := Handler(e.srv, Options{})
	get := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		rec := get("GET", p)
		if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
			t.Fatalf("GET %s: %d %q", p, rec.Code, rec.Body)
		}
		for tok := range e.cfg.Tenants {
			if strings.Contains(rec.Body.String(), tok) {
				t.Fatal("health answer names a token")
			}
		}
		if rec := get("HEAD", p); rec.Code != http.StatusOK {
			t.Fatalf("HEAD %s: %d", p, rec.Code)
		}
		if rec := get("POST", p); rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("POST %s: %d", p, rec.Code)
		}
	}
	e.srv.SetNotReady()
	if rec := get("GET", "/readyz"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz after SetNotReady: %d %q", rec.Code, rec.Body)
	}
	if rec := get("GET", "/healthz"); rec.Code != http.StatusOK {
		t.Fatalf("healthz after SetNotReady: %d", rec.Code)
	}
	// Requests still work while not ready (only new traffic is steered away).
	req := httptest.NewRequest("GET", "/api/v2/version", nil)
	req.Header.Set("Authorization", "Bearer "+e.tokens["alpha"])
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("a request while not ready: %d %q", rec.Code, rec.Body)
	}
}

// TestReadyzFailsWhileDraining: a fresh server is ready; once Shutdown
// begins it is not, before the engine stops.
func TestReadyzFailsWhileDraining(t *testing.T) {
	e := startEnv(t, envOptions{})
	h := Handler(e.srv, Options{})
	code := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code
	}
	if c := code(); c != http.StatusOK {
		t.Fatalf("readyz before shutdown: %d", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if c := code(); c != http.StatusServiceUnavailable {
		t.Fatalf("readyz after shutdown began: %d", c)
	}
	e.store.Close()
	e.srv = nil
}
