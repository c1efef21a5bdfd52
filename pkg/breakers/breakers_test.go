package breakers

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

func TestBreakerOpensAfterFailureThreshold(t *testing.T) {
	// Each step: F the dependency fails, S it answers, D it answers degraded; want is the state after it.
	tests := []struct {
		name      string
		threshold int
		window    int
		steps     string
		want      []string
	}{
		{"2 of 3, consecutive", 2, 3, "FF", []string{Closed, Open}},
		{"2 of 3, a success between", 2, 3, "FSF", []string{Closed, Closed, Open}},
		{"2 of 3, first failure slid out of the window", 2, 3, "FSSFSF",
			[]string{Closed, Closed, Closed, Closed, Closed, Open}},
		{"3 of 5", 3, 5, "FFSF", []string{Closed, Closed, Closed, Open}},
		{"degraded is a success", 2, 2, "FDFD", []string{Closed, Closed, Closed, Closed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dep := newDependency(t)
			pol := testPolicy()
			pol.Breaker.FailureThreshold, pol.Breaker.Window = tt.threshold, tt.window
			_, br := oneBreaker(t, pol, nil)
			p := Guard(dep.probe(), pol, br, nil, GuardOptions{})

			for i, step := range tt.steps {
				dep.set(map[rune]int32{'F': answerFail, 'S': answerOK, 'D': answerDegraded}[step])
				res, err := p.Check(t.Context())
				if (step == 'F') != (err != nil) {
					t.Fatalf("step %d (%c): err = %v", i, step, err)
				}
				if step == 'D' && res.Status != probes.Degraded {
					t.Fatalf("step %d: status = %q, want the probe's degraded result", i, res.Status)
				}
				if got := br.Stats().State; got != tt.want[i] {
					t.Fatalf("step %d (%c): state = %s, want %s", i, step, got, tt.want[i])
				}
			}
			if tt.want[len(tt.want)-1] != Open {
				return
			}

			// Open: the next execution is rejected without a request.
			before := dep.hits.Load()
			_, err := p.Check(t.Context())
			if !errors.Is(err, circuitbreaker.ErrOpen) {
				t.Fatalf("err = %v, want it to wrap circuitbreaker.ErrOpen", err)
			}
			if !regexp.MustCompile(`^circuit breaker "dep" open after \d failures \(last: status 500\); next trial in \S+$`).MatchString(err.Error()) {
				t.Errorf("err = %q, want it to say the breaker is open and when it retries", err)
			}
			if got := dep.hits.Load(); got != before {
				t.Errorf("dependency got %d requests while the breaker was open", got-before)
			}
			s := br.Stats()
			if s.RetryDue || s.RemainingDelay <= 0 || s.RemainingDelay > time.Minute {
				t.Errorf("RetryDue = %v, RemainingDelay = %s: want not due, within the 1m delay", s.RetryDue, s.RemainingDelay)
			}
			if last := s.History[len(s.History)-1]; last.Outcome != OutcomeRejected || last.Error != err.Error() {
				t.Errorf("last history entry = %+v, want the rejection", last)
			}
			if s.Transitions != 1 || s.LastStateChange.IsZero() {
				t.Errorf("Transitions = %d, LastStateChange = %v; want 1 and set", s.Transitions, s.LastStateChange)
			}
		})
	}
}

