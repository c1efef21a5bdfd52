//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/health-agent/health-agent/configs"
	"github.com/health-agent/health-agent/examples/demo/standin"
	"github.com/health-agent/health-agent/internal/testkit"
)

// The probes of the default config, their kinds and breakers (CONTRACT.md's table).
var defaultProbes = map[string]struct{ kind, breaker string }{
	"app":         {"http", "app"},
	"browserPool": {"cdp", "web-extraction"},
	"mcpClient":   {"mcp", "mcp-client"},
	"figmaApi":    {"figma", "figma-api"},
	"memory":      {"memory", ""},
	"config":      {"config", ""},
}

// Timings of the test's config: short enough for a quick walk-through, long enough for a loaded machine.
const (
	probeInterval = "300ms"
	figmaInterval = "500ms"
	breakerDelay  = "1s"
	retryAfter    = 2 * time.Second // the fake Figma's Retry-After in mode 429
	// within bounds every wait for the agent to see a change: generous, the machine may be busy.
	within = 30 * time.Second
)

// TestLocalDemo is the local demo of examples/demo/README.md, automated: every dependency up and healthy, then each one
// taken down and brought back, with the probe, its breaker, the overall status and readiness checked
// at each step.
func TestLocalDemo(t *testing.T) {
	testkit.RequireChromium(t)
	bin := testkit.BuildAgent(t)
	dir := t.TempDir()

	token := "e2e-figma-" + randomHex(t, 12)
	world := standin.New(standin.Options{
		AppAddr: "127.0.0.1:0", MCPAddr: "127.0.0.1:0", FigmaAddr: "127.0.0.1:0",
		FigmaToken: token, FigmaRetryAfter: retryAfter,
	})
	if err := world.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(world.Stop)

	cdpPort := testkit.FreePort(t)
	browser := testkit.StartChromium(t, testkit.ChromiumOptions{Port: cdpPort})

	appName := "e2eapp-" + randomHex(t, 3) // 13 bytes: within /proc/<pid>/comm's 15
	sleepBin := copySleep(t, dir, appName)
	appProc := startAppProcess(t, t.Cleanup, sleepBin, appName)

	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, fastConfig(t), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(world.Env(),
		"MEMORY_PROCESS="+appName,
		fmt.Sprintf("BROWSER_CDP_URLS=http://127.0.0.1:%d", cdpPort),
		"PATH="+os.Getenv("PATH"),
	)
	agent := startAgent(t, bin, cfg, env)
	w := &watcher{base: agent.base, secrets: []string{token}, logs: agent.stderr}

	t.Run("every service healthy", func(t *testing.T) {
		s := w.waitFor(t, "every service healthy, with the app's heap", func(s *state) error {
			if err := allHealthy(s); err != nil {
				return err
			}
			// The memory probe shows the app's own heap once it has read the app's legacy JSON.
			if h := s.field("memory", "heapUsed"); h != standin.AppHeapUsed {
				return fmt.Errorf("memory.heapUsed %v, want %q", h, standin.AppHeapUsed)
			}
			return nil
		})
		checkServices(t, s, appName)
		checkSeedPaths(t, w)
	})
	if t.Failed() {
		t.FailNow()
	}

	do := func(cmd string) func(t *testing.T) {
		return func(t *testing.T) {
			t.Helper()
			if _, err := world.Do(cmd); err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
		}
	}
	tests := []struct {
		probe       string
		critical    bool
		down        string // the probe's status while its dependency is down
		stop, start func(t *testing.T)
	}{
		{probe: "app", critical: true, down: "unhealthy", stop: do("stop app"), start: do("start app")},
		{
			probe: "browserPool", critical: true, down: "unhealthy",
			stop: func(*testing.T) { browser.Kill() },
			// Owned by the whole test: the new browser must outlive this subtest.
			start: func(sub *testing.T) {
				browser = testkit.StartChromium(sub, testkit.ChromiumOptions{Port: cdpPort, Cleanup: t.Cleanup})
			},
		},
		{probe: "mcpClient", down: "unhealthy", stop: do("stop mcp"), start: do("start mcp")},
		{probe: "figmaApi", down: "unhealthy", stop: do("stop figma"), start: do("start figma")},
		// A local probe: no breaker; a process it cannot find is unknown, not a failure.
		{
			probe: "memory", down: "unknown",
			stop:  func(*testing.T) { appProc.Kill() },
			start: func(sub *testing.T) { appProc = startAppProcess(sub, t.Cleanup, sleepBin, appName) },
		},
	}
	for _, tt := range tests {
		ok := t.Run(tt.probe+" down and back", func(t *testing.T) {
			breaker := defaultProbes[tt.probe].breaker
			tt.stop(t)
			w.waitFor(t, tt.probe+" "+tt.down, func(s *state) error {
				if err := s.expectStatus(tt.probe, tt.down); err != nil {
					return err
				}
				if breaker != "" {
					if err := s.expectBreaker(breaker, "OPEN"); err != nil {
						return err
					}
				}
				if tt.critical {
					return s.expectOverall("unhealthy", "error", http.StatusServiceUnavailable, "[-]"+tt.probe+" failed: ")
				}
				return s.expectOverall("degraded", "degraded", http.StatusOK, "[+]"+tt.probe+" ok (non-critical, "+tt.down)
			})
			if tt.probe == "app" {
				s := w.snapshot(t)
				if s.health.Data.Legacy != nil || s.health.Data.LegacyError == "" {
					t.Errorf("app down: data.legacy %v, legacyError %q; want null and a reason", s.health.Data.Legacy, s.health.Data.LegacyError)
				}
			}
			tt.start(t)
			w.waitFor(t, "every service healthy again, every breaker closed", allHealthy)
		})
		if !ok {
			t.FailNow()
		}
	}

	t.Run("figma rate limited", func(t *testing.T) {
		do("figma 429")(t)
		s := w.waitFor(t, "figmaApi degraded by a 429", func(s *state) error {
			if err := s.expectStatus("figmaApi", "degraded"); err != nil {
				return err
			}
			if s.field("figmaApi", "rateLimited") != true {
				return fmt.Errorf("figmaApi.rateLimited %v", s.field("figmaApi", "rateLimited"))
			}
			// A 429 means Figma is up: no failure, the breaker stays closed.
			if err := s.expectBreaker("figma-api", "CLOSED"); err != nil {
				return err
			}
			// degraded is ready: the line passes (the agent may or may not add a note to it).
			return s.expectOverall("degraded", "degraded", http.StatusOK, "[+]figmaApi ok")
		})
		if got, want := s.field("figmaApi", "retryAfterSeconds"), float64(retryAfter/time.Second); got != want {
			t.Errorf("figmaApi.retryAfterSeconds %v, want %v", got, want)
		}
		if got := s.field("figmaApi", "rateLimitType"); got != "low" {
			t.Errorf("figmaApi.rateLimitType %v, want low", got)
		}
		do("figma ok")(t)
		w.waitFor(t, "figmaApi healthy once Retry-After has passed", allHealthy)
	})

	t.Run("figma token rejected", func(t *testing.T) {
		do("figma 403")(t)
		w.waitFor(t, "figmaApi unhealthy, token rejected", func(s *state) error {
			if err := s.expectStatus("figmaApi", "unhealthy"); err != nil {
				return err
			}
			if r := s.service("figmaApi")["reason"]; !strings.Contains(fmt.Sprint(r), "token rejected") {
				return fmt.Errorf("figmaApi.reason %q, want it to say token rejected", r)
			}
			if err := s.expectBreaker("figma-api", "OPEN"); err != nil {
				return err
			}
			return s.expectOverall("degraded", "degraded", http.StatusOK, "[+]figmaApi ok (non-critical, unhealthy")
		})
		do("figma ok")(t)
		w.waitFor(t, "figmaApi healthy again", allHealthy)
	})

	t.Run("the agent stays out of the dependencies' way", func(t *testing.T) {
		if n := world.MCP.ToolCalls(); n != 0 {
			t.Errorf("the MCP server received %d tool calls; the agent must only list tools", n)
		}
		for _, path := range []string{"/", "/startupz?verbose", "/livez?verbose", "/metrics"} {
			code, _ := w.get(t, path)
			if code != http.StatusOK {
				t.Errorf("GET %s: %d, want 200", path, code)
			}
		}
	})

	if code := agent.terminate(t, within); code != 0 {
		t.Errorf("agent exited with %d after SIGTERM, want 0", code)
	}
	// Secrets: the token never in a log line or a response; Figma's email is never relayed.
	if strings.Contains(agent.stderr.String(), token) {
		t.Error("the agent's log contains the FIGMA_TOKEN value")
	}
	if w.leaks > 0 {
		t.Errorf("%d responses contained the FIGMA_TOKEN value", w.leaks)
	}
	if w.emails > 0 {
		t.Errorf("%d responses contained Figma's user email", w.emails)
	}
}

