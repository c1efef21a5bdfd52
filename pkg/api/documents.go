package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

// The JSON documents of the health endpoints: their shapes (the contract's JSON paths), their HTTP
// status codes, and how they are built. A snapshot's documents are built once, on the first request
// after it is published, and served as prepared bytes until the next one; within a document, a
// probe's or a breaker's member is encoded again only when that probe or breaker changed, so that a
// snapshot of 1,000 probes where one changed costs one member's encoding plus copying bytes.

// documents are the prepared "data" members of one snapshot's JSON endpoints.
type documents struct {
	snap *monitor.Snapshot
	r    *renderer

	healthOnce, detailedOnce, breakersOnce sync.Once
	health, detailed, breakers             []byte
	healthCode, detailedCode               int
}

// renderer keeps the latest snapshot's documents and the members they are assembled from.
type renderer struct {
	current atomic.Pointer[documents]

	mu             sync.Mutex // guards the caches below
	serviceMembers map[string]*member
	breakerMembers map[string]*member
}

// member is one probe's or breaker's encoded JSON member and what it was encoded from.
type member struct {
	key  any
	json []byte
}

// documents returns s's documents, making them when s is new.
func (r *renderer) documents(s *monitor.Snapshot) *documents {
	if d := r.current.Load(); d != nil && d.snap == s {
		return d
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.current.Load(); d != nil && d.snap == s {
		return d
	}
	d := &documents{snap: s, r: r}
	r.current.Store(d)
	return d
}

// Status returns /api/health's data.status for s.
func Status(s *monitor.Snapshot) string {
	switch {
	case s.ShuttingDown:
		return "stopping" // a load balancer's `curl -f /api/health` must see the pod leave
	case s.Starting && s.Overall == probes.Unhealthy:
		return "starting"
	case s.Overall == probes.Healthy:
		return "ok"
	case s.Overall == probes.Degraded:
		return "degraded"
	default:
		return "error"
	}
}

type healthData struct {
	Status          string          `json:"status"`
	Legacy          json.RawMessage `json:"legacy"` // null when there is no body
	LegacyError     string          `json:"legacyError,omitempty"`
	Enhanced        enhancedJSON    `json:"enhanced"`
	CircuitBreakers breakersBrief   `json:"circuitBreakers"`
	Performance     performanceJSON `json:"performance"`
	Uptime          float64         `json:"uptime"` // seconds
	Version         string          `json:"version"`
}

type enhancedJSON struct {
	Overall  probes.Status            `json:"overall"`
	Services map[string]probes.Status `json:"services"`
}

type breakersBrief struct {
	Total   int      `json:"total"`
	Healthy bool     `json:"healthy"`
	Open    []string `json:"open"`
}

type performanceJSON struct {
	Probes          int       `json:"probes"`
	TotalProbeMs    float64   `json:"totalProbeMs"`
	SlowestProbe    string    `json:"slowestProbe"`
	SlowestProbeMs  float64   `json:"slowestProbeMs"`
	SnapshotBuiltAt time.Time `json:"snapshotBuiltAt"`
}

// healthDoc is the "data" member of /api/health and its HTTP status.
func (d *documents) healthDoc() ([]byte, int) {
	d.healthOnce.Do(func() {
		s := d.snap
		status := Status(s)
		h := healthData{
			Status:   status,
			Legacy:   s.Legacy,
			Enhanced: enhancedJSON{Overall: s.Overall, Services: make(map[string]probes.Status, len(s.Checks))},
			Uptime:   s.At.Sub(s.StartedAt).Round(time.Second).Seconds(),
			Version:  s.Version,
		}
		var total, slowest time.Duration
		for i := range s.Checks {
			c := &s.Checks[i]
			h.Enhanced.Services[c.Name] = c.Status
			total += c.Duration
			if c.Duration >= slowest {
				slowest, h.Performance.SlowestProbe = c.Duration, c.Name
			}
		}
		h.Performance.Probes, h.Performance.SnapshotBuiltAt = len(s.Checks), s.At
		h.Performance.TotalProbeMs, h.Performance.SlowestProbeMs = ms(total), ms(slowest)
		sum := summarize(s.Breakers)
		h.CircuitBreakers = breakersBrief{Total: sum.Total, Healthy: sum.Healthy, Open: []string{}}
		for _, b := range s.Breakers {
			if b.State == breakers.Open {
				h.CircuitBreakers.Open = append(h.CircuitBreakers.Open, b.Name)
			}
		}
		if s.Legacy == nil {
			h.LegacyError = legacyError(s)
		}
		d.health = mustMarshal(h)
		d.healthCode = http.StatusOK
		if status == "error" || status == "starting" || status == "stopping" {
			d.healthCode = http.StatusServiceUnavailable
		}
	})
	return d.health, d.healthCode
}

// legacyError says why /api/health has no legacy body.
func legacyError(s *monitor.Snapshot) string {
	if s.LegacyProbe == "" {
		return "no probe has legacy: true"
	}
	c := s.Check(s.LegacyProbe)
	switch {
	case c == nil:
		return "legacy probe missing"
	case c.Status == probes.Blocked:
		return "blocked by " + c.BlockedBy
	}
	if why, ok := c.Fields["legacyError"].(string); ok && why != "" {
		return why // the probe's own word on the body: not JSON, withheld, from another host
	}
	switch {
	case c.Reason != "":
		return c.Reason
	case c.LastChecked.IsZero():
		return "no result yet"
	default:
		return "the legacy probe received no JSON body"
	}
}

// detailedData is data of /api/health/detailed but data.health.services, which is assembled from the
// probes' members (see detailedDoc).
type detailedData struct {
	CircuitBreakers breakerSummary `json:"circuitBreakers"`
	Config          configJSON     `json:"config"`
	Container       containerJSON  `json:"container"`
	Egress          *egressJSON    `json:"egress,omitempty"` // when the egress proxy is on
	ShuttingDown    bool           `json:"shuttingDown"`
	Status          string         `json:"status"`
}

// egressJSON is data.egress: the app's own calls through each route over the last minute.
type egressJSON struct {
	Routes []trafficJSON `json:"routes"`
}

type trafficJSON struct {
	Route            string  `json:"route"`
	Prefix           string  `json:"prefix"`
	Breaker          string  `json:"breaker"`
	Requests         int     `json:"requests"`
	Errors           int     `json:"errors"`
	Rejected         int     `json:"rejected"`
	P50Ms            float64 `json:"p50Ms"`
	P99Ms            float64 `json:"p99Ms"`
	RateLimitedForMs int64   `json:"rateLimitedForMs"`
}

func toTrafficJSON(t monitor.RouteTraffic) trafficJSON {
	return trafficJSON{Route: t.Route, Prefix: t.Prefix, Breaker: t.Breaker, Requests: t.Requests, Errors: t.Errors,
		Rejected: t.Rejected, P50Ms: ms(t.P50), P99Ms: ms(t.P99), RateLimitedForMs: t.RateLimitedFor.Milliseconds()}
}

type configJSON struct {
	Source     string          `json:"source"`
	SHA256     string          `json:"sha256"`
	LoadedAt   time.Time       `json:"loadedAt"`
	LastReload *monitor.Reload `json:"lastReload"` // null until a reload has been attempted
}

type containerJSON struct {
	Probes       int                 `json:"probes"`
	Order        []string            `json:"order"`
	Dependencies map[string][]string `json:"dependencies"`
}

// detailedDoc is the "data" member of /api/health/detailed and its HTTP status.
func (d *documents) detailedDoc() ([]byte, int) {
	d.detailedOnce.Do(func() {
		s := d.snap
		out := detailedData{
			CircuitBreakers: summarize(s.Breakers),
			Config:          configJSON{Source: s.Config.Source, SHA256: s.Config.SHA256, LoadedAt: s.Config.LoadedAt},
			Container: containerJSON{Probes: len(s.Checks), Order: nonNil(s.Order),
				Dependencies: make(map[string][]string, len(s.Checks))},
			ShuttingDown: s.ShuttingDown,
			Status:       Status(s),
		}
		if r := s.Config.LastReload; r != (monitor.Reload{}) {
			out.Config.LastReload = &r
		}
		if s.Traffic != nil {
			out.Egress = &egressJSON{Routes: make([]trafficJSON, 0, len(s.Traffic))}
			for _, t := range s.Traffic {
				out.Egress.Routes = append(out.Egress.Routes, toTrafficJSON(t))
			}
		}
		for i := range s.Checks {
			out.Container.Dependencies[s.Checks[i].Name] = nonNil(s.Checks[i].DependsOn)
		}
		// The members are spliced in rather than given to encoding/json as a RawMessage, which it would
		// scan and copy again: they are its own output already.
		head := mustMarshal(out)
		doc := append(head[:len(head)-1:len(head)-1], `,"health":{"overall":`...)
		doc = append(doc, mustMarshal(s.Overall)...)
		doc = append(doc, `,"services":`...)
		doc = d.r.appendServices(doc, s)
		d.detailed = append(doc, "}}"...)
		d.detailedCode = http.StatusOK
		if s.Overall == probes.Unhealthy || s.ShuttingDown {
			d.detailedCode = http.StatusServiceUnavailable
		}
	})
	return d.detailed, d.detailedCode
}

// serviceJSON is a probe's member of data.health.services, before its kind's fields.
type serviceJSON struct {
	Status              probes.Status   `json:"status"`
	Kind                string          `json:"kind"`
	Critical            bool            `json:"critical"`
	Duration            float64         `json:"duration"` // ms
	LastAttempt         *time.Time      `json:"lastAttempt"`
	LastChecked         *time.Time      `json:"lastChecked"`
	LastSuccess         *time.Time      `json:"lastSuccess"`
	LastTransition      *time.Time      `json:"lastTransition"`
	ConsecutiveFailures int             `json:"consecutiveFailures"`
	Transitions         uint64          `json:"transitions"`
	Flaps               uint64          `json:"flaps"`
	Reason              string          `json:"reason"`
	Breaker             *string         `json:"breaker"`
	DependsOn           []string        `json:"dependsOn"`
	BlockedBy           *string         `json:"blockedBy"`
	Timeline            []monitor.Point `json:"timeline"`
	// Traffic is the app's own calls, over the last minute, through the egress routes that share the
	// probe's breaker.
	Traffic []trafficJSON `json:"traffic,omitempty"`
}

// serviceKeys are serviceJSON's member names: a kind's field of the same name is left out.
var serviceKeys = jsonNames(serviceJSON{})

// serviceKey is what a probe's member is encoded from, besides what Revision covers.
type serviceKey struct {
	revision uint64
	status   probes.Status
	reason   string
	traffic  string // the routes' traffic, encoded
	appHeap  string // the app's own heapUsed (memory probes)
}

// appendServices appends data.health.services for s to dst: the probes by name, each encoded again
// only when it changed since the last document.
func (r *renderer) appendServices(dst []byte, s *monitor.Snapshot) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.serviceMembers == nil {
		r.serviceMembers = map[string]*member{}
	}
	appHeap, _ := appHeapUsed(s.Legacy)
	byName := make([]int, len(s.Checks))
	for i := range byName {
		byName[i] = i
	}
	slices.SortFunc(byName, func(a, b int) int { return strings.Compare(s.Checks[a].Name, s.Checks[b].Name) })
	size := len(dst) + 2
	for _, m := range r.serviceMembers {
		size += len(m.json) + 40 // its name, quoted, and a little room for growth
	}
	buf := bytes.NewBuffer(slices.Grow(dst, size-len(dst)))
	buf.WriteByte('{')
	for k, i := range byName {
		c := &s.Checks[i]
		traffic := routesOf(s.Traffic, c.Breaker)
		key := serviceKey{revision: c.Revision, status: c.Status, reason: c.Reason}
		if traffic != nil {
			key.traffic = string(mustMarshal(traffic))
		}
		if c.Kind == "memory" {
			key.appHeap = appHeap
		}
		m := r.serviceMembers[c.Name]
		if m == nil || m.key != key {
			m = &member{key: key, json: encodeService(c, traffic, key.appHeap)}
			r.serviceMembers[c.Name] = m
		}
		if k > 0 {
			buf.WriteByte(',')
		}
		buf.Write(mustMarshal(c.Name))
		buf.WriteByte(':')
		buf.Write(m.json)
	}
	buf.WriteByte('}')
	prune(r.serviceMembers, len(s.Checks), func(keep func(string)) {
		for i := range s.Checks {
			keep(s.Checks[i].Name)
		}
	})
	return buf.Bytes()
}

