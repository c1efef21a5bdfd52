package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// referencePrepare is prepare as it was before pre-rendering (json.Marshal of maps): the rendered
// bytes must stay exactly these.
func referencePrepare(s *Snapshot, legacy json.RawMessage, legacyName string) (health, detailedData, breakersData []byte, err error) {
	err = referenceRender(s, legacy, legacyName, &health, &detailedData, &breakersData)
	return health, detailedData, breakersData, err
}

func referenceRender(s *Snapshot, legacy json.RawMessage, legacyName string, healthData, detailedData, breakersData *[]byte) error {
	var err error
	bsum := breakerSummary(s.Breakers)

	status := legacyStatus(s)
	services := make(map[string]probes.Status, len(s.Checks))
	var total, slowest time.Duration
	slowestName := ""
	for i := range s.Checks {
		c := &s.Checks[i]
		services[c.Name] = c.Status
		total += c.Duration
		if c.Duration >= slowest {
			slowest, slowestName = c.Duration, c.Name
		}
	}
	open := []string{}
	for _, b := range s.Breakers {
		if b.State == breakers.Open {
			open = append(open, b.Name)
		}
	}
	health := map[string]any{
		"status": status,
		"legacy": legacy,
		"enhanced": map[string]any{
			"overall":  s.Overall,
			"services": services,
		},
		"circuitBreakers": map[string]any{"total": bsum.Total, "healthy": bsum.Healthy, "open": open},
		"performance": map[string]any{
			"probes":          len(s.Checks),
			"totalProbeMs":    ms(total),
			"slowestProbe":    slowestName,
			"slowestProbeMs":  ms(slowest),
			"snapshotBuiltAt": s.At,
		},
		"uptime":  s.At.Sub(s.StartedAt).Round(time.Second).Seconds(),
		"version": s.Version,
	}
	if legacy == nil {
		health["legacy"] = nil
		health["legacyError"] = legacyError(s, legacyName)
	}
	if *healthData, err = json.Marshal(health); err != nil {
		return fmt.Errorf("render /api/health: %w", err)
	}
	s.HealthCode = http.StatusOK
	if status == "error" || status == "starting" {
		s.HealthCode = http.StatusServiceUnavailable
	}

	svc := make(map[string]map[string]any, len(s.Checks))
	deps := make(map[string][]string, len(s.Checks))
	for i := range s.Checks {
		c := &s.Checks[i]
		m := make(map[string]any, len(c.Fields)+16)
		maps.Copy(m, c.Fields) // the fixed members below win over a kind's field of the same name
		m["status"] = c.Status
		m["kind"] = c.Kind
		m["critical"] = c.Critical
		m["duration"] = ms(c.Duration)
		m["lastChecked"] = timeOrNil(c.LastChecked)
		m["lastSuccess"] = timeOrNil(c.LastSuccess)
		m["lastTransition"] = timeOrNil(c.LastTransition)
		m["consecutiveFailures"] = c.ConsecutiveFailures
		m["transitions"] = c.Transitions
		m["flaps"] = c.Flaps
		m["reason"] = c.Reason
		m["breaker"] = nilIfEmpty(c.Breaker)
		m["dependsOn"] = nonNil(c.DependsOn)
		m["blockedBy"] = nilIfEmpty(c.BlockedBy)
		m["timeline"] = c.Timeline
		svc[c.Name] = m
		deps[c.Name] = nonNil(c.DependsOn)
	}
	detailed := map[string]any{
		"health": map[string]any{
			"overall":  s.Overall,
			"services": svc,
		},
		"container": map[string]any{
			"probes":       len(s.Checks),
			"order":        nonNil(s.Order),
			"dependencies": deps,
		},
		"circuitBreakers": bsum,
		"config":          configJSON(s.Config),
		"shuttingDown":    s.ShuttingDown,
	}
	if *detailedData, err = json.Marshal(detailed); err != nil {
		return fmt.Errorf("render /api/health/detailed: %w", err)
	}
	s.DetailedCode = http.StatusOK
	if s.Overall == probes.Unhealthy {
		s.DetailedCode = http.StatusServiceUnavailable
	}

	bm := make(map[string]breakerJSON, len(s.Breakers))
	for _, b := range s.Breakers {
		bm[b.Name] = toBreakerJSON(b)
	}
	if *breakersData, err = json.Marshal(map[string]any{"summary": bsum, "breakers": bm}); err != nil {
		return fmt.Errorf("render /api/health/circuit-breakers: %w", err)
	}
	return nil
}

