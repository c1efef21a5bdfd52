package breakers

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

func TestRetryBacksOffExponentially(t *testing.T) {
	dep := newDependency(t)
	dep.set(answerFail)
	pol := testPolicy()
	pol.Breaker.FailureThreshold, pol.Breaker.Window = 10, 10
	pol.Retry = config.Retry{MaxRetries: 3, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second, Jitter: 0.2}
	_, br := oneBreaker(t, pol, nil)

	_, err := Guard(dep.probe(), pol, br, nil, GuardOptions{}).Check(t.Context())
	if err == nil || err.Error() != "status 500" {
		t.Fatalf("err = %v, want the last attempt's own error", err)
	}
	at := dep.arrivals()
	if len(at) != 4 {
		t.Fatalf("%d attempts, want 1 + 3 retries", len(at))
	}
	// Lower bounds only (a loaded machine makes gaps longer, never shorter): 50ms, 100ms, 200ms, each
	// jittered by up to 20%.
	for i, lower := range []time.Duration{40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond} {
		if gap := at[i+1].Sub(at[i]); gap < lower {
			t.Errorf("gap before retry %d = %s, want >= %s", i+1, gap, lower)
		}
	}
	if h := br.Stats().History; len(h) != 4 || h[3].Outcome != OutcomeFailure {
		t.Errorf("history = %+v, want every attempt as a failure", h)
	}
}

func TestRetryStops(t *testing.T) {
	tests := []struct {
		name        string
		answer      int32
		breaker     config.BreakerPolicy
		rateLimit   *config.RateLimit
		wantHits    int64
		wantErr     []string // substrings
		wantNotIs   error
		wantHistory []string
	}{
		{
			name:        "when the breaker opens",
			answer:      answerFail,
			breaker:     config.BreakerPolicy{FailureThreshold: 2, Window: 2, Delay: time.Minute, SuccessThreshold: 1},
			wantHits:    2,
			wantErr:     []string{"status 500", `circuit breaker "dep" open after 2 failures (last: status 500); next trial in`},
			wantNotIs:   circuitbreaker.ErrOpen, // the dependency was touched: this is not a pure rejection
			wantHistory: []string{OutcomeFailure, OutcomeFailure, OutcomeRejected},
		},
		{
			name:        "when the rate limit is reached",
			answer:      answerFail,
			breaker:     config.BreakerPolicy{FailureThreshold: 10, Window: 10, Delay: time.Minute, SuccessThreshold: 1},
			rateLimit:   &config.RateLimit{Max: 1, Per: time.Hour},
			wantHits:    1,
			wantErr:     []string{"status 500", "rate limit reached: at most 1 per 1h0m0s"},
			wantHistory: []string{OutcomeFailure},
		},
		{
			name:        "when the dependency sent Retry-After",
			answer:      answerTooMany,
			breaker:     config.BreakerPolicy{FailureThreshold: 10, Window: 10, Delay: time.Minute, SuccessThreshold: 1},
			wantHits:    1,
			wantErr:     []string{"status 429"},
			wantHistory: []string{OutcomeFailure},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dep := newDependency(t)
			dep.set(tt.answer)
			pol := testPolicy()
			pol.Breaker, pol.RateLimit = tt.breaker, tt.rateLimit
			// Without the abort, the doubling backoff would reach minutes within these retries and await
			// would give up.
			pol.Retry = config.Retry{MaxRetries: 40, Backoff: time.Millisecond, MaxBackoff: time.Hour}
			_, br := oneBreaker(t, pol, nil)

			o := await(t, async(t.Context(), Guard(dep.probe(), pol, br, nil, GuardOptions{})))
			res, err := o.res, o.err
			if got := dep.hits.Load(); got != tt.wantHits {
				t.Errorf("%d requests, want %d", got, tt.wantHits)
			}
			if err == nil {
				t.Fatal("err = nil")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %q, want it to contain %q", err, s)
				}
			}
			if tt.wantNotIs != nil && errors.Is(err, tt.wantNotIs) {
				t.Errorf("err = %q wraps %v", err, tt.wantNotIs)
			}
			if tt.answer == answerTooMany && res.RetryAfter != 7*time.Second {
				t.Errorf("RetryAfter = %s, want the dependency's 7s passed through", res.RetryAfter)
			}
			var outcomes []string
			for _, e := range br.Stats().History {
				outcomes = append(outcomes, e.Outcome)
			}
			if !slices.Equal(outcomes, tt.wantHistory) {
				t.Errorf("breaker saw %v, want %v", outcomes, tt.wantHistory)
			}
		})
	}
}

