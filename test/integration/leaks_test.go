package integration

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/chaos"
	"github.com/health-agent/health-agent/internal/testkit"
)

// churnConfig: flapper's breaker opens on one failure and tries again after 1ms, against a dependency
// that fails every other request, so it changes state every execution or two. Reloads alternate the
// interval of `other` and leave flapper's definition (and so its breaker and state) alone.
const churnConfig = `
server: { shutdownDelay: 0s, detailsToken: "${DETAILS_TOKEN}" }
scheduler: { jitter: 0 }
defaults:
  timeout: 250ms
  failuresBeforeUnhealthy: 1
  retry: { maxRetries: 0 }
probes:
  - name: flapper
    kind: http
    url: "%s/health"
    interval: 1ms
    breaker: { failureThreshold: 1, window: 1, delay: 1ms, successThreshold: 1 }
  - { name: other, kind: http, critical: true, url: "%s/health", interval: %s }
  - { name: config, kind: config }
`

// liveHeap is the heap still in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// goroutines samples the count a few times and keeps the highest: probes in flight come and go.
func goroutines() int {
	n := 0
	for range 10 {
		n = max(n, runtime.NumGoroutine())
		runtime.Gosched()
	}
	return n
}

// TestReloadsAndBreakerTransitionsDoNotLeak takes a running agent through 100 config reloads and at
// least 1,000 breaker transitions, then checks that the goroutine count came back to where it was and
// that the live heap stayed within 2x + 4 MiB of its start.
func TestReloadsAndBreakerTransitionsDoNotLeak(t *testing.T) {
	flap, steady := startChaos(t, chaos.Flapping(1)), startChaos(t, chaos.Healthy())
	configs := [2]string{
		fmt.Sprintf(churnConfig, flap.URL(), steady.URL(), "20ms"),
		fmt.Sprintf(churnConfig, flap.URL(), steady.URL(), "30ms"),
	}
	h := startAgent(t, setup{config: configs[0]})
	transitions := func() uint64 {
		for _, b := range h.agent.Monitor().Snapshot().Breakers {
			if b.Name == "flapper" {
				return b.Transitions
			}
		}
		return 0
	}
	reload := func(i int) {
		t.Helper()
		writeFile(t, h.path, configs[i%2])
		if err := h.agent.Reload(context.Background()); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	// Warm up: every code path once (a reload, breaker transitions, both probes judged), so that lazily
	// built things (pools, caches) are in the baseline.
	reload(1)
	reload(2)
	h.waitView("other", "other healthy", func(v view) bool { return v.status == "healthy" })
	testkit.EventuallyState(t, 20*time.Second, func() (bool, string) {
		return transitions() >= 20, fmt.Sprint(transitions())
	}, "flapper's breaker changing state")
	startGoroutines, startHeap, startTransitions := goroutines(), liveHeap(), transitions()

	for i := range 100 {
		reload(i + 1)
	}
	testkit.EventuallyState(t, 60*time.Second, func() (bool, string) {
		return transitions()-startTransitions >= 1000, fmt.Sprint(transitions() - startTransitions)
	}, "1,000 breaker transitions")
	s := h.agent.Monitor().Snapshot()
	if !s.Config.LastReload.Success || s.Check("flapper") == nil || s.Check("other") == nil {
		t.Fatalf("after the reloads: last reload %+v", s.Config.LastReload)
	}
	if s.Check("flapper").Transitions < 500 {
		t.Errorf("flapper's verdict changed only %d times: the reloads reset its state", s.Check("flapper").Transitions)
	}

	const tolerance = 10
	var endGoroutines int
	testkit.EventuallyState(t, 20*time.Second, func() (bool, string) {
		endGoroutines = goroutines()
		return endGoroutines <= startGoroutines+tolerance, fmt.Sprintf("%d, started with %d", endGoroutines, startGoroutines)
	}, "the goroutine count settled")
	endHeap := liveHeap()
	t.Logf("goroutines %d -> %d; live heap %d KiB -> %d KiB; breaker transitions %d; %d requests to the flapping dependency",
		startGoroutines, endGoroutines, startHeap>>10, endHeap>>10, transitions()-startTransitions, flap.Requests())
	if limit := 2*startHeap + 4<<20; endHeap > limit {
		t.Errorf("live heap grew from %d KiB to %d KiB (limit %d KiB)", startHeap>>10, endHeap>>10, limit>>10)
	}
}
