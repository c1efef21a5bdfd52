// Package monitor schedules the probes, applies hysteresis and dependencies, and publishes an immutable
// Snapshot of the agent's health. Handlers read snapshots; they never run a probe or wait on one.
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/redact"
)

// ErrNotRunning is returned by Reload when the monitor's Run loop is not running.
var ErrNotRunning = errors.New("monitor not running")

// DefaultPublishEvery is the shortest time between two snapshots: a burst of changes (1,000 probes
// starting, an outage reaching many probes at once) is published as one.
const DefaultPublishEvery = 100 * time.Millisecond

// Options are a monitor's collaborators; all are optional.
type Options struct {
	Logger  *slog.Logger
	Version string
	Kinds   probes.Registry // default Kinds()
	// LookupEnv resolves secrets (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Tick is how often the monitor refreshes staleness, breaker delays and its liveness heartbeat
	// (default 1s).
	Tick time.Duration
	// PublishEvery is the shortest time between two snapshots (default DefaultPublishEvery): a change
	// is published at once when the last snapshot is older, else when it is that old.
	PublishEvery time.Duration
	// OnExecution is called after each execution of a probe (for metrics). It must not block.
	OnExecution func(Execution)
	// OnBreakerTransition is called on each breaker state change (for metrics). It must not block.
	OnBreakerTransition func(breakers.Transition)
	// Traffic, when set, reports the app's own calls through the egress proxy per route; snapshots show
	// it, and the tick republishes when it changed. It must be quick and must not block.
	Traffic func() []RouteTraffic
	// Secrets is the agent's set of resolved secret values, hidden from every text kept from a
	// dependency (default: a set of the monitor's own). Probes add to it as they resolve secrets.
	Secrets *redact.Secrets
	// OnBreakerCall is called for each call a breaker sees, with its outcome: breakers.OutcomeSuccess,
	// OutcomeFailure or OutcomeRejected (for metrics). It must not block.
	OnBreakerCall func(breaker, outcome string)
}

// Execution is one execution of a probe through its policies: what Options.OnExecution reports, and
// what RunOnce (`agent probe NAME`) returns.
type Execution struct {
	Probe string `json:"name"`
	Kind  string `json:"kind"`
	// Status is the verdict after hysteresis (RunOnce: the execution's own, without hysteresis).
	Status probes.Status `json:"status"`
	Reason string        `json:"reason,omitempty"`
	Failed bool          `json:"failed"` // the execution itself failed (before hysteresis)
	// Flapped: the execution's raw outcome (failed or not) differs from the previous execution's,
	// before hysteresis, which hides flaps from the verdict.
	Flapped  bool           `json:"-"`
	Retries  int            `json:"retries"` // attempts made after the first, within this execution
	Duration time.Duration  `json:"-"`
	Fields   map[string]any `json:"fields,omitempty"`
}

// MarshalJSON writes the duration as durationMs, in milliseconds.
func (e Execution) MarshalJSON() ([]byte, error) {
	type plain Execution
	return json.Marshal(struct {
		plain
		DurationMs float64 `json:"durationMs"`
	}{plain(e), float64(e.Duration.Microseconds()) / 1000})
}

// Monitor runs the probes of a config and keeps the latest Snapshot.
type Monitor struct {
	opts      Options
	log       *slog.Logger
	breakers  *breakers.Registry
	startedAt time.Time

	mu         sync.Mutex // guards the fields below and every check's state
	loaded     *config.Loaded
	checks     map[string]*check
	ordered    []*check // config order
	topo       []string
	legacyName string
	draining   bool
	bulkhead   bulkhead.Bulkhead[probes.Result]

	snap       atomic.Pointer[Snapshot]
	publishes  atomic.Uint64 // snapshots built, for tests and benchmarks
	dirty      atomic.Bool   // something shown in the snapshot changed since it was built
	changed    chan struct{} // something changed: the Run loop publishes soon (capacity 1)
	heartbeat  atomic.Int64  // unix nanos of the last housekeeping tick
	configInfo atomic.Pointer[ConfigInfo]
	legacyBody atomic.Pointer[json.RawMessage]

	reloads chan reloadRequest
	// breakerMu guards closedBreakers and openedBreakers: the breakers that closed or opened since the
	// last tick, whose probes the tick runs at once (see kickOnBreakersLocked). A transition is
	// reported from inside an execution (a probe's, or the app's own call through the egress proxy),
	// where m.mu may not be taken.
	breakerMu      sync.Mutex
	closedBreakers []string
	openedBreakers []string
	phase          float64 // where this monitor's execution slots start, as a fraction of a slot (see coalesce)
	running        atomic.Bool
	stopped        chan struct{} // closed when Run returns
}

