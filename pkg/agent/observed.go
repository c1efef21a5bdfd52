package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/health-agent/health-agent/pkg/metrics"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/statuspage"
)

// WithMetricsAndStatusPage returns opts with what `agent` serves besides the health endpoints:
// Prometheus metrics on a registry of its own (the monitor's execution and breaker hooks and the egress
// proxy feed it) on /metrics, and the status page on /. It replaces opts' Observe, Page, Registerer and
// monitor hooks; cmd/agent, the benchmark runner and the integration tests all start the agent through
// it, so they serve the same thing.
func WithMetricsAndStatusPage(opts Options) Options {
	reg := prometheus.NewRegistry()
	met := metrics.New(reg, opts.Version)
	opts.Registerer = reg
	opts.Observe = func(m *monitor.Monitor) http.Handler { met.Attach(m); return met.Handler() }
	opts.Page = func(m *monitor.Monitor, token func() string) http.Handler {
		return statuspage.New(m, statuspage.Options{Token: token})
	}
	opts.MonitorOptions.OnExecution = met.ObserveExecution
	opts.MonitorOptions.OnBreakerTransition = met.ObserveBreakerTransition
	opts.MonitorOptions.OnBreakerCall = met.ObserveBreakerCall
	return opts
}
