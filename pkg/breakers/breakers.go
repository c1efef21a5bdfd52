// Package breakers builds the failsafe-go policies that guard a probe (retry, circuit breaker, timeout,
// rate limit, a global bulkhead), keeps breakers in a registry by name, and reports their stats.
// A breaker wraps a probe; the probe does not know about it.
package breakers

import (
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// Breaker states as the contract spells them.
const (
	Closed   = "CLOSED"
	Open     = "OPEN"
	HalfOpen = "HALF_OPEN"
)

// Transition is one breaker state change.
type Transition struct {
	Breaker string
	From    string
	To      string
	At      time.Time
}

// Execution is one guarded execution as a breaker saw it.
type Execution struct {
	At       time.Time     `json:"at"`
	Outcome  string        `json:"outcome"` // "success", "failure" or "rejected" (breaker open, not executed)
	Duration time.Duration `json:"-"`
	Error    string        `json:"error,omitempty"`
}

// Stats is a point-in-time copy of a breaker's state; safe to keep and share.
type Stats struct {
	Name  string
	State string // Closed, Open or HalfOpen
	// RetryDue: the breaker is open but its delay has passed; failsafe-go moves it to half-open on the
	// next execution.
	RetryDue        bool
	FailureRate     float64 // percent, 0..100, over the breaker's window
	SuccessRate     float64 // percent, 0..100
	Executions      uint
	Failures        uint
	Successes       uint
	RemainingDelay  time.Duration
	LastStateChange time.Time   // zero: never changed since created
	Transitions     uint64      // state changes since created
	Probes          []string    // probes guarded by this breaker, sorted
	History         []Execution // the last 20 executions, oldest first
}

// Breaker is a named circuit breaker shared by the probes that name it.
type Breaker struct{}

// Name returns the breaker's name.
func (b *Breaker) Name() string { panic("todo") }

// Stats returns a copy of the breaker's current state.
func (b *Breaker) Stats() Stats { panic("todo") }

// Registry holds the breakers by name. Safe for concurrent use.
type Registry struct{}

// NewRegistry returns an empty registry. onTransition (may be nil) is called, synchronously and without
// the registry's lock held, for each state change of any breaker.
func NewRegistry(onTransition func(Transition)) *Registry { panic("todo") }

// Sync makes the registry hold exactly the breakers that cfg's non-local probes name. A breaker whose
// policy did not change keeps its state and history; one whose policy changed is rebuilt (closed);
// one no longer named is dropped. Its probe lists are updated.
func (r *Registry) Sync(cfg *config.Config) { panic("todo") }

// Get returns the named breaker, or nil.
func (r *Registry) Get(name string) *Breaker { panic("todo") }

// Stats returns every breaker's stats, sorted by name.
func (r *Registry) Stats() []Stats { panic("todo") }

// NewBulkhead returns the global bulkhead bounding concurrent probe executions.
func NewBulkhead(maxConcurrent int) bulkhead.Bulkhead[probes.Result] { panic("todo") }

// Guard wraps p in its policies, outermost first: bulkhead (may be nil) → retry (exponential backoff
// with jitter; aborts when the breaker is open or the rate limit is hit) → rate limiter (when
// pol.RateLimit is set) → breaker (nil for local probes) → timeout per attempt (pol.Timeout).
// Local probes (br == nil) get only the bulkhead and the timeout.
// The returned probe's error says, when the breaker rejected the execution, that it is open and when
// it will try again (wrapping circuitbreaker.ErrOpen). Every execution is recorded in br's history.
func Guard(p probes.Probe, pol config.Policy, br *Breaker, bh bulkhead.Bulkhead[probes.Result]) probes.Probe {
	panic("todo")
}