// fastConfig is configs/agent.yaml with every probe and kind kept, and shorter intervals and breaker
// delay, so the walk-through takes seconds rather than minutes.
func fastConfig(t *testing.T) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(configs.Default, &doc); err != nil {
		t.Fatal(err)
	}
	m := func(v any) map[string]any {
		out, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("configs/agent.yaml: %v is not a mapping", v)
		}
		return out
	}
	m(doc["server"])["shutdownDelay"] = "100ms"
	defaults := m(doc["defaults"])
	defaults["interval"] = probeInterval
	m(defaults["breaker"])["delay"] = breakerDelay
	probeList, _ := doc["probes"].([]any)
	var seen []string
	for _, p := range probeList {
		pm := m(p)
		name, kind := fmt.Sprint(pm["name"]), fmt.Sprint(pm["kind"])
		if want, ok := defaultProbes[name]; !ok || want.kind != kind {
			t.Fatalf("configs/agent.yaml has probe %s of kind %s; this test expects %v", name, kind, defaultProbes)
		}
		seen = append(seen, name)
		if _, ok := pm["interval"]; ok {
			pm["interval"] = probeInterval
		}
		if kind == "figma" {
			pm["interval"] = figmaInterval
		}
	}
	if len(seen) != len(defaultProbes) {
		t.Fatalf("configs/agent.yaml has probes %v; this test expects %v", seen, defaultProbes)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// watcher reads the agent's endpoints, counting responses that leak a secret.
type watcher struct {
	base    string
	secrets []string
	logs    *testkit.SyncBuffer
	leaks   int
	emails  int
}

// get fetches path; a failed request fails the test.
func (w *watcher) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	code, body, err := get(w.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	for _, s := range w.secrets {
		if strings.Contains(string(body), s) {
			w.leaks++
			body = []byte(strings.ReplaceAll(string(body), s, "[FIGMA_TOKEN]")) // never into test output
		}
	}
	if strings.Contains(string(body), standin.FigmaEmail) {
		w.emails++
	}
	return code, body
}

// state is what the agent's endpoints said at one moment.
type state struct {
	healthCode int
	health     struct {
		Data struct {
			Status      string          `json:"status"`
			Legacy      json.RawMessage `json:"legacy"`
			LegacyError string          `json:"legacyError"`
			Enhanced    struct {
				Overall  string            `json:"overall"`
				Services map[string]string `json:"services"`
			} `json:"enhanced"`
			CircuitBreakers struct {
				Total   int      `json:"total"`
				Healthy bool     `json:"healthy"`
				Open    []string `json:"open"`
			} `json:"circuitBreakers"`
		} `json:"data"`
	}
	detailedCode int
	detailed     struct {
		Data struct {
			Health struct {
				Overall  string                    `json:"overall"`
				Services map[string]map[string]any `json:"services"`
			} `json:"health"`
		} `json:"data"`
	}
	breakers struct {
		Data struct {
			Summary struct {
				Total, Closed, Open, HalfOpen int
				Healthy                       bool
			} `json:"summary"`
			Breakers map[string]struct {
				State  string   `json:"state"`
				Probes []string `json:"probes"`
			} `json:"breakers"`
		} `json:"data"`
	}
	readyCode int
	ready     string // /readyz?verbose
}

func (w *watcher) snapshot(t *testing.T) *state {
	t.Helper()
	s := &state{}
	decode := func(path string, v any) int {
		code, body := w.get(t, path)
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %d, not JSON: %v: %s", path, code, err, tail(string(body), 2000))
		}
		return code
	}
	s.healthCode = decode("/api/health", &s.health)
	s.detailedCode = decode("/api/health/detailed", &s.detailed)
	decode("/api/health/circuit-breakers", &s.breakers)
	code, body := w.get(t, "/readyz?verbose")
	s.readyCode, s.ready = code, string(body)
	if s.health.Data.Legacy != nil && string(s.health.Data.Legacy) == "null" {
		s.health.Data.Legacy = nil
	}
	return s
}

