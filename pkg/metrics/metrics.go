// Package metrics exports the agent's health as Prometheus metrics on an injected registry.
//
// Gauges are read from the monitor's latest Snapshot when Prometheus scrapes (a custom Collector), so a
// probe execution costs nothing here beyond one histogram observation, a scrape costs O(probes +
// breakers), and a probe or breaker removed by a reload disappears at the next scrape.
package metrics

import (
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

// Registry is where the metrics are registered and gathered from (a *prometheus.Registry).
type Registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Source is what the collector reads at scrape time: the monitor.
type Source interface {
	Snapshot() *monitor.Snapshot
}

// The label values of the one-hot gauges, in the order they are exported.
var (
	probeStatuses   = []probes.Status{probes.Healthy, probes.Degraded, probes.Unhealthy, probes.Unknown, probes.Blocked}
	overallStatuses = []probes.Status{probes.Healthy, probes.Degraded, probes.Unhealthy}
	breakerStates   = []string{breakers.Closed, breakers.Open, breakers.HalfOpen}
	// breakerOutcomes are the outcomes of a call through a breaker, as Resilience4j's
	// resilience4j_circuitbreaker_calls counts them (its successful, failed and not_permitted).
	breakerOutcomes = []string{breakers.OutcomeSuccess, breakers.OutcomeFailure, breakers.OutcomeRejected}
	// breakerEdges are the transitions a failsafe-go breaker makes on its own; their counters start at 0
	// so that increase() sees the first one.
	breakerEdges = [][2]string{
		{breakers.Closed, breakers.Open},
		{breakers.Open, breakers.HalfOpen},
		{breakers.HalfOpen, breakers.Open},
		{breakers.HalfOpen, breakers.Closed},
	}
)

// DurationBuckets are the probe duration histogram's buckets, in seconds: from a local check (ms) to a
// remote one that timed out after its retries.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Metrics holds the agent's metrics. Create it with New, give its hooks to monitor.Options, Attach the
// monitor, and serve Handler.
type Metrics struct {
	src     atomic.Pointer[Source]
	handler http.Handler

	duration    *prometheus.HistogramVec
	retries     *prometheus.CounterVec // by probe
	flaps       *prometheus.CounterVec // by probe
	transitions *prometheus.CounterVec
	calls       *prometheus.CounterVec // by breaker and outcome

	// mu guards the names that have children in the histogram and counters, so that a scrape can delete
	// those a reload removed; hooks observe under it too.
	mu           sync.Mutex
	probeNames   map[string]bool
	breakerNames map[string]bool

	buildInfo, probeUp, probeStatus, probeFailures, breakerState, breakerFailure, overall,
	ready, reloadOK, reloadTime *prometheus.Desc
}

// New registers the agent's metrics, the Go runtime and process collectors on reg. Like promauto.With,
// it panics if one of them is already registered there: that is a wiring bug.
func New(reg Registry, version string) *Metrics {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "health_agent_probe_duration_seconds",
			Help:    "Duration of a probe's scheduled executions through its policies (retries included).",
			Buckets: DurationBuckets,
		}, []string{"probe"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "health_agent_probe_retries_total",
			Help: "Attempts a probe's executions made after their first (the retry policy's retries).",
		}, []string{"probe"}),
		flaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "health_agent_probe_flaps_total",
			Help: "Executions whose outcome (failed or succeeded) differs from the probe's previous execution's, before hysteresis.",
		}, []string{"probe"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "health_agent_breaker_transitions_total",
			Help: "Circuit breaker state changes.",
		}, []string{"breaker", "from", "to"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "health_agent_breaker_calls_total",
			Help: "Calls through a circuit breaker by outcome: success, failure, or rejected (the breaker was open; the dependency was not called).",
		}, []string{"breaker", "outcome"}),
		probeNames:   map[string]bool{},
		breakerNames: map[string]bool{},

		buildInfo: prometheus.NewDesc("health_agent_build_info",
			"Always 1; the agent's version and the Go version it was built with.", nil,
			prometheus.Labels{"version": version, "goversion": runtime.Version()}),
		probeUp: prometheus.NewDesc("health_agent_probe_up",
			"1 when the probe's status is healthy or degraded, else 0.", []string{"probe"}, nil),
		probeStatus: prometheus.NewDesc("health_agent_probe_status",
			"1 for the probe's current status (healthy, degraded, unhealthy, unknown, blocked), 0 for the others.",
			[]string{"probe", "status"}, nil),
		probeFailures: prometheus.NewDesc("health_agent_probe_consecutive_failures",
			"Consecutive failed executions of the probe.", []string{"probe"}, nil),
		breakerState: prometheus.NewDesc("health_agent_breaker_state",
			"1 for the breaker's current state (CLOSED, OPEN, HALF_OPEN), 0 for the others.",
			[]string{"breaker", "state"}, nil),
		breakerFailure: prometheus.NewDesc("health_agent_breaker_failure_ratio",
			"Failed share (0..1) of the executions in the breaker's window.", []string{"breaker"}, nil),
		overall: prometheus.NewDesc("health_agent_overall_status",
			"1 for the agent's overall status (healthy, degraded, unhealthy), 0 for the others.",
			[]string{"status"}, nil),
		ready: prometheus.NewDesc("health_agent_ready",
			"1 when /readyz passes: no critical probe unhealthy, blocked or unknown, and not shutting down.", nil, nil),
		reloadOK: prometheus.NewDesc("health_agent_config_last_reload_successful",
			"0 when the last config reload was rejected (the previous config keeps running), else 1.", nil, nil),
		reloadTime: prometheus.NewDesc("health_agent_config_last_reload_success_timestamp_seconds",
			"When the running config was loaded (Unix seconds).", nil, nil),
	}
	reg.MustRegister(
		(*collector)(m),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry: reg, // counts its own errors in promhttp_metric_handler_errors_total
	}))
	return m
}