func TestStatsCounts(t *testing.T) {
	dep := newDependency(t)
	pol := testPolicy()
	pol.Breaker.FailureThreshold, pol.Breaker.Window = 3, 4
	_, br := oneBreaker(t, pol, nil)
	p := Guard(dep.probe(), pol, br, nil, GuardOptions{})

	for _, a := range []int32{answerOK, answerFail, answerDegraded, answerFail} {
		dep.set(a)
		_, _ = p.Check(t.Context())
	}
	s := br.Stats()
	want := Stats{Name: "dep", State: Closed, FailureRate: 50, SuccessRate: 50, Executions: 4, Failures: 2, Successes: 2}
	if s.Name != want.Name || s.State != want.State || s.FailureRate != want.FailureRate ||
		s.SuccessRate != want.SuccessRate || s.Executions != want.Executions || s.Failures != want.Failures ||
		s.Successes != want.Successes || s.RetryDue || s.RemainingDelay != 0 || s.Transitions != 0 {
		t.Errorf("stats = %+v, want %+v", s, want)
	}
	if !slices.Equal(s.Probes, []string{"dep"}) {
		t.Errorf("Probes = %v", s.Probes)
	}
	var outcomes []string
	for _, e := range s.History {
		outcomes = append(outcomes, e.Outcome)
	}
	if want := []string{"success", "failure", "success", "failure"}; !slices.Equal(outcomes, want) {
		t.Errorf("history outcomes = %v, want %v", outcomes, want)
	}
	if e := s.History[1]; e.Error != "status 500" || e.Duration <= 0 || e.At.IsZero() {
		t.Errorf("failure entry = %+v, want the probe's error, a duration and a time", e)
	}
}

// TestHistoryShared: the history keeps the last HistorySize executions in order across its buffer's
// renewals, and a slice handed out earlier never changes afterwards (Stats shares it, not a copy).
func TestHistoryShared(t *testing.T) {
	var h history
	var handed [][]Attempt
	var want [][]Attempt
	for i := range 3*HistorySize + 7 {
		h.add(Attempt{Outcome: strconv.Itoa(i)})
		got := h.list()
		if len(got) != min(i+1, HistorySize) || got[len(got)-1].Outcome != strconv.Itoa(i) {
			t.Fatalf("after %d executions: %d entries ending with %q", i+1, len(got), got[len(got)-1].Outcome)
		}
		for j, e := range got {
			if w := strconv.Itoa(i + 1 - len(got) + j); e.Outcome != w {
				t.Fatalf("after %d executions: entry %d is %q, want %q", i+1, j, e.Outcome, w)
			}
		}
		if cap(got) != len(got) {
			t.Fatalf("a handed-out history has room to append (cap %d, len %d)", cap(got), len(got))
		}
		handed, want = append(handed, got), append(want, slices.Clone(got))
	}
	for i := range handed {
		if !slices.Equal(handed[i], want[i]) {
			t.Fatalf("the history handed out after %d executions changed later", i+1)
		}
	}
}

// openBreaker makes p's breaker open by failing the dependency; it leaves the dependency failing.
func openBreaker(t *testing.T, dep *dependency, p probes.Probe, br *Breaker) {
	t.Helper()
	dep.set(answerFail)
	for range 10 {
		if br.Stats().State == Open {
			return
		}
		_, _ = p.Check(t.Context())
	}
	t.Fatalf("breaker did not open: %+v", br.Stats())
}

func TestOpenBreakerReportsRetryDueWithoutACall(t *testing.T) {
	dep := newDependency(t)
	pol := testPolicy()
	pol.Breaker.Delay = 100 * time.Millisecond
	_, br := oneBreaker(t, pol, nil)
	p := Guard(dep.probe(), pol, br, nil, GuardOptions{})
	if d := br.RetryIn(); d != 0 || !br.IsClosed() {
		t.Errorf("RetryIn = %s, IsClosed = %v while closed, want 0 and true", d, br.IsClosed())
	}
	openBreaker(t, dep, p, br)
	if br.IsClosed() {
		t.Error("IsClosed = true with the breaker open")
	}
	if d := br.RetryIn(); d <= 0 || d > pol.Breaker.Delay {
		t.Errorf("RetryIn = %s just after opening, want within the %s delay", d, pol.Breaker.Delay)
	}
	hits := dep.hits.Load()

	testkit.Eventually(t, 15*time.Second, func() bool { return br.Stats().RetryDue }, "the retry due")
	s := br.Stats()
	if s.State != Open || s.RemainingDelay != 0 {
		t.Errorf("state %s, remaining %s: want OPEN (failsafe half-opens lazily) with nothing remaining", s.State, s.RemainingDelay)
	}
	if d := br.RetryIn(); d != 0 {
		t.Errorf("RetryIn = %s with the retry due, want 0", d)
	}
	if got := dep.hits.Load(); got != hits {
		t.Errorf("reporting stats made %d requests", got-hits)
	}
}

