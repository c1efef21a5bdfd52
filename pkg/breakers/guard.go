package breakers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// NewBulkhead returns the global bulkhead bounding concurrent probe executions.
//
// An execution that finds it full waits for a slot for as long as its context allows rather than
// failing: a probe must not turn unhealthy because other probes were busy. maxConcurrent <= 0 means no
// bound (nil, which Guard accepts).
func NewBulkhead(maxConcurrent int) bulkhead.Bulkhead[probes.Result] {
	if maxConcurrent <= 0 {
		return nil
	}
	return bulkhead.NewBuilder[probes.Result](uint(maxConcurrent)).
		WithMaxWaitTime(time.Duration(math.MaxInt64)).
		Build()
}

// Guard wraps p in its policies, outermost first: bulkhead (may be nil) → retry (exponential backoff
// with jitter; aborts when the breaker is open or the rate limit is hit) → rate limiter (when
// pol.RateLimit is set) → breaker (nil for local probes) → timeout per attempt (pol.Timeout).
// Local probes (br == nil) get only the bulkhead and the timeout.
// The returned probe's error says, when the breaker rejected the execution, that it is open and when
// it will try again (wrapping circuitbreaker.ErrOpen). Every execution is recorded in br's history.
//
// Errors: a pure rejection is a *RejectedError (errors.Is circuitbreaker.ErrOpen) or a *RateLimitedError
// (errors.Is ratelimiter.ErrExceeded); a timed-out attempt is a *TimeoutError (errors.Is
// timeout.ErrExceeded). When an attempt reached the dependency and a later retry was refused, the error
// is the dependency's, with the refusal appended in parentheses, and does not match ErrOpen. An attempt
// cut short by ctx (the caller stopping) is not counted by a closed breaker nor kept in its history.
//
// The bulkhead, retry and rate limiter are failsafe-go policies. The breaker is failsafe-go's, driven
// through its permit API (TryAcquirePermit, RecordSuccess, RecordFailure) so that an attempt cut short
// by the caller (agent stopping, reload) is not blamed on the dependency, which failsafe's executor
// cannot express. The timeout is a context deadline per attempt, so the probe sees ctx.Deadline().
func Guard(p probes.Probe, pol config.Policy, br *Breaker, bh bulkhead.Bulkhead[probes.Result], opts GuardOptions) probes.Probe {
	g := &guarded{probe: p, breaker: br, timeout: pol.Timeout, source: opts.Source}
	var policies []failsafe.Policy[probes.Result]
	if bh != nil {
		policies = append(policies, bh)
	}
	if br != nil {
		if rp := newRetry(pol.Retry, opts.OnRetry); rp != nil {
			policies = append(policies, rp)
		}
		if rl := pol.RateLimit; rl != nil && rl.Max > 0 && rl.Per > 0 {
			g.limit = *rl
			policies = append(policies, ratelimiter.NewBursty[probes.Result](uint(rl.Max), rl.Per))
		}
	}
	if len(policies) > 0 {
		g.executor = failsafe.With(policies...)
	}
	return g
}

// GuardOptions are optional details of a guarded probe.
type GuardOptions struct {
	// Source names who executes (the probe's name) in the breaker's history.
	Source string
	// OnRetry, when set, is called before each retry (for metrics). It must not block.
	OnRetry func()
}

// newRetry returns the retry policy for r, nil when r allows no retry.
func newRetry(r config.Retry, onRetry func()) retrypolicy.RetryPolicy[probes.Result] {
	if r.MaxRetries <= 0 {
		return nil
	}
	// No HandleIf: it would replace failsafe's default "any error is a failure"; that default is exactly
	// the probe contract (a nil error is a success whatever the Status).
	b := retrypolicy.NewBuilder[probes.Result]().
		WithMaxRetries(r.MaxRetries).
		// The caller wants the dependency's own error as the reason, not "retries exceeded. last result: …".
		ReturnLastFailure().
		AbortIf(func(res probes.Result, err error) bool {
			// Retry sits outside the breaker and sees every attempt: once the breaker rejects, or the rate
			// limit or the bulkhead says no, retrying only burns attempts. A dependency that asked us to come
			// back later (Retry-After) is not called again within this execution, and a failure that a
			// retry cannot change (a 404, a rejected token) costs it one request.
			return res.RetryAfter > 0 ||
				errors.Is(err, probes.ErrPermanent) ||
				errors.Is(err, circuitbreaker.ErrOpen) ||
				errors.Is(err, ratelimiter.ErrExceeded) ||
				errors.Is(err, bulkhead.ErrFull)
		})
	if onRetry != nil {
		b = b.OnRetry(func(failsafe.ExecutionEvent[probes.Result]) { onRetry() })
	}
	if r.Backoff > 0 {
		b = b.WithBackoff(r.Backoff, max(r.MaxBackoff, r.Backoff))
		if j := min(r.Jitter, 1); j > 0 {
			b = b.WithJitterFactor(j)
		}
	}
	return b.Build()
}

