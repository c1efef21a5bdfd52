package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func noEnv(string) (string, bool) { return "", false }

// dependency is a loopback HTTP dependency that counts requests and can be taken down.
type dependency struct {
	*httptest.Server
	down     atomic.Bool
	requests atomic.Int64
}

func newDependency(t *testing.T) *dependency {
	d := &dependency{}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		d.requests.Add(1)
		if d.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	t.Cleanup(d.Close)
	return d
}

const configTmpl = `
server: { shutdownDelay: %s }
defaults:
  interval: 50ms
  timeout: 1s
  failuresBeforeUnhealthy: 1
  retry: { maxRetries: 0 }
  breaker: { failureThreshold: 2, window: 2, delay: 1h, successThreshold: 1 }
probes:
  - { name: flaky, kind: http, critical: false, url: "%s" }
  - { name: steady, kind: http, critical: true, url: "%s", interval: %s }
  - { name: config, kind: config }
`

type running struct {
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
	path   string
}

func startAgent(t *testing.T, path string) *running { return startAgentWith(t, path, nil) }

// startAgentWith starts an agent on path, with edit (when not nil) applied to its options first.
func startAgentWith(t *testing.T, path string, edit func(*Options)) *running {
	t.Helper()
	loaded, err := LoadConfig(path, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{ConfigPath: path, Listen: "127.0.0.1:0", LookupEnv: noEnv, Tick: 10 * time.Millisecond}
	if edit != nil {
		edit(&opts)
	}
	a, err := New(loaded, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{agent: a, cancel: cancel, done: make(chan error, 1), path: path}
	go func() { r.done <- a.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	testkit.Eventually(t, 20*time.Second, func() bool { return a.Addr() != "" }, "listening")
	return r
}

func snapshotOf(r *running) *monitor.Snapshot { return r.agent.Monitor().Snapshot() }

func breakerState(r *running, name string) string {
	for _, b := range snapshotOf(r).Breakers {
		if b.Name == name {
			return b.State
		}
	}
	return ""
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReloadKeepsBreakerStateAndRejectsInvalidConfig(t *testing.T) {
	flaky, steady := newDependency(t), newDependency(t)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	write(t, path, fmt.Sprintf(configTmpl, "0s", flaky.URL, steady.URL, "50ms"))
	r := startAgent(t, path)

	flaky.down.Store(true)
	testkit.Eventually(t, 20*time.Second, func() bool { return breakerState(r, "flaky") == breakers.Open }, "flaky's breaker open")
	atOpen := flaky.requests.Load()

	// A valid change to another probe: flaky's definition and breaker are unchanged.
	write(t, path, fmt.Sprintf(configTmpl, "0s", flaky.URL, steady.URL, "70ms"))
	if err := r.agent.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := snapshotOf(r)
	if breakerState(r, "flaky") != breakers.Open || s.Check("flaky").Status != probes.Unhealthy {
		t.Fatalf("reload lost flaky's state: breaker %s status %s", breakerState(r, "flaky"), s.Check("flaky").Status)
	}
	if !s.Config.LastReload.Success || s.Config.SHA256 != r.agent.current.Load().SHA256 {
		t.Fatalf("reload not reported: %+v", s.Config)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { return steady.requests.Load() > 10 }, "steady runs on")
	if got := flaky.requests.Load(); got != atOpen {
		t.Fatalf("an open breaker let %d requests through across the reload", got-atOpen)
	}

	// An invalid config is rejected; the running one keeps going and the config check says so.
	running := s.Config.SHA256
	write(t, path, "probes: [ { name: x, kind: nope } ]\n")
	err := r.agent.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), `unknown kind "nope"`) {
		t.Fatalf("invalid reload: %v", err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		c := snapshotOf(r).Check("config")
		return c != nil && c.Status == probes.Degraded
	}, "config check degraded")
	s = snapshotOf(r)
	if s.Config.SHA256 != running || s.Config.LastReload.Success || s.Check("steady") == nil || s.Check("x") != nil {
		t.Fatalf("the invalid config replaced the running one: %+v", s.Config)
	}
	before := steady.requests.Load()
	testkit.Eventually(t, 20*time.Second, func() bool { return steady.requests.Load() > before+3 }, "steady still probed")
}

func TestDrainFailsReadinessThenStops(t *testing.T) {
	dep := newDependency(t)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	write(t, path, fmt.Sprintf(configTmpl, "400ms", dep.URL, dep.URL, "50ms"))
	r := startAgent(t, path)
	base := "http://" + r.agent.Addr()
	testkit.Eventually(t, 20*time.Second, func() bool { return snapshotOf(r).Ready() }, "ready")

	r.cancel()
	stopped := time.Now()
	testkit.Eventually(t, 20*time.Second, func() bool { return snapshotOf(r).ShuttingDown }, "draining")
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("the server must keep answering during the drain delay: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "shutting down") {
		t.Fatalf("/readyz while draining: %d %q", resp.StatusCode, body)
	}
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if time.Since(stopped) < 400*time.Millisecond {
			t.Fatalf("stopped after %s, before shutdownDelay", time.Since(stopped))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop")
	}
}
