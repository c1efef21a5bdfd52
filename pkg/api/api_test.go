package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// switchable is a dependency whose health the test flips; when down it fails with why (default
// "connection refused").
type switchable struct {
	down atomic.Bool
	why  atomic.Pointer[string]
}

func (s *switchable) Check(context.Context) (probes.Result, error) {
	if s.down.Load() {
		if why := s.why.Load(); why != nil {
			return probes.Result{}, errors.New(*why)
		}
		return probes.Result{}, errors.New("connection refused")
	}
	return probes.Result{Status: probes.Healthy, Body: json.RawMessage(`{"status":"ok","legacyField":42}`),
		Fields: map[string]any{"heapUsed": "21MB"}}, nil
}

type env struct {
	deps   map[string]*switchable
	mon    *monitor.Monitor
	srv    *httptest.Server
	token  atomic.Value
	cancel context.CancelFunc
}

func setup(t *testing.T) *env {
	t.Helper()
	e := &env{deps: map[string]*switchable{"app": {}, "memory": {}, "mcpClient": {}}}
	e.token.Store("")
	kinds := probes.Registry{"fake": {New: func(spec probes.Spec) (probes.Probe, error) {
		return e.deps[spec.Name], nil
	}}}
	pol := config.Policy{
		Interval: 30 * time.Millisecond, Timeout: time.Second, FailuresBeforeUnhealthy: 1, SuccessesBeforeHealthy: 1,
		Breaker: config.BreakerPolicy{FailureThreshold: 1000, Window: 1000, Delay: time.Hour, SuccessThreshold: 1},
	}
	l := &config.Loaded{Source: "test", SHA256: "abc", LoadedAt: time.Now(), Config: &config.Config{
		Scheduler: config.Scheduler{MaxConcurrentProbes: 4},
		Probes: []config.Probe{
			{Name: "app", Kind: "fake", Critical: true, Legacy: true, Policy: pol},
			{Name: "memory", Kind: "fake", Policy: pol},
			{Name: "mcpClient", Kind: "fake", Policy: pol, DependsOn: []string{"app"}},
		},
	}}
	m, err := monitor.New(l, monitor.Options{Kinds: kinds, Tick: 10 * time.Millisecond, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e.mon = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	h := NewHandler(m, Options{Token: func() string { return e.token.Load().(string) }})
	e.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		e.srv.Close()
		cancel()
		<-done
	})
	return e
}

func (e *env) waitOverall(t *testing.T, want probes.Status) {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, func() bool { return e.mon.Snapshot().Overall == want }, "overall %s", want)
}

func get(t *testing.T, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// path reads a dotted JSON path, as jq would.
func path(t *testing.T, body, p string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, body)
	}
	for _, k := range strings.Split(p, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: %q is not an object in %s", p, k, body)
		}
		v = m[k]
	}
	return v
}