type guarded struct {
	probe    probes.Probe
	source   string
	breaker  *Breaker // nil: local probe
	timeout  time.Duration
	limit    config.RateLimit // zero: none
	executor failsafe.Executor[probes.Result]
}

// Check runs one guarded execution: possibly several attempts, each through the breaker.
func (g *guarded) Check(ctx context.Context) (probes.Result, error) {
	if g.executor == nil {
		res, _, err := g.attempt(ctx)
		return res, err
	}
	// The last attempt that reached the dependency, to explain a later attempt's rejection.
	var touchedRes probes.Result
	var touchedErr error
	res, err := g.executor.WithContext(ctx).Get(func() (probes.Result, error) {
		res, touched, err := g.attempt(ctx)
		if touched {
			touchedRes, touchedErr = res, err
		}
		return res, err
	})
	if err == nil || ctx.Err() != nil {
		return res, err
	}

	var reject error
	switch {
	case errors.Is(err, circuitbreaker.ErrOpen):
		reject = err
	case errors.Is(err, ratelimiter.ErrExceeded):
		reject = &RateLimitedError{Max: g.limit.Max, Per: g.limit.Per}
	case errors.Is(err, bulkhead.ErrFull):
		reject = fmt.Errorf("no free probe slot (scheduler.maxConcurrentProbes): %w", err)
	default:
		return res, err
	}
	if touchedErr != nil {
		// An earlier attempt failed against the dependency and then a policy stopped the retries: the
		// dependency's error is the reason, the rejection a footnote.
		return touchedRes, fmt.Errorf("%w (%s)", touchedErr, reject.Error())
	}
	return res, reject
}

// attempt runs one attempt through the breaker (when there is one) and the timeout. touched reports
// whether the probe ran.
func (g *guarded) attempt(ctx context.Context) (res probes.Result, touched bool, err error) {
	if err := ctx.Err(); err != nil {
		return probes.Result{}, false, err
	}
	if g.breaker == nil {
		res, err := g.check(ctx)
		return res, true, err
	}

	call, err := g.breaker.Begin(g.source)
	if err != nil {
		return probes.Result{}, false, err
	}
	res, err = g.check(ctx)
	switch {
	case err == nil:
		// A nil error is a success whatever the Status: a degraded dependency is answering.
		call.Succeed()
	case ctx.Err() != nil:
		// The caller gave up (agent stopping, reload): not the dependency's fault.
		call.Abandon(err)
	default:
		call.Fail(err)
	}
	return res, true, err
}

// check runs the probe once under the per-attempt timeout.
func (g *guarded) check(ctx context.Context) (res probes.Result, err error) {
	// A panicking probe is a bug, but it must not take the agent down nor keep a half-open breaker's
	// trial permit forever: it becomes this attempt's failure.
	defer func() {
		if v := recover(); v != nil {
			res, err = probes.Result{}, fmt.Errorf("probe panicked: %v", v)
		}
	}()
	if g.timeout <= 0 {
		return g.probe.Check(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	res, err = g.probe.Check(actx)
	if err != nil && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
		err = &TimeoutError{After: g.timeout, Err: err}
	}
	return res, err
}

// TimeoutError is an attempt cut off by the per-attempt timeout. It wraps failsafe's timeout.ErrExceeded
// and the probe's own error.
type TimeoutError struct {
	After time.Duration
	Err   error
}

func (e *TimeoutError) Error() string { return fmt.Sprintf("timed out after %s: %v", e.After, e.Err) }

// Unwrap makes errors.Is(err, timeout.ErrExceeded) hold, as well as matches on the probe's error.
func (e *TimeoutError) Unwrap() []error { return []error{timeout.ErrExceeded, e.Err} }

// RateLimitedError is an execution refused by the probe's rate limit; the dependency was not touched.
// It wraps ratelimiter.ErrExceeded.
type RateLimitedError struct {
	Max int
	Per time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("rate limit reached: at most %d per %s", e.Max, e.Per)
}

// Unwrap makes errors.Is(err, ratelimiter.ErrExceeded) hold.
func (e *RateLimitedError) Unwrap() error { return ratelimiter.ErrExceeded }

// Limited reports whether err is the agent's own limit turning an execution away before it reached
// the dependency: the probe's rate limit or the global bulkhead. Such an execution says nothing about
// the dependency.
func Limited(err error) bool {
	return errors.Is(err, ratelimiter.ErrExceeded) || errors.Is(err, bulkhead.ErrFull)
}
