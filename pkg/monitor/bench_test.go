package monitor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// benchMonitor builds (does not run) a monitor with n probes, each with timelineLen healthy executions
// through its policies recorded: the steady state of a running agent, whose snapshot carries full
// timelines and breaker histories.
func benchMonitor(tb testing.TB, n int) *Monitor {
	tb.Helper()
	kinds := probes.Registry{"bench": {New: func(probes.Spec) (probes.Probe, error) {
		return probes.ProbeFunc(func(context.Context) (probes.Result, error) {
			return probes.Result{Status: probes.Healthy}, nil
		}), nil
	}}}
	pol := config.DefaultPolicy()
	ps := make([]config.Probe, n)
	for i := range ps {
		ps[i] = config.Probe{Name: fmt.Sprintf("dep-%04d", i), Kind: "bench", Critical: true, Policy: pol}
	}
	l := &config.Loaded{Source: "bench", SHA256: "bench", LoadedAt: time.Now(), Config: &config.Config{
		Scheduler: config.Scheduler{MaxConcurrentProbes: 16},
		Probes:    ps,
	}}
	m, err := New(l, Options{Kinds: kinds, Version: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.ordered {
		for range timelineLen {
			res, err := c.guarded.Check(context.Background()) // recorded in the breaker's history
			if err != nil {
				tb.Fatal(err)
			}
			res.Fields = map[string]any{"address": "127.0.0.1:5432"}
			c.record(time.Now(), res, nil, 300*time.Microsecond, nil)
		}
	}
	return m
}

// BenchmarkPublish measures building and swapping one snapshot at 10, 100 and 1,000 probes: the cost
// paid at most once per Options.PublishEvery, never per request. (Its documents are pkg/api's.)
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("probes=%d", n), func(b *testing.B) {
			m := benchMonitor(b, n)
			b.ReportAllocs()
			for b.Loop() {
				m.mu.Lock()
				m.publishLocked(time.Now())
				m.mu.Unlock()
			}
		})
	}
}

// BenchmarkHousekeepIdle measures the once-a-second tick when nothing changed: it must not rebuild.
func BenchmarkHousekeepIdle(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("probes=%d", n), func(b *testing.B) {
			m := benchMonitor(b, n)
			m.mu.Lock()
			m.publishLocked(time.Now())
			m.mu.Unlock()
			before := m.Snapshot()
			b.ReportAllocs()
			for b.Loop() {
				m.housekeep(time.Now())
			}
			if m.Snapshot() != before {
				b.Fatal("an idle tick rebuilt the snapshot")
			}
		})
	}
}

// BenchmarkPublishTick measures the steady state of probes on a 10s interval and the 1s tick: each
// snapshot follows a tenth of the probes having run once more (their timelines are taken again; the
// others' are reused).
func BenchmarkPublishTick(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("probes=%d", n), func(b *testing.B) {
			m := benchMonitor(b, n)
			next := 0
			b.ReportAllocs()
			for b.Loop() {
				m.mu.Lock()
				for range max(n/10, 1) {
					c := m.ordered[next%n]
					next++
					res, err := c.guarded.Check(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					c.record(time.Now(), res, nil, 300*time.Microsecond, nil)
				}
				m.publishLocked(time.Now())
				m.mu.Unlock()
			}
		})
	}
}