func TestTimeoutCutsOffAHangingProbe(t *testing.T) {
	dep := newDependency(t)
	dep.set(answerHang)
	pol := testPolicy()
	pol.Timeout = 100 * time.Millisecond
	_, br := oneBreaker(t, pol, nil)

	o := await(t, async(t.Context(), Guard(dep.probe(), pol, br, nil, GuardOptions{})))
	if !errors.Is(o.err, timeout.ErrExceeded) || !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout wrapping the probe's deadline error", o.err)
	}
	if !strings.HasPrefix(o.err.Error(), "timed out after 100ms: ") {
		t.Errorf("err = %q", o.err)
	}
	if s := br.Stats(); s.Failures != 1 || s.History[0].Outcome != OutcomeFailure {
		t.Errorf("stats = %+v, want the timeout counted as a failure", s)
	}
	// TestMain's goleak check fails the package if the hung request left a goroutine behind.
}

func TestProbeSeesTheAttemptDeadline(t *testing.T) {
	tests := []struct {
		name  string
		local bool
	}{
		{"guarded by a breaker", false},
		{"local", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := testPolicy()
			pol.Timeout = 3 * time.Second
			var br *Breaker
			if !tt.local {
				_, br = oneBreaker(t, pol, nil)
			}
			var left time.Duration
			p := Guard(probes.ProbeFunc(func(ctx context.Context) (probes.Result, error) {
				d, ok := ctx.Deadline()
				if !ok {
					return probes.Result{}, errors.New("no deadline")
				}
				left = time.Until(d)
				return probes.Result{Status: probes.Healthy}, nil
			}), pol, br, nil, GuardOptions{})
			if _, err := p.Check(t.Context()); err != nil {
				t.Fatal(err)
			}
			if left <= 0 || left > 3*time.Second {
				t.Errorf("deadline in %s, want within the 3s timeout", left)
			}
		})
	}
}

func TestCallerCancellation(t *testing.T) {
	t.Run("in flight: not counted against the dependency", func(t *testing.T) {
		dep := newDependency(t)
		dep.set(answerHang)
		pol := testPolicy()
		pol.Timeout = time.Hour
		_, br := oneBreaker(t, pol, nil)

		ctx, cancel := context.WithCancel(t.Context())
		ch := async(ctx, Guard(dep.probe(), pol, br, nil, GuardOptions{}))
		testkit.Eventually(t, 15*time.Second, func() bool { return dep.hits.Load() == 1 }, "the request reached the dependency")
		cancel()
		if o := await(t, ch); !errors.Is(o.err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", o.err)
		}
		if s := br.Stats(); s.Executions != 0 || len(s.History) != 0 {
			t.Errorf("stats = %+v, want nothing recorded", s)
		}
	})

	t.Run("during backoff: returns at once", func(t *testing.T) {
		dep := newDependency(t)
		dep.set(answerFail)
		pol := testPolicy()
		pol.Breaker.FailureThreshold, pol.Breaker.Window = 10, 10
		pol.Retry = config.Retry{MaxRetries: 3, Backoff: time.Hour, MaxBackoff: time.Hour}
		_, br := oneBreaker(t, pol, nil)

		ctx, cancel := context.WithCancel(t.Context())
		ch := async(ctx, Guard(dep.probe(), pol, br, nil, GuardOptions{}))
		testkit.Eventually(t, 15*time.Second, func() bool { return br.Stats().Failures == 1 }, "the first failure counted")
		cancel()
		if o := await(t, ch); !errors.Is(o.err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", o.err)
		}
		if got := dep.hits.Load(); got != 1 {
			t.Errorf("%d requests, want 1", got)
		}
	})

	t.Run("half-open trial: counted as failed so the permit is not lost", func(t *testing.T) {
		dep := newDependency(t)
		pol := testPolicy()
		pol.Breaker.Delay = 100 * time.Millisecond
		_, br := oneBreaker(t, pol, nil)
		p := Guard(dep.probe(), pol, br, nil, GuardOptions{})
		openBreaker(t, dep, p, br)
		testkit.Eventually(t, 15*time.Second, func() bool { return br.Stats().RetryDue }, "the retry due")

		dep.set(answerHang)
		hits := dep.hits.Load()
		ctx, cancel := context.WithCancel(t.Context())
		ch := async(ctx, p)
		testkit.Eventually(t, 15*time.Second, func() bool { return dep.hits.Load() == hits+1 }, "the trial request reached the dependency")
		cancel()
		await(t, ch)
		s := br.Stats()
		if s.State != Open {
			t.Errorf("state = %s, want OPEN again", s.State)
		}
		if last := s.History[len(s.History)-1]; last.Outcome != OutcomeFailure || !strings.HasPrefix(last.Error, "trial interrupted: ") {
			t.Errorf("last history entry = %+v", last)
		}
	})
}