type reloadRequest struct {
	loaded *config.Loaded
	done   chan error
}

// New builds the probes of loaded and an initial snapshot in which every probe is unknown. It starts
// nothing: call Run.
func New(loaded *config.Loaded, opts Options) (*Monitor, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Kinds == nil {
		opts.Kinds = Kinds()
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.PublishEvery <= 0 {
		opts.PublishEvery = DefaultPublishEvery
	}
	if opts.Secrets == nil {
		opts.Secrets = &redact.Secrets{}
	}
	m := &Monitor{
		opts:      opts,
		log:       opts.Logger,
		startedAt: time.Now(),
		checks:    map[string]*check{},
		reloads:   make(chan reloadRequest),
		changed:   make(chan struct{}, 1),
		stopped:   make(chan struct{}),
		phase:     rand.Float64(),
	}
	// The config kind reports this monitor's config.
	m.opts.Kinds = maps.Clone(opts.Kinds)
	m.opts.Kinds["config"] = configKind(m.ConfigInfo)
	m.breakers = breakers.NewRegistry(m.onBreakerTransition, opts.OnBreakerCall)
	m.heartbeat.Store(m.startedAt.UnixNano())
	m.setConfigInfo(loaded, Reload{}) // no reload attempted yet
	checks, err := m.build(loaded, nil)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.install(loaded, checks)
	m.publishLocked(time.Now())
	return m, nil
}

// Snapshot returns the latest snapshot. It never blocks.
func (m *Monitor) Snapshot() *Snapshot { return m.snap.Load() }

// Alive reports whether the monitor's loop has ticked recently (for /livez).
func (m *Monitor) Alive(now time.Time) bool {
	if !m.running.Load() {
		return false
	}
	last := time.Unix(0, m.heartbeat.Load())
	return now.Sub(last) < 5*m.opts.Tick+5*time.Second
}

// Breakers returns the breaker registry (for metrics).
func (m *Monitor) Breakers() *breakers.Registry { return m.breakers }

// SetDraining makes readiness fail at once (reason "shutting down").
func (m *Monitor) SetDraining() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.draining = true
	m.publishLocked(time.Now())
}

// ReloadFailed records a rejected reload: the running config stays, the config check turns degraded.
func (m *Monitor) ReloadFailed(err error) {
	m.mu.Lock()
	loaded := m.loaded
	m.mu.Unlock()
	m.setConfigInfo(loaded, Reload{At: time.Now(), Success: false, Error: err.Error()})
	m.kickKind("config")
}

