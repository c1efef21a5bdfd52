// Package breakers builds the failsafe-go policies that guard a probe (retry, circuit breaker, timeout,
// rate limit, a global bulkhead), keeps breakers in a registry by name, and reports their stats.
// A breaker wraps a probe; the probe does not know about it.
package breakers

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// Breaker states as the contract spells them.
const (
	Closed   = "CLOSED"
	Open     = "OPEN"
	HalfOpen = "HALF_OPEN"
)

// Attempt outcomes as a breaker saw them.
const (
	OutcomeSuccess  = "success"
	OutcomeFailure  = "failure"
	OutcomeRejected = "rejected" // the breaker was open: the dependency was not touched
)

// HistorySize is how many executions a breaker remembers.
const HistorySize = 20

// Transition is one breaker state change.
type Transition struct {
	Breaker string
	From    string
	To      string
	At      time.Time
}

// Attempt is one call through a breaker as it saw it: an entry of its history. A probe execution with
// retries is several attempts.
type Attempt struct {
	At       time.Time     `json:"at"`
	Outcome  string        `json:"outcome"` // "success", "failure" or "rejected" (breaker open, not executed)
	Duration time.Duration `json:"-"`
	Error    string        `json:"error,omitempty"`
	// Source is who executed: a probe's name, or TrafficSource and an egress route's name.
	Source string `json:"source,omitempty"`
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
	LastStateChange time.Time // zero: never changed since created
	Transitions     uint64    // state changes since created
	// Probes and History are shared with the breaker and other Stats: read them, never modify them.
	Probes  []string  // probes guarded by this breaker, sorted
	Routes  []string  // egress routes guarded by this breaker, sorted
	History []Attempt // the last 20 executions, oldest first
	// Version changes (unique within the Registry) whenever any of the above changes, except
	// RemainingDelay and RetryDue, which move with the clock while the breaker is open.
	Version uint64
}

// RejectedError is the error of an execution the breaker rejected without touching the dependency.
// It wraps circuitbreaker.ErrOpen.
type RejectedError struct {
	Breaker string
	// RetryIn is how long the breaker stays open; 0 when the retry is due (the next execution is a trial).
	RetryIn time.Duration
	// HalfOpen: the breaker is half-open and every trial permit is taken by executions in flight.
	HalfOpen bool
	// Failures is how many failures of the breaker's window opened it (0: unknown, or a failed trial
	// reopened it).
	Failures int
	// Cause is the last failure that reached the dependency: its error, when, and who met it ("" when
	// none is known, e.g. after a reset).
	Cause       string
	CauseAt     time.Time
	CauseSource string
}

// FromTraffic reports whether the failure that opened the breaker came from the app's own traffic
// through the egress proxy, and the route's name. A nil *RejectedError came from nowhere.
func (e *RejectedError) FromTraffic() (route string, ok bool) {
	if e == nil {
		return "", false
	}
	return fromTraffic(e.CauseSource)
}

func (e *RejectedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "circuit breaker %q ", e.Breaker)
	if e.HalfOpen {
		b.WriteString("half-open, trial in progress")
	} else {
		b.WriteString("open")
		if e.Failures > 0 {
			fmt.Fprintf(&b, " after %d failure%s", e.Failures, plural(e.Failures))
		}
	}
	if e.Cause != "" {
		if route, ok := e.FromTraffic(); ok {
			fmt.Fprintf(&b, " (last, from real traffic on egress route %q: %s)", route, e.Cause)
		} else {
			fmt.Fprintf(&b, " (last: %s)", e.Cause)
		}
	}
	switch {
	case e.HalfOpen:
	case e.RetryIn > 0:
		fmt.Fprintf(&b, "; next trial in %s", roundUp(e.RetryIn))
	default:
		b.WriteString("; next trial due")
	}
	return b.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Unwrap makes errors.Is(err, circuitbreaker.ErrOpen) hold.
func (e *RejectedError) Unwrap() error { return circuitbreaker.ErrOpen }

// roundUp rounds d up to whole seconds (whole milliseconds under a second), so "retry in" never says 0s.
func roundUp(d time.Duration) time.Duration {
	unit := time.Second
	if d < time.Second {
		unit = time.Millisecond
	}
	return (d + unit - 1).Truncate(unit)
}

