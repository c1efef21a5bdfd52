package monitor

import (
	"errors"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// TestFlapsCountOutcomeChanges: flaps counts changes between failed and succeeded executions before
// hysteresis, so a dependency that flaps under a steady verdict is still visible.
func TestFlapsCountOutcomeChanges(t *testing.T) {
	const (
		ok      = "ok"
		fail    = "fail"
		unknown = "unknown"
	)
	tests := []struct {
		name            string
		outcomes        []string
		wantFlaps       uint64
		wantTransitions uint64
	}{
		{"steady success", []string{ok, ok, ok}, 0, 1},
		{"steady failure", []string{fail, fail, fail}, 0, 1},
		{"alternating under hysteresis", []string{ok, fail, ok, fail, ok, fail, ok}, 6, 1},
		{"one outage", []string{ok, fail, fail, ok}, 2, 3},
		{"unknown results are neither", []string{ok, unknown, ok, unknown, fail}, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCheck(config.Probe{Name: "p", Policy: config.Policy{
				Interval: time.Second, FailuresBeforeUnhealthy: 2, SuccessesBeforeHealthy: 1,
			}}, nil)
			now := time.Unix(1000, 0)
			for _, o := range tt.outcomes {
				now = now.Add(time.Second)
				switch o {
				case ok:
					c.record(now, probes.Result{Status: probes.Healthy}, nil, 0, nil)
				case fail:
					c.record(now, probes.Result{Status: probes.Unhealthy}, errors.New("boom"), 0, nil)
				case unknown:
					c.record(now, probes.Result{Status: probes.Unknown}, nil, 0, nil)
				}
			}
			if c.flaps != tt.wantFlaps || c.transitions != tt.wantTransitions {
				t.Fatalf("flaps %d transitions %d, want %d and %d", c.flaps, c.transitions, tt.wantFlaps, tt.wantTransitions)
			}
		})
	}
}

func TestFlapsInTheSnapshot(t *testing.T) {
	w := newWorld("a")
	m := start(t, w, loaded(fake("a", true)))
	waitFor(t, m, "a few executions", func(*Snapshot) bool { return w.deps["a"].calls.Load() >= 2 })
	w.deps["a"].set(errors.New("down"), false)
	waitFor(t, m, "a flap", func(s *Snapshot) bool { return s.Check("a").Flaps >= 1 })
}
