package statuspage_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/agent"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/statuspage"
)

const browserConfig = `
server:
  listen: "127.0.0.1:0"
  shutdownDelay: 0s
  detailsToken: "${PAGE_TOKEN}"
defaults:
  interval: 100ms
  timeout: 2s
  failuresBeforeUnhealthy: 1
  successesBeforeHealthy: 1
  retry: { maxRetries: 0 }
  breaker: { failureThreshold: 2, window: 2, delay: 500ms, successThreshold: 1 }
probes:
  - name: database
    kind: http
    critical: true
    url: "${DEP_URL}"
  - name: api
    kind: http
    critical: true
    dependsOn: [database]
    breaker: api-upstream
    url: "${OK_URL}"
  - name: cache
    kind: http
    critical: false
    url: "${OK_URL}"
egress:
  listen: "127.0.0.1:0"
  routes:
    - { name: up, prefix: /up/, upstream: "${OK_URL}", breaker: api-upstream }
`

// pageState is what the test reads from the live DOM.
const pageState = `({
  mode: document.body.dataset.mode,
  overall: document.getElementById("banner").dataset.status,
  probes: Object.fromEntries([...document.querySelectorAll("tr[data-probe]")].map(r => [r.dataset.probe, r.dataset.status])),
  breakers: Object.fromEntries([...document.querySelectorAll("tr[data-breaker]")].map(r => [r.dataset.breaker, r.dataset.state])),
  refreshed: document.body.dataset.refreshed || "",
  refresh: document.getElementById("refresh").textContent,
  marker: window.__testMarker || 0,
  text: document.body.innerText
})`

// TestChromium serves a real agent and loads its status page in headless Chromium: the first paint,
// the script's refresh, a dependency failing while the page is open, and the restricted view without
// the details token.
func TestChromium(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var failing atomic.Bool
	dep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer dep.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()

	const token = "page-token-never-shown"
	env := map[string]string{"PAGE_TOKEN": token, "DEP_URL": dep.URL, "OK_URL": ok.URL}
	lookup := func(k string) (string, bool) { v, found := env[k]; return v, found }
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(browserConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	kinds := probes.Registry{"http": probes.Kinds["http"]}
	loaded, err := agent.LoadConfig(path, kinds, lookup)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	a, err := agent.New(loaded, agent.Options{
		ConfigPath: path, Kinds: kinds, LookupEnv: lookup, Tick: 50 * time.Millisecond,
		Page: func(m *monitor.Monitor, token func() string) http.Handler {
			return statuspage.New(m, statuspage.Options{Token: token, Refresh: 200 * time.Millisecond})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(actx, nil) }()
	defer func() {
		stopAgent()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	waitAgent(t, ctx, a, func(s *monitor.Snapshot) bool { return s.Overall == probes.Healthy })
	base := "http://" + a.Addr() + "/"

	c := startChromium(t, ctx)
	dir := artifactsDir(t)
	var st struct {
		Mode, Overall, Refreshed, Refresh, Text string
		Probes, Breakers                        map[string]string
		Marker                                  int
	}
	describe := func() string {
		_ = c.eval(ctx, pageState, &st)
		return fmt.Sprintf("page state: %+v", st)
	}

	t.Run("full page with the token: first paint and refresh", func(t *testing.T) {
		// As behind an authenticating proxy: every request, the script's too, carries the token.
		c.do(ctx, "Network.enable", nil, nil)
		c.do(ctx, "Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{"Authorization": "Bearer " + token}}, nil)
		c.navigate(ctx, base)
		if err := c.eval(ctx, pageState, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != "full" || st.Overall != "healthy" || st.Probes["database"] != "healthy" || st.Probes["api"] != "healthy" ||
			st.Probes["cache"] != "healthy" || st.Breakers["database"] != "CLOSED" {
			t.Fatalf("first paint: %+v", st)
		}
		c.do(ctx, "Runtime.evaluate", map[string]any{"expression": "window.__testMarker = 1"}, nil)
		c.waitFor(ctx, "a script refresh", `document.body.dataset.refreshed !== undefined && document.getElementById("refresh").textContent === "live" &&
			document.getElementById("config-reload").textContent === "none since start"`, describe)

		// The app's calls through the egress route show in its row, refreshed by the script.
		for range 2 {
			resp, err := http.Get("http://" + a.EgressAddr() + "/up/x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		c.waitFor(ctx, "the route's traffic shown by the script", `(() => {
			const row = document.querySelector('tr[data-route="up"]');
			return window.__testMarker === 1 && row !== null && row.children[3].textContent === "2" &&
				row.textContent.includes("api-upstream") && row.textContent.includes("CLOSED");
		})()`, describe)
		t.Logf("healthy page: %s", c.screenshot(ctx, dir, "statuspage-healthy.png"))
	})

	t.Run("a dependency fails while the page is open", func(t *testing.T) {
		failing.Store(true)
		c.waitFor(ctx, "the failure shown without a reload", `(() => {
			const s = `+pageState+`;
			return s.marker === 1 && s.overall === "unhealthy" && s.probes.database === "unhealthy" &&
				s.probes.api === "blocked" && s.probes.cache === "healthy" &&
				s.breakers.database !== "CLOSED" && s.text.includes("status 500");
		})()`, describe)
		p := c.screenshot(ctx, dir, "statuspage-failing.png")
		t.Logf("screenshot of the failing dependency: %s", p)
	})

	t.Run("restricted page without the token", func(t *testing.T) {
		c.do(ctx, "Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{}}, nil)
		c.navigate(ctx, base)
		if err := c.eval(ctx, pageState, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != "restricted" || st.Overall != "unhealthy" || st.Probes["database"] != "unhealthy" {
			t.Fatalf("restricted first paint: %+v", st)
		}
		c.do(ctx, "Runtime.evaluate", map[string]any{"expression": "window.__testMarker = 2"}, nil)
		failing.Store(false)
		c.waitFor(ctx, "recovery shown by the script", `(() => {
			const s = `+pageState+`;
			return s.marker === 2 && s.overall === "healthy" && s.probes.database === "healthy" && s.probes.api === "healthy";
		})()`, describe)
		_ = c.eval(ctx, pageState, &st)
		for _, secret := range []string{"HTTP 500", token, dep.URL} {
			if strings.Contains(st.Text, secret) {
				t.Errorf("restricted page shows %q", secret)
			}
		}
		t.Logf("restricted page: %s", c.screenshot(ctx, dir, "statuspage-restricted.png"))
	})
}

// waitAgent waits until the agent listens and its snapshot satisfies cond.
func waitAgent(t *testing.T, ctx context.Context, a *agent.Agent, cond func(*monitor.Snapshot) bool) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, func() bool {
		return ctx.Err() != nil || a.Addr() != "" && cond(a.Monitor().Snapshot())
	}, "the agent ready")
	if err := ctx.Err(); err != nil {
		t.Fatal(err)
	}
}
