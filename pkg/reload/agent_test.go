package reload_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/agent"
	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/reload"
)

func noEnv(string) (string, bool) { return "", false }

// deadDependency accepts connections and closes them at once: every check of it fails, and the count of
// connections shows whether a check reached it at all.
type deadDependency struct {
	ln    net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
}

func newDeadDependency(t *testing.T) *deadDependency {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &deadDependency{ln: ln}
	d.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.conns.Add(1)
			_ = c.Close()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		d.wg.Wait()
	})
	return d
}

// The dead probe's breaker opens after two failures and stays open for an hour: across every reload
// below it must stay open, untouched. Only the live probe's interval, and the extra probe, change.
// Intervals are long enough that a verdict does not go stale (3 intervals) on a loaded machine.
const reloadConfig = `
server: { shutdownDelay: 0s }
defaults:
  interval: 400ms
  timeout: 1s
  failuresBeforeUnhealthy: 1
  retry: { maxRetries: 0 }
  breaker: { failureThreshold: 2, window: 2, delay: 1h, successThreshold: 1 }
probes:
  - { name: dead, kind: http, critical: false, url: "http://%s/" }
  - { name: live, kind: http, critical: true, url: "%s", interval: %s }
  - { name: config, kind: config }
%s`

const invalidConfig = "probes: [ { name: x, kind: nope } ]\n"

// updater changes the config file the way one kind of writer does.
type updater struct {
	name  string
	setup func(t *testing.T, content []byte) (path string, update func(t *testing.T, content []byte))
}

var updaters = []updater{
	{"kubelet ConfigMap swap", func(t *testing.T, content []byte) (string, func(*testing.T, []byte)) {
		k := newKubeletDir(t, "agent.yaml", content)
		return filepath.Join(k.dir, "agent.yaml"), func(t *testing.T, b []byte) { k.update(t, "agent.yaml", b) }
	}},
	{"in-place write", func(t *testing.T, content []byte) (string, func(*testing.T, []byte)) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		writeFile(t, path, content)
		return path, func(t *testing.T, b []byte) { writeFile(t, path, b) }
	}},
	{"editor rename-over", func(t *testing.T, content []byte) (string, func(*testing.T, []byte)) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		writeFile(t, path, content)
		return path, func(t *testing.T, b []byte) {
			tmp := path + ".tmp"
			writeFile(t, tmp, b)
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}
	}},
}

