package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
)

func TestForwardsOnTheRoute(t *testing.T) {
	const token = "f1gma-t0ken-4b7c9e2d"
	type seen struct{ path, rawPath, query, host, token, accept, forwarded string }
	got := make(chan seen, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Host, r.Header.Get("X-Figma-Token"), r.Header.Get("Accept"), r.Header.Get("X-Forwarded-For")}
		w.Header().Set("X-Echo", "token was "+token) // an upstream that echoes the injected secret
		w.Header().Set("Location", "http://"+r.Host+"/api/v1/next?page=2")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	rt := testRoute("figma", "/figma/", up.URL+"/api")
	rt.Headers = map[string]config.Value{"X-Figma-Token": {Env: "FIGMA_TOKEN"}, "Accept": {Value: "application/json"}}
	h := newHarness(t, map[string]string{"FIGMA_TOKEN": token}, rt)

	req, _ := http.NewRequestWithContext(t.Context(), "GET", h.srv.URL+"/figma/v1/files/a%2Fb?depth=1", nil)
	req.Header.Set("X-Figma-Token", "the app's own value")
	req.Header.Set("X-Forwarded-For", "10.9.9.9")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := <-got
	if resp.StatusCode != 200 || string(body) != `{"ok":true}` {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	if s.path != "/api/v1/files/a/b" || s.rawPath != "/api/v1/files/a%2Fb" || s.query != "depth=1" {
		t.Errorf("upstream saw path %q raw %q query %q", s.path, s.rawPath, s.query)
	}
	if s.host != strings.TrimPrefix(up.URL, "http://") || s.token != token || s.accept != "application/json" || s.forwarded != "" {
		t.Errorf("upstream saw host %q accept %q x-forwarded-for %q, token injected: %v", s.host, s.accept, s.forwarded, s.token == token)
	}
	if v := resp.Header.Get("X-Echo"); v != "" {
		t.Errorf("a response header echoing the injected secret reached the app")
	}
	if !slices.Contains(h.secrets.List(), token) {
		t.Error("the injected secret was not added to the agent's set, which hides it from every text kept")
	}
	if loc := resp.Header.Get("Location"); loc != h.srv.URL+"/figma/v1/next?page=2" {
		t.Errorf("Location = %q, want it back through the proxy", loc)
	}

	// The prefix without its last "/" is the upstream's path itself.
	if resp, _ := h.do(t, "GET", "/figma", nil); resp.StatusCode != 200 {
		t.Errorf("GET /figma = %d", resp.StatusCode)
	}
	if s := <-got; s.path != "/api" {
		t.Errorf("GET /figma reached %q, want /api", s.path)
	}
}

func TestRefusesWhatIsNotARoute(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	h := newHarness(t, nil, testRoute("mcp", "/mcp/", up.URL))
	for _, tc := range []struct {
		name, requestLine string
		status            int
		code              string
	}{
		{"unknown path", "GET /other/x HTTP/1.1", 404, "no_route"},
		{"a longer name with the prefix's start", "GET /mcpx HTTP/1.1", 404, "no_route"},
		{"absolute-form URI", "GET http://example.com/mcp/ HTTP/1.1", 404, "no_route"},
		{"absolute-form URI to the route's own path", "GET " + up.URL + "/mcp/ HTTP/1.1", 404, "no_route"},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1", 405, "method_not_allowed"},
		{"dot segments", "GET /mcp/../../etc/passwd HTTP/1.1", 400, "bad_path"},
		{"encoded dot segments", "GET /mcp/%2e%2e/admin HTTP/1.1", 400, "bad_path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRequest(t, h.srv.Listener.Addr().String(), tc.requestLine)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if e := decodeEnvelope(t, body); e.Error.Code != tc.code {
				t.Errorf("code %q, want %q", e.Error.Code, tc.code)
			}
		})
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests", n)
	}
}

