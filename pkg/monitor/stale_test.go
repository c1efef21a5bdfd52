package monitor

import (
	"math"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// TestStaleAfterCountsTheExecutionBudget: a verdict goes stale 3 intervals after the next execution
// could have finished, so a dependency that answers within its timeout never shows as unknown.
func TestStaleAfterCountsTheExecutionBudget(t *testing.T) {
	def := config.DefaultPolicy() // interval 10s, timeout 2s, 1 retry, maxBackoff 2s, jitter 0.2
	tests := []struct {
		name  string
		probe config.Probe
		want  time.Duration
	}{
		{"defaults: 2 attempts and one jittered backoff", config.Probe{Policy: def}, 30*time.Second + 2*2*time.Second + 2400*time.Millisecond},
		{"no retries", config.Probe{Policy: config.Policy{Interval: time.Second, Timeout: 5 * time.Second}}, 8 * time.Second},
		{"local probes have no retries", config.Probe{Local: true, Policy: def}, 32 * time.Second},
		{"absurd retry counts do not overflow", config.Probe{Policy: config.Policy{Interval: time.Second, Timeout: math.MaxInt64 / 2,
			Retry: config.Retry{MaxRetries: math.MaxInt32, Backoff: time.Hour, MaxBackoff: time.Hour}}}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newCheck(tt.probe, nil).staleAfter()
			if tt.want < 0 {
				if got < 100*24*time.Hour {
					t.Fatalf("staleAfter = %s, want a huge positive duration", got)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("staleAfter = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSlowButInTimeIsNotStale(t *testing.T) {
	c := newCheck(config.Probe{Policy: config.Policy{Interval: 100 * time.Millisecond, Timeout: time.Second,
		FailuresBeforeUnhealthy: 1, SuccessesBeforeHealthy: 1}}, nil)
	now := time.Unix(1000, 0)
	c.record(now, probes.Result{Status: probes.Healthy}, nil, 900*time.Millisecond, nil)
	m := &Monitor{}
	// The next execution started 100ms after this result and has been waiting on the dependency for
	// 900ms: slow, within its timeout, and not stale.
	if got := m.viewStatus(c, now.Add(time.Second)); got != probes.Healthy {
		t.Fatalf("view %s one second after the last result, want healthy", got)
	}
	if got := m.viewStatus(c, now.Add(1400*time.Millisecond)); got != probes.Unknown {
		t.Fatalf("view %s past 3 intervals plus the timeout, want unknown", got)
	}
}