// waitFor polls the agent until cond holds, and fails the test with the last state if it never does.
func (w *watcher) waitFor(t *testing.T, what string, cond func(*state) error) *state {
	t.Helper()
	var (
		last *state
		err  error
	)
	if !testkit.Poll(within, func() bool {
		last = w.snapshot(t)
		err = cond(last)
		return err == nil
	}) {
		t.Fatalf("%s: not within %s: %v\n%s\nagent log (tail): %s", what, within, err, last, w.redact(tail(w.logs.String(), 3000)))
	}
	return last
}

func (w *watcher) redact(s string) string {
	for _, secret := range w.secrets {
		s = strings.ReplaceAll(s, secret, "[FIGMA_TOKEN]")
	}
	return s
}

func (s *state) service(name string) map[string]any { return s.detailed.Data.Health.Services[name] }

func (s *state) field(service, key string) any { return s.service(service)[key] }

func (s *state) expectStatus(service, want string) error {
	if got := s.field(service, "status"); got != want {
		return fmt.Errorf("%s is %v (%v), want %s", service, got, s.field(service, "reason"), want)
	}
	if got := s.health.Data.Enhanced.Services[service]; got != want {
		return fmt.Errorf("/api/health: enhanced.services.%s is %q, want %s", service, got, want)
	}
	return nil
}

