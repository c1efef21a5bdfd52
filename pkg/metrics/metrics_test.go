package metrics_test

import (
	"net/http/httptest"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/metrics"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

// fixedSource serves whatever snapshot the test stored.
type fixedSource struct {
	snap atomic.Pointer[monitor.Snapshot]
}

func (f *fixedSource) Snapshot() *monitor.Snapshot { return f.snap.Load() }

type series struct {
	name   string
	labels map[string]string
}

type expect struct {
	series
	value float64
}

var (
	loadedAt = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	failedAt = loadedAt.Add(time.Hour)
)

// TestCollector checks every snapshot-derived family against hand-built snapshots: a healthy and a
// failing probe, an open breaker, a rejected reload, then a reload that removed a probe and its breaker.
func TestCollector(t *testing.T) {
	src := &fixedSource{}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "v1.2.3")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	t.Run("before attach only static metrics", func(t *testing.T) {
		f := scrape(t, srv.URL)
		if v, ok := f.value("health_agent_build_info", l("version", "v1.2.3", "goversion", runtime.Version())); !ok || v != 1 {
			t.Errorf("build_info = %v, %v; want 1", v, ok)
		}
		if _, ok := f["health_agent_probe_up"]; ok {
			t.Error("probe_up exported with no monitor attached")
		}
	})

	m.Attach(src)
	m.ObserveExecution(monitor.Execution{Probe: "app", Status: probes.Healthy, Duration: 30 * time.Millisecond})
	m.ObserveExecution(monitor.Execution{Probe: "figma", Status: probes.Healthy, Duration: time.Second, Retries: 1})
	m.ObserveExecution(monitor.Execution{Probe: "figma", Status: probes.Unhealthy, Failed: true, Flapped: true, Retries: 2, Duration: 2 * time.Second})
	m.ObserveBreakerCall("figma-api", breakers.OutcomeSuccess)
	m.ObserveBreakerCall("figma-api", breakers.OutcomeFailure)
	m.ObserveBreakerCall("figma-api", breakers.OutcomeFailure)
	m.ObserveBreakerTransition(breakers.Transition{Breaker: "figma-api", From: breakers.Closed, To: breakers.Open, At: failedAt})
	m.ObserveBreakerCall("figma-api", breakers.OutcomeRejected)

	scenarios := []struct {
		name   string
		snap   *monitor.Snapshot
		want   []expect
		absent []series
	}{
		{
			name: "healthy and failing probes, open breaker, rejected reload",
			snap: &monitor.Snapshot{
				Overall: probes.Degraded,
				Checks: []monitor.CheckView{
					{Name: "app", Critical: true, Status: probes.Healthy, Breaker: "app"},
					{Name: "figma", Status: probes.Unhealthy, ConsecutiveFailures: 4, Breaker: "figma-api"},
					{Name: "memory", Status: probes.Degraded},
				},
				Breakers: []breakers.Stats{
					{Name: "app", State: breakers.Closed},
					{Name: "figma-api", State: breakers.Open, FailureRate: 80},
				},
				Config: monitor.ConfigInfo{LoadedAt: loadedAt, LastReload: monitor.Reload{At: failedAt, Error: "bad"}},
			},
			want: []expect{
				{series{"health_agent_probe_up", l("probe", "app")}, 1},
				{series{"health_agent_probe_up", l("probe", "figma")}, 0},
				{series{"health_agent_probe_up", l("probe", "memory")}, 1},
				{series{"health_agent_probe_status", l("probe", "app", "status", "healthy")}, 1},
				{series{"health_agent_probe_status", l("probe", "app", "status", "unhealthy")}, 0},
				{series{"health_agent_probe_status", l("probe", "figma", "status", "unhealthy")}, 1},
				{series{"health_agent_probe_status", l("probe", "figma", "status", "healthy")}, 0},
				{series{"health_agent_probe_status", l("probe", "figma", "status", "blocked")}, 0},
				{series{"health_agent_probe_status", l("probe", "memory", "status", "degraded")}, 1},
				{series{"health_agent_probe_consecutive_failures", l("probe", "figma")}, 4},
				{series{"health_agent_probe_consecutive_failures", l("probe", "app")}, 0},
				{series{"health_agent_probe_duration_seconds", l("probe", "app")}, 1},
				{series{"health_agent_probe_duration_seconds", l("probe", "figma")}, 2},
				{series{"health_agent_probe_retries_total", l("probe", "figma")}, 3},
				{series{"health_agent_probe_retries_total", l("probe", "app")}, 0},
				{series{"health_agent_probe_retries_total", l("probe", "memory")}, 0}, // exists before its first run
				{series{"health_agent_probe_flaps_total", l("probe", "figma")}, 1},
				{series{"health_agent_probe_flaps_total", l("probe", "app")}, 0},
				{series{"health_agent_probe_flaps_total", l("probe", "memory")}, 0},
				{series{"health_agent_breaker_calls_total", l("breaker", "figma-api", "outcome", "success")}, 1},
				{series{"health_agent_breaker_calls_total", l("breaker", "figma-api", "outcome", "failure")}, 2},
				{series{"health_agent_breaker_calls_total", l("breaker", "figma-api", "outcome", "rejected")}, 1},
				{series{"health_agent_breaker_calls_total", l("breaker", "app", "outcome", "success")}, 0}, // before its first call
				{series{"health_agent_breaker_calls_total", l("breaker", "app", "outcome", "failure")}, 0},
				{series{"health_agent_breaker_calls_total", l("breaker", "app", "outcome", "rejected")}, 0},
				{series{"health_agent_probe_duration_seconds", l("probe", "memory")}, 0}, // exists before its first run
				{series{"health_agent_breaker_state", l("breaker", "figma-api", "state", "OPEN")}, 1},
				{series{"health_agent_breaker_state", l("breaker", "figma-api", "state", "CLOSED")}, 0},
				{series{"health_agent_breaker_state", l("breaker", "figma-api", "state", "HALF_OPEN")}, 0},
				{series{"health_agent_breaker_state", l("breaker", "app", "state", "CLOSED")}, 1},
				{series{"health_agent_breaker_failure_ratio", l("breaker", "figma-api")}, 0.8},
				{series{"health_agent_breaker_failure_ratio", l("breaker", "app")}, 0},
				{series{"health_agent_breaker_transitions_total", l("breaker", "figma-api", "from", "CLOSED", "to", "OPEN")}, 1},
				{series{"health_agent_breaker_transitions_total", l("breaker", "app", "from", "CLOSED", "to", "OPEN")}, 0},
				{series{"health_agent_breaker_transitions_total", l("breaker", "app", "from", "HALF_OPEN", "to", "CLOSED")}, 0},
				// A breaker first seen by a hook still gets its other series at zero.
				{series{"health_agent_breaker_transitions_total", l("breaker", "figma-api", "from", "HALF_OPEN", "to", "CLOSED")}, 0},
				{series{"health_agent_overall_status", l("status", "degraded")}, 1},
				{series{"health_agent_overall_status", l("status", "healthy")}, 0},
				{series{"health_agent_overall_status", l("status", "unhealthy")}, 0},
				{series{"health_agent_ready", nil}, 1},
				{series{"health_agent_config_last_reload_successful", nil}, 0},
				{series{"health_agent_config_last_reload_success_timestamp_seconds", nil}, float64(loadedAt.Unix())},
			},
		},
		{
			name: "reload removed a probe and its breaker",
			snap: &monitor.Snapshot{
				Overall: probes.Unhealthy,
				Checks: []monitor.CheckView{
					{Name: "app", Critical: true, Status: probes.Unknown, Breaker: "app"},
					{Name: "memory", Status: probes.Healthy},
				},
				Breakers: []breakers.Stats{{Name: "app", State: breakers.HalfOpen, FailureRate: 50}},
				Config:   monitor.ConfigInfo{LoadedAt: failedAt, LastReload: monitor.Reload{At: failedAt, Success: true}},
			},
			want: []expect{
				{series{"health_agent_probe_up", l("probe", "app")}, 0},
				{series{"health_agent_probe_status", l("probe", "app", "status", "unknown")}, 1},
				{series{"health_agent_probe_duration_seconds", l("probe", "app")}, 1}, // kept across the reload
				{series{"health_agent_breaker_calls_total", l("breaker", "app", "outcome", "success")}, 0},
				{series{"health_agent_breaker_state", l("breaker", "app", "state", "HALF_OPEN")}, 1},
				{series{"health_agent_breaker_failure_ratio", l("breaker", "app")}, 0.5},
				{series{"health_agent_overall_status", l("status", "unhealthy")}, 1},
				{series{"health_agent_ready", nil}, 0},
				{series{"health_agent_config_last_reload_successful", nil}, 1},
				{series{"health_agent_config_last_reload_success_timestamp_seconds", nil}, float64(failedAt.Unix())},
			},
			absent: []series{
				{"health_agent_probe_up", l("probe", "figma")},
				{"health_agent_probe_status", l("probe", "figma")},
				{"health_agent_probe_consecutive_failures", l("probe", "figma")},
				{"health_agent_probe_duration_seconds", l("probe", "figma")},
				{"health_agent_breaker_state", l("breaker", "figma-api")},
				{"health_agent_breaker_failure_ratio", l("breaker", "figma-api")},
				{"health_agent_breaker_transitions_total", l("breaker", "figma-api")},
				{"health_agent_probe_retries_total", l("probe", "figma")},
				{"health_agent_probe_flaps_total", l("probe", "figma")},
				{"health_agent_breaker_calls_total", l("breaker", "figma-api")},
			},
		},
		{
			name: "no reload attempted since start",
			snap: &monitor.Snapshot{
				Overall: probes.Healthy,
				Checks:  []monitor.CheckView{{Name: "app", Critical: true, Status: probes.Healthy}},
				Config:  monitor.ConfigInfo{LoadedAt: loadedAt},
			},
			want: []expect{
				{series{"health_agent_config_last_reload_successful", nil}, 1},
				{series{"health_agent_config_last_reload_success_timestamp_seconds", nil}, float64(loadedAt.Unix())},
			},
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			src.snap.Store(sc.snap)
			f := scrape(t, srv.URL)
			for _, w := range sc.want {
				if v, ok := f.value(w.name, w.labels); !ok || v != w.value {
					t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, v, ok, w.value)
				}
			}
			for _, a := range sc.absent {
				if f.metric(a.name, a.labels) != nil {
					t.Errorf("%s%v still exported", a.name, a.labels)
				}
			}
			if got, want := f.labelValues("health_agent_probe_status", "status"),
				[]string{"blocked", "degraded", "healthy", "unhealthy", "unknown"}; !slices.Equal(got, want) {
				t.Errorf("probe_status statuses = %v, want %v", got, want)
			}
			for _, c := range sc.snap.Checks {
				n := 0
				for _, st := range []string{"healthy", "degraded", "unhealthy", "unknown", "blocked"} {
					v, ok := f.value("health_agent_probe_status", l("probe", c.Name, "status", st))
					if !ok {
						t.Errorf("probe_status{probe=%q,status=%q} missing", c.Name, st)
					}
					n += int(v)
				}
				if n != 1 {
					t.Errorf("probe_status{probe=%q} is not one-hot: %d ones", c.Name, n)
				}
			}
			for _, fam := range []string{"go_goroutines", "process_cpu_seconds_total", "health_agent_build_info"} {
				if _, ok := f[fam]; !ok {
					t.Errorf("family %s missing", fam)
				}
			}
		})
	}
}

