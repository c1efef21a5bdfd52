package config

import "time"

// Built-in values used when the config leaves a key out.
const (
	DefaultListen              = ":3008"
	DefaultShutdownDelay       = 5 * time.Second
	DefaultMaxConcurrentProbes = 16
	DefaultSchedulerJitter     = 0.1
)

// DefaultPolicy returns the built-in `defaults`: what a probe gets when neither it nor the config's
// `defaults` set a key. It has no rate limit.
func DefaultPolicy() Policy {
	return Policy{
		Interval:                10 * time.Second,
		Timeout:                 2 * time.Second,
		FailuresBeforeUnhealthy: 2,
		SuccessesBeforeHealthy:  1,
		Retry:                   Retry{MaxRetries: 1, Backoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second, Jitter: 0.2},
		Breaker:                 BreakerPolicy{FailureThreshold: 3, Window: 5, Delay: 30 * time.Second, SuccessThreshold: 2},
		MaxRetryAfter:           time.Hour,
	}
}

// builtinDefaults is the built-in config as a raw map (canonical keys), laid under the file's own
// keys before probes inherit from `defaults`. A fresh map each call: callers mutate it.
func builtinDefaults() map[string]any {
	p := DefaultPolicy()
	return map[string]any{
		"server": map[string]any{
			"listen":        DefaultListen,
			"shutdownDelay": DefaultShutdownDelay,
		},
		"scheduler": map[string]any{
			"maxConcurrentProbes": DefaultMaxConcurrentProbes,
			"jitter":              DefaultSchedulerJitter,
		},
		"defaults": map[string]any{
			"interval":                p.Interval,
			"timeout":                 p.Timeout,
			"failuresBeforeUnhealthy": p.FailuresBeforeUnhealthy,
			"successesBeforeHealthy":  p.SuccessesBeforeHealthy,
			"maxRetryAfter":           p.MaxRetryAfter,
			"retry": map[string]any{
				"maxRetries": p.Retry.MaxRetries,
				"backoff":    p.Retry.Backoff,
				"maxBackoff": p.Retry.MaxBackoff,
				"jitter":     p.Retry.Jitter,
			},
			"breaker": map[string]any{
				"failureThreshold": p.Breaker.FailureThreshold,
				"window":           p.Breaker.Window,
				"delay":            p.Breaker.Delay,
				"successThreshold": p.Breaker.SuccessThreshold,
			},
		},
	}
}
