package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// loadResult is what one closed-loop run against one URL measured.
type loadResult struct {
	Requests int
	Errors   int // transport errors and unexpected status codes
	Elapsed  time.Duration
	Bytes    int64
	// DepRequests is what the dependencies received during the timed phase (not the warm-up).
	DepRequests int64
	lat         []time.Duration
}

// RPS is requests per second.
func (r loadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Quantile returns the q-quantile of the latencies (nearest rank).
func (r loadResult) Quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q*float64(len(r.lat))+0.5) - 1
	i = min(max(i, 0), len(r.lat)-1)
	return r.lat[i]
}

// merge adds o's counts and latencies to r (latencies are sorted again by finish).
func (r *loadResult) merge(o loadResult) {
	r.Requests += o.Requests
	r.Errors += o.Errors
	r.Elapsed += o.Elapsed
	r.Bytes += o.Bytes
	r.DepRequests += o.DepRequests
	r.lat = append(r.lat, o.lat...)
}

func (r *loadResult) finish() { slices.Sort(r.lat) }

// loadClient is the one HTTP client used for every target: keep-alive connections over loopback TCP,
// at most conns per target, no compression, HTTP/1.1.
func newLoadClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        4 * conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
	}
}

// hammer runs conns closed-loop workers against url for d (after a short warm-up that opens the
// connections) and records every request's latency. wantCode is the status every answer must have.
// depCount reads the dependencies' request counter.
func hammer(ctx context.Context, client *http.Client, url string, wantCode, conns int, d time.Duration,
	depCount func() int64) (loadResult, error) {
	do := func(ctx context.Context) (int64, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return n, err
		}
		if resp.StatusCode != wantCode {
			return n, fmt.Errorf("GET %s: status %d, want %d", url, resp.StatusCode, wantCode)
		}
		return n, nil
	}
	// Warm-up: open every connection (idle ones are kept between rounds).
	var wg sync.WaitGroup
	errs := make([]error, conns)
	for i := range conns {
		wg.Go(func() {
			if _, err := do(ctx); err != nil {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return loadResult{}, fmt.Errorf("warm-up: %w", err)
		}
	}

	parts := make([]loadResult, conns)
	dep0 := depCount()
	start := time.Now()
	deadline := start.Add(d)
	for i := range conns {
		wg.Go(func() {
			p := &parts[i]
			p.lat = make([]time.Duration, 0, 1<<14)
			for {
				t0 := time.Now()
				if !t0.Before(deadline) || ctx.Err() != nil {
					return
				}
				n, err := do(ctx)
				p.lat = append(p.lat, time.Since(t0))
				p.Requests++
				p.Bytes += n
				if err != nil {
					p.Errors++
				}
			}
		})
	}
	wg.Wait()
	out := loadResult{Elapsed: time.Since(start), DepRequests: depCount() - dep0}
	for _, p := range parts {
		out.Requests += p.Requests
		out.Errors += p.Errors
		out.Bytes += p.Bytes
		out.lat = append(out.lat, p.lat...)
	}
	out.finish()
	return out, ctx.Err()
}
