package agent

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/egress"
)

const egressTmpl = `
server: { shutdownDelay: 0s }
defaults:
  interval: 1h
  breaker: { failureThreshold: 2, window: 2, delay: 1h, successThreshold: 1 }
probes:
  - { name: dep, kind: http, url: "%s" }
egress:
  listen: "127.0.0.1:0"
  routes:
    - { name: dep, prefix: /dep/, upstream: "%s", retry: { maxRetries: 0 } }
%s`

func egressGet(t *testing.T, r *running, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.agent.EgressAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEgressReloadKeepsBreakerState opens a route's breaker (shared with the probe) by real traffic,
// reloads with another route added, and finds the breaker still open and the new route served.
func TestEgressReloadKeepsBreakerState(t *testing.T) {
	dep := newDependency(t)
	dep.down.Store(true)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	write(t, path, fmt.Sprintf(egressTmpl, dep.URL, dep.URL, ""))
	r := startAgent(t, path)
	if r.agent.EgressAddr() == "" {
		t.Fatal("no egress listener")
	}
	// The probe's first run and the route's calls fail alike: two open the shared breaker.
	for range 2 {
		if code, _ := egressGet(t, r, "/dep/x"); code != http.StatusServiceUnavailable {
			t.Fatalf("answer %d, want 503", code)
		}
	}
	if code, body := egressGet(t, r, "/dep/x"); code != http.StatusServiceUnavailable || !strings.Contains(body, "circuit_open") {
		t.Fatalf("answer %d %s, want the open breaker's", code, body)
	}

	write(t, path, fmt.Sprintf(egressTmpl, dep.URL, dep.URL, fmt.Sprintf("    - { name: other, prefix: /other/, upstream: %q }\n", dep.URL)))
	if err := r.agent.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	requests := dep.requests.Load()
	if code, body := egressGet(t, r, "/dep/x"); code != http.StatusServiceUnavailable || !strings.Contains(body, "circuit_open") {
		t.Errorf("after reload: %d %s, want the breaker still open", code, body)
	}
	if dep.requests.Load() != requests {
		t.Error("the open breaker let a request through after the reload")
	}
	dep.down.Store(false)
	if code, _ := egressGet(t, r, "/other/x"); code != http.StatusOK {
		t.Errorf("the added route answered %d", code)
	}
	// A call is counted when the proxy's handler returns, which may be just after the app read the
	// answer.
	var tr []egress.RouteTraffic
	if !testkit.Poll(10*time.Second, func() bool {
		tr = r.agent.EgressTraffic()
		return len(tr) == 2 && tr[1].Requests == 1
	}) || tr[0].Route != "dep" || tr[0].Requests != 4 || tr[0].Rejected < 2 || tr[0].Errors+tr[0].Rejected != 4 {
		t.Errorf("EgressTraffic = %+v", tr)
	}
}
