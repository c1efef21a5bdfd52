package monitor

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/redact"
)

// The agent's own limits (a probe's rate limit, the bulkhead) say nothing about the dependency: an
// execution they turn away keeps the verdict and counts for nothing.
func TestOwnLimitsKeepTheVerdict(t *testing.T) {
	def := config.Probe{Name: "a", Policy: config.Policy{Interval: time.Second, FailuresBeforeUnhealthy: 1, SuccessesBeforeHealthy: 1}}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"rate limit", &breakers.RateLimitedError{Max: 1, Per: time.Hour}},
		{"bulkhead", fmt.Errorf("no free probe slot: %w", bulkhead.ErrFull)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCheck(def, nil)
			now := time.Unix(1000, 0)
			c.record(now, probes.Result{Status: probes.Healthy}, nil, 0, nil)
			o := c.record(now.Add(time.Second), probes.Result{}, tc.err, 0, nil)
			if !o.limited || o.changed || c.status != probes.Healthy || c.consecutiveFailures != 0 || c.flaps != 0 {
				t.Fatalf("after a %s refusal: outcome %+v, status %s, %d consecutive failures, %d flaps; want the verdict kept",
					tc.name, o, c.status, c.consecutiveFailures, c.flaps)
			}
			if !c.lastChecked.Equal(now) {
				t.Errorf("lastChecked moved to %s: nothing was checked", c.lastChecked)
			}
		})
	}
}

// A limited first execution leaves no verdict, but says why there is none.
func TestOwnLimitOnFirstExecutionSaysWhy(t *testing.T) {
	c := newCheck(config.Probe{Name: "a"}, nil)
	c.record(time.Now(), probes.Result{}, &breakers.RateLimitedError{Max: 1, Per: time.Hour}, 0, nil)
	if c.status != probes.Unknown || !strings.Contains(c.reason, "rate limit") {
		t.Fatalf("status %s, reason %q; want unknown with the rate limit as the reason", c.status, c.reason)
	}
}

// Text from a dependency is cut and cleaned of secrets before it is kept.
func TestReasonIsBoundedAndRedacted(t *testing.T) {
	const token = "figd_s3cr3t-T0KEN-value-0123456789"
	secrets := &redact.Secrets{}
	secrets.Add(token)
	huge := "boom " + token[:12] + " " + strings.Repeat("x", 7<<20) + token[len(token)-10:]
	c := newCheck(config.Probe{Name: "a", Policy: config.Policy{FailuresBeforeUnhealthy: 1}}, nil)
	c.record(time.Now(), probes.Result{}, errors.New(huge), 0, secrets)
	if len(c.reason) > redact.MaxText {
		t.Errorf("reason kept %d bytes, want at most %d", len(c.reason), redact.MaxText)
	}
	if strings.Contains(c.reason, token[:8]) {
		t.Errorf("reason shows a piece of the token: %.80q", c.reason)
	}
}

// While a breaker is open, the reason names it, how many failures opened it and the last failure that
// reached the dependency, with a countdown computed at each snapshot. The kind's fields are those of
// the last execution that reached the dependency, with its time.
func TestOpenBreakerReasonKeepsTheCause(t *testing.T) {
	w := newWorld("a")
	w.deps["a"].set(errors.New("dial tcp 127.0.0.1:3007: connect: connection refused"), false)
	p := fake("a", true)
	p.Policy.Breaker = config.BreakerPolicy{FailureThreshold: 2, Window: 2, Delay: 3 * time.Second, SuccessThreshold: 1}
	m := start(t, w, loaded(p))
	want := regexp.MustCompile(`^circuit breaker "a" open after 2 failures \(last: dial tcp 127\.0\.0\.1:3007: connect: connection refused\); next trial in (\d)s$`)
	first := waitFor(t, m, "the breaker's refusal", func(s *Snapshot) bool { return want.MatchString(s.Check("a").Reason) })
	v := first.Check("a")
	if v.Fields["dep"] != "a" || v.LastAttempt.IsZero() || !v.LastAttempt.Before(v.LastChecked) {
		t.Errorf("fields %v, lastAttempt %s, lastChecked %s: want the failed execution's fields and time kept",
			v.Fields, v.LastAttempt, v.LastChecked)
	}
	firstIn := want.FindStringSubmatch(v.Reason)[1]
	waitFor(t, m, "the countdown to move", func(s *Snapshot) bool {
		m := want.FindStringSubmatch(s.Check("a").Reason)
		return m != nil && m[1] != firstIn
	})
}

