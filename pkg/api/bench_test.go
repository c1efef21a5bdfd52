package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

// benchProbeCounts are the sizes the handlers are measured at (issue 7: 10, 100 and 1,000 probes).
var benchProbeCounts = []int{10, 100, 1000}

// benchEndpoints are the endpoints whose per-request cost must not grow with the probe count.
var benchEndpoints = []string{"/readyz", "/startupz", "/livez", "/api/health", "/api/health/detailed", "/api/health/circuit-breakers"}

// healthyMonitor runs a monitor with n instantly healthy probes on a long interval and a long tick, so
// that nothing changes (and nothing allocates in the background) while a handler is measured.
func healthyMonitor(tb testing.TB, n int) *monitor.Monitor {
	tb.Helper()
	kinds := probes.Registry{"fake": {New: func(probes.Spec) (probes.Probe, error) {
		return probes.ProbeFunc(func(context.Context) (probes.Result, error) {
			return probes.Result{Status: probes.Healthy, Fields: map[string]any{"address": "127.0.0.1:1"}}, nil
		}), nil
	}}}
	pol := config.DefaultPolicy()
	pol.Interval = time.Hour
	ps := make([]config.Probe, n)
	for i := range ps {
		ps[i] = config.Probe{Name: fmt.Sprintf("dep-%04d", i), Kind: "fake", Critical: true, Policy: pol}
	}
	l := &config.Loaded{Source: "bench", SHA256: "bench", LoadedAt: time.Now(), Config: &config.Config{
		Scheduler: config.Scheduler{MaxConcurrentProbes: 16},
		Probes:    ps,
	}}
	m, err := monitor.New(l, monitor.Options{Kinds: kinds, Tick: time.Hour, Version: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	testkit.Eventually(tb, 30*time.Second, func() bool { s := m.Snapshot(); return s.Overall == probes.Healthy && !s.Starting },
		"%d probes healthy", n)
	// The last executions' changes are published up to PublishEvery later: wait until snapshots stop,
	// so that none is built (and no answer rebuilt) while a handler is measured.
	last, since := m.Snapshot(), time.Now()
	testkit.Eventually(tb, 30*time.Second, func() bool {
		if s := m.Snapshot(); s != last {
			last, since = s, time.Now()
		}
		return time.Since(since) > 3*monitor.DefaultPublishEvery
	}, "snapshots settled")
	return m
}

// discardWriter is a reusable ResponseWriter: the benchmark measures the handler, not a recorder.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }
func (w *discardWriter) WriteString(s string) (int, error) {
	w.n += len(s)
	return len(s), nil
}

func (w *discardWriter) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

// serveOnce returns a function that serves one GET path with h into a reused writer.
func serveOnce(tb testing.TB, h http.Handler, path string) func() {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := &discardWriter{h: http.Header{}}
	return func() {
		w.reset()
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			tb.Fatalf("GET %s: %d", path, w.code)
		}
	}
}

// BenchmarkHandler measures each endpoint's handler (gin routing included, no network) at 10, 100 and
// 1,000 probes. allocs/op must not grow with the probe count: responses are prepared once per snapshot.
func BenchmarkHandler(b *testing.B) {
	for _, n := range benchProbeCounts {
		m := healthyMonitor(b, n)
		h := NewHandler(m, Options{})
		for _, path := range benchEndpoints {
			b.Run(fmt.Sprintf("path=%s/probes=%d", path, n), func(b *testing.B) {
				serve := serveOnce(b, h, path)
				serve() // the first request after a snapshot change builds what the others reuse
				b.ReportAllocs()
				for b.Loop() {
					serve()
				}
			})
		}
	}
}

// TestHandlerAllocsIndependentOfProbeCount proves that the endpoints kubelets and load balancers poll
// are not built per request: a request at 1,000 probes allocates no more than one at 10 probes.
func TestHandlerAllocsIndependentOfProbeCount(t *testing.T) {
	small, large := healthyMonitor(t, 10), healthyMonitor(t, 1000)
	hs, hl := NewHandler(small, Options{}), NewHandler(large, Options{})
	for _, path := range benchEndpoints {
		t.Run(path, func(t *testing.T) {
			a10 := testing.AllocsPerRun(500, serveOnce(t, hs, path))
			a1000 := testing.AllocsPerRun(500, serveOnce(t, hl, path))
			// A response built per request at 1,000 probes would allocate thousands of times more; the
			// slack of 2 absorbs the race detector, under which sync.Pool (gin's contexts) drops items at
			// random, so that one run of 500 requests allocates a context more often than the other.
			if a1000 > a10+2 {
				t.Errorf("GET %s allocates %.0f times at 1,000 probes, %.0f at 10: the response is built per request", path, a1000, a10)
			}
		})
	}
}