// encodeService encodes c's member: the fixed members, then its kind's fields. Fields that cannot be
// encoded (a kind's bug) are replaced by fieldsError, so that one probe cannot break the document.
func encodeService(c *monitor.CheckView, traffic []trafficJSON, appHeap string) []byte {
	fixed := mustMarshal(serviceJSON{
		Status: c.Status, Kind: c.Kind, Critical: c.Critical, Duration: ms(c.Duration),
		LastAttempt: timeOrNil(c.LastAttempt), LastChecked: timeOrNil(c.LastChecked),
		LastSuccess: timeOrNil(c.LastSuccess), LastTransition: timeOrNil(c.LastTransition),
		ConsecutiveFailures: c.ConsecutiveFailures, Transitions: c.Transitions, Flaps: c.Flaps,
		Reason: c.Reason, Breaker: stringOrNil(c.Breaker), DependsOn: nonNil(c.DependsOn),
		BlockedBy: stringOrNil(c.BlockedBy), Timeline: nonNilPoints(c.Timeline), Traffic: traffic,
	})
	if len(c.Fields) == 0 {
		return fixed
	}
	fields := make(map[string]any, len(c.Fields))
	for k, v := range c.Fields {
		if !serviceKeys[k] {
			fields[k] = v
		}
	}
	if _, ok := fields["heapUsed"]; ok && appHeap != "" {
		fields["heapUsed"], fields["heapSource"] = appHeap, "app"
	}
	extra, err := json.Marshal(fields)
	if err != nil {
		extra = mustMarshal(map[string]string{"fieldsError": fmt.Sprintf("kind %s: fields not encodable: %v", c.Kind, err)})
	}
	if len(extra) <= 2 { // {}
		return fixed
	}
	out := make([]byte, 0, len(fixed)+len(extra))
	out = append(out, fixed[:len(fixed)-1]...)
	out = append(out, ',')
	return append(out, extra[1:]...)
}

