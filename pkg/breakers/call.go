package breakers

import (
	"strings"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"

	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/redact"
)

// TrafficSource prefixes the source of a call made by the app's own traffic (the egress proxy's
// route name follows), as opposed to a probe's name.
const TrafficSource = "route:"

// Call is one execution a breaker let through. Exactly one of Succeed, Fail or Abandon ends it.
//
// Probes (through Guard) and the egress proxy both execute through Calls, so one breaker sees the
// probes' executions and the app's real calls alike.
type Call struct {
	b      *Breaker
	cb     circuitbreaker.CircuitBreaker[probes.Result]
	gen    uint64
	start  time.Time
	source string
}

// Begin asks the breaker for a permit for one execution by source (a probe's name, or TrafficSource
// followed by an egress route's name). A refusal is a *RejectedError, and is recorded in the history.
func (b *Breaker) Begin(source string) (*Call, error) {
	cb, gen := b.circuit()
	now := time.Now()
	if !cb.TryAcquirePermit() {
		rej := b.rejection(cb)
		b.record(gen, Attempt{At: now, Outcome: OutcomeRejected, Error: rej.Error(), Source: source})
		b.notifyCall(OutcomeRejected)
		return nil, rej
	}
	return &Call{b: b, cb: cb, gen: gen, start: now, source: source}, nil
}

// Succeed records that the dependency answered well enough.
func (c *Call) Succeed() {
	c.b.record(c.gen, Attempt{At: c.start, Duration: time.Since(c.start), Outcome: OutcomeSuccess, Source: c.source})
	c.cb.RecordSuccess()
	c.b.notifyCall(OutcomeSuccess)
}

// Fail records that the dependency failed with err. The error's text (clipped) is the breaker's last
// cause until the next failure.
func (c *Call) Fail(err error) {
	msg := "failed"
	if err != nil {
		msg = redact.Clip(err.Error(), redact.MaxText)
	}
	e := Attempt{At: c.start, Duration: time.Since(c.start), Outcome: OutcomeFailure, Error: msg, Source: c.source}
	// Recorded before the breaker hears of it: the state listener, called from RecordFailure when this
	// failure opens the breaker, reads the history to tell how many failures opened it.
	c.b.record(c.gen, e)
	c.b.setCause(c.gen, e)
	c.cb.RecordFailure()
	c.b.notifyCall(OutcomeFailure)
}

// Abandon ends a call the caller gave up on (agent stopping, reload, client gone): it says nothing
// about the dependency, so a closed breaker does not count it. A half-open breaker lent this call one
// of its few trial permits, and failsafe-go takes a permit back only with a recorded result: the
// interrupted trial counts as failed (the breaker stays open a little longer) rather than leak the
// permit or close the breaker without evidence.
func (c *Call) Abandon(err error) {
	if !c.cb.IsHalfOpen() {
		return
	}
	msg := "trial interrupted"
	if err != nil {
		msg += ": " + redact.Clip(err.Error(), redact.MaxText)
	}
	c.b.record(c.gen, Attempt{At: c.start, Duration: time.Since(c.start), Outcome: OutcomeFailure, Error: msg, Source: c.source})
	c.cb.RecordFailure()
	c.b.notifyCall(OutcomeFailure)
}

// Rejection describes the breaker now as a refusal would: nil when it is closed. The countdown is
// computed at each call, so a reason built from it is never frozen.
func (b *Breaker) Rejection() *RejectedError {
	cb, _ := b.circuit()
	if cb.IsClosed() {
		return nil
	}
	return b.rejection(cb)
}

// fromTraffic reports whether source is the app's own traffic, and the route's name.
func fromTraffic(source string) (route string, ok bool) {
	return strings.CutPrefix(source, TrafficSource)
}