// Breaker is a named circuit breaker shared by the probes that name it.
//
// Lock order: Registry.mu, then Breaker.mu, then failsafe's own lock. Nothing that can make the failsafe
// breaker change state (TryAcquirePermit, Record*) is called with Breaker.mu held, because failsafe calls
// the state listener synchronously from inside those calls and the listener takes Breaker.mu.
type Breaker struct {
	name         string
	onTransition func(Transition)
	nextVersion  func() uint64 // the Registry's counter

	mu sync.Mutex
	// gen identifies the current circuit: a reset installs a new one, and events from executions still
	// running against the old one must not touch the new one's history or counters.
	gen         uint64
	policy      config.BreakerPolicy
	cb          circuitbreaker.CircuitBreaker[probes.Result]
	probes      []string
	routes      []string
	history     history
	transitions uint64
	lastChange  time.Time
	version     uint64  // see Stats.Version
	cause       Attempt // the last failure that reached the dependency
	openedAfter int     // failures in the window when the breaker last opened
	onCall      func(outcome string)
}

func newBreaker(name string, pol config.BreakerPolicy, onTransition func(Transition), nextVersion func() uint64) *Breaker {
	b := &Breaker{name: name, onTransition: onTransition, nextVersion: nextVersion}
	b.reset(pol)
	return b
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Stats returns a copy of the breaker's current state.
func (b *Breaker) Stats() Stats {
	b.mu.Lock()
	cb := b.cb
	s := Stats{
		Name:            b.name,
		LastStateChange: b.lastChange,
		Transitions:     b.transitions,
		Probes:          b.probes[:len(b.probes):len(b.probes)],
		Routes:          b.routes[:len(b.routes):len(b.routes)],
		History:         b.history.list(),
		Version:         b.version,
	}
	b.mu.Unlock()
	if s.Probes == nil {
		s.Probes = []string{}
	}
	if s.Routes == nil {
		s.Routes = []string{}
	}

	// failsafe-go leaves an open breaker open until the next execution asks for a permit; report that
	// honestly as OPEN with the retry due rather than pretending it is half-open.
	state := cb.State()
	s.State = stateName(state)
	s.RemainingDelay = cb.RemainingDelay()
	s.RetryDue = state == circuitbreaker.OpenState && s.RemainingDelay == 0
	m := cb.Metrics()
	s.Executions = m.Executions()
	s.Failures = m.Failures()
	s.Successes = m.Successes()
	s.FailureRate = m.FailureRate() * 100
	s.SuccessRate = m.SuccessRate() * 100
	return s
}

// RetryIn is how long the breaker stays open before an execution may try the dependency again: 0
// when it is not open, or when that retry is already due.
func (b *Breaker) RetryIn() time.Duration {
	cb, _ := b.circuit()
	if cb.State() != circuitbreaker.OpenState {
		return 0
	}
	return cb.RemainingDelay()
}

// IsClosed reports whether the breaker lets every execution through.
func (b *Breaker) IsClosed() bool {
	cb, _ := b.circuit()
	return cb.State() == circuitbreaker.ClosedState
}

// circuit returns the current failsafe breaker and its generation.
func (b *Breaker) circuit() (circuitbreaker.CircuitBreaker[probes.Result], uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cb, b.gen
}

func (b *Breaker) currentPolicy() config.BreakerPolicy {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.policy
}

func (b *Breaker) setUsers(probes, routes []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probes, b.routes = probes, routes
	b.version = b.nextVersion()
}

// currentVersion is Stats().Version without the copying.
func (b *Breaker) currentVersion() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.version
}

// reset installs a new closed circuit built from pol, forgetting counts, history and transitions.
// It returns the state the old circuit was in ("" when there was none).
func (b *Breaker) reset(pol config.BreakerPolicy) (was string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cb != nil {
		was = stateName(b.cb.State())
	}
	b.gen++
	gen := b.gen
	b.cb = newCircuit(pol, func(e circuitbreaker.StateChangedEvent) { b.changed(gen, e) })
	b.policy = pol
	b.history = history{}
	b.cause, b.openedAfter = Attempt{}, 0
	b.transitions = 0
	b.lastChange = time.Time{}
	b.version = b.nextVersion()
	return was
}

// changed is failsafe's state listener. failsafe calls it synchronously from inside an execution, with
// its own lock released; the callback runs without any of our locks.
func (b *Breaker) changed(gen uint64, e circuitbreaker.StateChangedEvent) {
	now := time.Now()
	b.mu.Lock()
	if gen != b.gen {
		b.mu.Unlock()
		return
	}
	b.transitions++
	b.lastChange = now
	b.version = b.nextVersion()
	if e.NewState == circuitbreaker.OpenState {
		b.openedAfter = 0
		if e.OldState == circuitbreaker.ClosedState {
			b.openedAfter = b.history.failures(b.policy.Window)
		}
	}
	b.mu.Unlock()
	if b.onTransition != nil {
		b.onTransition(Transition{Breaker: b.name, From: stateName(e.OldState), To: stateName(e.NewState), At: now})
	}
}

