package monitor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/breakers"
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

// BenchmarkPublish measures building and swapping one snapshot (all three JSON bodies prepared) at 10,
// 100 and 1,000 probes: the cost paid once per change, never per request.
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
			s := m.Snapshot()
			b.ReportMetric(float64(len(s.HealthData)+len(s.DetailedData())+len(s.BreakersData())), "bytes/snapshot")
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
// snapshot follows a tenth of the probes having run once more (their members are rendered again; the
// others are reused).
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

// BenchmarkRenderMember measures rendering one probe's member of the detailed document and one
// breaker's member again after one more execution (what each execution costs a running agent), by the
// appenders and by encoding/json, whose output they reproduce.
func BenchmarkRenderMember(b *testing.B) {
	const executions = 64
	now := time.Now()
	points := make([]Point, timelineLen+executions)
	history := make([]breakers.Execution, timelineLen+executions)
	for i := range points {
		at := now.Add(time.Duration(i) * 10 * time.Second)
		points[i] = Point{At: at, Status: probes.Healthy}
		history[i] = breakers.Execution{At: at, Outcome: "success", Duration: 1234 * time.Microsecond}
	}
	views := make([]*CheckView, executions)
	stats := make([]*breakers.Stats, executions)
	for i := range executions {
		at := points[timelineLen+i-1].At
		views[i] = &CheckView{
			Name: "dep-0001", Kind: "http", Critical: true, Status: probes.Healthy, Duration: 1234 * time.Microsecond,
			LastChecked: at, LastSuccess: at, LastTransition: now, Transitions: 1, Breaker: "dep-0001",
			DependsOn: []string{"dep-0000"}, Timeline: points[i : timelineLen+i],
			Fields: map[string]any{"url": "http://127.0.0.1:8080/health?full=1&x=<y>", "statusCode": 200, "bodyBytes": 512},
		}
		stats[i] = &breakers.Stats{
			Name: "dep-0001", State: breakers.Closed, SuccessRate: 100, Executions: uint(i), Successes: uint(i),
			Probes: []string{"dep-0001"}, History: history[i : timelineLen+i],
		}
	}
	b.Run("check/appender", func(b *testing.B) {
		b.ReportAllocs()
		var r renderedCheck
		i := 0
		for b.Loop() {
			next, err := serviceJSON(views[i%executions], &r)
			if err != nil {
				b.Fatal(err)
			}
			r = next
			i++
		}
	})
	b.Run("check/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			v := views[i%executions]
			if _, err := referenceMember(v.Name, referenceServiceMap(v)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("breaker/appender", func(b *testing.B) {
		b.ReportAllocs()
		var r renderedBreaker
		i := 0
		for b.Loop() {
			frag, h, err := breakerMember(stats[i%executions], &r)
			if err != nil {
				b.Fatal(err)
			}
			r.frag, r.history = frag, h
			i++
		}
	})
	b.Run("breaker/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s := stats[i%executions]
			if _, err := referenceMember(s.Name, toBreakerJSON(*s)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