// Attach makes the collector read src's snapshots. Before it is called, only the static metrics and the
// histogram and counters are exported.
func (m *Metrics) Attach(src Source) { m.src.Store(&src) }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// ObserveExecution is monitor.Options.OnExecution: the duration, the retries and whether it flapped.
func (m *Metrics) ObserveExecution(e monitor.Execution) {
	// Under mu, so that a concurrent scrape's sync cannot delete the series between its creation and
	// this observation, leaving one it no longer knows about.
	m.mu.Lock()
	defer m.mu.Unlock()
	(*collector)(m).addProbeLocked(e.Probe)
	m.duration.WithLabelValues(e.Probe).Observe(e.Duration.Seconds())
	if e.Retries > 0 {
		m.retries.WithLabelValues(e.Probe).Add(float64(e.Retries))
	}
	if e.Flapped {
		m.flaps.WithLabelValues(e.Probe).Inc()
	}
}

// ObserveBreakerCall is monitor.Options.OnBreakerCall: one call through breaker, with its outcome
// (breakers.OutcomeSuccess, OutcomeFailure or OutcomeRejected).
func (m *Metrics) ObserveBreakerCall(breaker, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	(*collector)(m).addBreakerLocked(breaker)
	m.calls.WithLabelValues(breaker, outcome).Inc()
}

// ObserveBreakerTransition is monitor.Options.OnBreakerTransition.
func (m *Metrics) ObserveBreakerTransition(t breakers.Transition) {
	m.mu.Lock()
	defer m.mu.Unlock()
	(*collector)(m).addBreakerLocked(t.Breaker)
	m.transitions.WithLabelValues(t.Breaker, t.From, t.To).Inc()
}

// collector is Metrics as a prometheus.Collector; a separate type keeps Describe and Collect out of
// Metrics' API.
type collector Metrics

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.probeUp, c.probeStatus, c.probeFailures,
		c.breakerState, c.breakerFailure, c.overall, c.ready, c.reloadOK, c.reloadTime} {
		ch <- d
	}
	for _, v := range c.vecs() {
		v.Describe(ch)
	}
}