// TestDurationHistogram checks the observed seconds land in the right buckets.
func TestDurationHistogram(t *testing.T) {
	src := &fixedSource{}
	src.snap.Store(&monitor.Snapshot{Overall: probes.Healthy, Checks: []monitor.CheckView{{Name: "db", Status: probes.Healthy}}})
	m := metrics.New(prometheus.NewRegistry(), "")
	m.Attach(src)
	for _, d := range []time.Duration{3 * time.Millisecond, 40 * time.Millisecond, 7 * time.Second} {
		m.ObserveExecution(monitor.Execution{Probe: "db", Duration: d})
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	h := scrape(t, srv.URL).metric("health_agent_probe_duration_seconds", l("probe", "db")).GetHistogram()
	if h.GetSampleCount() != 3 {
		t.Fatalf("count = %d, want 3", h.GetSampleCount())
	}
	if got, want := h.GetSampleSum(), 7.043; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("sum = %v, want %v", got, want)
	}
	cumulative := map[float64]uint64{0.005: 1, 0.05: 2, 5: 2, 10: 3}
	for _, b := range h.GetBucket() {
		if want, ok := cumulative[b.GetUpperBound()]; ok && b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}

// TestHooksDuringReload calls the hooks for a probe and a breaker that a reload removed while scrapes
// run: once the hooks stop, the next scrape exports none of their series (none is left orphaned).
func TestHooksDuringReload(t *testing.T) {
	src := &fixedSource{}
	src.snap.Store(&monitor.Snapshot{
		Overall:  probes.Healthy,
		Checks:   []monitor.CheckView{{Name: "kept", Status: probes.Healthy, Breaker: "kept"}},
		Breakers: []breakers.Stats{{Name: "kept", State: breakers.Closed}},
	})
	m := metrics.New(prometheus.NewRegistry(), "")
	m.Attach(src)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	stop := make(chan struct{})
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			m.ObserveExecution(monitor.Execution{Probe: "gone", Failed: true, Flapped: true, Retries: 1})
			m.ObserveBreakerCall("gone", breakers.OutcomeFailure)
			m.ObserveBreakerTransition(breakers.Transition{Breaker: "gone", From: breakers.Closed, To: breakers.Open})
		}
	}()
	for range 20 {
		scrape(t, srv.URL)
	}
	close(stop)
	<-hooksDone
	f := scrape(t, srv.URL)
	for _, s := range []series{
		{"health_agent_probe_duration_seconds", l("probe", "gone")},
		{"health_agent_probe_retries_total", l("probe", "gone")},
		{"health_agent_probe_flaps_total", l("probe", "gone")},
		{"health_agent_breaker_calls_total", l("breaker", "gone")},
		{"health_agent_breaker_transitions_total", l("breaker", "gone")},
	} {
		if f.metric(s.name, s.labels) != nil {
			t.Errorf("%s%v still exported after the last scrape", s.name, s.labels)
		}
	}
	if v, ok := f.value("health_agent_breaker_calls_total", l("breaker", "kept", "outcome", "success")); !ok || v != 0 {
		t.Errorf("calls_total{kept,success} = %v (present %v), want 0", v, ok)
	}
}
