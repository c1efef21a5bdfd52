package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// dep is a dependency the test controls: the "fake" kind below checks it.
type dep struct {
	mu    sync.Mutex
	err   error
	hang  bool          // block until the attempt's context is done
	stuck chan struct{} // non-nil: block until it is closed, ignoring the context (a broken kind)
	gate  chan struct{} // non-nil: wait until it is closed (or the context is done), then answer
	calls atomic.Int64
	world *world
	name  string
}

func (d *dep) set(err error, hang bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err, d.hang = err, hang
}

func (d *dep) Check(ctx context.Context) (probes.Result, error) {
	d.calls.Add(1)
	d.mu.Lock()
	err, hang, stuck, gate := d.err, d.hang, d.stuck, d.gate
	d.mu.Unlock()
	d.world.mu.Lock()
	d.world.order = append(d.world.order, d.name)
	d.world.mu.Unlock()
	if stuck != nil {
		<-stuck
		return probes.Result{}, errors.New("was stuck")
	}
	if hang {
		<-ctx.Done()
		return probes.Result{}, ctx.Err()
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return probes.Result{}, ctx.Err()
		}
	}
	return probes.Result{Status: probes.Healthy, Fields: map[string]any{"dep": d.name}}, err
}

// world is a set of deps and a kind registry whose "fake" probes check them by `dep: name`.
type world struct {
	mu    sync.Mutex
	deps  map[string]*dep
	order []string
}

func newWorld(names ...string) *world {
	w := &world{deps: map[string]*dep{}}
	for _, n := range names {
		w.deps[n] = &dep{name: n, world: w}
	}
	return w
}

func (w *world) kinds() probes.Registry {
	return probes.Registry{
		"fake": {New: func(spec probes.Spec) (probes.Probe, error) {
			name, _ := spec.Options["dep"].(string)
			d := w.deps[name]
			if d == nil {
				return nil, config.Errorf("dep", "no dep %q", name)
			}
			return d, nil
		}},
		"local": {Local: true, New: func(spec probes.Spec) (probes.Probe, error) {
			return probes.ProbeFunc(func(context.Context) (probes.Result, error) {
				return probes.Result{Status: probes.Healthy}, nil
			}), nil
		}},
	}
}