// rawRequest sends one request line as written (net/http would rewrite it) and reads the answer.
func rawRequest(t *testing.T, addr, line string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "%s\r\nHost: %s\r\nConnection: close\r\n\r\n", line, addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestOpenBreakerAnswersWithoutTheUpstream(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	rt := testRoute("figma", "/figma/", up.URL)
	rt.Breaker = "figma-api"
	h := newHarness(t, nil, rt)

	for range 2 {
		if resp, _ := h.do(t, "POST", "/figma/v1/x", strings.NewReader("{}")); resp.StatusCode != 500 {
			t.Fatalf("status %d, want the upstream's 500", resp.StatusCode)
		}
	}
	hits := up.hits.Load()
	resp, body := h.do(t, "GET", "/figma/v1/x", nil)
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want 503 (%s)", resp.StatusCode, body)
	}
	e := decodeEnvelope(t, body)
	if e.Error.Code != "circuit_open" || e.Error.Breaker != "figma-api" || e.Error.Cause != "upstream answered 500 Internal Server Error" ||
		!contains(e.Error.Message, `circuit breaker "figma-api" open after 2 failures`, `egress route "figma"`) {
		t.Errorf("envelope %+v", e.Error)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q, want the breaker's remaining delay in seconds", resp.Header.Get("Retry-After"))
	}
	if up.hits.Load() != hits {
		t.Errorf("the upstream was contacted while the breaker was open")
	}
	if got := counterValue(t, h.proxy.metrics.rejected.WithLabelValues("figma", "circuit_open")); got != 1 {
		t.Errorf("rejected{circuit_open} = %v", got)
	}
	if got := counterValue(t, h.proxy.metrics.requests.WithLabelValues("figma", "500")); got != 2 {
		t.Errorf("requests{500} = %v", got)
	}
	tr := h.proxy.Traffic()
	if len(tr) != 1 || tr[0].Requests != 3 || tr[0].Errors != 2 || tr[0].Rejected != 1 || tr[0].Breaker != "figma-api" {
		t.Errorf("Traffic = %+v", tr)
	}
}

func TestFourHundredsAreNotFailures(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })
	h := newHarness(t, nil, testRoute("figma", "/figma/", up.URL))
	for range 4 {
		if resp, _ := h.do(t, "GET", "/figma/missing", nil); resp.StatusCode != 404 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if !h.breakers.Get("figma").IsClosed() || up.hits.Load() != 4 {
		t.Errorf("404s opened the breaker (hits %d)", up.hits.Load())
	}
}