// Reload replaces the running config with loaded (already validated). Probes whose definition did not
// change keep their state, runner and breaker; the others are stopped and started anew. It waits until
// the Run loop has applied it (a Reload before Run starts waits for it).
func (m *Monitor) Reload(ctx context.Context, loaded *config.Loaded) error {
	req := reloadRequest{loaded: loaded, done: make(chan error, 1)}
	select {
	case m.reloads <- req:
	case <-m.stopped:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runner is one probe's goroutine.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Run schedules the probes until ctx is done, then stops them all and returns. Each probe's first
// execution waits for those it depends on (topological order); then each runs on its own interval with
// jitter.
func (m *Monitor) Run(ctx context.Context) error {
	select {
	case <-m.stopped:
		return errors.New("monitor already stopped: it runs once")
	default:
	}
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("monitor already running")
	}
	defer close(m.stopped)
	defer m.running.Store(false)
	runners := map[*check]*runner{}
	start := func(c *check) {
		rctx, cancel := context.WithCancel(ctx)
		r := &runner{cancel: cancel, done: make(chan struct{})}
		runners[c] = r
		go func() {
			defer close(r.done)
			m.runCheck(rctx, c)
		}()
	}
	stop := func(cs []*check) {
		for _, c := range cs {
			if r := runners[c]; r != nil {
				r.cancel()
			}
		}
		for _, c := range cs {
			if r := runners[c]; r != nil {
				<-r.done
				delete(runners, c)
			}
		}
	}
	m.mu.Lock()
	initial := slices.Clone(m.ordered)
	m.mu.Unlock()
	for _, c := range initial {
		start(c)
	}

	ticker := time.NewTicker(m.opts.Tick)
	defer ticker.Stop()
	publish := time.NewTimer(time.Hour)
	publish.Stop()
	pending := false // publish is armed
	for {
		select {
		case <-ctx.Done():
			publish.Stop()
			stop(slices.Collect(maps.Keys(runners)))
			return nil
		case req := <-m.reloads:
			req.done <- m.apply(req.loaded, start, stop)
		case now := <-ticker.C:
			m.heartbeat.Store(now.UnixNano())
			m.housekeep(now)
		case <-m.changed:
			if !pending {
				pending = true
				publish.Reset(max(0, m.opts.PublishEvery-time.Since(m.snap.Load().At)))
			}
		case now := <-publish.C:
			pending = false
			m.publishIfDirty(now)
		}
	}
}

// markChanged records that something a snapshot shows has changed: the Run loop publishes a new one
// within Options.PublishEvery. It never blocks and takes no lock.
func (m *Monitor) markChanged() {
	m.dirty.Store(true)
	select {
	case m.changed <- struct{}{}:
	default: // a publish is already asked for
	}
}

func (m *Monitor) publishIfDirty(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dirty.Load() {
		m.publishLocked(now)
	}
}

// runCheck is one probe's loop.
func (m *Monitor) runCheck(ctx context.Context, c *check) {
	// Dependents waiting for this probe's first result must not wait forever when it is stopped first.
	defer m.firstDone(c)
	// The first execution waits for the probes it depends on, so that it sees their verdicts.
	m.mu.Lock()
	var deps []chan struct{}
	for _, d := range c.def.DependsOn {
		if dc := m.checks[d]; dc != nil {
			deps = append(deps, dc.first)
		}
	}
	m.mu.Unlock()
	for _, d := range deps {
		select {
		case <-d:
		case <-ctx.Done():
			return
		}
	}
	m.executeOnOwnStack(ctx, c)
	m.firstDone(c)

	jitter := m.jitter()
	for {
		wait := c.def.Interval
		if jitter > 0 {
			wait += time.Duration((rand.Float64()*2 - 1) * jitter * float64(wait))
		}
		m.mu.Lock()
		notBefore, refused := c.notBefore, c.refused
		m.mu.Unlock()
		if c.breaker != nil {
			switch d := c.breaker.RetryIn(); {
			case d > 0 && d < wait:
				// An open breaker refuses every execution until its delay ends: the first one after that
				// is its trial, so run it then rather than up to an interval later.
				wait = d
			case refused && c.breaker.IsClosed():
				// Refused while another probe sharing the breaker ran the trial, which has closed it
				// since. (Closing later is caught by kickOnBreakersLocked.)
				wait = 0
			}
		}
		if d := time.Until(notBefore); d > wait {
			wait = d
		}
		wait = coalesce(time.Now(), wait, c.def.Interval, m.phase)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-c.kick:
			t.Stop()
			if time.Now().Before(notBefore) {
				continue
			}
		}
		m.executeOnOwnStack(ctx, c)
	}
}

