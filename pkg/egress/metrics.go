package egress

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus series. Labels are route names and status codes only: nothing
// the app or an upstream sends (a path, a header) becomes a label.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rejected *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "health_agent_egress_requests_total",
			Help: "Requests of the app through the egress proxy, by route and the status code the app got.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "health_agent_egress_request_duration_seconds",
			Help:    "Time from a request of the app to the response headers, by egress route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "health_agent_egress_rejected_total",
			Help: "Requests the egress proxy answered without contacting the upstream: its breaker open, or its 429 Retry-After running.",
		}, []string{"route", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.rejected} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}

func (m *metrics) observe(route string, code int, dur time.Duration, rejected string) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(dur.Seconds())
	if rejected != "" {
		m.rejected.WithLabelValues(route, rejected).Inc()
	}
}