func TestTooManyRequestsHoldsTheRouteBack(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(429)
	})
	h := newHarness(t, nil, testRoute("figma", "/figma/", up.URL))
	if resp, _ := h.do(t, "GET", "/figma/a", nil); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("first answer %d Retry-After %q, want the upstream's", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for range 3 {
		resp, body := h.do(t, "POST", "/figma/b", strings.NewReader("{}"))
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != 429 || ra < 1 || ra > 30 {
			t.Fatalf("held back answer %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if e := decodeEnvelope(t, body); e.Error.Code != "rate_limited" {
			t.Errorf("code %q", e.Error.Code)
		}
	}
	if up.hits.Load() != 1 {
		t.Errorf("the upstream got %d requests while its Retry-After ran, want 1", up.hits.Load())
	}
	if !h.breakers.Get("figma").IsClosed() {
		t.Error("a 429 counted as a failure")
	}
	if got := counterValue(t, h.proxy.metrics.rejected.WithLabelValues("figma", "rate_limited")); got != 3 {
		t.Errorf("rejected{rate_limited} = %v", got)
	}
	if tr := h.proxy.Traffic(); tr[0].RateLimitedFor <= 0 || tr[0].RateLimitedFor > 30*time.Second {
		t.Errorf("RateLimitedFor = %v", tr[0].RateLimitedFor)
	}
}

func TestRetriesOnlySafeRequests(t *testing.T) {
	up := newUpstream(t, nil)
	up.set(func(w http.ResponseWriter, r *http.Request) {
		if up.hits.Load()%2 == 1 {
			w.WriteHeader(503)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	h := newHarness(t, nil, testRoute("mcp", "/mcp/", up.URL))
	if resp, body := h.do(t, "GET", "/mcp/x", nil); resp.StatusCode != 200 || body != "ok" || up.hits.Load() != 2 {
		t.Fatalf("GET: %d %q after %d upstream requests, want 200 after a retry", resp.StatusCode, body, up.hits.Load())
	}
	if resp, _ := h.do(t, "POST", "/mcp/x", strings.NewReader(`{"jsonrpc":"2.0"}`)); resp.StatusCode != 503 || up.hits.Load() != 3 {
		t.Fatalf("POST: %d after %d upstream requests, want the 503 without a retry", resp.StatusCode, up.hits.Load())
	}
}

func TestRetriesAConnectionRefused(t *testing.T) {
	// A port that refuses: retried once (dial failures send nothing), then 502, one breaker failure.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := newHarness(t, nil, testRoute("mcp", "/mcp/", "http://"+addr))
	resp, body := h.do(t, "GET", "/mcp/x", nil)
	if e := decodeEnvelope(t, body); resp.StatusCode != 502 || e.Error.Code != "upstream_unreachable" || !strings.Contains(e.Error.Message, "connection refused") {
		t.Fatalf("%d %+v", resp.StatusCode, e.Error)
	}
	if s := h.breakers.Get("mcp").Stats(); s.Failures != 1 || s.History[0].Source != "route:mcp" {
		t.Errorf("breaker %+v, want one failure from the route", s)
	}
}

func TestHangTimesOut(t *testing.T) {
	up := newUpstream(t, nil)
	up.set(func(w http.ResponseWriter, r *http.Request) { up.hang(r) })
	rt := testRoute("mcp", "/mcp/", up.URL)
	rt.Timeout = 200 * time.Millisecond
	h := newHarness(t, nil, rt)
	resp, body := h.do(t, "POST", "/mcp/x", strings.NewReader("{}"))
	if e := decodeEnvelope(t, body); resp.StatusCode != 504 || e.Error.Code != "upstream_timeout" {
		t.Fatalf("%d %+v", resp.StatusCode, e.Error)
	}
	if s := h.breakers.Get("mcp").Stats(); s.Failures != 1 || s.History[0].Error != "no response headers within 200ms" {
		t.Errorf("breaker %+v, want one failure naming the timeout", s)
	}
}

func TestAppGoneIsNotAFailure(t *testing.T) {
	arrived := make(chan struct{})
	up := newUpstream(t, nil)
	up.set(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		up.hang(r)
	})
	h := newHarness(t, nil, testRoute("mcp", "/mcp/", up.URL))
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/mcp/x", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := h.srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-arrived
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error %v", err)
	}
	// The handler finishes after the client left; wait for the request to be counted.
	testkit.EventuallyState(t, 10*time.Second, func() (bool, string) {
		n := counterValue(t, h.proxy.metrics.requests.WithLabelValues("mcp", "499"))
		return n == 1, fmt.Sprintf("requests{route=mcp,code=499} %v", n)
	}, "the abandoned request counted")
	if s := h.breakers.Get("mcp").Stats(); s.Failures != 0 || s.Executions != 0 {
		t.Errorf("breaker counted the abandoned call: %+v", s)
	}
}

func TestAbsentSecretAnswersWithoutTheUpstream(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	rt := testRoute("figma", "/figma/", up.URL)
	rt.Headers = map[string]config.Value{"X-Figma-Token": {Env: "FIGMA_TOKEN"}}
	h := newHarness(t, nil, rt)
	resp, body := h.do(t, "GET", "/figma/x", nil)
	if e := decodeEnvelope(t, body); resp.StatusCode != 503 || e.Error.Code != "secret_absent" || !strings.Contains(e.Error.Message, "FIGMA_TOKEN") {
		t.Fatalf("%d %+v", resp.StatusCode, e.Error)
	}
	if up.hits.Load() != 0 {
		t.Error("forwarded without its token")
	}
}

func TestSecretsStayOnTheirRoute(t *testing.T) {
	const token = "0nly-f0r-figma-123456"
	headers := make(chan http.Header, 2)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { headers <- r.Header.Clone() })
	figma := testRoute("figma", "/figma/", up.URL)
	figma.Headers = map[string]config.Value{"Authorization": {Env: "T", Prefix: "Bearer "}}
	h := newHarness(t, map[string]string{"T": token}, figma, testRoute("mcp", "/mcp/", up.URL))
	h.do(t, "GET", "/figma/x", nil)
	if got := (<-headers).Get("Authorization"); got != "Bearer "+token {
		t.Error("the figma route did not inject its token")
	}
	h.do(t, "GET", "/mcp/x", nil)
	for name, v := range <-headers {
		if strings.Contains(strings.Join(v, ","), token) {
			t.Errorf("the mcp route sent the figma token in %s", name)
		}
	}
}

func TestUpdateKeepsUnchangedRoutes(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(429)
	})
	h := newHarness(t, nil, testRoute("figma", "/figma/", up.URL), testRoute("mcp", "/mcp/", up.URL))
	h.do(t, "GET", "/figma/x", nil)
	before := (*h.proxy.routes.Load())[0]

	next := &config.Egress{Routes: []config.EgressRoute{testRoute("figma", "/figma/", up.URL), testRoute("browser", "/browser/", up.URL)}}
	if err := h.proxy.Update(next); err != nil {
		t.Fatal(err)
	}
	if (*h.proxy.routes.Load())[0] != before {
		t.Error("an unchanged route was rebuilt")
	}
	if resp, _ := h.do(t, "GET", "/figma/x", nil); resp.StatusCode != 429 || up.hits.Load() != 1 {
		t.Errorf("the route's rate limit was lost on update (hits %d)", up.hits.Load())
	}
	if resp, _ := h.do(t, "GET", "/mcp/x", nil); resp.StatusCode != 404 {
		t.Errorf("a removed route still serves: %d", resp.StatusCode)
	}
	if resp, _ := h.do(t, "GET", "/browser/x", nil); resp.StatusCode != 429 {
		t.Errorf("an added route: %d", resp.StatusCode)
	}
}