// coalesce lengthens wait so that the execution lands on a grid of slots interval/40 wide (at most
// 250ms, within the default jitter's spread), shifted by phase (a fraction of a slot, fixed per
// monitor). Probes due in the same slot then wake the process once instead of each at its own instant:
// waking up (threads, cold caches) is most of an idle agent's CPU. The per-monitor phase keeps a fleet
// of agents from lining up on the same instants at a shared dependency.
func coalesce(now time.Time, wait, interval time.Duration, phase float64) time.Duration {
	slot := min(interval/40, 250*time.Millisecond)
	if slot <= 0 {
		return wait
	}
	offset := time.Duration(phase * float64(slot))
	due := now.Add(wait - offset)
	if r := due.Sub(due.Truncate(slot)); r > 0 {
		due = due.Add(slot - r)
	}
	return due.Add(offset).Sub(now)
}

// executeOnOwnStack runs execute on a goroutine of its own and waits for it. A probe's loop spends its life
// waiting on a timer, which needs little stack; an execution (a dial, TLS, JSON) grows a stack to
// 8-16 KiB, which the loop's goroutine would keep between executions: about 8 MiB at 1,000 probes.
// An execution's goroutine gives its stack back when it ends.
func (m *Monitor) executeOnOwnStack(ctx context.Context, c *check) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.execute(ctx, c)
	}()
	<-done
}

// firstDone marks c's first execution finished (or abandoned), once.
func (m *Monitor) firstDone(c *check) {
	c.firstOnce.Do(func() { close(c.first) })
}

func (m *Monitor) jitter() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loaded.Config.Scheduler.Jitter
}