func TestSeedJSONPaths(t *testing.T) {
	e := setup(t)
	e.waitOverall(t, probes.Healthy)
	u := e.srv.URL

	code, body, hdr := get(t, u+"/api/health")
	if code != 200 || path(t, body, "data.status") != "ok" || path(t, body, "success") != true {
		t.Fatalf("/api/health: %d %s", code, body)
	}
	if hdr.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("content type %q", hdr.Get("Content-Type"))
	}
	if _, err := time.Parse(time.RFC3339, path(t, body, "timestamp").(string)); err != nil {
		t.Errorf("timestamp: %v", err)
	}
	if path(t, body, "data.legacy.legacyField") != float64(42) || path(t, body, "data.enhanced.services.memory") != "healthy" {
		t.Errorf("legacy/enhanced paths wrong: %s", body)
	}
	if path(t, body, "data.circuitBreakers.total") != float64(3) || path(t, body, "data.enhanced.overall") != "healthy" {
		t.Errorf("circuitBreakers/overall wrong: %s", body)
	}
	if path(t, body, "data.version") != "test" || path(t, body, "data.uptime") == nil || path(t, body, "data.performance") == nil {
		t.Errorf("version/uptime/performance missing: %s", body)
	}

	code, body, _ = get(t, u+"/api/health/detailed")
	if code != 200 || path(t, body, "data.health.overall") != "healthy" {
		t.Fatalf("/api/health/detailed: %d %s", code, body)
	}
	if path(t, body, "data.health.services.memory.heapUsed") != "21MB" || path(t, body, "data.health.services.memory.kind") != "fake" {
		t.Errorf("memory service: %v", path(t, body, "data.health.services.memory"))
	}
	if deps := path(t, body, "data.container.dependencies.mcpClient").([]any); len(deps) != 1 || deps[0] != "app" {
		t.Errorf("container.dependencies: %v", deps)
	}
	if path(t, body, "data.config.sha256") != "abc" || path(t, body, "data.circuitBreakers.healthy") != true {
		t.Errorf("config/circuitBreakers: %s", body)
	}

	code, body, _ = get(t, u+"/api/health/circuit-breakers")
	if code != 200 || path(t, body, "data.summary.healthy") != true || path(t, body, "data.summary.closed") != float64(3) {
		t.Fatalf("/api/health/circuit-breakers: %d %s", code, body)
	}
	if path(t, body, "data.breakers.app.state") != "CLOSED" {
		t.Errorf("breaker app: %v", path(t, body, "data.breakers.app"))
	}
}

func TestCriticalDownFailsEndpoints(t *testing.T) {
	e := setup(t)
	e.waitOverall(t, probes.Healthy)
	e.deps["app"].down.Store(true)
	e.waitOverall(t, probes.Unhealthy)
	testkit.Eventually(t, 15*time.Second, func() bool { return e.mon.Snapshot().Check("mcpClient").Status == probes.Blocked },
		"mcpClient blocked by app")
	u := e.srv.URL

	if code, body, _ := get(t, u+"/api/health"); code != 503 || path(t, body, "data.status") != "error" {
		t.Fatalf("/api/health: %d %s", code, body)
	}
	code, body, _ := get(t, u+"/api/health")
	if path(t, body, "data.legacy") != nil || !strings.Contains(path(t, body, "data.legacyError").(string), "connection refused") {
		t.Errorf("legacy must be null with legacyError when the app is down: %s", body)
	}
	_ = code
	if code, body, _ := get(t, u+"/api/health/detailed"); code != 503 || path(t, body, "data.health.overall") != "unhealthy" {
		t.Fatalf("/api/health/detailed: %d %s", code, body)
	}
	code, body, _ = get(t, u+"/readyz")
	if code != 503 || !strings.Contains(body, "[-]app failed: unhealthy: connection refused") || !strings.HasSuffix(body, "readyz check failed\n") {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	if !strings.Contains(body, "[+]mcpClient ok (non-critical, blocked: dependency \"app\" is unhealthy") {
		t.Errorf("/readyz should show mcpClient blocked but non-critical: %q", body)
	}
	if code, body, _ := get(t, u+"/readyz?exclude=app"); code != 200 || body != "ok" {
		t.Fatalf("/readyz?exclude=app: %d %q", code, body)
	}
	if code, _, _ := get(t, u+"/livez"); code != 200 {
		t.Fatalf("/livez must not depend on a dependency: %d", code)
	}
	if code, _, _ := get(t, u+"/startupz"); code != 200 {
		t.Fatalf("/startupz passed once and must stay passed: %d", code)
	}
}

func TestKubeEndpoints(t *testing.T) {
	e := setup(t)
	u := e.srv.URL
	if code, body, _ := get(t, u+"/startupz"); code != 503 && e.mon.Snapshot().Starting {
		t.Fatalf("/startupz before any result: %d %q", code, body)
	}
	e.waitOverall(t, probes.Healthy)
	tests := []struct {
		name, path string
		code       int
		want       []string
	}{
		{"readyz plain", "/readyz", 200, []string{"ok"}},
		{"readyz verbose", "/readyz?verbose", 200, []string{"[+]shutdown ok\n", "[+]app ok\n", "[+]memory ok\n", "readyz check passed\n"}},
		{"readyz one check", "/readyz/app", 200, []string{"ok"}},
		{"readyz one check verbose", "/readyz/memory?verbose", 200, []string{"[+]memory ok\n"}},
		{"readyz unknown check", "/readyz/nope", 404, []string{`no readyz check named "nope"`}},
		{"readyz exclude unknown", "/readyz?verbose&exclude=nope", 200, []string{`no matches for "nope"`}},
		{"readyz exclude", "/readyz?verbose&exclude=app&exclude=memory", 200, []string{"[+]app excluded: ok\n", "[+]memory excluded: ok\n"}},
		{"livez verbose", "/livez?verbose", 200, []string{"[+]ping ok\n", "[+]probe-loop ok\n", "livez check passed\n"}},
		{"livez one", "/livez/ping", 200, []string{"ok"}},
		{"startupz", "/startupz?verbose", 200, []string{"[+]app ok\n", "startupz check passed\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, hdr := get(t, u+tt.path)
			if code != tt.code {
				t.Fatalf("%s: %d, want %d: %q", tt.path, code, tt.code, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s: body %q lacks %q", tt.path, body, w)
				}
			}
			if hdr.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", hdr.Get("Cache-Control"))
			}
		})
	}
}