// vecs are the histogram and counters, which keep their values between scrapes.
func (c *collector) vecs() []prometheus.Collector {
	return []prometheus.Collector{c.duration, c.retries, c.flaps, c.transitions, c.calls}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1)
	var s *monitor.Snapshot
	if p := c.src.Load(); p != nil {
		s = (*p).Snapshot()
	}
	if s != nil {
		c.sync(s)
		c.collectSnapshot(ch, s)
	}
	for _, v := range c.vecs() {
		v.Collect(ch)
	}
}

// sync makes the histogram and counters hold exactly the probes and breakers of s: it deletes those a
// reload removed and creates the missing ones.
func (c *collector) sync(s *monitor.Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	probeNames := make(map[string]bool, len(s.Checks))
	for i := range s.Checks {
		probeNames[s.Checks[i].Name] = true
		c.addProbeLocked(s.Checks[i].Name)
	}
	for name := range c.probeNames {
		if !probeNames[name] {
			c.duration.DeleteLabelValues(name)
			c.retries.DeleteLabelValues(name)
			c.flaps.DeleteLabelValues(name)
			delete(c.probeNames, name)
		}
	}
	breakerNames := make(map[string]bool, len(s.Breakers))
	for _, b := range s.Breakers {
		breakerNames[b.Name] = true
		c.addBreakerLocked(b.Name)
	}
	for name := range c.breakerNames {
		if !breakerNames[name] {
			c.transitions.DeletePartialMatch(prometheus.Labels{"breaker": name})
			c.calls.DeletePartialMatch(prometheus.Labels{"breaker": name})
			delete(c.breakerNames, name)
		}
	}
}

// addProbeLocked creates a probe's series at zero the first time it is seen (by a snapshot or a hook),
// so that every series exists from the start and rate() and increase() see the first event.
func (c *collector) addProbeLocked(name string) {
	if c.probeNames[name] {
		return
	}
	c.probeNames[name] = true
	c.duration.WithLabelValues(name)
	c.retries.WithLabelValues(name)
	c.flaps.WithLabelValues(name)
}

// addBreakerLocked is addProbeLocked for a breaker: every transition a breaker makes on its own and
// every call outcome.
func (c *collector) addBreakerLocked(name string) {
	if c.breakerNames[name] {
		return
	}
	c.breakerNames[name] = true
	for _, e := range breakerEdges {
		c.transitions.WithLabelValues(name, e[0], e[1])
	}
	for _, o := range breakerOutcomes {
		c.calls.WithLabelValues(name, o)
	}
}

func (c *collector) collectSnapshot(ch chan<- prometheus.Metric, s *monitor.Snapshot) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for i := range s.Checks {
		v := &s.Checks[i]
		gauge(c.probeUp, bool01(v.OK()), v.Name)
		for _, st := range probeStatuses {
			gauge(c.probeStatus, bool01(v.Status == st), v.Name, string(st))
		}
		gauge(c.probeFailures, float64(v.ConsecutiveFailures), v.Name)
	}
	for _, b := range s.Breakers {
		for _, st := range breakerStates {
			gauge(c.breakerState, bool01(b.State == st), b.Name, st)
		}
		gauge(c.breakerFailure, b.FailureRate/100, b.Name)
	}
	for _, st := range overallStatuses {
		gauge(c.overall, bool01(s.Overall == st), string(st))
	}
	gauge(c.ready, bool01(s.Ready()))
	// The initial load succeeded, or the agent would not run: no reload attempted yet counts as success.
	gauge(c.reloadOK, bool01(s.Config.LastReload == (monitor.Reload{}) || s.Config.LastReload.Success))
	loaded := s.Config.LoadedAt
	if loaded.IsZero() {
		loaded = s.Config.LastReload.At
	}
	if !loaded.IsZero() {
		gauge(c.reloadTime, float64(loaded.UnixNano())/1e9)
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