// When the app's own calls through the egress proxy open a breaker a probe shares, the probe turns
// unhealthy at the next tick, whatever its interval and hysteresis, and says the failures came from
// real traffic.
func TestBreakerOpenedByTrafficTurnsTheProbeAtOnce(t *testing.T) {
	w := newWorld("a")
	p := fake("a", true)
	p.BreakerName = "figma-api"
	p.Policy.Interval = time.Hour
	p.Policy.FailuresBeforeUnhealthy = 3
	p.Policy.Breaker = config.BreakerPolicy{FailureThreshold: 2, Window: 2, Delay: time.Hour, SuccessThreshold: 1}
	m := start(t, w, loaded(p))
	waitFor(t, m, "healthy", func(s *Snapshot) bool { return status(s, "a") == probes.Healthy })

	b := m.Breakers().Get("figma-api")
	for range 2 {
		call, err := b.Begin(breakers.TrafficSource + "figma")
		if err != nil {
			t.Fatal(err)
		}
		call.Fail(errors.New("status 502"))
	}
	s := waitFor(t, m, "unhealthy", func(s *Snapshot) bool { return status(s, "a") == probes.Unhealthy })
	if r := s.Check("a").Reason; !strings.Contains(r, `from real traffic on egress route "figma": status 502`) {
		t.Errorf("reason %q does not say the failures came from real traffic", r)
	}
	if got := w.deps["a"].calls.Load(); got != 1 {
		t.Errorf("the dependency was called %d times, want 1: the refusal must not reach it", got)
	}
}

// From SetDraining on, the snapshot says the agent is shutting down and readiness fails.
func TestDrainingShowsInTheSnapshot(t *testing.T) {
	w := newWorld("a")
	m := start(t, w, loaded(fake("a", true)))
	waitFor(t, m, "healthy", func(s *Snapshot) bool { return status(s, "a") == probes.Healthy })
	m.SetDraining()
	if s := m.Snapshot(); !s.ShuttingDown || s.Ready() || s.Overall != probes.Healthy {
		t.Fatalf("draining: shuttingDown %v ready %v overall %s; want shutting down, not ready, verdict kept",
			s.ShuttingDown, s.Ready(), s.Overall)
	}
}

// OnExecution reports flaps of the raw outcome and the retries an execution made.
func TestExecutionReportsFlapsAndRetries(t *testing.T) {
	w := newWorld("a")
	var got []Execution
	execs := make(chan Execution, 100)
	p := fake("a", false)
	p.Policy.Retry = config.Retry{MaxRetries: 2, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}
	m, err := New(loaded(p), Options{Kinds: w.kinds(), Tick: 10 * time.Millisecond,
		OnExecution: func(e Execution) {
			select {
			case execs <- e:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	runMonitor(t, m)
	got = append(got, <-execs)
	w.deps["a"].set(errors.New("down"), false)
	for {
		e := <-execs
		got = append(got, e)
		if e.Failed {
			if !e.Flapped || e.Retries != 2 {
				t.Fatalf("failed execution after a success: %+v, want Flapped and 2 retries", e)
			}
			break
		}
	}
	if got[0].Flapped || got[0].Retries != 0 {
		t.Errorf("first execution %+v: nothing to flap from, no retry", got[0])
	}
}

// Snapshots carry the egress traffic Options.Traffic reports, and the tick republishes when it moved
// though nothing else did.
func TestSnapshotsFollowTraffic(t *testing.T) {
	w := newWorld("a")
	p := fake("a", true)
	p.Policy.Interval = time.Hour
	var requests atomic.Int64
	m, err := New(loaded(p), Options{Kinds: w.kinds(), Tick: 10 * time.Millisecond, Traffic: func() []RouteTraffic {
		return []RouteTraffic{{Route: "figma", Breaker: "a", Requests: int(requests.Load())}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	runMonitor(t, m)
	waitFor(t, m, "healthy", func(s *Snapshot) bool { return status(s, "a") == probes.Healthy })
	requests.Store(7)
	waitFor(t, m, "the new traffic", func(s *Snapshot) bool { return len(s.Traffic) == 1 && s.Traffic[0].Requests == 7 })
}
