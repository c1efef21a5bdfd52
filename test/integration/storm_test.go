package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/chaos"
)

const stormConfig = `
server: { shutdownDelay: 0s, detailsToken: "${DETAILS_TOKEN}" }
scheduler: { jitter: 0.1 }
defaults:
  interval: 100ms
  timeout: 250ms
  failuresBeforeUnhealthy: 2
  retry: { maxRetries: 1, backoff: 10ms, maxBackoff: 20ms, jitter: 0 }
  breaker: { failureThreshold: 2, window: 2, delay: 500ms, successThreshold: 1 }
probes:
  - { name: steady, kind: http, critical: true, url: "%s/health" }
  - { name: dead, kind: http, critical: false, url: "%s/health" }
  - { name: config, kind: config }
`

// hostile are the ways a request might try to steer a probe somewhere else: query parameters and
// proxy headers naming the decoy. No handler takes a URL, so none may have an effect.
func hostile(decoy string) []struct {
	path string
	hdr  []string
} {
	q := url.QueryEscape(decoy)
	return []struct {
		path string
		hdr  []string
	}{
		{"/readyz?url=" + q, nil},
		{"/api/health?url=" + q + "&target=" + q + "&probe=steady", nil},
		{"/api/health/detailed?url=" + q, nil},
		{"/readyz/steady?address=" + q, nil},
		{"/readyz/" + url.PathEscape(decoy), nil},
		{"/static/" + decoy + "/health", nil},
		{"/static/..%2F..%2F" + url.PathEscape(decoy), nil},
		{"/api/health", []string{"X-Forwarded-Host", decoy, "X-Forwarded-Proto", "http", "Forwarded", "host=" + decoy}},
		{"/readyz?verbose", []string{"Host", decoy}},
		{"/api/health/circuit-breakers", []string{"X-Original-URL", decoy + "/health", "X-Rewrite-URL", decoy}},
		{"/livez", []string{"Referer", decoy, "Origin", decoy}},
	}
}

// TestNoRequestStorm plays kubelets and load balancers at ~1,000 requests/s (2,000 requests from 8
// goroutines) against an agent with a healthy dependency and a dead one whose breaker is open, mixing
// in requests that try to name another target. Requests reaching each dependency stay bounded by its
// interval and policies, the open breaker lets at most one trial per delay through, and the decoy named
// by hostile requests is never called.
func TestNoRequestStorm(t *testing.T) {
	steady, dead, decoy := startChaos(t, chaos.Healthy()), startChaos(t, chaos.Failing(500)), startChaos(t, chaos.Healthy())
	h := startAgent(t, setup{config: fmt.Sprintf(stormConfig, steady.URL(), dead.URL())})
	h.waitView("dead", "dead's breaker open", func(v view) bool { return v.status == "unhealthy" && v.breaker == "OPEN" })
	h.waitView("steady", "steady healthy", func(v view) bool { return v.status == "healthy" && v.readyz == 200 })

	paths := []struct {
		path string
		hdr  []string
	}{{"/readyz", nil}, {"/api/health", nil}, {"/readyz?verbose", nil}, {"/livez", nil}, {"/startupz", nil},
		{"/api/health/detailed", nil}, {"/api/health/circuit-breakers", nil}, {"/readyz/steady", nil}}
	paths = append(paths, hostile(decoy.URL())...)

	const workers, perWorker = 8, 250
	const pace = 8 * time.Millisecond // 8 workers x 1 request / 8ms = 1,000 requests/s
	steady0, dead0 := steady.Requests(), dead.Requests()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes, failures := map[int]int{}, []string{}
	for w := range workers {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for i := range perWorker {
				<-tick.C
				p := paths[(w*perWorker+i)%len(paths)]
				req, _ := http.NewRequest(http.MethodGet, h.base+p.path, nil)
				for j := 0; j+1 < len(p.hdr); j += 2 {
					if p.hdr[j] == "Host" {
						req.Host = p.hdr[j+1]
					} else {
						req.Header.Set(p.hdr[j], p.hdr[j+1])
					}
				}
				resp, err := c.Do(req)
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					codes[resp.StatusCode]++
				}
				mu.Unlock()
				if err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	window := time.Since(start)
	steadyN, deadN := steady.Requests()-steady0, dead.Requests()-dead0
	t.Logf("%d requests in %s, codes %v; dependency requests: steady %d, dead %d, decoy %d",
		workers*perWorker, window, codes, steadyN, deadN, decoy.Requests())

	if len(failures) > 0 {
		t.Errorf("%d requests failed, first: %s", len(failures), failures[0])
	}
	if codes[500] > 0 {
		t.Errorf("%d answers were 500", codes[500])
	}
	// steady: one execution per interval (minus 10% jitter), each at most 1+maxRetries requests, plus one
	// in flight at each end of the window.
	executions := int64(window/(90*time.Millisecond)) + 2
	if limit := executions * 2; steadyN > limit {
		t.Errorf("steady got %d requests in %s, want <= %d: kubelet traffic reached the dependency", steadyN, window, limit)
	}
	if steadyN == 0 {
		t.Error("steady was not probed during the load: the bound above would be vacuous")
	}
	// dead: its breaker is open; one trial per 500ms delay (a failed trial reopens it, and the retry is
	// rejected without touching the dependency).
	if limit := int64(window/(500*time.Millisecond)) + 1; deadN > limit {
		t.Errorf("dead got %d requests in %s with its breaker open, want <= %d (one trial per delay)", deadN, window, limit)
	}
	// And spaced by the delay: each trial waits 500ms from the failure of the one before.
	var trials []time.Time
	for _, at := range dead.Arrivals() {
		if at.After(start) {
			trials = append(trials, at)
		}
	}
	for i := 1; i < len(trials); i++ {
		if gap := trials[i].Sub(trials[i-1]); gap < 490*time.Millisecond {
			t.Errorf("two requests reached the dead dependency %s apart, with a 500ms breaker delay", gap)
		}
	}
	if decoy.Requests() != 0 {
		t.Errorf("the decoy named in requests got %d requests: a request chose a probe's target", decoy.Requests())
	}
}