func (s *state) expectBreaker(name, want string) error {
	b, ok := s.breakers.Data.Breakers[name]
	if !ok {
		return fmt.Errorf("no breaker %q", name)
	}
	if b.State != want {
		return fmt.Errorf("breaker %s is %s, want %s", name, b.State, want)
	}
	listed := slices.Contains(s.health.Data.CircuitBreakers.Open, name)
	if listed != (want == "OPEN") {
		return fmt.Errorf("/api/health circuitBreakers.open is %v with breaker %s %s", s.health.Data.CircuitBreakers.Open, name, want)
	}
	return nil
}

// expectOverall checks the overall verdict everywhere it shows: detailed, /api/health and /readyz.
func (s *state) expectOverall(overall, legacyStatus string, readyCode int, readyLine string) error {
	switch {
	case s.detailed.Data.Health.Overall != overall:
		return fmt.Errorf("overall %s, want %s", s.detailed.Data.Health.Overall, overall)
	case s.health.Data.Enhanced.Overall != overall:
		return fmt.Errorf("/api/health enhanced.overall %s, want %s", s.health.Data.Enhanced.Overall, overall)
	case s.health.Data.Status != legacyStatus:
		return fmt.Errorf("/api/health data.status %s, want %s", s.health.Data.Status, legacyStatus)
	case s.healthCode != readyCode:
		// /api/health answers 503 exactly when /readyz does, for these states.
		return fmt.Errorf("/api/health: %d, want %d", s.healthCode, readyCode)
	case s.readyCode != readyCode:
		return fmt.Errorf("/readyz: %d, want %d", s.readyCode, readyCode)
	case readyLine != "" && !strings.Contains(s.ready, readyLine):
		return fmt.Errorf("/readyz?verbose lacks %q", readyLine)
	}
	wantDetailed := http.StatusOK
	if overall == "unhealthy" {
		wantDetailed = http.StatusServiceUnavailable
	}
	if s.detailedCode != wantDetailed {
		return fmt.Errorf("/api/health/detailed: %d, want %d", s.detailedCode, wantDetailed)
	}
	return nil
}

// allHealthy: every probe of the default config healthy, every breaker closed, the agent ready.
func allHealthy(s *state) error {
	for name := range defaultProbes {
		if err := s.expectStatus(name, "healthy"); err != nil {
			return err
		}
	}
	for name, b := range s.breakers.Data.Breakers {
		if err := s.expectBreaker(name, "CLOSED"); err != nil {
			return fmt.Errorf("%w (probes %v)", err, b.Probes)
		}
	}
	if !s.breakers.Data.Summary.Healthy || !s.health.Data.CircuitBreakers.Healthy {
		return fmt.Errorf("breaker summary not healthy: %+v", s.breakers.Data.Summary)
	}
	return s.expectOverall("healthy", "ok", http.StatusOK, "readyz check passed")
}