func TestHalfOpen(t *testing.T) {
	tests := []struct {
		name      string
		trials    []int32 // answers for the trial executions once the retry is due
		wantState string
		wantTrans []string
	}{
		{
			name:      "closes after successThreshold successes",
			trials:    []int32{answerOK, answerDegraded},
			wantState: Closed,
			wantTrans: []string{"dep:CLOSED->OPEN", "dep:OPEN->HALF_OPEN", "dep:HALF_OPEN->CLOSED"},
		},
		{
			name:      "re-opens on a failed trial",
			trials:    []int32{answerOK, answerFail},
			wantState: Open,
			wantTrans: []string{"dep:CLOSED->OPEN", "dep:OPEN->HALF_OPEN", "dep:HALF_OPEN->OPEN"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dep := newDependency(t)
			pol := testPolicy()
			pol.Breaker.Delay = 100 * time.Millisecond
			var tr transitions
			_, br := oneBreaker(t, pol, tr.add)
			p := Guard(dep.probe(), pol, br, nil, GuardOptions{})
			openBreaker(t, dep, p, br)
			testkit.Eventually(t, 15*time.Second, func() bool { return br.Stats().RetryDue }, "the retry due")

			for i, a := range tt.trials {
				dep.set(a)
				hits := dep.hits.Load()
				_, err := p.Check(t.Context())
				if (a == answerFail) != (err != nil) {
					t.Fatalf("trial %d: err = %v", i, err)
				}
				if got := dep.hits.Load(); got != hits+1 {
					t.Fatalf("trial %d: %d requests, want 1 (a trial touches the dependency)", i, got-hits)
				}
				if i == 0 {
					if s := br.Stats().State; s != HalfOpen {
						t.Fatalf("after the first successful trial: state %s, want HALF_OPEN", s)
					}
				}
			}
			if got := br.Stats().State; got != tt.wantState {
				t.Errorf("state = %s, want %s", got, tt.wantState)
			}
			if got := tr.get(); !slices.Equal(got, tt.wantTrans) {
				t.Errorf("transitions = %v, want %v", got, tt.wantTrans)
			}
			if got := br.Stats().Transitions; got != uint64(len(tt.wantTrans)) {
				t.Errorf("Transitions = %d, want %d", got, len(tt.wantTrans))
			}
			if tt.wantState == Open {
				hits := dep.hits.Load()
				if _, err := p.Check(t.Context()); !errors.Is(err, circuitbreaker.ErrOpen) {
					t.Errorf("after re-opening: err = %v, want a rejection", err)
				}
				if dep.hits.Load() != hits {
					t.Error("re-opened breaker touched the dependency")
				}
			}
		})
	}
}

func TestHalfOpenRejectsBeyondTrialPermits(t *testing.T) {
	dep := newDependency(t)
	pol := testPolicy()
	pol.Breaker.Delay = 100 * time.Millisecond
	pol.Breaker.SuccessThreshold = 1 // one trial at a time
	_, br := oneBreaker(t, pol, nil)
	p := Guard(dep.probe(), pol, br, nil, GuardOptions{})
	openBreaker(t, dep, p, br)
	testkit.Eventually(t, 15*time.Second, func() bool { return br.Stats().RetryDue }, "the retry due")

	dep.set(answerBlock)
	hits := dep.hits.Load()
	trial := async(t.Context(), p)
	testkit.Eventually(t, 15*time.Second, func() bool { return dep.hits.Load() == hits+1 }, "the trial reached the dependency")

	_, err := p.Check(t.Context())
	var rej *RejectedError
	if !errors.As(err, &rej) || !rej.HalfOpen || !errors.Is(err, circuitbreaker.ErrOpen) {
		t.Fatalf("err = %v, want a half-open rejection wrapping ErrOpen", err)
	}
	if err.Error() != `circuit breaker "dep" half-open, trial in progress (last: status 500)` {
		t.Errorf("err = %q", err)
	}
	if dep.hits.Load() != hits+1 {
		t.Error("the rejected execution touched the dependency")
	}

	dep.unblock()
	if o := await(t, trial); o.err != nil {
		t.Fatalf("trial: %v", o.err)
	}
	if got := br.Stats().State; got != Closed {
		t.Errorf("state = %s, want CLOSED after the successful trial", got)
	}
}