func (w *world) firstCalls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, n := range w.order {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

func fastPolicy() config.Policy {
	return config.Policy{
		Interval: 40 * time.Millisecond, Timeout: 2 * time.Second,
		FailuresBeforeUnhealthy: 1, SuccessesBeforeHealthy: 1,
		Retry:   config.Retry{MaxRetries: 0, Backoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond},
		Breaker: config.BreakerPolicy{FailureThreshold: 1000, Window: 1000, Delay: time.Hour, SuccessThreshold: 1},
	}
}

func fake(name string, critical bool, deps ...string) config.Probe {
	return config.Probe{Name: name, Kind: "fake", Critical: critical, DependsOn: deps, Policy: fastPolicy(),
		Options: map[string]any{"dep": name}}
}

func loaded(ps ...config.Probe) *config.Loaded {
	return &config.Loaded{
		Config: &config.Config{
			Server:    config.Server{Listen: "127.0.0.1:0"},
			Scheduler: config.Scheduler{MaxConcurrentProbes: 8},
			Probes:    ps,
		},
		Source: "test", SHA256: fmt.Sprint(time.Now().UnixNano()), LoadedAt: time.Now(),
	}
}

// start runs a monitor until the test ends.
func start(t *testing.T, w *world, l *config.Loaded) *Monitor {
	t.Helper()
	m, err := New(l, Options{Kinds: w.kinds(), Tick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return m
}

// waitFor polls the monitor's snapshot until cond holds and returns the snapshot that held, or fails the
// test after a generous deadline showing the last snapshot's checks.
func waitFor(t *testing.T, m *Monitor, what string, cond func(*Snapshot) bool) *Snapshot {
	t.Helper()
	var s *Snapshot
	testkit.EventuallyState(t, 15*time.Second, func() (bool, string) {
		s = m.Snapshot()
		if cond(s) {
			return true, ""
		}
		b, _ := json.MarshalIndent(s.Checks, "", " ")
		return false, "checks: " + string(b)
	}, "%s", what)
	return s
}

func status(s *Snapshot, name string) probes.Status {
	if c := s.Check(name); c != nil {
		return c.Status
	}
	return ""
}

func TestInitialSnapshotIsUnknownAndStarting(t *testing.T) {
	w := newWorld("a")
	m, err := New(loaded(fake("a", true)), Options{Kinds: w.kinds()})
	if err != nil {
		t.Fatal(err)
	}
	s := m.Snapshot()
	if status(s, "a") != probes.Unknown || !s.Starting || s.Overall != probes.Unhealthy || s.Ready() {
		t.Fatalf("initial snapshot: status %s starting %v overall %s ready %v", status(s, "a"), s.Starting, s.Overall, s.Ready())
	}
	if w.deps["a"].calls.Load() != 0 {
		t.Fatal("New executed a probe; constructors must start nothing")
	}
}

func TestFirstRunsFollowDependencies(t *testing.T) {
	w := newWorld("db", "api", "web", "solo")
	m := start(t, w, loaded(fake("web", true, "api"), fake("api", true, "db"), fake("solo", false), fake("db", true)))
	waitFor(t, m, "all healthy", func(s *Snapshot) bool { return s.Overall == probes.Healthy })
	first := w.firstCalls()
	pos := map[string]int{}
	for i, n := range first {
		pos[n] = i
	}
	if !(pos["db"] < pos["api"] && pos["api"] < pos["web"]) {
		t.Fatalf("first executions in order %v, want db before api before web", first)
	}
	if got := m.Snapshot().Order; len(got) != 4 {
		t.Fatalf("snapshot order %v, want 4 names", got)
	}
}

func TestBlockedNamesTheRootCauseAndIsNotExecuted(t *testing.T) {
	w := newWorld("db", "api", "web")
	w.deps["db"].set(errors.New("connection refused"), false)
	m := start(t, w, loaded(fake("db", true), fake("api", true, "db"), fake("web", false, "api")))
	s := waitFor(t, m, "api and web blocked", func(s *Snapshot) bool {
		return status(s, "api") == probes.Blocked && status(s, "web") == probes.Blocked
	})
	if got := s.Check("web").BlockedBy; got != "db" {
		t.Fatalf("web blockedBy %q, want the root cause db", got)
	}
	if s.Check("api").BlockedBy != "db" || s.Overall != probes.Unhealthy {
		t.Fatalf("api blockedBy %q overall %s", s.Check("api").BlockedBy, s.Overall)
	}
	apiCalls, webCalls := w.deps["api"].calls.Load(), w.deps["web"].calls.Load()
	// Let several intervals pass: blocked probes must not be executed.
	waitFor(t, m, "db executed a few more times", func(*Snapshot) bool { return w.deps["db"].calls.Load() > 5 })
	if w.deps["api"].calls.Load() != apiCalls || w.deps["web"].calls.Load() != webCalls || apiCalls != 0 {
		t.Fatalf("blocked probes executed: api %d→%d, web %d→%d", apiCalls, w.deps["api"].calls.Load(), webCalls, w.deps["web"].calls.Load())
	}

	w.deps["db"].set(nil, false)
	waitFor(t, m, "all healthy after db recovers", func(s *Snapshot) bool { return s.Overall == probes.Healthy })
}

func TestStaleResultIsUnknown(t *testing.T) {
	w := newWorld("slow")
	p := fake("slow", true)
	p.Interval = 20 * time.Millisecond
	p.Timeout = 50 * time.Millisecond
	stuck := make(chan struct{})
	m := start(t, w, loaded(p))
	t.Cleanup(func() { close(stuck) }) // runs before start's cleanup stops the monitor
	waitFor(t, m, "healthy", func(s *Snapshot) bool { return status(s, "slow") == probes.Healthy })
	// A kind that ignores its deadline: the attempt outlives three intervals and its timeout.
	w.deps["slow"].mu.Lock()
	w.deps["slow"].stuck = stuck
	w.deps["slow"].mu.Unlock()
	s := waitFor(t, m, "unknown", func(s *Snapshot) bool { return status(s, "slow") == probes.Unknown })
	if s.Ready() || s.Overall != probes.Unhealthy {
		t.Fatalf("a stale critical probe must fail readiness: ready %v overall %s", s.Ready(), s.Overall)
	}
	if r := s.Check("slow").Reason; len(r) < 6 || r[:6] != "stale:" {
		t.Fatalf("reason %q, want it to start with stale:", r)
	}
}

func TestNonCriticalUnhealthyDegradesButStaysReady(t *testing.T) {
	w := newWorld("core", "extra")
	w.deps["extra"].set(errors.New("down"), false)
	m := start(t, w, loaded(fake("core", true), fake("extra", false)))
	s := waitFor(t, m, "extra unhealthy", func(s *Snapshot) bool {
		return status(s, "extra") == probes.Unhealthy && status(s, "core") == probes.Healthy
	})
	if s.Overall != probes.Degraded || !s.Ready() {
		t.Fatalf("overall %s ready %v, want degraded and ready", s.Overall, s.Ready())
	}
}

func TestDrainingFailsReadiness(t *testing.T) {
	w := newWorld("a")
	m := start(t, w, loaded(fake("a", true)))
	waitFor(t, m, "ready", func(s *Snapshot) bool { return s.Ready() })
	m.SetDraining()
	if s := m.Snapshot(); s.Ready() || !s.ShuttingDown {
		t.Fatal("readiness must fail at once when draining")
	}
}

func TestReloadKeepsUnchangedProbesAndRestartsChanged(t *testing.T) {
	w := newWorld("a", "b", "c")
	m := start(t, w, loaded(fake("a", true), fake("b", false)))
	waitFor(t, m, "healthy", func(s *Snapshot) bool { return s.Overall == probes.Healthy })
	before := m.Snapshot().Check("a")

	changed := fake("b", true) // now critical: a different definition
	if err := m.Reload(context.Background(), loaded(fake("a", true), changed, fake("c", false))); err != nil {
		t.Fatal(err)
	}
	s := m.Snapshot()
	if got := s.Check("a"); got == nil || got.LastTransition != before.LastTransition || !got.EverHealthy {
		t.Fatalf("unchanged probe lost its state: before %+v after %+v", before, got)
	}
	if s.Check("c") == nil || len(s.Checks) != 3 {
		t.Fatalf("reload did not add c: %d checks", len(s.Checks))
	}
	waitFor(t, m, "c healthy", func(s *Snapshot) bool { return status(s, "c") == probes.Healthy })
	if !s.Check("b").Critical {
		t.Fatal("b's new definition not applied")
	}
	if err := m.Reload(context.Background(), loaded(fake("a", true))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "b and c removed", func(s *Snapshot) bool { return len(s.Checks) == 1 })
	calls := w.deps["c"].calls.Load()
	waitFor(t, m, "a runs on", func(*Snapshot) bool { return w.deps["a"].calls.Load() > 20 })
	if w.deps["c"].calls.Load() != calls {
		t.Fatal("a removed probe is still being executed")
	}
}

// TestReloadKeepsRateLimitBudget: an unchanged probe keeps its rate limiter across a reload (the budget
// it spent stays spent); a changed probe gets a new one.
func TestReloadKeepsRateLimitBudget(t *testing.T) {
	limited := func(name string, critical bool) config.Probe {
		p := fake(name, critical)
		p.Policy.RateLimit = &config.RateLimit{Max: 3, Per: time.Hour}
		return p
	}
	w := newWorld("a", "b")
	m := start(t, w, loaded(limited("a", true), limited("b", false)))
	spent := func(*Snapshot) bool { return w.deps["a"].calls.Load() == 3 && w.deps["b"].calls.Load() == 3 }
	waitFor(t, m, "both budgets spent", spent)

	if err := m.Reload(context.Background(), loaded(limited("a", true), limited("b", true))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "b's new budget spent", func(*Snapshot) bool { return w.deps["b"].calls.Load() == 6 })
	if got := w.deps["a"].calls.Load(); got != 3 {
		t.Fatalf("a reached its dependency %d times, want 3: the reload gave the unchanged probe a new budget", got)
	}
}

// TestOpenBreakerTrialRunsWhenItsDelayEnds: after the breaker opens, the probe's next execution is the
// breaker's trial, at the end of its delay, not an interval later (here the interval is an hour).
func TestOpenBreakerTrialRunsWhenItsDelayEnds(t *testing.T) {
	w := newWorld("a")
	w.deps["a"].set(errors.New("down"), false)
	p := fake("a", true)
	p.Policy.Interval = time.Hour
	p.Policy.Breaker = config.BreakerPolicy{FailureThreshold: 1, Window: 1, Delay: 300 * time.Millisecond, SuccessThreshold: 1}
	m := start(t, w, loaded(p))
	waitFor(t, m, "unhealthy", func(s *Snapshot) bool { return status(s, "a") == probes.Unhealthy })
	w.deps["a"].set(nil, false)
	waitFor(t, m, "healthy again after the breaker's delay", func(s *Snapshot) bool { return status(s, "a") == probes.Healthy })
	if got := w.deps["a"].calls.Load(); got != 2 {
		t.Errorf("the dependency was called %d times, want 2: the failure, then the trial", got)
	}
}

// TestSharedBreakerTrialWakesTheProbesItRefused: two probes share a breaker with one trial permit. At
// the end of its delay both run; the one refused while the other's trial was in flight runs again as
// soon as that trial closes the breaker, not an interval (here an hour) later.
func TestSharedBreakerTrialWakesTheProbesItRefused(t *testing.T) {
	w := newWorld("a", "b")
	shared := func(name string) config.Probe {
		p := fake(name, true)
		p.BreakerName = "shared"
		p.Policy.Interval, p.Policy.Timeout = time.Hour, 20*time.Second
		p.Policy.Breaker = config.BreakerPolicy{FailureThreshold: 1, Window: 1, Delay: 300 * time.Millisecond, SuccessThreshold: 1}
		return p
	}
	for _, d := range w.deps {
		d.set(errors.New("down"), false)
	}
	m := start(t, w, loaded(shared("a"), shared("b")))
	waitFor(t, m, "both unhealthy", func(s *Snapshot) bool {
		return status(s, "a") == probes.Unhealthy && status(s, "b") == probes.Unhealthy
	})

	// Up again, but whichever probe runs the trial holds it until the gate opens.
	gate := make(chan struct{})
	for _, d := range w.deps {
		d.mu.Lock()
		d.err, d.gate = nil, gate
		d.mu.Unlock()
	}
	waitFor(t, m, "one probe refused during the other's trial", func(s *Snapshot) bool {
		return strings.Contains(s.Check("a").Reason, "trial in progress") || strings.Contains(s.Check("b").Reason, "trial in progress")
	})
	close(gate)
	waitFor(t, m, "both healthy", func(s *Snapshot) bool {
		return status(s, "a") == probes.Healthy && status(s, "b") == probes.Healthy
	})
}

func TestReloadWithBadProbeIsRejected(t *testing.T) {
	w := newWorld("a")
	m := start(t, w, loaded(fake("a", true)))
	bad := fake("x", true)
	bad.Options = map[string]any{"dep": "missing"}
	err := m.Reload(context.Background(), loaded(fake("a", true), bad))
	if err == nil {
		t.Fatal("reload with an unbuildable probe accepted")
	}
	if s := m.Snapshot(); s.Check("x") != nil || s.Config.LastReload.Success {
		t.Fatalf("rejected reload changed the running set or reported success: %+v", s.Config.LastReload)
	}
}

func TestLocalProbeHasNoBreaker(t *testing.T) {
	w := newWorld()
	p := config.Probe{Name: "cfg", Kind: "local", Local: true, Policy: fastPolicy()}
	m := start(t, w, loaded(p))
	s := waitFor(t, m, "healthy", func(s *Snapshot) bool { return status(s, "cfg") == probes.Healthy })
	if s.Check("cfg").Breaker != "" || len(s.Breakers) != 0 {
		t.Fatalf("local probe got a breaker: %q, %d breakers", s.Check("cfg").Breaker, len(s.Breakers))
	}
}
