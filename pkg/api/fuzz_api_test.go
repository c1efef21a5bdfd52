package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/api"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

// fuzzToken is server.detailsToken in the fuzz target.
const fuzzToken = "5d2f8a1c7e4b9d3a6f0c2e8b1d5a7f3c"

// kubeLine is every line a kube-style endpoint may write: a request cannot add lines of its own.
var kubeLine = regexp.MustCompile(`^(ok|\[\+\][A-Za-z0-9_-]+ (ok|ok \(.*\)|excluded: ok)|\[-\][A-Za-z0-9_-]+ failed: .*|` +
	`warn: some health checks cannot be excluded: no matches for ".*|no (livez|readyz|startupz) check named ".*"|` +
	`(livez|readyz|startupz) check (passed|failed))$`)

// fuzzHandler serves a monitor that has settled on a mixed picture: a healthy critical probe, an
// unhealthy non-critical one whose reason spans lines, and one blocked by it.
func fuzzHandler(f *testing.F) http.Handler {
	kinds := probes.Registry{"fake": {New: func(spec probes.Spec) (probes.Probe, error) {
		return probes.ProbeFunc(func(context.Context) (probes.Result, error) {
			if spec.Name == "down" {
				return probes.Result{}, errors.New("connection refused\n[+]injected ok")
			}
			return probes.Result{Status: probes.Healthy, Body: json.RawMessage(`{"status":"ok"}`)}, nil
		}), nil
	}}}
	pol := config.Policy{Interval: time.Hour, Timeout: time.Second, FailuresBeforeUnhealthy: 1, SuccessesBeforeHealthy: 1,
		Breaker: config.BreakerPolicy{FailureThreshold: 10, Window: 10, Delay: time.Hour, SuccessThreshold: 1}}
	l := &config.Loaded{Source: "fuzz", SHA256: "f", LoadedAt: time.Now(), Config: &config.Config{
		Scheduler: config.Scheduler{MaxConcurrentProbes: 4},
		Probes: []config.Probe{
			{Name: "app", Kind: "fake", Critical: true, Legacy: true, Policy: pol},
			{Name: "down", Kind: "fake", Policy: pol},
			{Name: "after-down", Kind: "fake", Policy: pol, DependsOn: []string{"down"}},
		},
	}}
	m, err := monitor.New(l, monitor.Options{Kinds: kinds, Tick: 10 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	f.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(f, 20*time.Second, func() bool {
		s := m.Snapshot()
		return s.Check("after-down").Status == probes.Blocked && s.Check("app").Status == probes.Healthy
	}, "the monitor settled")
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("# metrics\n")) })
	return api.NewHandler(m, api.Options{Token: func() string { return fuzzToken }, Metrics: metrics})
}

// FuzzAPIQuery sends arbitrary methods, paths, queries (exclude, verbose, check names, anything) and
// Authorization values to the real handler. It answers only with the statuses it documents, never
// 5xx other than 503, its JSON is JSON, kube-style bodies hold only check lines (no line a request
// smuggled in), the detail endpoints need the token, and the token is never in a response.
func FuzzAPIQuery(f *testing.F) {
	for _, s := range [][4]string{
		{"GET", "/readyz", "verbose", ""},
		{"GET", "/readyz", "verbose&exclude=down&exclude=app", ""},
		{"GET", "/readyz", "exclude=%0A%5B%2B%5Dfake+ok&verbose", ""},
		{"GET", "/readyz/down", "verbose", ""},
		{"GET", "/readyz/no\nsuch", "", ""},
		{"GET", "/livez", "verbose=false&exclude=ping", ""},
		{"GET", "/startupz/after-down", "verbose", ""},
		{"HEAD", "/api/health", "url=http://example.com", ""},
		{"GET", "/api/health/detailed", "", "Bearer " + fuzzToken},
		{"GET", "/api/health/detailed", "token=" + fuzzToken, "Bearer wrong"},
		{"GET", "/api/health/circuit-breakers", "", "bearer " + fuzzToken},
		{"GET", "/metrics", "", "Bearer  " + fuzzToken + " "},
		{"POST", "/readyz", "", ""},
		{"DELETE", "/api/health", "", ""},
		{"GET", "/", "", ""},
		{"GET", "/nope", "", ""},
		{"GET", "//readyz", "", ""},
		{"GET", "/readyz/", "", ""},
		{"GET", "/readyz", "%zz&;exclude", ""},
		{"BREW", "/readyz", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, method, path, query, auth string) {
		if method == "" {
			method = http.MethodGet
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: query}, Header: http.Header{},
			Host: "agent", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, RemoteAddr: "127.0.0.1:1"}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(context.Background()))
		code, body := rec.Code, rec.Body.String()

		switch code {
		case 200, 401, 404, 405, 503:
		default:
			t.Fatalf("%s %s?%s: status %d", method, path, query, code)
		}
		if strings.Contains(body, fuzzToken) || strings.Contains(strings.Join(rec.Header().Values("WWW-Authenticate"), " "), fuzzToken) {
			t.Fatal("the details token is in the response")
		}
		detail := path == "/api/health/detailed" || path == "/api/health/circuit-breakers" || path == "/metrics"
		if detail && (method == "GET" || method == "HEAD") && code != 401 {
			if got, ok := strings.CutPrefix(auth, "Bearer "); !ok || strings.TrimSpace(got) != fuzzToken {
				t.Fatalf("%s answered %d to Authorization %q", path, code, auth)
			}
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: invalid JSON: %q", method, path, body)
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
			for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
				if !kubeLine.MatchString(line) {
					t.Fatalf("%s %s?%s: unexpected line %q in %q", method, path, query, line, body)
				}
			}
		}
	})
}