func TestOnTransitionRunsWithoutLocks(t *testing.T) {
	dep := newDependency(t)
	pol := testPolicy()
	var reg *Registry
	seen := make(chan Stats, 10)
	reg, br := oneBreaker(t, pol, func(tr Transition) {
		// Would deadlock if failsafe, the registry or the breaker held a lock here.
		all := reg.Stats()
		reg.Sync(testConfig(pol, "dep"))
		seen <- all[0]
	})
	p := Guard(dep.probe(), pol, br, nil, GuardOptions{})
	dep.set(answerFail)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = p.Check(t.Context())
		_, _ = p.Check(t.Context())
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("execution deadlocked in onTransition")
	}
	select {
	case s := <-seen:
		if s.State != Open {
			t.Errorf("state seen from the callback = %s, want OPEN", s.State)
		}
	default:
		t.Fatal("onTransition was not called")
	}
}

func TestHistoryKeepsTheLast20(t *testing.T) {
	pol := testPolicy()
	pol.Breaker.FailureThreshold, pol.Breaker.Window = 100, 100 // never opens here
	_, br := oneBreaker(t, pol, nil)
	n := 0
	p := Guard(probes.ProbeFunc(func(context.Context) (probes.Result, error) {
		n++
		return probes.Result{}, fmt.Errorf("failure %d", n)
	}), pol, br, nil, GuardOptions{})

	for range 25 {
		_, _ = p.Check(t.Context())
	}
	h := br.Stats().History
	if len(h) != HistorySize {
		t.Fatalf("history has %d entries, want %d", len(h), HistorySize)
	}
	for i, e := range h {
		if want := fmt.Sprintf("failure %d", i+6); e.Error != want {
			t.Errorf("history[%d].Error = %q, want %q (oldest first)", i, e.Error, want)
		}
		if i > 0 && e.At.Before(h[i-1].At) {
			t.Errorf("history[%d] is older than history[%d]", i, i-1)
		}
	}
}

func TestSharedBreaker(t *testing.T) {
	depA, depB := newDependency(t), newDependency(t)
	pol := testPolicy()
	reg := NewRegistry(nil, nil)
	reg.Sync(testConfig(pol, "b:shared", "a:shared"))
	br := reg.Get("shared")
	if br == nil || reg.Get("a") != nil || reg.Get("b") != nil {
		t.Fatalf("registry: %+v", reg.Stats())
	}
	a := Guard(depA.probe(), pol, br, nil, GuardOptions{})
	b := Guard(depB.probe(), pol, br, nil, GuardOptions{})

	openBreaker(t, depA, a, br)
	_, err := b.Check(t.Context())
	if !errors.Is(err, circuitbreaker.ErrOpen) || !regexp.MustCompile(`"shared" open`).MatchString(err.Error()) {
		t.Fatalf("b: err = %v, want the shared breaker's rejection", err)
	}
	if depB.hits.Load() != 0 {
		t.Errorf("b's dependency got %d requests", depB.hits.Load())
	}
	if got := br.Stats().Probes; !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Probes = %v, want [a b]", got)
	}
}

