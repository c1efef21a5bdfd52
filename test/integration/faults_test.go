package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/chaos"
	"github.com/health-agent/health-agent/internal/testkit"
)

// faultConfig: one critical http probe on a chaos dependency, with short intervals and a breaker that
// opens after 3 failed attempts of the last 5 and tries again after 400ms.
const faultConfig = `
server: { shutdownDelay: 0s, detailsToken: "${DETAILS_TOKEN}" }
scheduler: { jitter: 0 }
defaults:
  interval: 50ms
  timeout: 250ms
  failuresBeforeUnhealthy: 2
  successesBeforeHealthy: 1
  retry: { maxRetries: 1, backoff: 10ms, maxBackoff: 20ms, jitter: 0 }
  breaker: { failureThreshold: 3, window: 5, delay: 400ms, successThreshold: 1 }
probes:
  - name: dep
    kind: http
    critical: true
    url: "%s/health"
    maxBodyBytes: 65536
    expectJSON:
      - { path: status, equals: ok }
  - { name: config, kind: config }
`

func healthyView(v view) bool {
	return v.status == "healthy" && v.breaker == "CLOSED" && v.overall == "healthy" && v.health == "ok" &&
		v.healthCode == 200 && v.readyz == 200
}

func historyHas(v view, s string) bool {
	for _, e := range v.history {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// TestFaultModes changes one dependency's behaviour at run time, mode after mode, under a running agent.
// For each: the probe's verdict, its breaker, the overall status, /api/health and /readyz, the failure
// the breaker recorded, and that /readyz and /api/health kept answering fast all along. After each
// fault the dependency recovers and so must the agent.
func TestFaultModes(t *testing.T) {
	dep := startChaos(t, chaos.Healthy())
	h := startAgent(t, setup{config: fmt.Sprintf(faultConfig, dep.URL())})
	h.waitView("dep", "healthy at start", healthyView)

	tests := []struct {
		name     string
		mode     chaos.Mode
		healthy  bool
		evidence string // what the breaker's history must show for a failing mode
	}{
		{"ok", chaos.Healthy(), true, ""},
		{"slow within the timeout", chaos.Slowed(50 * time.Millisecond), true, ""},
		// Each execution takes longer than two intervals, yet well within the timeout: the verdict must
		// not go stale between results.
		{"slower than two intervals, within the timeout", chaos.Slowed(150 * time.Millisecond), true, ""},
		{"500", chaos.Failing(500), false, "status 500, want 2xx"},
		{"503", chaos.Failing(503), false, "status 503, want 2xx"},
		{"slower than the timeout", chaos.Slowed(5 * time.Second), false, "timed out after 250ms"},
		{"hang", chaos.Hanging(), false, "timed out after 250ms"},
		{"connection reset", chaos.Resetting(), false, "connection reset"},
		{"garbage body", chaos.Garbage(), false, "body is not JSON"},
		{"garbage on the wire", chaos.NotHTTP(), false, "malformed HTTP"},
		{"endless body", chaos.EndlessBody(), false, "body exceeds 65536 bytes"},
		{"wrong JSON", chaos.Answering(`{"status":"down"}`), false, `status = "down", want "ok"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer h.use(t)()
			before := dep.Requests()
			dep.Set(tt.mode)
			s := h.sample("/readyz", "/api/health")
			if tt.healthy {
				testkit.EventuallyState(t, 20*time.Second, func() (bool, string) {
					return dep.Requests() >= before+5, fmt.Sprint(dep.Requests() - before)
				}, "a few executions in this mode")
				h.waitView("dep", "healthy", healthyView)
			} else {
				v := h.waitView("dep", "unhealthy with its breaker open", func(v view) bool {
					return v.status == "unhealthy" && v.breaker == "OPEN" && v.overall == "unhealthy" &&
						v.health == "error" && v.healthCode == 503 && v.readyz == 503 && historyHas(v, tt.evidence)
				})
				if r := h.get("/livez"); r.code != 200 {
					t.Errorf("/livez %d while a dependency fails: liveness must not depend on it", r.code)
				}
				if r := h.detail("/readyz?verbose"); !strings.Contains(r.body, "[-]dep failed: unhealthy") {
					t.Errorf("/readyz?verbose does not name the failing probe: %q", r.body)
				}
				t.Logf("%s", v)
			}
			testkit.EventuallyState(t, 20*time.Second, func() (bool, string) {
				s.mu.Lock()
				defer s.mu.Unlock()
				return len(s.lat) >= 100, fmt.Sprint(len(s.lat))
			}, "enough latency samples")
			l := s.finish()
			assertResponsive(t, tt.name, l, 100)
			if tt.healthy && len(l.failed) > 0 {
				t.Errorf("%d of %d answers failed while the dependency was healthy; first: %q", l.n-l.codes[200], l.n, l.failed[0])
			}

			dep.Set(chaos.Healthy())
			h.waitView("dep", "recovered", healthyView)
		})
	}
}

// TestRetryAfterIsHonoured: a 429 with Retry-After: 1 keeps the probe away for a second (no retry, no
// scheduled execution in between), and the second 429 in a row turns it unhealthy (hysteresis 2).
func TestRetryAfterIsHonoured(t *testing.T) {
	dep := startChaos(t, chaos.Healthy())
	h := startAgent(t, setup{config: fmt.Sprintf(faultConfig, dep.URL())})
	h.waitView("dep", "healthy at start", healthyView)

	before := dep.Requests()
	dep.Set(chaos.RateLimited("1"))
	set := time.Now()
	s := h.sample("/readyz", "/api/health")
	v := h.waitView("dep", "unhealthy after two 429s", func(v view) bool {
		return v.status == "unhealthy" && v.overall == "unhealthy" && v.readyz == 503 && v.healthCode == 503
	})
	elapsed, n := time.Since(set), dep.Requests()-before
	if allowed := int64(elapsed/time.Second) + 2; n > allowed {
		t.Errorf("%d requests in %s despite Retry-After: 1 (at most %d)", n, elapsed, allowed)
	}
	if n < 2 || elapsed < 900*time.Millisecond {
		t.Errorf("unhealthy after %d requests in %s: want the second 429, a second after the first", n, elapsed)
	}
	if n < 3 && v.breaker != "CLOSED" {
		t.Errorf("breaker %s after %d failures: the window needs 3", v.breaker, n)
	}
	if !strings.Contains(v.reason, "status 429") {
		t.Errorf("reason %q does not say 429", v.reason)
	}
	assertResponsive(t, "429", s.finish(), 50)
	dep.Set(chaos.Healthy())
	h.waitView("dep", "recovered", healthyView)
}

// TestNonCriticalFaultDegrades: a non-critical dependency down makes the agent degraded, not unready.
func TestNonCriticalFaultDegrades(t *testing.T) {
	app, extra := startChaos(t, chaos.Healthy()), startChaos(t, chaos.Hanging())
	cfg := fmt.Sprintf(faultConfig, app.URL()) + fmt.Sprintf("  - { name: extra, kind: http, url: %q }\n", extra.URL())
	h := startAgent(t, setup{config: cfg})
	s := h.sample("/readyz", "/api/health")
	v := h.waitView("extra", "extra unhealthy, agent degraded", func(v view) bool {
		return v.status == "unhealthy" && v.breaker == "OPEN" && v.overall == "degraded" && v.health == "degraded" &&
			v.healthCode == 200 && v.readyz == 200
	})
	t.Logf("%s", v)
	if r := h.detail("/readyz?verbose"); r.code != 200 || !strings.Contains(r.body, "[+]extra ok (non-critical, unhealthy") {
		t.Errorf("/readyz?verbose: %d %q", r.code, r.body)
	}
	assertResponsive(t, "non-critical hang", s.finish(), 50)
}

// TestRetryAfterCannotParkTheProbe: an app that once answers 503 with Retry-After: 86400 (a day) and is
// healthy afterwards is healthy again, and /readyz passes, within two intervals plus the breaker's delay:
// a Retry-After that is not a 429's holds the probe back at most one interval.
func TestRetryAfterCannotParkTheProbe(t *testing.T) {
	var calls atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	t.Cleanup(app.Close)
	const interval, delay = 2 * time.Second, 3 * time.Second
	h := startAgent(t, setup{config: fmt.Sprintf(`
server: { shutdownDelay: 0s, detailsToken: "${DETAILS_TOKEN}" }
scheduler: { jitter: 0 }
defaults:
  interval: %s
  retry: { maxRetries: 0 }
  breaker: { failureThreshold: 3, window: 5, delay: %s, successThreshold: 1 }
probes:
  - { name: app, kind: http, critical: true, url: "%s/api/health" }
`, interval, delay, app.URL)})
	h.waitView("app", "unhealthy after the 503", func(v view) bool { return v.status == "unhealthy" && v.readyz == 503 })
	start := time.Now()
	h.waitView("app", "healthy again", func(v view) bool { return v.status == "healthy" && v.readyz == 200 })
	if took, bound := time.Since(start), 2*interval+delay; took > bound {
		t.Errorf("healthy again after %s, want within two intervals plus the breaker's delay (%s)", took, bound)
	}
}