// routesOf returns the traffic of the routes through breaker ("" for a local probe: none).
func routesOf(all []monitor.RouteTraffic, breaker string) []trafficJSON {
	var out []trafficJSON
	for _, t := range all {
		if breaker != "" && t.Breaker == breaker {
			out = append(out, toTrafficJSON(t))
		}
	}
	return out
}

// breakerSummary is data.summary of /api/health/circuit-breakers (and detailed's circuitBreakers).
type breakerSummary struct {
	Total    int  `json:"total"`
	Healthy  bool `json:"healthy"` // no breaker open
	Closed   int  `json:"closed"`
	Open     int  `json:"open"`
	HalfOpen int  `json:"halfOpen"`
}

func summarize(stats []breakers.Stats) breakerSummary {
	s := breakerSummary{Total: len(stats)}
	for _, b := range stats {
		switch b.State {
		case breakers.Closed:
			s.Closed++
		case breakers.Open:
			s.Open++
		case breakers.HalfOpen:
			s.HalfOpen++
		}
	}
	s.Healthy = s.Open == 0
	return s
}

type breakerJSON struct {
	State            string         `json:"state"`
	RetryDue         bool           `json:"retryDue"`
	FailureRate      float64        `json:"failureRate"`
	SuccessRate      float64        `json:"successRate"`
	Executions       uint           `json:"executions"`
	Failures         uint           `json:"failures"`
	Successes        uint           `json:"successes"`
	RemainingDelayMs int64          `json:"remainingDelayMs"`
	LastStateChange  *time.Time     `json:"lastStateChange"`
	Transitions      uint64         `json:"transitions"`
	Probes           []string       `json:"probes"`
	Routes           []string       `json:"routes"` // egress routes through the breaker
	History          []historyEntry `json:"history"`
}

