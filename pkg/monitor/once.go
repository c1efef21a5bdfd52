package monitor

import (
	"context"
	"fmt"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/redact"
)

// ErrNoSuchProbe is returned by RunOnce for a name the config does not have.
var ErrNoSuchProbe = fmt.Errorf("no such probe")

// RunOnce executes the named probe of loaded once through its policies (retry, breaker, timeout),
// ignoring its dependencies and hysteresis.
func RunOnce(ctx context.Context, loaded *config.Loaded, name string, opts Options) (Execution, error) {
	m, err := New(loaded, opts)
	if err != nil {
		return Execution{}, err
	}
	m.mu.Lock()
	c := m.checks[name]
	m.mu.Unlock()
	if c == nil {
		return Execution{}, fmt.Errorf("%w %q (have: %v)", ErrNoSuchProbe, name, m.names())
	}
	start := time.Now()
	res, err := c.guarded.Check(ctx)
	out := Execution{Probe: name, Kind: c.def.Kind, Status: res.Status, Reason: res.Reason,
		Failed: err != nil, Retries: int(c.retries.Load()), Duration: time.Since(start), Fields: res.Fields}
	if err != nil {
		out.Status, out.Reason = probes.Unhealthy, err.Error()
	} else if out.Status == "" {
		out.Status = probes.Healthy
	}
	out.Reason = redact.Shown(out.Reason, m.opts.Secrets.List(), redact.MaxText)
	return out, nil
}

func (m *Monitor) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.ordered))
	for _, c := range m.ordered {
		out = append(out, c.def.Name)
	}
	return out
}
