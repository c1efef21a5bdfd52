package breakers

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// How the test dependency answers.
const (
	answerOK       int32 = iota
	answerFail           // 500
	answerDegraded       // 200 with body "degraded"
	answerTooMany        // 429 with Retry-After: 7
	answerHang           // until the client goes away
	answerBlock          // until unblock() (or the client goes away)
)

// dependency is a real HTTP dependency that counts the requests it gets.
type dependency struct {
	srv     *httptest.Server
	answer  atomic.Int32
	hits    atomic.Int64
	release chan struct{}
	once    sync.Once

	mu    sync.Mutex
	times []time.Time // arrival of each request
}

func newDependency(t *testing.T) *dependency {
	t.Helper()
	d := &dependency{release: make(chan struct{})}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.times = append(d.times, time.Now())
		d.mu.Unlock()
		d.hits.Add(1)
		switch d.answer.Load() {
		case answerFail:
			w.WriteHeader(http.StatusInternalServerError)
		case answerDegraded:
			_, _ = io.WriteString(w, "degraded")
		case answerTooMany:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case answerHang, answerBlock:
			select {
			case <-r.Context().Done():
			case <-d.release:
			}
		}
	}))
	t.Cleanup(d.srv.Close)
	t.Cleanup(d.unblock) // runs before Close: no handler outlives the test
	return d
}

func (d *dependency) set(answer int32) { d.answer.Store(answer) }

func (d *dependency) unblock() { d.once.Do(func() { close(d.release) }) }

func (d *dependency) arrivals() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.times...)
}

// probe is a minimal http probe against d: non-2xx is an error, 429 carries Retry-After.
func (d *dependency) probe() probes.Probe {
	client := d.srv.Client()
	return probes.ProbeFunc(func(ctx context.Context) (probes.Result, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.srv.URL, nil)
		if err != nil {
			return probes.Result{}, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return probes.Result{}, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return probes.Result{}, err
		}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			return probes.Result{RetryAfter: time.Duration(secs) * time.Second}, fmt.Errorf("status %d", resp.StatusCode)
		case resp.StatusCode >= 300:
			return probes.Result{}, fmt.Errorf("status %d", resp.StatusCode)
		case string(body) == "degraded":
			return probes.Result{Status: probes.Degraded, Reason: "degraded"}, nil
		}
		return probes.Result{Status: probes.Healthy}, nil
	})
}

// testPolicy: no retry, generous timeout, a breaker that opens on 2 failures of the last 3 and stays
// open for a minute unless a test shortens it.
func testPolicy() config.Policy {
	return config.Policy{
		Timeout: 10 * time.Second,
		Breaker: config.BreakerPolicy{FailureThreshold: 2, Window: 3, Delay: time.Minute, SuccessThreshold: 2},
	}
}

// testConfig has one non-local probe per name, each with pol and the breaker named after the probe
// unless name is "probe:breaker".
func testConfig(pol config.Policy, names ...string) *config.Config {
	cfg := &config.Config{Defaults: pol}
	for _, n := range names {
		p := config.Probe{Name: n, Kind: "http", Policy: pol}
		for i := range n {
			if n[i] == ':' {
				p.Name, p.BreakerName = n[:i], n[i+1:]
			}
		}
		cfg.Probes = append(cfg.Probes, p)
	}
	return cfg
}

// oneBreaker returns a registry holding the breaker "dep" built from pol.
func oneBreaker(t *testing.T, pol config.Policy, onTransition func(Transition)) (*Registry, *Breaker) {
	t.Helper()
	reg := NewRegistry(onTransition, nil)
	reg.Sync(testConfig(pol, "dep"))
	br := reg.Get("dep")
	if br == nil {
		t.Fatal(`Sync did not create breaker "dep"`)
	}
	return reg, br
}

// transitions collects onTransition calls.
type transitions struct {
	mu   sync.Mutex
	list []string
}

func (tr *transitions) add(t Transition) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.list = append(tr.list, t.Breaker+":"+t.From+"->"+t.To)
}

func (tr *transitions) get() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.list...)
}

// async runs p.Check in a goroutine; the result arrives on the returned channel.
type outcome struct {
	res probes.Result
	err error
}

func async(ctx context.Context, p probes.Probe) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		res, err := p.Check(ctx)
		ch <- outcome{res, err}
	}()
	return ch
}

// await receives from ch or fails the test after a generous deadline.
func await(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(15 * time.Second):
		t.Fatal("guarded check did not return")
		return outcome{}
	}
}