type historyEntry struct {
	At         time.Time `json:"at"`
	Outcome    string    `json:"outcome"`
	DurationMs float64   `json:"durationMs"`
	Error      string    `json:"error,omitempty"`
	Source     string    `json:"source,omitempty"`
}

// breakerKey is what a breaker's member is encoded from: Version covers all but the clock's part.
type breakerKey struct {
	version     uint64
	remainingMs int64
	retryDue    bool
}

// breakersDoc is the "data" member of /api/health/circuit-breakers.
func (d *documents) breakersDoc() []byte {
	d.breakersOnce.Do(func() {
		s := d.snap
		r := d.r
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.breakerMembers == nil {
			r.breakerMembers = map[string]*member{}
		}
		var buf bytes.Buffer
		buf.WriteString(`{"breakers":{`)
		for k := range s.Breakers { // sorted by name
			b := &s.Breakers[k]
			key := breakerKey{version: b.Version, remainingMs: b.RemainingDelay.Milliseconds(), retryDue: b.RetryDue}
			m := r.breakerMembers[b.Name]
			if m == nil || m.key != key {
				m = &member{key: key, json: encodeBreaker(b)}
				r.breakerMembers[b.Name] = m
			}
			if k > 0 {
				buf.WriteByte(',')
			}
			buf.Write(mustMarshal(b.Name))
			buf.WriteByte(':')
			buf.Write(m.json)
		}
		buf.WriteString(`},"summary":`)
		buf.Write(mustMarshal(summarize(s.Breakers)))
		buf.WriteByte('}')
		prune(r.breakerMembers, len(s.Breakers), func(keep func(string)) {
			for _, b := range s.Breakers {
				keep(b.Name)
			}
		})
		d.breakers = buf.Bytes()
	})
	return d.breakers
}

