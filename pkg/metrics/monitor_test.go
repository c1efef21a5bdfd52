package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/metrics"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

// getKind is the real http kind under the name "get".
var getKind = probes.Kinds["http"]

func testProbe(name, url string, critical bool, breaker string) config.Probe {
	return config.Probe{
		Name: name, Kind: "get", Critical: critical, BreakerName: breaker,
		Policy: config.Policy{
			Interval: 20 * time.Millisecond, Timeout: 5 * time.Second,
			FailuresBeforeUnhealthy: 1, SuccessesBeforeHealthy: 1,
			Breaker: config.BreakerPolicy{FailureThreshold: 2, Window: 2, Delay: time.Hour, SuccessThreshold: 1},
		},
		Options: map[string]any{"url": url},
	}
}

func loadedConfig(sha string, ps ...config.Probe) *config.Loaded {
	return &config.Loaded{
		Config:   &config.Config{Scheduler: config.Scheduler{MaxConcurrentProbes: 4}, Probes: ps},
		Source:   "test.yaml",
		SHA256:   sha,
		LoadedAt: time.Now(),
	}
}

// eventually scrapes until cond holds for the parsed families and returns them, or fails after a
// generous deadline with cond's last error.
func eventually(t *testing.T, url, what string, cond func(families) error) families {
	t.Helper()
	var f families
	testkit.EventuallyState(t, 30*time.Second, func() (bool, string) {
		f = scrape(t, url)
		if err := cond(f); err != nil {
			return false, err.Error()
		}
		return true, ""
	}, "%s", what)
	return f
}

func want(f families, name string, labels map[string]string, v float64) error {
	got, ok := f.value(name, labels)
	if !ok {
		return fmt.Errorf("%s%v missing", name, labels)
	}
	if got != v {
		return fmt.Errorf("%s%v = %v, want %v", name, labels, got, v)
	}
	return nil
}

// TestMonitorMetrics runs a real monitor against real HTTP dependencies and scrapes it: a healthy
// probe, a failing one whose breaker opens, then a reload that removes the failing probe, then a
// rejected reload.
func TestMonitorMetrics(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer broken.Close()

	reg := prometheus.NewRegistry()
	met := metrics.New(reg, "test")
	first := loadedConfig("one", testProbe("web", ok.URL, true, ""), testProbe("flaky", broken.URL, false, "flaky-dep"))
	mon, err := monitor.New(first, monitor.Options{
		Kinds: probes.Registry{"get": getKind}, Tick: 20 * time.Millisecond,
		OnExecution: met.ObserveExecution, OnBreakerTransition: met.ObserveBreakerTransition,
		OnBreakerCall: met.ObserveBreakerCall,
	})
	if err != nil {
		t.Fatal(err)
	}
	met.Attach(mon)
	srv := httptest.NewServer(met.Handler())
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mon.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("monitor: %v", err)
		}
	}()

	t.Run("healthy probe, failing probe, open breaker", func(t *testing.T) {
		eventually(t, srv.URL, "breaker open and statuses exported", func(f families) error {
			return errors.Join(
				want(f, "health_agent_probe_up", l("probe", "web"), 1),
				want(f, "health_agent_probe_status", l("probe", "web", "status", "healthy"), 1),
				want(f, "health_agent_probe_up", l("probe", "flaky"), 0),
				want(f, "health_agent_probe_status", l("probe", "flaky", "status", "unhealthy"), 1),
				want(f, "health_agent_breaker_state", l("breaker", "flaky-dep", "state", "OPEN"), 1),
				want(f, "health_agent_breaker_state", l("breaker", "flaky-dep", "state", "CLOSED"), 0),
				want(f, "health_agent_breaker_state", l("breaker", "web", "state", "CLOSED"), 1),
				want(f, "health_agent_breaker_transitions_total", l("breaker", "flaky-dep", "from", "CLOSED", "to", "OPEN"), 1),
				want(f, "health_agent_breaker_failure_ratio", l("breaker", "flaky-dep"), 1),
				want(f, "health_agent_overall_status", l("status", "degraded"), 1),
				want(f, "health_agent_ready", nil, 1),
				want(f, "health_agent_config_last_reload_successful", nil, 1),
			)
		})
		// The breaker opens after its 2 failures and then rejects every execution (delay 1h).
		eventually(t, srv.URL, "breaker calls counted", func(f families) error {
			var errs []error
			for _, c := range []struct {
				breaker, outcome string
				least            float64
			}{{"flaky-dep", "failure", 2}, {"flaky-dep", "rejected", 1}, {"web", "success", 1}} {
				if v, _ := f.value("health_agent_breaker_calls_total", l("breaker", c.breaker, "outcome", c.outcome)); v < c.least {
					errs = append(errs, fmt.Errorf("calls_total{%s,%s} = %v, want >= %v", c.breaker, c.outcome, v, c.least))
				}
			}
			return errors.Join(errs...)
		})
		f := scrape(t, srv.URL)
		for _, s := range []series{
			{"health_agent_breaker_calls_total", l("breaker", "web", "outcome", "rejected")},
			{"health_agent_probe_retries_total", l("probe", "web")}, // no retry policy
			{"health_agent_probe_flaps_total", l("probe", "flaky")}, // failed every time: never flapped
		} {
			if v, ok := f.value(s.name, s.labels); !ok || v != 0 {
				t.Errorf("%s%v = %v (present %v), want 0", s.name, s.labels, v, ok)
			}
		}
		if n, _ := f.value("health_agent_probe_duration_seconds", l("probe", "web")); n < 1 {
			t.Errorf("duration histogram of web has %v samples, want >= 1", n)
		}
		if n, _ := f.value("health_agent_probe_consecutive_failures", l("probe", "flaky")); n < 2 {
			t.Errorf("consecutive_failures of flaky = %v, want >= 2", n)
		}
	})

	t.Run("reload removes the failing probe", func(t *testing.T) {
		rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer rcancel()
		if err := mon.Reload(rctx, loadedConfig("two", testProbe("web", ok.URL, true, ""))); err != nil {
			t.Fatal(err)
		}
		eventually(t, srv.URL, "flaky gone", func(f families) error {
			for _, s := range []series{
				{"health_agent_probe_up", l("probe", "flaky")},
				{"health_agent_probe_duration_seconds", l("probe", "flaky")},
				{"health_agent_breaker_state", l("breaker", "flaky-dep")},
				{"health_agent_breaker_transitions_total", l("breaker", "flaky-dep")},
			} {
				if f.metric(s.name, s.labels) != nil {
					return fmt.Errorf("%s%v still exported", s.name, s.labels)
				}
			}
			return errors.Join(
				want(f, "health_agent_probe_up", l("probe", "web"), 1),
				want(f, "health_agent_overall_status", l("status", "healthy"), 1),
			)
		})
	})

	t.Run("rejected reload", func(t *testing.T) {
		mon.ReloadFailed(errors.New("probes[0].url: bad"))
		eventually(t, srv.URL, "reload failure exported", func(f families) error {
			return want(f, "health_agent_config_last_reload_successful", nil, 0)
		})
	})
}
