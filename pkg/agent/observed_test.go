package agent

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/monitor"
)

// TestWithMetricsAndStatusPageHooks: WithMetricsAndStatusPage gives the monitor every metrics hook, and what the hooks record
// is served on the agent's /metrics.
func TestWithMetricsAndStatusPageHooks(t *testing.T) {
	flaky, steady := newDependency(t), newDependency(t)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	write(t, path, fmt.Sprintf(configTmpl, "0s", flaky.URL, steady.URL, "50ms"))
	var hooks monitor.Options
	r := startAgentWith(t, path, func(o *Options) {
		*o = WithMetricsAndStatusPage(*o)
		hooks = o.MonitorOptions
	})
	if hooks.OnExecution == nil || hooks.OnBreakerTransition == nil || hooks.OnBreakerCall == nil {
		t.Fatalf("WithMetricsAndStatusPage left a monitor hook unset: execution %t, transition %t, call %t",
			hooks.OnExecution != nil, hooks.OnBreakerTransition != nil, hooks.OnBreakerCall != nil)
	}
	hooks.OnBreakerCall("steady", breakers.OutcomeRejected)
	hooks.OnExecution(monitor.Execution{Probe: "config", Retries: 3, Flapped: true})

	// At least: the running monitor may add its own counts to these series.
	want := map[string]float64{
		`health_agent_breaker_calls_total{breaker="steady",outcome="rejected"}`: 1,
		`health_agent_probe_retries_total{probe="config"}`:                      3,
		`health_agent_probe_flaps_total{probe="config"}`:                        1,
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get("http://" + r.agent.Addr() + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		values := map[string]float64{}
		for line := range strings.SplitSeq(string(b), "\n") {
			if series, v, ok := strings.Cut(line, " "); ok {
				values[series], _ = strconv.ParseFloat(v, 64)
			}
		}
		for series, least := range want {
			if values[series] < least {
				return false
			}
		}
		return true
	}, "the hooks' counts on /metrics")
}