// record appends e to the history of circuit gen (dropped when the breaker was reset since).
func (b *Breaker) record(gen uint64, e Attempt) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen == b.gen {
		b.history.add(e)
		b.version = b.nextVersion()
	}
}

// setCause makes e the last failure of circuit gen.
func (b *Breaker) setCause(gen uint64, e Attempt) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen == b.gen {
		b.cause = e
	}
}

func (b *Breaker) notifyCall(outcome string) {
	if b.onCall != nil {
		b.onCall(outcome)
	}
}

// rejection describes why cb refuses a permit, with the failures that opened it and the last cause.
func (b *Breaker) rejection(cb circuitbreaker.CircuitBreaker[probes.Result]) *RejectedError {
	b.mu.Lock()
	r := &RejectedError{Breaker: b.name, Failures: b.openedAfter, Cause: b.cause.Error, CauseAt: b.cause.At,
		CauseSource: b.cause.Source}
	b.mu.Unlock()
	if cb.IsHalfOpen() {
		r.HalfOpen = true
		return r
	}
	r.RetryIn = cb.RemainingDelay()
	return r
}

// newCircuit builds a count-based failsafe breaker from pol. Out-of-range values (which config
// validation rejects) are clamped so that the breaker can still open and close.
func newCircuit(pol config.BreakerPolicy, onChange func(circuitbreaker.StateChangedEvent)) circuitbreaker.CircuitBreaker[probes.Result] {
	threshold := max(pol.FailureThreshold, 1)
	window := max(pol.Window, threshold)
	// No HandleIf: the breaker is driven with RecordSuccess/RecordFailure (see Guard), so its failure
	// conditions are never consulted.
	return circuitbreaker.NewBuilder[probes.Result]().
		WithFailureThresholdRatio(uint(threshold), uint(window)).
		WithDelay(max(pol.Delay, 0)).
		WithSuccessThreshold(uint(max(pol.SuccessThreshold, 1))).
		OnStateChanged(onChange).
		Build()
}

func stateName(s circuitbreaker.State) string {
	switch s {
	case circuitbreaker.OpenState:
		return Open
	case circuitbreaker.HalfOpenState:
		return HalfOpen
	default:
		return Closed
	}
}

// history is the last HistorySize executions. Stats hands out its slice without copying (a snapshot
// every few seconds used to copy every breaker's history): entries are appended to a buffer of 1.5 times
// that size, and a full buffer is replaced by a new one that starts with the last HistorySize-1.
// Handed-out slices are capped at their length and their entries are never written again.
type history struct {
	buf []Attempt
}

func (h *history) add(e Attempt) {
	if len(h.buf) == cap(h.buf) {
		keep := h.buf[max(0, len(h.buf)-(HistorySize-1)):]
		h.buf = append(make([]Attempt, 0, HistorySize+HistorySize/2), keep...)
	}
	h.buf = append(h.buf, e)
}

// failures counts the failures among the last n executions that reached the dependency.
func (h *history) failures(n int) int {
	count := 0
	for i := len(h.buf) - 1; i >= 0 && n > 0; i-- {
		switch h.buf[i].Outcome {
		case OutcomeFailure:
			count++
			n--
		case OutcomeSuccess:
			n--
		}
	}
	return count
}

// list returns the executions oldest first. The caller must not modify them.
func (h *history) list() []Attempt {
	n := len(h.buf)
	return h.buf[max(0, n-HistorySize):n:n]
}

// Registry holds the breakers by name. Safe for concurrent use.
type Registry struct {
	onTransition func(Transition)
	onCall       func(breaker, outcome string)
	versions     atomic.Uint64 // hands out Stats.Version

	mu       sync.RWMutex
	breakers map[string]*Breaker
}

// NewRegistry returns an empty registry. onTransition (may be nil) is called, synchronously and without
// the registry's lock held, for each state change of any breaker.
//
// failsafe-go changes a breaker's state from inside an execution, so onTransition runs on the goroutine
// of the probe whose execution caused the change: it must be quick and must not run that probe.
//
// onCall (may be nil) is called for each call any breaker sees, with its outcome (OutcomeSuccess,
// OutcomeFailure or OutcomeRejected); it must be quick too.
func NewRegistry(onTransition func(Transition), onCall func(breaker, outcome string)) *Registry {
	return &Registry{onTransition: onTransition, onCall: onCall, breakers: map[string]*Breaker{}}
}