// checkServices checks the kind-specific fields of the contract and which breaker guards which probe.
func checkServices(t *testing.T, s *state, appName string) {
	t.Helper()
	var names []string
	for name, svc := range s.detailed.Data.Health.Services {
		names = append(names, name)
		want, ok := defaultProbes[name]
		if !ok {
			continue
		}
		if svc["kind"] != want.kind {
			t.Errorf("services.%s.kind %v, want %s", name, svc["kind"], want.kind)
		}
		if got, _ := svc["breaker"].(string); got != want.breaker {
			t.Errorf("services.%s.breaker %q, want %q", name, got, want.breaker)
		}
		if want.breaker != "" && !slices.Contains(s.breakers.Data.Breakers[want.breaker].Probes, name) {
			t.Errorf("breaker %s guards %v, want it to list %s", want.breaker, s.breakers.Data.Breakers[want.breaker].Probes, name)
		}
	}
	sort.Strings(names)
	if len(names) != len(defaultProbes) {
		t.Errorf("services %v, want the default config's %v", names, defaultProbes)
	}
	if got := s.breakers.Data.Summary.Total; got != 4 {
		t.Errorf("breakers total %d, want 4 (app, web-extraction, mcp-client, figma-api)", got)
	}

	num := func(service, key string) float64 {
		v, ok := s.field(service, key).(float64)
		if !ok {
			t.Errorf("services.%s.%s is %v, want a number", service, key, s.field(service, key))
		}
		return v
	}
	if n := num("browserPool", "totalBrowsers"); n != 1 {
		t.Errorf("browserPool.totalBrowsers %v, want 1", n)
	}
	if n := num("browserPool", "pages"); n < 1 {
		t.Errorf("browserPool.pages %v, want >= 1 (about:blank)", n)
	}
	if v, _ := s.field("browserPool", "browserVersion").(string); !strings.Contains(v, "Chrome/") {
		t.Errorf("browserPool.browserVersion %q", v)
	}
	if s.field("mcpClient", "connected") != true {
		t.Errorf("mcpClient.connected %v, want true", s.field("mcpClient", "connected"))
	}
	if n := num("mcpClient", "tools"); n != float64(len(standin.MCPTools)) {
		t.Errorf("mcpClient.tools %v, want %d", n, len(standin.MCPTools))
	}
	if got := s.field("mcpClient", "serverName"); got != standin.MCPServerName {
		t.Errorf("mcpClient.serverName %v, want %s", got, standin.MCPServerName)
	}
	if s.field("figmaApi", "rateLimited") != false {
		t.Errorf("figmaApi.rateLimited %v, want false", s.field("figmaApi", "rateLimited"))
	}
	if got := s.field("figmaApi", "handle"); got != standin.FigmaHandle {
		t.Errorf("figmaApi.handle %v, want %s", got, standin.FigmaHandle)
	}
	if got := s.field("memory", "heapUsed"); got != standin.AppHeapUsed {
		t.Errorf("memory.heapUsed %v, want %s (the app's own, from its legacy JSON)", got, standin.AppHeapUsed)
	}
	if n := num("memory", "rssBytes"); n <= 0 {
		t.Errorf("memory.rssBytes %v, want > 0", n)
	}
	if got := s.field("memory", "process"); got != appName {
		t.Errorf("memory.process %v, want %s", got, appName)
	}
}

// checkSeedPaths runs the seed's curl | jq checks (CONTRACT.md), port changed to the agent's.
func checkSeedPaths(t *testing.T, w *watcher) {
	t.Helper()
	jq := func(path, expr string) (int, any) {
		code, body := w.get(t, path)
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("GET %s: not JSON: %v", path, err)
		}
		for _, k := range strings.Split(strings.TrimPrefix(expr, "."), ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		return code, v
	}
	tests := []struct {
		name, path, expr string
		check            func(code int, v any) bool
	}{
		{"curl -f /api/health", "/api/health", ".data.status", func(code int, _ any) bool { return code == 200 }},
		{"jq -e '.data.status == \"ok\"'", "/api/health", ".data.status", func(_ int, v any) bool { return v == "ok" }},
		{"legacy body embedded", "/api/health", ".data.legacy.memory.heapUsed", func(_ int, v any) bool { return v == standin.AppHeapUsed }},
		{"jq -e '.data.health.overall == \"healthy\"'", "/api/health/detailed", ".data.health.overall", func(_ int, v any) bool { return v == "healthy" }},
		{"jq '.data.health.services.memory'", "/api/health/detailed", ".data.health.services.memory", func(_ int, v any) bool {
			m, _ := v.(map[string]any)
			return m["status"] == "healthy" && m["heapUsed"] == standin.AppHeapUsed && m["rssBytes"] != nil
		}},
		{"jq '.data.summary.healthy'", "/api/health/circuit-breakers", ".data.summary.healthy", func(_ int, v any) bool { return v == true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, v := jq(tt.path, tt.expr); !tt.check(code, v) {
				t.Errorf("GET %s: %d, %s = %v", tt.path, code, tt.expr, v)
			}
		})
	}
	code, body := w.get(t, "/readyz")
	if code != http.StatusOK || string(body) != "ok" {
		t.Errorf("/readyz: %d %q, want 200 ok", code, body)
	}
}

// String summarizes a state for failure messages.
func (s *state) String() string {
	if s == nil {
		return "(no answer from the agent)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "overall %s; /api/health %d status %s; /readyz %d\n", s.detailed.Data.Health.Overall,
		s.healthCode, s.health.Data.Status, s.readyCode)
	names := make([]string, 0, len(s.detailed.Data.Health.Services))
	for name := range s.detailed.Data.Health.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "  %-12s %-9v %v\n", name, s.field(name, "status"), s.field(name, "reason"))
	}
	names = names[:0]
	for name := range s.breakers.Data.Breakers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "  breaker %-15s %s\n", name, s.breakers.Data.Breakers[name].State)
	}
	b.WriteString(s.ready)
	return b.String()
}
