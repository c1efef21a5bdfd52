package egress

import (
	"slices"
	"sync"
	"time"
)

// RouteTraffic is a route's real traffic over the last minute, for /api/health/detailed and the
// status page.
type RouteTraffic struct {
	Route   string `json:"route"`
	Prefix  string `json:"prefix"`
	Breaker string `json:"breaker"`
	// Requests, Errors (failures the breaker counted: 5xx, unreachable, timed out) and Rejected
	// (answered by the agent: breaker open or rate limited) over the last minute.
	Requests int `json:"requests"`
	Errors   int `json:"errors"`
	Rejected int `json:"rejected"`
	// P50 and P99 of the time to the response headers, over the last minute's latest samples.
	P50 time.Duration `json:"-"`
	P99 time.Duration `json:"-"`
	// RateLimitedFor is how long an upstream 429's Retry-After still holds the route's calls back.
	RateLimitedFor time.Duration `json:"-"`
}

// trafficWindow is how far back Traffic looks; maxSamples bounds the latencies kept for percentiles.
const (
	trafficWindow = time.Minute
	maxSamples    = 1024
)

// traffic counts a route's requests per second for the last minute and keeps its latest latencies.
type traffic struct {
	mu      sync.Mutex
	seconds [60]second
	samples [maxSamples]sample
	next    int // the next sample slot
	n       int // samples held
}

type second struct {
	at                         int64 // unix second this slot counts
	requests, errors, rejected int
}

type sample struct {
	at  time.Time
	dur time.Duration
}

func newTraffic() *traffic { return &traffic{} }

func (t *traffic) add(at time.Time, dur time.Duration, failed, rejected bool) {
	sec := at.Unix()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.seconds[sec%60]
	if s.at != sec {
		*s = second{at: sec}
	}
	s.requests++
	if failed {
		s.errors++
	}
	if rejected {
		s.rejected++
		return // the agent's own answer says nothing about the upstream's latency
	}
	t.samples[t.next] = sample{at: at, dur: dur}
	t.next = (t.next + 1) % maxSamples
	t.n = min(t.n+1, maxSamples)
}

func (t *traffic) summary(now time.Time) RouteTraffic {
	var out RouteTraffic
	from := now.Add(-trafficWindow)
	durs := make([]time.Duration, 0, 64)
	t.mu.Lock()
	for _, s := range t.seconds {
		if s.at > from.Unix() && s.at <= now.Unix() {
			out.Requests += s.requests
			out.Errors += s.errors
			out.Rejected += s.rejected
		}
	}
	for i := range t.n {
		if s := t.samples[i]; s.at.After(from) {
			durs = append(durs, s.dur)
		}
	}
	t.mu.Unlock()
	if len(durs) > 0 {
		slices.Sort(durs)
		out.P50 = durs[(len(durs)-1)*50/100]
		out.P99 = durs[(len(durs)-1)*99/100]
	}
	return out
}
