package monitor

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/redact"
)

// timelineLen is how many recent verdicts a check keeps for the status page's strip.
const timelineLen = 20

// check is one configured probe and what the monitor knows of it. Its state fields are guarded by
// Monitor.mu; def, fingerprint and guarded never change after creation.
type check struct {
	def         config.Probe
	fingerprint string
	guarded     probes.Probe
	breaker     *breakers.Breaker // nil: a local probe

	status               probes.Status // the verdict after hysteresis (never Unknown-for-staleness: that is a view)
	reason               string
	fields               map[string]any // the last execution's that reached the dependency
	duration             time.Duration
	executions           uint64
	lastAttempt          time.Time // the last execution that reached the dependency
	lastChecked          time.Time
	lastSuccess          time.Time
	lastTransition       time.Time
	notBefore            time.Time // the dependency asked not to be called before this (Retry-After)
	consecutiveFailures  int
	consecutiveSuccesses int
	everHealthy          bool
	blockedBy            string
	transitions          uint64
	// flaps counts changes of the raw outcome (failed or not) between consecutive executions, before
	// hysteresis: a flapping dependency shows here even while its verdict holds still.
	flaps      uint64
	outcomes   uint64 // executions that succeeded or failed (an Unknown result is neither)
	lastFailed bool   // the previous such execution failed
	timeline   [timelineLen]Point
	timelineN  int
	revision   uint64  // bumped by every execution or block: the state above changed
	recentView []Point // recent() as of recentRev, shared by the snapshots that show it
	recentRev  uint64

	kick      chan struct{} // a dependency changed: run now (capacity 1)
	refused   bool          // the last execution was refused by the breaker without touching the dependency
	retries   atomic.Int32  // retries made by the execution in flight (see GuardOptions.OnRetry)
	first     chan struct{} // closed after the first execution; dependents' first runs wait for it
	firstOnce sync.Once
}

// Point is one verdict on a probe's timeline.
type Point struct {
	At     time.Time     `json:"at"`
	Status probes.Status `json:"status"`
}

func newCheck(def config.Probe, guarded probes.Probe) *check {
	return &check{
		def:         def,
		fingerprint: fingerprint(def),
		guarded:     guarded,
		status:      probes.Unknown,
		reason:      "no result yet",
		kick:        make(chan struct{}, 1),
		first:       make(chan struct{}),
	}
}

