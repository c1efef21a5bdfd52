package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// reactionPolicy is the default policy of configs/agent.yaml (and the built-in defaults), its
// durations multiplied by scale (1 in full mode).
func reactionConfig(scale float64, url string) []byte {
	d := func(v time.Duration) time.Duration { return time.Duration(float64(v) * scale) }
	return fmt.Appendf(nil, `server:
  listen: "127.0.0.1:0"
  shutdownDelay: 0s
defaults:
  interval: %s
  timeout: 2s
  failuresBeforeUnhealthy: 2
  successesBeforeHealthy: 1
  retry: { maxRetries: 1, backoff: %s, maxBackoff: %s, jitter: 0.2 }
  breaker: { failureThreshold: 3, window: 5, delay: %s, successThreshold: 2 }
probes:
  - name: dep
    kind: http
    critical: true
    url: %q
`, d(10*time.Second), d(200*time.Millisecond), d(2*time.Second), d(30*time.Second), url)
}

// reactionRow is one trial: a dependency fails, then recovers as soon as /readyz has failed.
type reactionRow struct {
	Scale          float64
	Phase          time.Duration // how long after the agent became ready the dependency failed
	ToFail         time.Duration // dependency down -> /readyz 503
	ToRecover      time.Duration // dependency up -> /readyz 200
	DepDuringFail  int64         // requests that reached the dependency while it was down
	Timeline       []string      // the breaker's history, relative to the failure
	PollResolution time.Duration
}

type breakerDoc struct {
	Data struct {
		Breakers map[string]struct {
			State   string `json:"state"`
			History []struct {
				At      time.Time `json:"at"`
				Outcome string    `json:"outcome"`
			} `json:"history"`
		} `json:"breakers"`
	} `json:"data"`
}

// runReaction measures, on a real agent process with the default policies, how long /readyz takes to
// follow a dependency's failure and its recovery.
func runReaction(p *params, bin binaries, trial int) (reactionRow, error) {
	row := reactionRow{Scale: p.reactionScale, PollResolution: 10 * time.Millisecond}
	dep, err := startHTTPDep()
	if err != nil {
		return row, err
	}
	defer dep.Close()
	path, err := writeFile(p.tmp, fmt.Sprintf("reaction-%d.yaml", trial), reactionConfig(p.reactionScale, dep.URL()))
	if err != nil {
		return row, err
	}
	pr, err := startProc(bin.Image, path, []string{}, filepath.Join(p.tmp, fmt.Sprintf("reaction-%d.log", trial)))
	if err != nil {
		return row, err
	}
	defer pr.kill()
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	if _, err := pr.waitListening(10 * time.Second); err != nil {
		return row, err
	}
	if _, err := pr.waitOK(client, "/readyz", 30*time.Second); err != nil {
		return row, err
	}
	// Fail at a random phase of the probe's interval, as a real outage would.
	interval := time.Duration(float64(10*time.Second) * p.reactionScale)
	row.Phase = time.Duration(rand.Int64N(int64(interval)))
	time.Sleep(row.Phase) // the experiment's schedule

	readyz := func() int {
		resp, err := client.Get("http://" + pr.addr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	wait := func(code int, within time.Duration) (time.Duration, error) {
		start := time.Now()
		for readyz() != code {
			if time.Since(start) > within {
				return 0, fmt.Errorf("/readyz not %d within %s; log: %s", code, within, tail(pr.log))
			}
			time.Sleep(row.PollResolution) // polling interval
		}
		return time.Since(start), nil
	}
	limit := time.Duration(float64(3*time.Minute) * max(p.reactionScale, 0.2))

	c0 := dep.count.Load()
	dep.down.Store(true)
	failedAt := time.Now()
	if row.ToFail, err = wait(http.StatusServiceUnavailable, limit); err != nil {
		return row, err
	}
	row.DepDuringFail = dep.count.Load() - c0
	dep.down.Store(false)
	if row.ToRecover, err = wait(http.StatusOK, limit); err != nil {
		return row, err
	}

	resp, err := client.Get("http://" + pr.addr + "/api/health/circuit-breakers")
	if err != nil {
		return row, err
	}
	defer resp.Body.Close()
	var doc breakerDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return row, fmt.Errorf("decode circuit-breakers: %w", err)
	}
	for _, h := range doc.Data.Breakers["dep"].History {
		if off := h.At.Sub(failedAt); off > -interval {
			row.Timeline = append(row.Timeline, fmt.Sprintf("%+.1fs %s", off.Seconds(), h.Outcome))
		}
	}
	return row, nil
}

func (r reactionRow) timeline() string { return strings.Join(r.Timeline, ", ") }