func TestReadyzFailsWhileShuttingDown(t *testing.T) {
	e := setup(t)
	e.waitOverall(t, probes.Healthy)
	e.mon.SetDraining()
	code, body, _ := get(t, e.srv.URL+"/readyz")
	if code != 503 || !strings.Contains(body, "[-]shutdown failed: shutting down") {
		t.Fatalf("/readyz while draining: %d %q", code, body)
	}
	if code, _, _ := get(t, e.srv.URL+"/livez"); code != 200 {
		t.Fatalf("/livez while draining: %d", code)
	}
}

func TestDetailsToken(t *testing.T) {
	e := setup(t)
	const secret = "s3cr3t-token-value"
	e.token.Store(secret)
	u := e.srv.URL
	for _, p := range []string{"/api/health/detailed", "/api/health/circuit-breakers"} {
		t.Run(p, func(t *testing.T) {
			for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", secret}, {"Authorization", "Basic " + secret}} {
				code, body, h := get(t, u+p, hdr...)
				if code != 401 || path(t, body, "error.code") != "unauthorized" || h.Get("WWW-Authenticate") == "" {
					t.Fatalf("%v: %d %s", hdr, code, body)
				}
				if strings.Contains(body, secret) {
					t.Fatal("the 401 body leaks the token")
				}
			}
			if code, body, _ := get(t, u+p, "Authorization", "Bearer "+secret); code == 401 || strings.Contains(body, secret) {
				t.Fatalf("with the token: %d", code)
			}
		})
	}
	for _, p := range []string{"/livez", "/readyz", "/startupz", "/api/health"} {
		if code, _, _ := get(t, u+p); code == 401 {
			t.Errorf("%s must stay open for kubelets and load balancers", p)
		}
	}
}

func TestMethodsAndUnknownPaths(t *testing.T) {
	e := setup(t)
	u := e.srv.URL
	resp, err := http.Head(u + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 503 {
		t.Fatalf("HEAD /readyz: %d", resp.StatusCode)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, u+"/api/health", strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 405 || path(t, string(b), "error.code") != "method_not_allowed" {
			t.Fatalf("%s /api/health: %d %s", m, resp.StatusCode, b)
		}
	}
	code, body, _ := get(t, u+"/nope")
	if code != 404 || path(t, body, "success") != false {
		t.Fatalf("/nope: %d %s", code, body)
	}
}