// fingerprint identifies a probe's definition: a reload keeps the state of probes whose fingerprint
// did not change.
func fingerprint(def config.Probe) string {
	b, err := json.Marshal(def)
	if err != nil {
		return "" // never equal to another: the probe is treated as changed
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// outcome is what record made of one execution.
type outcome struct {
	changed bool // the verdict changed
	flapped bool // the raw outcome (failed or not) differs from the previous execution's
	// limited: the agent's own limits (rate limit, bulkhead) turned the execution away; it counted
	// for nothing.
	limited bool
}

// record applies one execution's outcome with hysteresis. secrets are hidden from the texts kept.
//
// A probe with no verdict yet (unknown or blocked) takes the first outcome as it is. After that it turns
// unhealthy only after failuresBeforeUnhealthy consecutive failures, and healthy (or degraded) again
// only after successesBeforeHealthy consecutive successes. Two exceptions: an execution the agent's
// own limits turned away keeps the verdict and counts nothing; a refusal by a breaker that the app's
// own traffic opened (the breaker's threshold already judged) turns the probe unhealthy at once.
func (c *check) record(now time.Time, res probes.Result, err error, dur time.Duration, secrets *redact.Secrets) (o outcome) {
	c.revision++
	clean := func(s string) string { return redact.Shown(s, secrets.List(), redact.MaxText) }
	if err != nil && breakers.Limited(err) {
		o.limited = true
		if c.lastChecked.IsZero() {
			c.reason = clean(err.Error()) // no verdict to keep: say why there is none yet
		}
		return o
	}
	c.executions++
	if failed := err != nil; res.Status != probes.Unknown || failed {
		if c.outcomes > 0 && failed != c.lastFailed {
			c.flaps++
			o.flapped = true
		}
		c.outcomes++
		c.lastFailed = failed
	}
	var rej *breakers.RejectedError
	c.refused = errors.As(err, &rej)
	c.duration = dur
	c.lastChecked = now
	c.blockedBy = ""
	if !c.refused {
		// A refusal did not reach the dependency: the fields of the last execution that did stay.
		c.fields = res.Fields
		c.lastAttempt = now
	}
	if wait := res.RetryAfter; wait > 0 {
		// A dependency cannot park its probe: a 429 is honoured up to maxRetryAfter, any other
		// answer's Retry-After up to one interval.
		limit := c.def.Interval
		if res.RateLimited {
			limit = c.def.MaxRetryAfter
		}
		if limit > 0 {
			wait = min(wait, limit)
		}
		c.notBefore = now.Add(wait)
	}
	prev := c.status
	noVerdict := prev == probes.Unknown || prev == probes.Blocked
	next := prev
	switch {
	case err != nil:
		c.consecutiveFailures++
		c.consecutiveSuccesses = 0
		c.reason = clean(err.Error())
		_, byTraffic := rej.FromTraffic()
		if noVerdict || c.consecutiveFailures >= c.def.FailuresBeforeUnhealthy || c.refused && byTraffic {
			next = probes.Unhealthy
		}
	case res.Status == probes.Unknown:
		c.reason = clean(res.Reason)
		next = probes.Unknown
	default:
		c.consecutiveSuccesses++
		c.consecutiveFailures = 0
		c.lastSuccess = now
		status := res.Status
		if status != probes.Degraded {
			status = probes.Healthy
		}
		if prev != probes.Unhealthy || c.consecutiveSuccesses >= c.def.SuccessesBeforeHealthy {
			next = status
			c.reason = clean(res.Reason)
		}
	}
	c.setStatus(now, next)
	o.changed = next != prev
	return o
}

// block marks the check blocked by root, without executing it.
func (c *check) block(now time.Time, root, why string) (changed bool) {
	c.revision++
	prev := c.status
	c.blockedBy = root
	c.reason = why
	c.setStatus(now, probes.Blocked)
	return prev != probes.Blocked
}

func (c *check) setStatus(now time.Time, s probes.Status) {
	if s != c.status {
		c.transitions++
		c.lastTransition = now
	}
	c.status = s
	if s == probes.Healthy || s == probes.Degraded {
		c.everHealthy = true
	}
	c.timeline[c.timelineN%timelineLen] = Point{At: now, Status: s}
	c.timelineN++
}

// recent returns the timeline, oldest first. The slice is shared by every snapshot until the check
// changes: callers must not modify it.
func (c *check) recent() []Point {
	if c.recentView != nil && c.recentRev == c.revision {
		return c.recentView
	}
	n := min(c.timelineN, timelineLen)
	out := make([]Point, 0, n)
	for i := c.timelineN - n; i < c.timelineN; i++ {
		out = append(out, c.timeline[i%timelineLen])
	}
	c.recentView, c.recentRev = out[:n:n], c.revision
	return c.recentView
}

// staleAt is when c's verdict goes stale, if it can: a check never executed or blocked cannot.
func (c *check) staleAt() (time.Time, bool) {
	if c.status == probes.Blocked || c.lastChecked.IsZero() {
		return time.Time{}, false
	}
	return c.lastChecked.Add(c.staleAfter()), true
}

// staleAfter is how old a verdict may get before it is reported unknown: 3 intervals on top of the time
// one execution may take (see budget), stretched when the dependency asked us to wait longer. Counting
// the execution's own time keeps a dependency that answers slowly, but within its timeout, from going
// stale between two good results; a probe stuck past its timeout still goes stale.
func (c *check) staleAfter() time.Duration {
	d := 3*c.def.Interval + c.budget()
	if !c.notBefore.IsZero() && c.notBefore.Sub(c.lastChecked) > c.def.Interval {
		d = 2*c.def.Interval + c.notBefore.Sub(c.lastChecked) + c.budget()
	}
	return d
}

// budget is the longest one execution may take: every attempt's timeout and the backoffs (with
// jitter) between them. Local probes have no retries. Computed in float64 and capped, so absurd
// (but valid) retry counts cannot overflow.
func (c *check) budget() time.Duration {
	attempts, backoffs := 1.0, 0.0
	if r := c.def.Retry; !c.def.Local && r.MaxRetries > 0 {
		attempts += float64(r.MaxRetries)
		backoffs = float64(r.MaxRetries) * float64(max(r.Backoff, r.MaxBackoff)) * (1 + min(max(r.Jitter, 0), 1))
	}
	b := attempts*float64(max(c.def.Timeout, 0)) + backoffs
	const limit = float64(100 * 365 * 24 * time.Hour)
	return time.Duration(min(b, limit))
}
