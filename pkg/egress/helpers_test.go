package egress

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/redact"
)

// upstream is a real HTTP server that counts its requests and answers with handler.
type upstream struct {
	*httptest.Server
	hits    atomic.Int64
	handler atomic.Pointer[http.HandlerFunc]
	stop    chan struct{} // closed when the test ends: handlers that hang return
}

// hang blocks until the request is canceled or the test ends.
func (u *upstream) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-u.stop:
	}
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{stop: make(chan struct{})}
	u.set(h)
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		(*u.handler.Load())(w, r)
	}))
	t.Cleanup(func() {
		close(u.stop)
		u.Close()
	})
	return u
}

func (u *upstream) set(h http.HandlerFunc) { u.handler.Store(&h) }

// testRoute is a route to upstream with a short timeout and one retry.
func testRoute(name, prefix, upstream string) config.EgressRoute {
	return config.EgressRoute{Name: name, Prefix: prefix, Upstream: upstream, Timeout: 5 * time.Second,
		Retry: config.Retry{MaxRetries: 1, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Jitter: 0.2}}
}

// harness is a proxy serving routes on a loopback listener, with its breakers and metrics.
type harness struct {
	proxy    *Proxy
	srv      *httptest.Server
	breakers *breakers.Registry
	metrics  *prometheus.Registry
	cfg      *config.Config
	secrets  *redact.Secrets
}

// breakerPolicy opens after 2 failures in a window of 2 and stays open long enough for any test.
var breakerPolicy = config.BreakerPolicy{FailureThreshold: 2, Window: 2, Delay: time.Minute, SuccessThreshold: 1}

func newHarness(t *testing.T, env map[string]string, routes ...config.EgressRoute) *harness {
	t.Helper()
	pol := config.DefaultPolicy()
	pol.Breaker = breakerPolicy
	h := &harness{breakers: breakers.NewRegistry(nil, nil), metrics: prometheus.NewRegistry(),
		cfg: &config.Config{Defaults: pol, Egress: &config.Egress{Routes: routes}}, secrets: &redact.Secrets{}}
	h.breakers.Sync(h.cfg)
	p, err := New(h.cfg.Egress, Options{Breakers: h.breakers.Get, Registerer: h.metrics, Secrets: h.secrets, LookupEnv: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	h.proxy = p
	// The listener as the agent runs it.
	h.srv = httptest.NewUnstartedServer(p)
	h.srv.Config = NewServer("", p, nil)
	h.srv.Start()
	t.Cleanup(func() { h.srv.Close(); p.Close() })
	return h
}

// do sends a request through the proxy and returns the answer with its body read.
func (h *harness) do(t *testing.T, method, path string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, h.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(b)
}

// envelope is the contract's error answer.
type envelope struct {
	Success   bool   `json:"success"`
	Timestamp string `json:"timestamp"`
	Error     struct {
		Code, Message, Breaker, Cause string
	} `json:"error"`
}

func decodeEnvelope(t *testing.T, body string) envelope {
	t.Helper()
	var e envelope
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Success || e.Error.Code == "" {
		t.Fatalf("not an error envelope: %q (%v)", body, err)
	}
	if _, err := time.Parse(time.RFC3339, e.Timestamp); err != nil {
		t.Errorf("timestamp %q: %v", e.Timestamp, err)
	}
	return e
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func newTLSUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(s.Close)
	return s
}

// newLoggedProxy serves routes, without breakers, through a proxy whose debug log goes to logs.
func newLoggedProxy(t *testing.T, logs io.Writer, routes ...config.EgressRoute) *httptest.Server {
	t.Helper()
	p, err := New(&config.Egress{Routes: routes},
		Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	return srv
}