// TestWatchReloadsAgent runs a real agent fed by Watch, as `agent --config` does, and changes its
// config file under it: a valid config is applied and keeps the state of unchanged probes, an invalid
// one is rejected while the running one goes on, and a fix is applied again.
func TestWatchReloadsAgent(t *testing.T) {
	for _, u := range updaters {
		t.Run(u.name, func(t *testing.T) {
			dead := newDeadDependency(t)
			var liveHits atomic.Int64
			live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				liveHits.Add(1)
				fmt.Fprint(w, `{"status":"ok"}`)
			}))
			t.Cleanup(live.Close)
			liveAddr := live.Listener.Addr().String()
			cfg := func(interval, extra string) []byte {
				return fmt.Appendf(nil, reloadConfig, dead.ln.Addr(), live.URL, interval, extra)
			}
			v1 := cfg("300ms", "")
			v2 := cfg("350ms", fmt.Sprintf("  - { name: extra, kind: tcp, critical: false, address: %q }\n", liveAddr))
			v3 := cfg("250ms", "")

			path, update := u.setup(t, v1)
			a := runAgent(t, path)

			testkit.Eventually(t, waitFor, func() bool { return breakerOf(a, "dead").State == breakers.Open }, "the dead dependency's breaker open")
			opened := breakerOf(a, "dead")
			connsAtOpen := dead.conns.Load()

			// A valid config: applied, and the dead probe, unchanged, keeps its open breaker.
			update(t, v2)
			testkit.Eventually(t, waitFor, func() bool { return snap(a).Config.SHA256 == sum(v2) }, "v2 applied")
			s := snap(a)
			if s.Check("extra") == nil || !s.Config.LastReload.Success {
				t.Fatalf("v2 not applied: probes %v, last reload %+v", names(s), s.Config.LastReload)
			}
			if b := breakerOf(a, "dead"); b.State != breakers.Open || !b.LastStateChange.Equal(opened.LastStateChange) || b.Transitions != opened.Transitions {
				t.Fatalf("the dead probe's breaker did not survive the reload: was %s since %s (%d transitions), now %s since %s (%d)",
					opened.State, opened.LastStateChange, opened.Transitions, b.State, b.LastStateChange, b.Transitions)
			}
			if c := s.Check("dead"); c.Status != probes.Unhealthy {
				t.Fatalf("the dead probe is %s (%s) after the reload, want unhealthy", c.Status, c.Reason)
			}
			testkit.Eventually(t, waitFor, func() bool {
				c := snap(a).Check("extra")
				return c != nil && c.Status == probes.Healthy
			}, "the extra probe healthy")

			// An invalid config: rejected, reported by the config check, the running config goes on.
			update(t, []byte(invalidConfig))
			testkit.Eventually(t, waitFor, func() bool {
				c := snap(a).Check("config")
				return c != nil && c.Status == probes.Degraded
			}, "the config check degraded")
			s = snap(a)
			if s.Config.SHA256 != sum(v2) || s.Config.LastReload.Success || s.Check("x") != nil || s.Check("extra") == nil {
				t.Fatalf("the invalid config replaced the running one: %+v, probes %v", s.Config, names(s))
			}
			hits := liveHits.Load()
			testkit.Eventually(t, waitFor, func() bool { return liveHits.Load() > hits+2 }, "the live probe still running")
			if s := snap(a); !s.Ready() {
				t.Fatalf("not ready after a rejected reload: live is %s (%s)", s.Check("live").Status, s.Check("live").Reason)
			}

			// A rollback to the running config: nothing to apply, but the config check is healthy again,
			// since the file no longer holds the rejected config.
			update(t, v2)
			testkit.Eventually(t, waitFor, func() bool {
				c := snap(a).Check("config")
				return c != nil && c.Status == probes.Healthy
			}, "the config check healthy after the rollback")
			if s := snap(a); s.Config.SHA256 != sum(v2) || !s.Config.LastReload.Success {
				t.Fatalf("after the rollback: %+v", s.Config)
			}

			// A fix: applied, the config check healthy again, the breaker still untouched.
			update(t, v3)
			testkit.Eventually(t, waitFor, func() bool {
				s := snap(a)
				c := s.Check("config")
				return s.Config.SHA256 == sum(v3) && c != nil && c.Status == probes.Healthy
			}, "v3 applied and the config check healthy")
			if s := snap(a); s.Check("extra") != nil {
				t.Fatalf("v3 dropped the extra probe, yet it is still there: %v", names(s))
			}
			if b := breakerOf(a, "dead"); b.State != breakers.Open || b.Transitions != opened.Transitions {
				t.Fatalf("the dead probe's breaker changed across reloads: %s, %d transitions", b.State, b.Transitions)
			}
			if got := dead.conns.Load(); got != connsAtOpen {
				t.Fatalf("the open breaker let %d checks reach the dead dependency across reloads", got-connsAtOpen)
			}
		})
	}
}

// runAgent serves path with a real agent on loopback and a watcher feeding its reloads, as serve does.
func runAgent(t *testing.T, path string) *agent.Agent {
	t.Helper()
	loaded, err := agent.LoadConfig(path, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(loaded, agent.Options{ConfigPath: path, Listen: "127.0.0.1:0", LookupEnv: noEnv, Tick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reloads := make(chan struct{}, 1)
	notify := func() {
		select {
		case reloads <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() { errs <- a.Run(ctx, reloads) })
	wg.Go(func() {
		errs <- reload.Watch(ctx, path, notify, reload.Options{Debounce: 50 * time.Millisecond, Poll: time.Hour, InitialSHA256: loaded.SHA256})
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("stopping: %v", err)
			}
		}
	})
	testkit.Eventually(t, waitFor, func() bool { return a.Addr() != "" }, "the agent listening")
	return a
}

func snap(a *agent.Agent) *monitor.Snapshot { return a.Monitor().Snapshot() }

func breakerOf(a *agent.Agent, name string) breakers.Stats {
	for _, b := range snap(a).Breakers {
		if b.Name == name {
			return b
		}
	}
	return breakers.Stats{}
}

func names(s *monitor.Snapshot) []string {
	var out []string
	for _, c := range s.Checks {
		out = append(out, c.Name)
	}
	return out
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