// Sync makes the registry hold exactly the breakers that cfg's non-local probes and egress routes name.
// A route's breaker that a probe also names takes that probe's policy; any other takes
// `defaults.breaker`. A breaker whose
// policy did not change keeps its state and history; one whose policy changed is rebuilt (closed);
// one no longer named is dropped. Its probe lists are updated.
//
// A breaker shared by several probes takes its policy from the first of them in config order. A rebuilt
// breaker is reset in place, so probes already guarded by it see the new policy at once; if it was not
// closed, onTransition reports the change to CLOSED.
func (r *Registry) Sync(cfg *config.Config) {
	type wanted struct {
		policy config.BreakerPolicy
		probes []string
		routes []string
	}
	want := map[string]*wanted{}
	if cfg != nil {
		for i := range cfg.Probes {
			p := &cfg.Probes[i]
			if p.Local {
				continue
			}
			w, ok := want[p.Breaker()]
			if !ok {
				w = &wanted{policy: p.Policy.Breaker}
				want[p.Breaker()] = w
			}
			w.probes = append(w.probes, p.Name)
		}
		if cfg.Egress != nil {
			for i := range cfg.Egress.Routes {
				rt := &cfg.Egress.Routes[i]
				w, ok := want[rt.BreakerName()]
				if !ok {
					w = &wanted{policy: cfg.Defaults.Breaker}
					want[rt.BreakerName()] = w
				}
				w.routes = append(w.routes, rt.Name)
			}
		}
	}

	var resets []Transition
	r.mu.Lock()
	for name := range r.breakers {
		if _, ok := want[name]; !ok {
			delete(r.breakers, name)
		}
	}
	for name, w := range want {
		slices.Sort(w.probes)
		slices.Sort(w.routes)
		b, ok := r.breakers[name]
		switch {
		case !ok:
			b = newBreaker(name, w.policy, r.onTransition, func() uint64 { return r.versions.Add(1) })
			if r.onCall != nil {
				b.onCall = func(outcome string) { r.onCall(name, outcome) }
			}
			r.breakers[name] = b
		case b.currentPolicy() != w.policy:
			if was := b.reset(w.policy); was != Closed {
				resets = append(resets, Transition{Breaker: name, From: was, To: Closed, At: time.Now()})
			}
		}
		b.setUsers(slices.Compact(w.probes), slices.Compact(w.routes))
	}
	r.mu.Unlock()

	if r.onTransition != nil {
		slices.SortFunc(resets, func(a, b Transition) int { return strings.Compare(a.Breaker, b.Breaker) })
		for _, t := range resets {
			r.onTransition(t)
		}
	}
}

// Get returns the named breaker, or nil.
func (r *Registry) Get(name string) *Breaker {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.breakers[name]
}

// Stats returns every breaker's stats, sorted by name.
func (r *Registry) Stats() []Stats {
	r.mu.RLock()
	list := make([]*Breaker, 0, len(r.breakers))
	for _, b := range r.breakers {
		list = append(list, b)
	}
	r.mu.RUnlock()

	out := make([]Stats, 0, len(list))
	for _, b := range list {
		out = append(out, b.Stats())
	}
	slices.SortFunc(out, func(a, b Stats) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// StatsSince is Stats, reusing the entries of prev (an earlier result of Stats or StatsSince) for
// closed breakers that have not changed since: a snapshot taken every second then copies the history
// of only the breakers that did something.
func (r *Registry) StatsSince(prev []Stats) []Stats {
	r.mu.RLock()
	list := make([]*Breaker, 0, len(r.breakers))
	for _, b := range r.breakers {
		list = append(list, b)
	}
	r.mu.RUnlock()
	slices.SortFunc(list, func(a, b *Breaker) int { return strings.Compare(a.name, b.name) })

	out := make([]Stats, 0, len(list))
	j := 0
	for _, b := range list {
		for j < len(prev) && prev[j].Name < b.name {
			j++
		}
		if j < len(prev) && prev[j].Name == b.name && prev[j].State == Closed && prev[j].Version == b.currentVersion() {
			out = append(out, prev[j])
			continue
		}
		out = append(out, b.Stats())
	}
	return out
}