// execute runs c once unless a dependency blocks it, and records the outcome.
func (m *Monitor) execute(ctx context.Context, c *check) {
	m.mu.Lock()
	if root, why := m.blockedByLocked(c); root != "" {
		prev := c.status
		if c.block(time.Now(), root, why) {
			m.logTransition(c, prev)
			m.kickDependentsLocked(c)
		}
		m.markChanged()
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()

	start := time.Now()
	c.retries.Store(0)
	res, err := c.guarded.Check(ctx)
	dur := time.Since(start)
	retries := int(c.retries.Load())
	if ctx.Err() != nil {
		return // stopping or replaced by a reload: this outcome says nothing about the dependency
	}
	if err == nil && res.Status == "" {
		res.Status = probes.Healthy
	}

	now := time.Now()
	m.mu.Lock()
	prev := c.status
	o := c.record(now, res, err, dur, m.opts.Secrets)
	if c.def.Legacy && !o.limited {
		// The latest execution's body, or none: a body from an earlier execution would pass a dead
		// app off as alive.
		body := res.Body
		m.legacyBody.Store(&body)
	}
	status := c.status
	if o.changed {
		m.logTransition(c, prev)
		m.kickDependentsLocked(c)
	}
	m.markChanged()
	m.mu.Unlock()

	if m.log.Enabled(ctx, slog.LevelDebug) { // every execution passes here: build no attributes for nothing
		reason := res.Reason
		if err != nil {
			reason = err.Error()
		}
		m.log.Debug("probe executed", "probe", c.def.Name, "status", status, "failed", err != nil,
			"limited", o.limited, "duration", dur, "reason", redact.Shown(reason, m.opts.Secrets.List(), redact.MaxText))
	}
	if m.opts.OnExecution != nil && !o.limited {
		m.opts.OnExecution(Execution{Probe: c.def.Name, Kind: c.def.Kind, Status: status, Failed: err != nil,
			Flapped: o.flapped, Retries: retries, Duration: dur})
	}
}

// blockedByLocked returns the root cause blocking c (a dependency that is unhealthy, or what blocks a
// blocked dependency), and a reason for people.
func (m *Monitor) blockedByLocked(c *check) (root, why string) {
	for _, name := range c.def.DependsOn {
		d := m.checks[name]
		if d == nil {
			continue
		}
		switch d.status {
		case probes.Unhealthy:
			return name, fmt.Sprintf("dependency %q is unhealthy: %s", name, d.reason)
		case probes.Blocked:
			return d.blockedBy, fmt.Sprintf("dependency %q is blocked by %q", name, d.blockedBy)
		}
	}
	return "", ""
}

// kickDependentsLocked makes the probes that depend on c run now, so that a block is lifted (or
// applied) without waiting a whole interval.
func (m *Monitor) kickDependentsLocked(c *check) {
	for _, o := range m.ordered {
		if slices.Contains(o.def.DependsOn, c.def.Name) {
			select {
			case o.kick <- struct{}{}:
			default:
			}
		}
	}
}

// kickOnBreakersLocked runs at once, at the tick after a breaker changed:
//   - when it closed, the probes whose last execution it refused (open, or half-open with its trial
//     permits taken by other probes sharing it): without it they would wait up to an interval to see
//     the recovery another probe's trial proved;
//   - when the app's own calls through the egress proxy opened it, every probe it guards that has not
//     been refused yet: their verdicts must follow within a second, not at their next interval.
func (m *Monitor) kickOnBreakersLocked() {
	m.breakerMu.Lock()
	closed, opened := m.closedBreakers, m.openedBreakers
	m.closedBreakers, m.openedBreakers = nil, nil
	m.breakerMu.Unlock()
	if len(closed) == 0 && len(opened) == 0 {
		return
	}
	for _, c := range m.ordered {
		if c.breaker == nil {
			continue
		}
		name := c.breaker.Name()
		if c.refused && slices.Contains(closed, name) || !c.refused && slices.Contains(opened, name) && openedByTraffic(c.breaker) {
			select {
			case c.kick <- struct{}{}:
			default:
			}
		}
	}
}

// openedByTraffic reports whether b is open because of the app's own calls through the egress proxy.
func openedByTraffic(b *breakers.Breaker) bool {
	_, ok := b.Rejection().FromTraffic()
	return ok
}

func (m *Monitor) kickKind(kind string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.ordered {
		if c.def.Kind == kind {
			select {
			case c.kick <- struct{}{}:
			default:
			}
		}
	}
}

func (m *Monitor) logTransition(c *check, prev probes.Status) {
	level := slog.LevelInfo
	if c.status == probes.Unhealthy && c.def.Critical {
		level = slog.LevelWarn
	}
	m.log.Log(context.Background(), level, "probe status changed", "probe", c.def.Name, "from", prev,
		"to", c.status, "critical", c.def.Critical, "reason", c.reason)
}

func (m *Monitor) onBreakerTransition(t breakers.Transition) {
	m.log.Info("breaker state changed", "breaker", t.Breaker, "from", t.From, "to", t.To)
	m.markChanged()
	switch t.To {
	case breakers.Closed:
		m.breakerMu.Lock()
		m.closedBreakers = append(m.closedBreakers, t.Breaker)
		m.breakerMu.Unlock()
	case breakers.Open:
		m.breakerMu.Lock()
		m.openedBreakers = append(m.openedBreakers, t.Breaker)
		m.breakerMu.Unlock()
	}
	if m.opts.OnBreakerTransition != nil {
		m.opts.OnBreakerTransition(t)
	}
}

// housekeep runs at each tick: it starts the probes a breaker change concerns, and republishes when
// what a snapshot shows moved with the clock alone: a verdict gone stale, a breaker's remaining delay,
// the countdown in a refused probe's reason. (Changes are published by the Run loop, coalesced.)
func (m *Monitor) housekeep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kickOnBreakersLocked()
	republish := false
	last := m.snap.Load()
	for _, c := range m.ordered {
		if republish {
			break
		}
		// Staleness is the clock's doing: the same state seen at the last snapshot and now.
		republish = c.refused || m.viewStatus(c, last.At) != m.viewStatus(c, now)
	}
	for _, b := range last.Breakers {
		if republish {
			break
		}
		republish = b.State != breakers.Closed // its remaining delay moves
	}
	if !republish && m.opts.Traffic != nil {
		republish = !slices.Equal(m.opts.Traffic(), last.Traffic) // the last minute moves on
	}
	if republish {
		m.publishLocked(now)
	}
}