// TestRateLimitIsLoggedOncePerEpisode: the app's calls in flight when the upstream starts answering
// 429 all get it, and the agent logs the episode once, not once per call.
func TestRateLimitIsLoggedOncePerEpisode(t *testing.T) {
	const calls = 4
	var arrived atomic.Int64
	all := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == calls {
			close(all)
		}
		select { // every call is past the proxy's rate-limit check before any 429 comes back
		case <-all:
		case <-r.Context().Done():
		}
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	var logs testkit.SyncBuffer
	srv := newLoggedProxy(t, &logs, testRoute("figma", "/figma/", up.URL))
	codes := make(chan int, calls)
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			resp, err := srv.Client().Get(srv.URL + "/figma/x")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusTooManyRequests {
			t.Errorf("a call got %d, want 429", c)
		}
	}
	if n := strings.Count(logs.String(), "rate limited by its upstream"); n != 1 {
		t.Errorf("the 429 episode was logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestFailedUpdateKeepsTheRunningRoutesConnections: an update whose new route cannot be built leaves
// the running routes as they were, their idle upstream connections included.
func TestFailedUpdateKeepsTheRunningRoutesConnections(t *testing.T) {
	var idle, closed atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateIdle:
			idle.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	running := testRoute("figma", "/figma/", up.URL)
	h := newHarness(t, nil, running)
	if resp, _ := h.do(t, "GET", "/figma/x", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("first call: %d", resp.StatusCode)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return idle.Load() == 1 }, "the upstream connection did not go idle")

	broken := testRoute("mcp", "/mcp/", up.URL)
	broken.TLS.CAFile = filepath.Join(t.TempDir(), "absent.pem")
	if err := h.proxy.Update(&config.Egress{Routes: []config.EgressRoute{running, broken}}); err == nil {
		t.Fatal("an update with an unreadable caFile succeeded")
	}
	// A closed connection shows at the upstream within milliseconds; a second tells.
	if testkit.Poll(time.Second, func() bool { return closed.Load() > 0 }) {
		t.Error("the failed update closed the running route's idle upstream connection")
	}
}
