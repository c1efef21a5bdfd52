// Package config loads, expands, defaults and validates the agent's YAML config. It probes nothing.
package config

import (
	"time"
)

// Config is the agent's whole config, defaults applied.
type Config struct {
	Server    Server    `mapstructure:"server"`
	Scheduler Scheduler `mapstructure:"scheduler"`
	Defaults  Policy    `mapstructure:"defaults"`
	Probes    []Probe   `mapstructure:"probes"`
	Egress    *Egress   `mapstructure:"egress"`
}

// Server configures the HTTP server. Its timeouts, header size and connection cap are fixed in
// pkg/api, not configured.
type Server struct {
	Listen        string        `mapstructure:"listen"`
	ShutdownDelay time.Duration `mapstructure:"shutdownDelay"`
	// DetailsToken, when set, is required as "Authorization: Bearer <token>" on the detail endpoints
	// and /metrics, and to see reasons on the kube endpoints. Reference it with ${VAR} rather than
	// writing it in the file.
	DetailsToken string `mapstructure:"detailsToken"`
}

// Scheduler configures how probes are run.
type Scheduler struct {
	// MaxConcurrentProbes bounds the probe executions in flight at once (a global bulkhead).
	MaxConcurrentProbes int `mapstructure:"maxConcurrentProbes"`
	// Jitter spreads each probe's interval by up to this fraction, so probes do not fire in lockstep.
	Jitter float64 `mapstructure:"jitter"`
}

// Policy is what every probe inherits from `defaults` unless it sets its own.
type Policy struct {
	Interval                time.Duration `mapstructure:"interval"`
	Timeout                 time.Duration `mapstructure:"timeout"`
	FailuresBeforeUnhealthy int           `mapstructure:"failuresBeforeUnhealthy"`
	SuccessesBeforeHealthy  int           `mapstructure:"successesBeforeHealthy"`
	Retry                   Retry         `mapstructure:"retry"`
	Breaker                 BreakerPolicy `mapstructure:"breaker"`
	RateLimit               *RateLimit    `mapstructure:"rateLimit"`
	// MaxRetryAfter caps how long a dependency's 429 Retry-After may hold the probe back.
	MaxRetryAfter time.Duration `mapstructure:"maxRetryAfter"`
}

// Retry is the retry policy around the breaker: exponential backoff with jitter.
type Retry struct {
	MaxRetries int           `mapstructure:"maxRetries"`
	Backoff    time.Duration `mapstructure:"backoff"`
	MaxBackoff time.Duration `mapstructure:"maxBackoff"`
	Jitter     float64       `mapstructure:"jitter"`
}

// BreakerPolicy is a count-based circuit breaker: it opens when FailureThreshold of the last Window
// executions failed, stays open for Delay, then lets trial executions through and closes after
// SuccessThreshold consecutive successes.
type BreakerPolicy struct {
	FailureThreshold int           `mapstructure:"failureThreshold"`
	Window           int           `mapstructure:"window"`
	Delay            time.Duration `mapstructure:"delay"`
	SuccessThreshold int           `mapstructure:"successThreshold"`
}

// RateLimit caps a probe's executions against its dependency: at most Max per Per.
type RateLimit struct {
	Max int           `mapstructure:"max"`
	Per time.Duration `mapstructure:"per"`
}

// Probe is one configured probe, with the defaults it inherits already applied.
type Probe struct {
	Name      string   `mapstructure:"name"`
	Kind      string   `mapstructure:"kind"`
	Critical  bool     `mapstructure:"critical"`
	Legacy    bool     `mapstructure:"legacy"`
	DependsOn []string `mapstructure:"dependsOn"`
	// BreakerName names the breaker (`breaker: name`, or `breaker: {name: …}`); empty means the probe's
	// own name. Probes that name the same breaker share it.
	BreakerName string `mapstructure:"breakerName"`
	Policy      `mapstructure:",squash"`
	// Options are the kind-specific keys; the kind decodes and validates them.
	Options map[string]any `mapstructure:",remain"`
	// Local is set by validation for kinds that check the agent itself (no breaker, retry or rate limit).
	Local bool `mapstructure:"-"`
	// inherited holds the policy keys the probe took from `defaults` ("interval", "retry.backoff", or
	// "retry" when it set no retry at all), so a bad default is reported once, at `defaults`. Nil for a
	// Probe built in code: everything is its own.
	inherited map[string]bool
}

// Breaker returns the name of the breaker guarding p.
func (p *Probe) Breaker() string {
	if p.BreakerName != "" {
		return p.BreakerName
	}
	return p.Name
}