// viewStatus is c's status as shown: unknown once its verdict is stale.
func (m *Monitor) viewStatus(c *check, now time.Time) probes.Status {
	if c.status != probes.Blocked && !c.lastChecked.IsZero() && now.Sub(c.lastChecked) > c.staleAfter() {
		return probes.Unknown
	}
	return c.status
}

// publishLocked builds and swaps a new snapshot. m.mu must be held.
func (m *Monitor) publishLocked(now time.Time) {
	m.dirty.Store(false)
	var prevBreakers []breakers.Stats
	if prev := m.snap.Load(); prev != nil {
		prevBreakers = prev.Breakers
	}
	s := &Snapshot{
		At:           now,
		StartedAt:    m.startedAt,
		Version:      m.opts.Version,
		ShuttingDown: m.draining,
		Checks:       make([]CheckView, 0, len(m.ordered)),
		Breakers:     m.breakers.StatsSince(prevBreakers),
		Order:        m.topo,
		LegacyProbe:  m.legacyName,
	}
	if ci := m.configInfo.Load(); ci != nil {
		s.Config = *ci
	}
	if m.legacyName != "" {
		s.Legacy = m.LegacyBody()
	}
	if m.opts.Traffic != nil {
		s.Traffic = m.opts.Traffic()
	}
	for _, c := range m.ordered {
		v := m.viewLocked(c, now)
		if v.Critical && !v.EverHealthy {
			s.Starting = true
		}
		s.Checks = append(s.Checks, v)
	}
	s.Overall = overall(s.Checks)
	m.snap.Store(s)
	m.publishes.Add(1)
}

// viewLocked is c as a snapshot taken at now shows it. m.mu must be held.
func (m *Monitor) viewLocked(c *check, now time.Time) CheckView {
	v := CheckView{
		Name: c.def.Name, Kind: c.def.Kind, Critical: c.def.Critical,
		Status: m.viewStatus(c, now), Reason: c.reason, Duration: c.duration,
		LastAttempt: c.lastAttempt, LastChecked: c.lastChecked, LastSuccess: c.lastSuccess, LastTransition: c.lastTransition,
		ConsecutiveFailures: c.consecutiveFailures, Transitions: c.transitions, Flaps: c.flaps,
		EverHealthy: c.everHealthy, DependsOn: c.def.DependsOn, BlockedBy: c.blockedBy,
		Fields: c.fields, Timeline: c.recent(), Revision: c.revision,
	}
	if !c.def.Local {
		v.Breaker = c.def.Breaker()
	}
	if c.refused && c.status != probes.Blocked && c.breaker != nil {
		// The breaker's countdown moves: say it as of this snapshot, never as of the refusal.
		if rej := c.breaker.Rejection(); rej != nil {
			v.Reason = redact.Shown(rej.Error(), m.opts.Secrets.List(), redact.MaxText)
		}
	}
	if v.Status == probes.Unknown && c.status != probes.Unknown {
		was := string(c.status)
		if c.reason != "" {
			was += ": " + c.reason
		}
		v.Reason = fmt.Sprintf("stale: last result %s ago (was %s)", now.Sub(c.lastChecked).Round(time.Millisecond), was)
	}
	return v
}

