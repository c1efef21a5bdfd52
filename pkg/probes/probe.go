// Package probes holds the probe kinds: each checks one dependency once and reports what it saw.
// A probe knows nothing of retries, breakers or schedules; pkg/breakers and pkg/monitor add those.
package probes

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/health-agent/health-agent/pkg/redact"
)

// Status is a probe's or the agent's health verdict.
type Status string

// The verdicts of the contract. Probes themselves return Healthy, Degraded, Unhealthy or Unknown;
// Blocked is assigned by the monitor.
const (
	Healthy   Status = "healthy"
	Degraded  Status = "degraded"
	Unhealthy Status = "unhealthy"
	Unknown   Status = "unknown"
	Blocked   Status = "blocked"
)

// Result is what one execution of a probe observed.
type Result struct {
	// Status is Healthy or Degraded when the dependency answered well enough, Unknown when the probe
	// cannot tell (e.g. the process to watch is not visible). It is ignored when Check returns an error:
	// an error always means Unhealthy.
	Status Status
	// Reason says why the status is not Healthy, for people. Never contains a secret.
	Reason string
	// Fields are kind-specific values merged into services.<name> of /api/health/detailed
	// (e.g. "totalBrowsers", "connected"). Values must be JSON-serializable.
	Fields map[string]any
	// Body is the dependency's JSON body, kept by an http probe with `legacy: true`.
	Body json.RawMessage
	// RetryAfter is set when the dependency asked not to be called again before it passes (an HTTP
	// Retry-After). The scheduler honours it within caps: when RateLimited (a 429), up to the probe's
	// maxRetryAfter; otherwise (a 503's Retry-After) never beyond one interval, so that a dependency
	// cannot park its own probe.
	RetryAfter time.Duration
	// RateLimited: the dependency refused this call for its rate limit (HTTP 429).
	RateLimited bool
}

// Probe checks one dependency once.
type Probe interface {
	// Check runs one attempt. A non-nil error means the dependency failed: it counts against the
	// breaker and for hysteresis, and its message becomes the reason (it must not contain a secret).
	// The Result may carry fields even with an error. Check returns promptly once ctx is done and
	// leaves no goroutine behind.
	Check(ctx context.Context) (Result, error)
}

// ErrPermanent marks a failure that retrying within the same execution cannot change (an HTTP 401 or
// 404, a missing secret, a required tool missing, a certificate that does not verify): the retry
// policy does not retry it, so it costs the dependency one request. Wrap with Permanent.
var ErrPermanent = errors.New("permanent failure")

// Permanent marks err as a failure no retry can change; errors.Is(err, ErrPermanent) then holds, and
// its message is unchanged. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() []error { return []error{e.err, ErrPermanent} }

// ProbeFunc adapts a function to Probe.
type ProbeFunc func(ctx context.Context) (Result, error)

// Check calls f(ctx).
func (f ProbeFunc) Check(ctx context.Context) (Result, error) { return f(ctx) }

// Env is what the agent lends to probes: all of it is optional.
type Env struct {
	// LookupEnv reads an environment variable (os.LookupEnv when nil). Secrets are resolved through it
	// at each check, so a rotated or late secret is picked up.
	LookupEnv func(string) (string, bool)
	Logger    *slog.Logger
	// Secrets is the agent's set of resolved secret values (may be nil). A kind adds every secret it
	// resolves, and hides all of the set's values from the text it keeps, so that a secret sent to one
	// dependency and echoed by another is hidden too.
	Secrets *redact.Secrets
}

// Spec is everything a kind needs to build one probe.
type Spec struct {
	Name    string
	Legacy  bool
	Timeout time.Duration // per attempt; ctx carries the deadline, this is for kinds that size buffers or waits
	// Options are the probe's kind-specific keys from the config (every key not common to all probes).
	// A kind decodes them with config.DecodeOptions, which rejects unknown keys.
	Options map[string]any
	Env     Env
}

// Kind builds probes of one kind.
type Kind struct {
	// New validates spec.Options and builds a probe. It starts nothing. Its errors name the option
	// (config.FieldError with a path relative to the probe, e.g. "url").
	New func(spec Spec) (Probe, error)
	// Local kinds check the agent or its host, not a remote dependency: they get no retry, breaker or
	// rate limit.
	Local bool
}