// scripted is a probe whose outcome the test sets.
type scripted struct {
	fail   atomic.Bool
	fields map[string]any
}

func (p *scripted) Check(context.Context) (probes.Result, error) {
	if p.fail.Load() {
		return probes.Result{}, errors.New("connection refused <&>")
	}
	return probes.Result{Status: probes.Healthy, Fields: p.fields}, nil
}

// TestPreparedMatchesReference: snapshots assembled from pre-rendered members are byte for byte what
// encoding/json makes of the whole, through changes, staleness, blocks, open breakers and a reload.
func TestPreparedMatchesReference(t *testing.T) {
	ps := map[string]*scripted{}
	kinds := probes.Registry{"scripted": {New: func(spec probes.Spec) (probes.Probe, error) {
		p := &scripted{fields: map[string]any{"note": "<b>" + spec.Name + "</b>", "status": "overridden", "n": 1}}
		ps[spec.Name] = p
		return p, nil
	}}}
	pol := config.DefaultPolicy()
	pol.Retry.MaxRetries = 0
	probe := func(name string, deps ...string) config.Probe {
		return config.Probe{Name: name, Kind: "scripted", Critical: name != "zeta", DependsOn: deps, Policy: pol}
	}
	l := loaded(probe("zeta"), probe("alpha"), probe("mid", "alpha"), probe("beta"))
	l.Config.Probes[0].Legacy = true
	m, err := New(l, Options{Kinds: kinds, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		m.mu.Lock()
		m.publishLocked(time.Now())
		m.mu.Unlock()
		s := m.Snapshot()
		ref := *s
		refHealth, refDetailed, refBreakers, err := referencePrepare(&ref, m.LegacyBody(), m.legacyName)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []struct {
			name      string
			got, want []byte
		}{
			{"/api/health", s.HealthData, refHealth},
			{"/api/health/detailed", s.DetailedData(), refDetailed},
			{"/api/health/circuit-breakers", s.BreakersData(), refBreakers},
		} {
			if !bytes.Equal(d.got, d.want) {
				t.Errorf("%s: %s differs from encoding/json's:\n got %s\nwant %s", step, d.name, d.got, d.want)
			}
		}
		if d1, d2 := s.DetailedData(), s.DetailedData(); len(d1) == 0 || &d1[0] != &d2[0] {
			t.Errorf("%s: the detailed document is joined again for a second request", step)
		}
		if s.HealthCode != ref.HealthCode || s.DetailedCode != ref.DetailedCode {
			t.Errorf("%s: codes %d/%d, want %d/%d", step, s.HealthCode, s.DetailedCode, ref.HealthCode, ref.DetailedCode)
		}
	}
	run := func(name string) {
		m.mu.Lock()
		c := m.checks[name]
		m.mu.Unlock()
		m.execute(context.Background(), c)
	}

	check("nothing run yet")
	for _, n := range []string{"zeta", "alpha", "mid", "beta"} {
		run(n)
	}
	check("all healthy")
	check("unchanged")
	ps["alpha"].fail.Store(true)
	for range 4 { // failuresBeforeUnhealthy 2, breaker 3 of 5: opens
		run("alpha")
	}
	run("mid")
	check("alpha unhealthy, breaker open, mid blocked")
	m.mu.Lock()
	m.checks["beta"].lastChecked = time.Now().Add(-time.Hour) // stale
	m.mu.Unlock()
	check("beta stale")
	ps["alpha"].fail.Store(false)
	m.setConfigInfo(l, probes.Reload{At: time.Now(), Success: true})
	check("reload recorded")

	// A reload that changes dependencies but not names: data.container must follow.
	l2 := loaded(probe("zeta"), probe("alpha", "beta"), probe("mid"), probe("beta"))
	checks, err := m.build(l2, m.checks)
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.install(l2, checks)
	m.mu.Unlock()
	check("after reload")
}

// TestAssemblyJoinedOnceUnderConcurrency: requests racing for a fresh snapshot's document all get the
// one joined copy.
func TestAssemblyJoinedOnceUnderConcurrency(t *testing.T) {
	m := benchMonitor(t, 50)
	m.mu.Lock()
	m.publishLocked(time.Now())
	m.mu.Unlock()
	s := m.Snapshot()
	const n = 16
	got := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i] = s.BreakersData() })
	}
	wg.Wait()
	for i := range got {
		if len(got[i]) == 0 || &got[i][0] != &got[0][0] {
			t.Fatalf("request %d got another copy of the document", i)
		}
	}
	if !json.Valid(got[0]) {
		t.Fatalf("joined document is not JSON: %.200s", got[0])
	}
}
