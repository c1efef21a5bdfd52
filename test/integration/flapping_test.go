package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/chaos"
	"github.com/health-agent/health-agent/internal/testkit"
)

// flapConfig: no retries (each execution is one request, so the dependency's alternation is the
// probe's), and a breaker that alternation cannot open (at most 3 failures in any 5).
const flapConfig = `
server: { shutdownDelay: 0s, detailsToken: "${DETAILS_TOKEN}" }
scheduler: { jitter: 0 }
defaults:
  interval: 30ms
  timeout: 250ms
  failuresBeforeUnhealthy: %d
  successesBeforeHealthy: 1
  retry: { maxRetries: 0 }
  breaker: { failureThreshold: 4, window: 5, delay: 1s, successThreshold: 1 }
probes:
  - { name: dep, kind: http, critical: true, url: "%s/health" }
`

// TestFlappingDoesNotFlipReadiness: a dependency that fails every other request. With
// failuresBeforeUnhealthy 2 the verdict holds (one transition in all: unknown to healthy) and /readyz
// never fails, while services.dep.flaps reports the flapping. The control case, failuresBeforeUnhealthy
// 1, shows the same dependency flipping readiness without hysteresis.
func TestFlappingDoesNotFlipReadiness(t *testing.T) {
	tests := []struct {
		name         string
		failures     int
		wantFlipping bool
	}{
		{"hysteresis holds the verdict", 2, false},
		{"control: no hysteresis", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dep := startChaos(t, chaos.Healthy())
			h := startAgent(t, setup{config: fmt.Sprintf(flapConfig, tt.failures, dep.URL())})
			h.waitView("dep", "healthy", func(v view) bool { return v.status == "healthy" && v.readyz == 200 })
			start := h.view("dep")

			dep.Set(chaos.Flapping(1)) // ok, 500, ok, 500, …
			before := dep.Requests()
			s := h.sample("/readyz")
			testkit.EventuallyState(t, 30*time.Second, func() (bool, string) {
				return dep.Requests()-before >= 40, fmt.Sprint(dep.Requests() - before)
			}, "40 flapping executions")
			l := s.finish()
			end := h.view("dep")
			t.Logf("readyz %v; transitions %v -> %v, flaps %v -> %v", l.codes, start.transitions, end.transitions, start.flaps, end.flaps)

			if end.flaps-start.flaps < 30 {
				t.Errorf("flaps went from %v to %v over 40 alternating executions: the flapping is not reported", start.flaps, end.flaps)
			}
			flips := end.transitions - start.transitions
			if tt.wantFlipping {
				if flips < 20 || l.codes[503] == 0 {
					t.Errorf("control: %v transitions and %d failed /readyz: the flapping dependency should flip readiness without hysteresis", flips, l.codes[503])
				}
				return
			}
			if flips != 0 || l.codes[503] != 0 || end.status != "healthy" {
				t.Errorf("%v transitions, %d of %d /readyz failed, status %s: the verdict flipped with the dependency; first failures: %q", flips, l.codes[503], l.n, end.status, l.failed)
			}
			if end.breaker != "CLOSED" {
				t.Errorf("breaker %s: alternation must not open a 4-of-5 breaker", end.breaker)
			}
		})
	}
}
