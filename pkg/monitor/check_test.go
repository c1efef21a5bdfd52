package monitor

import (
	"errors"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// step is one execution outcome fed to check.record.
type step struct {
	fail   bool
	status probes.Status // for a success: Healthy (default), Degraded or Unknown
	want   probes.Status
}

func TestHysteresis(t *testing.T) {
	ok := step{want: probes.Healthy}
	tests := []struct {
		name              string
		failures, success int
		steps             []step
	}{
		{"first failure from unknown is unhealthy at once", 3, 1, []step{
			{fail: true, want: probes.Unhealthy},
		}},
		{"turns unhealthy only after failuresBeforeUnhealthy", 2, 1, []step{
			ok,
			{fail: true, want: probes.Healthy},
			{fail: true, want: probes.Unhealthy},
		}},
		{"a success between failures resets the count", 2, 1, []step{
			ok,
			{fail: true, want: probes.Healthy},
			ok,
			{fail: true, want: probes.Healthy},
			{fail: true, want: probes.Unhealthy},
		}},
		{"recovers only after successesBeforeHealthy", 1, 3, []step{
			ok,
			{fail: true, want: probes.Unhealthy},
			{want: probes.Unhealthy},
			{want: probes.Unhealthy},
			{want: probes.Healthy},
		}},
		{"a failure during recovery restarts it", 1, 2, []step{
			{fail: true, want: probes.Unhealthy},
			{want: probes.Unhealthy},
			{fail: true, want: probes.Unhealthy},
			{want: probes.Unhealthy},
			{want: probes.Healthy},
		}},
		{"degraded is a success and shown at once", 2, 1, []step{
			ok,
			{status: probes.Degraded, want: probes.Degraded},
			ok,
		}},
		{"degraded counts towards recovery", 1, 2, []step{
			{fail: true, want: probes.Unhealthy},
			{status: probes.Degraded, want: probes.Unhealthy},
			{status: probes.Degraded, want: probes.Degraded},
		}},
		{"unknown from the probe is shown as it is", 2, 1, []step{
			ok,
			{status: probes.Unknown, want: probes.Unknown},
			{fail: true, want: probes.Unhealthy},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def := config.Probe{Name: "p", Policy: config.Policy{
				Interval: time.Second, FailuresBeforeUnhealthy: tt.failures, SuccessesBeforeHealthy: tt.success,
			}}
			c := newCheck(def, nil)
			now := time.Unix(1000, 0)
			for i, s := range tt.steps {
				var err error
				res := probes.Result{Status: s.status}
				if res.Status == "" {
					res.Status = probes.Healthy
				}
				if s.fail {
					err = errors.New("boom")
				}
				now = now.Add(time.Second)
				c.record(now, res, err, time.Millisecond, nil)
				if c.status != s.want {
					t.Fatalf("step %d: status %s, want %s", i, c.status, s.want)
				}
			}
			if got := len(c.recent()); got != len(tt.steps) {
				t.Errorf("timeline has %d points, want %d", got, len(tt.steps))
			}
		})
	}
}

func TestStaleAfterStretchesForRetryAfter(t *testing.T) {
	c := newCheck(config.Probe{Policy: config.Policy{Interval: 10 * time.Second, MaxRetryAfter: time.Hour}}, nil)
	now := time.Unix(1000, 0)
	c.record(now, probes.Result{Status: probes.Degraded}, nil, 0, nil)
	if got := c.staleAfter(); got != 30*time.Second {
		t.Fatalf("staleAfter = %s, want 30s", got)
	}
	c.record(now, probes.Result{Status: probes.Degraded, RetryAfter: time.Minute, RateLimited: true}, nil, 0, nil)
	if got := c.staleAfter(); got != 80*time.Second {
		t.Fatalf("staleAfter with Retry-After 1m = %s, want 80s", got)
	}
}

// A dependency cannot park its probe: a 429's Retry-After holds it back at most maxRetryAfter, and any
// other answer's (a 503's) at most one interval.
func TestRetryAfterIsCapped(t *testing.T) {
	def := config.Probe{Policy: config.Policy{Interval: 10 * time.Second, MaxRetryAfter: time.Hour}}
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name        string
		res         probes.Result
		err         error
		wantWaitMax time.Duration
	}{
		{"503 asking for a day", probes.Result{RetryAfter: 24 * time.Hour}, errors.New("status 503"), 10 * time.Second},
		{"429 asking for a day", probes.Result{Status: probes.Degraded, RetryAfter: 24 * time.Hour, RateLimited: true}, nil, time.Hour},
		{"429 asking for a minute", probes.Result{Status: probes.Degraded, RetryAfter: time.Minute, RateLimited: true}, nil, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCheck(def, nil)
			c.record(now, tc.res, tc.err, 0, nil)
			if got := c.notBefore.Sub(now); got != tc.wantWaitMax {
				t.Errorf("next execution held back %s, want %s", got, tc.wantWaitMax)
			}
		})
	}
}

func TestTimelineKeepsTheLastPoints(t *testing.T) {
	c := newCheck(config.Probe{Policy: config.Policy{Interval: time.Second, FailuresBeforeUnhealthy: 1, SuccessesBeforeHealthy: 1}}, nil)
	now := time.Unix(0, 0)
	for i := range timelineLen + 5 {
		var err error
		if i%2 == 1 {
			err = errors.New("x")
		}
		now = now.Add(time.Second)
		c.record(now, probes.Result{Status: probes.Healthy}, err, 0, nil)
	}
	pts := c.recent()
	if len(pts) != timelineLen {
		t.Fatalf("len = %d, want %d", len(pts), timelineLen)
	}
	if !pts[len(pts)-1].At.Equal(now) {
		t.Errorf("last point at %s, want %s", pts[len(pts)-1].At, now)
	}
	for i := 1; i < len(pts); i++ {
		if !pts[i].At.After(pts[i-1].At) {
			t.Fatalf("timeline not oldest first at %d", i)
		}
	}
}