func encodeBreaker(b *breakers.Stats) []byte {
	out := breakerJSON{
		State: b.State, RetryDue: b.RetryDue, FailureRate: b.FailureRate, SuccessRate: b.SuccessRate,
		Executions: b.Executions, Failures: b.Failures, Successes: b.Successes,
		RemainingDelayMs: b.RemainingDelay.Milliseconds(), LastStateChange: timeOrNil(b.LastStateChange),
		Transitions: b.Transitions, Probes: nonNil(b.Probes), Routes: nonNil(b.Routes),
		History: make([]historyEntry, 0, len(b.History)),
	}
	for _, h := range b.History {
		out.History = append(out.History, historyEntry{At: h.At, Outcome: h.Outcome, DurationMs: ms(h.Duration),
			Error: h.Error, Source: h.Source})
	}
	return mustMarshal(out)
}

// prune drops the cached members of names no longer shown, when there are more than n.
func prune(cache map[string]*member, n int, names func(keep func(string))) {
	if len(cache) <= n {
		return
	}
	keep := make(map[string]bool, n)
	names(func(name string) { keep[name] = true })
	for name := range cache {
		if !keep[name] {
			delete(cache, name)
		}
	}
}

// mustMarshal encodes a value of this file's types, which always encode: their floats are finite
// (rates and milliseconds) and their times within years 0-9999.
func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	return b
}

// jsonNames returns the JSON member names of a struct value's fields.
func jsonNames(v any) map[string]bool {
	var m map[string]any
	if err := json.Unmarshal(mustMarshal(v), &m); err != nil {
		panic(err)
	}
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// ms renders a duration in milliseconds with microsecond precision.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func stringOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilPoints(p []monitor.Point) []monitor.Point {
	if p == nil {
		return []monitor.Point{}
	}
	return p
}
