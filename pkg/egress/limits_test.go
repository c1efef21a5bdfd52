package egress

import (
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/config"
)

func TestHalfOpenLetsOnlyTheTrialThrough(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	up := newUpstream(t, nil)
	up.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	rt := testRoute("mcp", "/mcp/", up.URL)
	rt.Retry.MaxRetries = 0
	h := newHarness(t, nil, rt)
	// A breaker that retries soon: rebuilt with a short delay.
	h.cfg.Defaults.Breaker = config.BreakerPolicy{FailureThreshold: 2, Window: 2, Delay: 50 * time.Millisecond, SuccessThreshold: 1}
	h.breakers.Sync(h.cfg)
	b := h.breakers.Get("mcp")
	for range 2 {
		h.do(t, "GET", "/mcp/x", nil)
	}
	testkit.EventuallyState(t, 10*time.Second, func() (bool, string) {
		s := b.Stats()
		return s.State == breakers.Open && b.RetryIn() <= 0, fmt.Sprintf("%+v", s)
	}, "the open breaker due for a trial")

	up.set(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-up.stop:
		}
	})
	hits := up.hits.Load()
	var wg sync.WaitGroup
	wg.Add(1)
	trial := 0
	go func() {
		defer wg.Done()
		resp, _ := h.do(t, "GET", "/mcp/trial", nil)
		trial = resp.StatusCode
	}()
	<-arrived // the trial holds the breaker's only permit
	resp, body := h.do(t, "GET", "/mcp/second", nil)
	if e := decodeEnvelope(t, body); resp.StatusCode != 503 || e.Error.Code != "circuit_open" || !strings.Contains(e.Error.Message, "half-open") {
		t.Errorf("second request during the trial: %d %+v", resp.StatusCode, e.Error)
	}
	close(release)
	wg.Wait()
	if trial != 200 || up.hits.Load() != hits+1 || !b.IsClosed() {
		t.Errorf("trial %d, upstream requests %d, breaker %s; want one request, closed after it", trial, up.hits.Load()-hits, b.Stats().State)
	}
}

func TestHopByHopHeadersStayOnTheirHop(t *testing.T) {
	seen := make(chan http.Header, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("Connection", "X-Upstream-Hop")
		w.Header().Set("X-Upstream-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End-To-End", "1")
	})
	h := newHarness(t, nil, testRoute("mcp", "/mcp/", up.URL))
	req, _ := http.NewRequestWithContext(t.Context(), "GET", h.srv.URL+"/mcp/x", nil)
	req.Header.Set("Connection", "X-App-Hop")
	req.Header.Set("X-App-Hop", "1")
	req.Header.Set("Proxy-Authorization", "Basic x")
	req.Header.Set("X-App-End-To-End", "1")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := <-seen
	if got.Get("X-App-Hop") != "" || got.Get("Proxy-Authorization") != "" || got.Get("X-App-End-To-End") != "1" {
		t.Errorf("upstream saw %v", got)
	}
	if resp.Header.Get("X-Upstream-Hop") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-End-To-End") != "1" {
		t.Errorf("app saw %v", resp.Header)
	}
}

func TestHeaderSizesAreBounded(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("X-Big", strings.Repeat("a", MaxHeaderBytes+1))
		}
	})
	h := newHarness(t, nil, testRoute("mcp", "/mcp/", up.URL))
	req, _ := http.NewRequestWithContext(t.Context(), "GET", h.srv.URL+"/mcp/x", nil)
	req.Header.Set("X-Huge", strings.Repeat("b", 2*MaxHeaderBytes))
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || up.hits.Load() != 0 {
		t.Errorf("a huge request header: %d (upstream requests %d)", resp.StatusCode, up.hits.Load())
	}
	if resp, body := h.do(t, "GET", "/mcp/big", nil); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "upstream_unreachable") {
		t.Errorf("a huge response header: %d %s", resp.StatusCode, body)
	}
}

func TestUpstreamTLSIsVerified(t *testing.T) {
	tlsUp := newTLSUpstream(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsUp.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	unknown := testRoute("unknown", "/unknown/", tlsUp.URL)
	unknown.Retry.MaxRetries = 0
	trusted := testRoute("trusted", "/trusted/", tlsUp.URL)
	trusted.TLS.CAFile = caFile
	h := newHarness(t, nil, unknown, trusted)
	if resp, body := h.do(t, "GET", "/unknown/x", nil); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "certificate") {
		t.Errorf("an unverifiable upstream: %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.do(t, "GET", "/trusted/x", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("an upstream verified with caFile: %d", resp.StatusCode)
	}
}

// TestBodyCutShortIsLoggedThroughTheLogger: the ReverseProxy's own line, when an upstream's body
// ends early, reaches Options.Logger (structured, with its level) instead of the log package's stderr.
func TestBodyCutShortIsLoggedThroughTheLogger(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("0123456789"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // closes the connection 90 bytes short
	})
	var logs testkit.SyncBuffer
	srv := newLoggedProxy(t, &logs, testRoute("mcp", "/mcp/", up.URL))
	resp, err := srv.Client().Get(srv.URL + "/mcp/x")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	testkit.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "level=DEBUG") && strings.Contains(logs.String(), "read error during body copy")
	}, "the cut-short body was not logged through Options.Logger: %q", &logs)
}
