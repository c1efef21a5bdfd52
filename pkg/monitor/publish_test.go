package monitor

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// instantMonitor runs a monitor whose n probes answer healthy at once, on an hour-long interval and an
// hour-long tick: anything published is published for a verdict change, never by the tick.
func instantMonitor(t *testing.T, n int) *Monitor {
	t.Helper()
	kinds := probes.Registry{"instant": instantKind}
	pol := config.DefaultPolicy()
	pol.Interval = time.Hour
	ps := make([]config.Probe, n)
	for i := range ps {
		ps[i] = config.Probe{Name: fmt.Sprintf("p%04d", i), Kind: "instant", Critical: true, Policy: pol}
	}
	m, err := New(loaded(ps...), Options{Kinds: kinds, Tick: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	runMonitor(t, m)
	return m
}

// instantKind's probes answer healthy at once.
var instantKind = probes.Kind{New: func(probes.Spec) (probes.Probe, error) {
	return probes.ProbeFunc(func(context.Context) (probes.Result, error) {
		return probes.Result{Status: probes.Healthy}, nil
	}), nil
}}

// runMonitor runs m until the test ends.
func runMonitor(t *testing.T, m *Monitor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func waitHealthy(t *testing.T, m *Monitor, within time.Duration) {
	t.Helper()
	testkit.EventuallyState(t, within, func() (bool, string) {
		s := m.Snapshot()
		return s.Overall == probes.Healthy && !s.Starting, fmt.Sprintf("overall %s, starting %t", s.Overall, s.Starting)
	}, "healthy")
}

// TestVerdictChangePublishedWithoutTick: a verdict change is published by the execution that made it
// (or the Run loop right after), not left for the next housekeeping tick.
func TestVerdictChangePublishedWithoutTick(t *testing.T) {
	m := instantMonitor(t, 3)
	waitHealthy(t, m, 15*time.Second)
}

// TestPublishBurstCoalesced: 600 probes turning healthy at once are published in far fewer snapshots
// than transitions (publishing one per transition made start-up quadratic), and the last snapshot
// shows every one of them.
func TestPublishBurstCoalesced(t *testing.T) {
	const n = 600
	m := instantMonitor(t, n)
	waitHealthy(t, m, 60*time.Second)
	if got := m.publishes.Load(); got > n/2 {
		t.Errorf("%d snapshots built for %d transitions: the burst was not coalesced", got, n)
	}
	s := m.Snapshot()
	for i := range s.Checks {
		if s.Checks[i].Status != probes.Healthy {
			t.Fatalf("%s is %s in the last snapshot", s.Checks[i].Name, s.Checks[i].Status)
		}
	}
}

// TestChangesCoalesced: executions that keep their verdicts are shown, but by at most one snapshot per
// Options.PublishEvery, and that snapshot has their new lastChecked.
func TestChangesCoalesced(t *testing.T) {
	kinds := probes.Registry{"instant": instantKind}
	pol := config.DefaultPolicy()
	pol.Interval = 5 * time.Millisecond
	const every = 300 * time.Millisecond
	var executions atomic.Int64
	m, err := New(loaded(config.Probe{Name: "p", Kind: "instant", Critical: true, Policy: pol}),
		Options{Kinds: kinds, Tick: 10 * time.Millisecond, PublishEvery: every, OnExecution: func(Execution) { executions.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	runMonitor(t, m)
	waitHealthy(t, m, 15*time.Second)

	s0, n0 := m.Snapshot(), executions.Load()
	testkit.Eventually(t, 15*time.Second, func() bool { return m.Snapshot() != s0 },
		"executions that kept the verdict shown in a new snapshot")
	s1, n1 := m.Snapshot(), executions.Load()
	if gap := s1.At.Sub(s0.At); gap < every {
		t.Errorf("a snapshot came %s after the last one; want at least %s", gap, every)
	}
	if !s1.Check("p").LastChecked.After(s0.Check("p").LastChecked) {
		t.Errorf("the new snapshot does not show a newer execution")
	}
	if n1-n0 < 2 {
		t.Errorf("%d executions between two snapshots; want them coalesced", n1-n0)
	}
}