func TestSync(t *testing.T) {
	dep := newDependency(t)
	pol := testPolicy()
	var tr transitions
	reg := NewRegistry(tr.add, nil)
	reg.Sync(testConfig(pol, "keep", "change", "gone"))
	keep, change := reg.Get("keep"), reg.Get("change")
	pKeep := Guard(dep.probe(), pol, keep, nil, GuardOptions{})
	pChange := Guard(dep.probe(), pol, change, nil, GuardOptions{})
	openBreaker(t, dep, pKeep, keep)
	openBreaker(t, dep, pChange, change)
	keepHistory := len(keep.Stats().History)

	changed := pol
	changed.Breaker.Delay = 2 * time.Minute
	cfg := testConfig(pol, "keep", "other:keep", "new")
	cfg.Probes = append(cfg.Probes, testConfig(changed, "change").Probes...)
	cfg.Probes = append(cfg.Probes, config.Probe{Name: "memory", Kind: "memory", Local: true})
	reg.Sync(cfg)

	if reg.Get("keep") != keep || reg.Get("change") != change {
		t.Fatal("Sync replaced a breaker object; guarded probes would keep using the old one")
	}
	if s := keep.Stats(); s.State != Open || len(s.History) != keepHistory || s.Transitions != 1 {
		t.Errorf("unchanged breaker: %+v, want OPEN with its history kept", s)
	}
	if got := keep.Stats().Probes; !slices.Equal(got, []string{"keep", "other"}) {
		t.Errorf("unchanged breaker probes = %v", got)
	}
	if s := change.Stats(); s.State != Closed || len(s.History) != 0 || s.Transitions != 0 || s.Executions != 0 {
		t.Errorf("changed breaker: %+v, want a fresh CLOSED breaker", s)
	}
	if reg.Get("gone") != nil || reg.Get("memory") != nil || reg.Get("new") == nil {
		t.Errorf("registry holds %v", names(reg.Stats()))
	}
	if got, want := names(reg.Stats()), []string{"change", "keep", "new"}; !slices.Equal(got, want) {
		t.Errorf("Stats names = %v, want %v", got, want)
	}
	if got, want := tr.get(), []string{"keep:CLOSED->OPEN", "change:CLOSED->OPEN", "change:OPEN->CLOSED"}; !slices.Equal(got, want) {
		t.Errorf("transitions = %v, want %v", got, want)
	}

	// The probe guarded before the reload reaches the dependency again through the rebuilt breaker.
	hits := dep.hits.Load()
	dep.set(answerOK)
	if _, err := pChange.Check(t.Context()); err != nil || dep.hits.Load() != hits+1 {
		t.Errorf("after rebuild: err = %v, requests %d; want a real, successful check", err, dep.hits.Load()-hits)
	}
	if _, err := pKeep.Check(t.Context()); !errors.Is(err, circuitbreaker.ErrOpen) {
		t.Errorf("kept open breaker: err = %v, want a rejection", err)
	}

	reg.Sync(nil)
	if len(reg.Stats()) != 0 {
		t.Errorf("Sync(nil) left %v", names(reg.Stats()))
	}
}

func names(stats []Stats) []string {
	var out []string
	for _, s := range stats {
		out = append(out, s.Name)
	}
	return out
}

func TestRejectedErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  RejectedError
		want string
	}{
		{"whole seconds", RejectedError{Breaker: "figma-api", RetryIn: 12 * time.Second}, `circuit breaker "figma-api" open; next trial in 12s`},
		{"rounds up", RejectedError{Breaker: "figma-api", RetryIn: 11200 * time.Millisecond}, `circuit breaker "figma-api" open; next trial in 12s`},
		{"under a second", RejectedError{Breaker: "app", RetryIn: 150200 * time.Microsecond}, `circuit breaker "app" open; next trial in 151ms`},
		{"due", RejectedError{Breaker: "app"}, `circuit breaker "app" open; next trial due`},
		{"with the cause", RejectedError{Breaker: "app", RetryIn: 12 * time.Second, Failures: 3,
			Cause: "dial tcp 127.0.0.1:3007: connect: connection refused", CauseSource: "app"},
			`circuit breaker "app" open after 3 failures (last: dial tcp 127.0.0.1:3007: connect: connection refused); next trial in 12s`},
		{"from real traffic", RejectedError{Breaker: "figma-api", RetryIn: time.Second, Failures: 1, Cause: "status 502",
			CauseSource: TrafficSource + "figma"},
			`circuit breaker "figma-api" open after 1 failure (last, from real traffic on egress route "figma": status 502); next trial in 1s`},
		{"half-open", RejectedError{Breaker: "app", HalfOpen: true, Cause: "timed out"},
			`circuit breaker "app" half-open, trial in progress (last: timed out)`},
		{"half-open", RejectedError{Breaker: "app", HalfOpen: true}, `circuit breaker "app" half-open, trial in progress`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(&tt.err, circuitbreaker.ErrOpen) {
				t.Error("does not wrap circuitbreaker.ErrOpen")
			}
		})
	}
}