// build makes the checks of loaded, reusing from old every check whose definition did not change.
func (m *Monitor) build(loaded *config.Loaded, old map[string]*check) (map[string]*check, error) {
	cfg := loaded.Config
	m.breakers.Sync(cfg)
	bh := m.currentBulkhead(cfg.Scheduler.MaxConcurrentProbes)
	env := probes.Env{
		Secrets:   m.opts.Secrets,
		LookupEnv: m.opts.LookupEnv,
		Logger:    m.log,
	}
	out := make(map[string]*check, len(cfg.Probes))
	var errs []error
	for i := range cfg.Probes {
		def := cfg.Probes[i]
		if o := old[def.Name]; o != nil && o.fingerprint == fingerprint(def) {
			out[def.Name] = o
			continue
		}
		p, err := m.opts.Kinds.Build(&def, env)
		if err != nil {
			errs = append(errs, config.Prefix(fmt.Sprintf("probes[%d]", i), err))
			continue
		}
		var br *breakers.Breaker
		if !def.Local {
			br = m.breakers.Get(def.Breaker())
		}
		c := newCheck(def, nil)
		c.guarded = breakers.Guard(p, def.Policy, br, bh, breakers.GuardOptions{Source: def.Name,
			OnRetry: func() { c.retries.Add(1) }})
		c.breaker = br
		out[def.Name] = c
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// currentBulkhead returns the global bulkhead, made on first use with n slots. A reload does not resize
// it: probes that kept running hold it.
func (m *Monitor) currentBulkhead(n int) bulkhead.Bulkhead[probes.Result] {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bulkhead == nil {
		m.bulkhead = breakers.NewBulkhead(n)
	}
	return m.bulkhead
}

// install makes checks the running set. m.mu must be held.
func (m *Monitor) install(loaded *config.Loaded, checks map[string]*check) {
	m.loaded = loaded
	m.checks = checks
	m.ordered = m.ordered[:0:0]
	m.legacyName = ""
	for _, p := range loaded.Config.Probes {
		m.ordered = append(m.ordered, checks[p.Name])
		if p.Legacy {
			m.legacyName = p.Name
		}
	}
	if m.legacyName == "" {
		m.legacyBody.Store(nil)
	}
	m.topo, _ = loaded.Config.Order()
}

// apply swaps in a new config from the Run loop.
func (m *Monitor) apply(loaded *config.Loaded, start func(*check), stop func([]*check)) error {
	m.mu.Lock()
	old := m.checks
	m.mu.Unlock()
	checks, err := m.build(loaded, old)
	if err != nil {
		m.setConfigInfo(m.currentLoaded(), Reload{At: time.Now(), Error: err.Error()})
		m.mu.Lock()
		m.publishLocked(time.Now())
		m.mu.Unlock()
		return err
	}
	var gone []*check
	for name, c := range old {
		if checks[name] != c {
			gone = append(gone, c)
		}
	}
	stop(gone)
	m.mu.Lock()
	m.install(loaded, checks)
	m.mu.Unlock()
	kept := make(map[*check]bool, len(old))
	for _, c := range old {
		kept[c] = true
	}
	for _, c := range checks {
		if !kept[c] {
			start(c)
		}
	}
	m.setConfigInfo(loaded, Reload{At: time.Now(), Success: true})
	m.kickKind("config")
	m.mu.Lock()
	m.publishLocked(time.Now())
	m.mu.Unlock()
	m.log.Info("config reloaded", "source", loaded.Source, "sha256", loaded.SHA256,
		"probes", len(checks), "restarted", len(checks)-(len(old)-len(gone)))
	return nil
}

func (m *Monitor) currentLoaded() *config.Loaded {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loaded
}

func (m *Monitor) setConfigInfo(l *config.Loaded, r Reload) {
	ci := &ConfigInfo{Source: l.Source, SHA256: l.SHA256, LoadedAt: l.LoadedAt, LastReload: r}
	m.configInfo.Store(ci)
	m.dirty.Store(true)
}

// ConfigInfo reports the running config and the last reload's outcome (for the config kind).
func (m *Monitor) ConfigInfo() ConfigInfo {
	if ci := m.configInfo.Load(); ci != nil {
		return *ci
	}
	return ConfigInfo{}
}

// LegacyBody returns the legacy probe's latest JSON body, or nil.
func (m *Monitor) LegacyBody() json.RawMessage {
	if b := m.legacyBody.Load(); b != nil {
		return *b
	}
	return nil
}