func TestRateLimitRejectsBeyondMax(t *testing.T) {
	dep := newDependency(t)
	pol := testPolicy()
	pol.RateLimit = &config.RateLimit{Max: 2, Per: time.Hour}
	pol.Retry = config.Retry{MaxRetries: 3, Backoff: time.Millisecond}
	_, br := oneBreaker(t, pol, nil)
	p := Guard(dep.probe(), pol, br, nil, GuardOptions{})

	for i := range 2 {
		if _, err := p.Check(t.Context()); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	_, err := p.Check(t.Context())
	var rl *RateLimitedError
	if !errors.As(err, &rl) || !errors.Is(err, ratelimiter.ErrExceeded) {
		t.Fatalf("err = %v, want a rate-limit rejection", err)
	}
	if err.Error() != "rate limit reached: at most 2 per 1h0m0s" {
		t.Errorf("err = %q", err)
	}
	if got := dep.hits.Load(); got != 2 {
		t.Errorf("%d requests, want 2", got)
	}
	// The limiter sits outside the breaker: the breaker never saw the refused execution.
	if s := br.Stats(); s.State != Closed || len(s.History) != 2 {
		t.Errorf("breaker = %+v, want CLOSED with 2 executions", s)
	}
}

func TestBulkheadBoundsConcurrency(t *testing.T) {
	if NewBulkhead(0) != nil {
		t.Error("NewBulkhead(0) should mean no bound (nil)")
	}
	const limit, callers = 2, 6
	bh := NewBulkhead(limit)
	var inFlight, peak atomic.Int64
	release := make(chan struct{})
	probe := probes.ProbeFunc(func(ctx context.Context) (probes.Result, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-release:
			return probes.Result{Status: probes.Healthy}, nil
		case <-ctx.Done():
			return probes.Result{}, ctx.Err()
		}
	})
	pol := testPolicy()
	_, br := oneBreaker(t, pol, nil)
	guardedProbes := []probes.Probe{Guard(probe, pol, br, bh, GuardOptions{}), Guard(probe, pol, nil, bh, GuardOptions{})}

	var results []<-chan outcome
	for i := range callers {
		results = append(results, async(t.Context(), guardedProbes[i%2]))
	}
	testkit.Eventually(t, 15*time.Second, func() bool { return inFlight.Load() == limit }, "%d calls in the bulkhead", limit)
	if bh.TryAcquirePermit() {
		bh.ReleasePermit()
		t.Fatal("bulkhead has a free permit while the limit is in flight")
	}

	// A caller that cannot wait any longer gives up promptly rather than queueing forever.
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := Guard(probe, pol, nil, bh, GuardOptions{}).Check(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued caller: err = %v, want its own deadline", err)
	}

	close(release)
	for i, ch := range results {
		if o := await(t, ch); o.err != nil {
			t.Errorf("caller %d: %v (a full bulkhead should queue, not fail)", i, o.err)
		}
	}
	if got := peak.Load(); got != limit {
		t.Errorf("peak concurrency = %d, want %d", got, limit)
	}
}

func TestLocalProbeGetsOnlyTimeoutAndBulkhead(t *testing.T) {
	pol := testPolicy()
	pol.Timeout = 100 * time.Millisecond
	pol.Retry = config.Retry{MaxRetries: 3, Backoff: time.Millisecond}
	pol.RateLimit = &config.RateLimit{Max: 1, Per: time.Hour}
	var calls atomic.Int64
	p := Guard(probes.ProbeFunc(func(ctx context.Context) (probes.Result, error) {
		calls.Add(1)
		<-ctx.Done() // hangs until the timeout
		return probes.Result{}, ctx.Err()
	}), pol, nil, NewBulkhead(1), GuardOptions{})

	for i := range 2 {
		_, err := p.Check(t.Context())
		if !errors.Is(err, timeout.ErrExceeded) {
			t.Fatalf("check %d: err = %v, want the timeout", i, err)
		}
		if errors.Is(err, ratelimiter.ErrExceeded) {
			t.Fatalf("check %d: a local probe was rate limited", i)
		}
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("%d calls for 2 checks, want 2 (no retry, no rate limit)", got)
	}
}

func TestPanickingProbeIsAFailure(t *testing.T) {
	pol := testPolicy()
	_, br := oneBreaker(t, pol, nil)
	p := Guard(probes.ProbeFunc(func(context.Context) (probes.Result, error) { panic("boom") }), pol, br, nil, GuardOptions{})
	_, err := p.Check(t.Context())
	if err == nil || err.Error() != "probe panicked: boom" {
		t.Fatalf("err = %v", err)
	}
	if br.Stats().Failures != 1 {
		t.Error("panic not counted as a failure")
	}
}

func BenchmarkGuardSuccess(b *testing.B) {
	pol := config.Policy{
		Timeout: 2 * time.Second,
		Retry:   config.Retry{MaxRetries: 1, Backoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second, Jitter: 0.2},
		Breaker: config.BreakerPolicy{FailureThreshold: 3, Window: 5, Delay: 30 * time.Second, SuccessThreshold: 2},
	}
	reg := NewRegistry(nil, nil)
	reg.Sync(testConfig(pol, "dep"))
	p := Guard(probes.ProbeFunc(func(context.Context) (probes.Result, error) {
		return probes.Result{Status: probes.Healthy}, nil
	}), pol, reg.Get("dep"), NewBulkhead(4), GuardOptions{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Check(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
