package monitor

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/probes"
)

// Snapshot is an immutable picture of the agent's health. Handlers serve it as it is; it is rebuilt when
// something changes and swapped atomically.
type Snapshot struct {
	At           time.Time
	StartedAt    time.Time
	Version      string
	Overall      probes.Status
	Starting     bool // some critical probe has never been healthy
	ShuttingDown bool
	Checks       []CheckView // in config order
	Breakers     []breakers.Stats
	Config       probes.ConfigInfo
	Order        []string // topological order of dependsOn

	// The prepared "data" members of the JSON endpoints and their HTTP status codes.
	HealthData, DetailedData, BreakersData []byte
	HealthCode, DetailedCode               int
}

// CheckView is one probe as the snapshot shows it.
type CheckView struct {
	Name                string
	Kind                string
	Critical            bool
	Status              probes.Status // after staleness: Unknown when the last verdict is too old
	Reason              string
	Duration            time.Duration
	LastChecked         time.Time
	LastSuccess         time.Time
	LastTransition      time.Time
	ConsecutiveFailures int
	Transitions         uint64
	Flaps               uint64 // changes between failed and succeeded executions, before hysteresis
	EverHealthy         bool
	Breaker             string // "" for local kinds
	DependsOn           []string
	BlockedBy           string
	Fields              map[string]any
	Timeline            []Point
}

// Ready reports whether the check lets /readyz pass: a non-critical check always does.
func (v *CheckView) Ready() bool { return !v.Critical || v.OK() }

// OK reports whether the check's own status is good enough to serve: healthy or degraded.
func (v *CheckView) OK() bool { return v.Status == probes.Healthy || v.Status == probes.Degraded }

// Check returns the named check, or nil.
func (s *Snapshot) Check(name string) *CheckView {
	for i := range s.Checks {
		if s.Checks[i].Name == name {
			return &s.Checks[i]
		}
	}
	return nil
}

// Ready reports whether /readyz passes: not shutting down and no critical probe unhealthy, blocked or
// unknown.
func (s *Snapshot) Ready() bool {
	if s.ShuttingDown {
		return false
	}
	for i := range s.Checks {
		if !s.Checks[i].Ready() {
			return false
		}
	}
	return true
}

// overall applies the contract's rule to the checks.
func overall(checks []CheckView) probes.Status {
	out := probes.Healthy
	for i := range checks {
		c := &checks[i]
		switch {
		case c.Critical && !c.OK():
			return probes.Unhealthy
		case c.Status != probes.Healthy:
			out = probes.Degraded
		}
	}
	return out
}

// legacyStatus maps the overall status to /api/health's data.status.
func legacyStatus(s *Snapshot) string {
	switch {
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

// prepare renders the JSON members of s. Called once per change, never per request.
func (s *Snapshot) prepare(legacy json.RawMessage, legacyName string) error {
	var err error
	bsum := breakerSummary(s.Breakers)

	status := legacyStatus(s)
	services := make(map[string]probes.Status, len(s.Checks))
	var total, slowest time.Duration
	slowestName := ""
	for i := range s.Checks {
		c := &s.Checks[i]
		services[c.Name] = c.Status
		total += c.Duration
		if c.Duration >= slowest {
			slowest, slowestName = c.Duration, c.Name
		}
	}
	open := []string{}
	for _, b := range s.Breakers {
		if b.State == breakers.Open {
			open = append(open, b.Name)
		}
	}
	health := map[string]any{
		"status": status,
		"legacy": legacy,
		"enhanced": map[string]any{
			"overall":  s.Overall,
			"services": services,
		},
		"circuitBreakers": map[string]any{"total": bsum.Total, "healthy": bsum.Healthy, "open": open},
		"performance": map[string]any{
			"probes":          len(s.Checks),
			"totalProbeMs":    ms(total),
			"slowestProbe":    slowestName,
			"slowestProbeMs":  ms(slowest),
			"snapshotBuiltAt": s.At,
		},
		"uptime":  s.At.Sub(s.StartedAt).Round(time.Second).Seconds(),
		"version": s.Version,
	}
	if legacy == nil {
		health["legacy"] = nil
		health["legacyError"] = legacyError(s, legacyName)
	}
	if s.HealthData, err = json.Marshal(health); err != nil {
		return fmt.Errorf("render /api/health: %w", err)
	}
	s.HealthCode = http.StatusOK
	if status == "error" || status == "starting" {
		s.HealthCode = http.StatusServiceUnavailable
	}

	svc := make(map[string]map[string]any, len(s.Checks))
	deps := make(map[string][]string, len(s.Checks))
	for i := range s.Checks {
		c := &s.Checks[i]
		m := make(map[string]any, len(c.Fields)+16)
		maps.Copy(m, c.Fields) // the fixed members below win over a kind's field of the same name
		m["status"] = c.Status
		m["kind"] = c.Kind
		m["critical"] = c.Critical
		m["duration"] = ms(c.Duration)
		m["lastChecked"] = timeOrNil(c.LastChecked)
		m["lastSuccess"] = timeOrNil(c.LastSuccess)
		m["lastTransition"] = timeOrNil(c.LastTransition)
		m["consecutiveFailures"] = c.ConsecutiveFailures
		m["transitions"] = c.Transitions
		m["flaps"] = c.Flaps
		m["reason"] = c.Reason
		m["breaker"] = nilIfEmpty(c.Breaker)
		m["dependsOn"] = nonNil(c.DependsOn)
		m["blockedBy"] = nilIfEmpty(c.BlockedBy)
		m["timeline"] = c.Timeline
		svc[c.Name] = m
		deps[c.Name] = nonNil(c.DependsOn)
	}
	detailed := map[string]any{
		"health": map[string]any{
			"overall":  s.Overall,
			"services": svc,
		},
		"container": map[string]any{
			"probes":       len(s.Checks),
			"order":        nonNil(s.Order),
			"dependencies": deps,
		},
		"circuitBreakers": bsum,
		"config":          configJSON(s.Config),
		"shuttingDown":    s.ShuttingDown,
	}
	if s.DetailedData, err = json.Marshal(detailed); err != nil {
		return fmt.Errorf("render /api/health/detailed: %w", err)
	}
	s.DetailedCode = http.StatusOK
	if s.Overall == probes.Unhealthy {
		s.DetailedCode = http.StatusServiceUnavailable
	}

	bm := make(map[string]breakerJSON, len(s.Breakers))
	for _, b := range s.Breakers {
		bm[b.Name] = toBreakerJSON(b)
	}
	if s.BreakersData, err = json.Marshal(map[string]any{"summary": bsum, "breakers": bm}); err != nil {
		return fmt.Errorf("render /api/health/circuit-breakers: %w", err)
	}
	return nil
}

// configJSON is data.config: lastReload is null until a reload has been attempted.
func configJSON(ci probes.ConfigInfo) map[string]any {
	out := map[string]any{"source": ci.Source, "sha256": ci.SHA256, "loadedAt": ci.LoadedAt, "lastReload": nil}
	if ci.LastReload != (probes.Reload{}) {
		out["lastReload"] = ci.LastReload
	}
	return out
}

func legacyError(s *Snapshot, name string) string {
	if name == "" {
		return "no probe has legacy: true"
	}
	c := s.Check(name)
	switch {
	case c == nil:
		return "legacy probe missing"
	case c.Status == probes.Blocked:
		return "blocked by " + c.BlockedBy
	case c.Reason != "":
		return c.Reason
	default:
		return "no legacy JSON body received yet"
	}
}

// BreakerSummary is data.summary of /api/health/circuit-breakers.
type BreakerSummary struct {
	Total    int  `json:"total"`
	Healthy  bool `json:"healthy"` // no breaker open
	Closed   int  `json:"closed"`
	Open     int  `json:"open"`
	HalfOpen int  `json:"halfOpen"`
}

func breakerSummary(stats []breakers.Stats) BreakerSummary {
	s := BreakerSummary{Total: len(stats)}
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
	State            string           `json:"state"`
	RetryDue         bool             `json:"retryDue"`
	FailureRate      float64          `json:"failureRate"`
	SuccessRate      float64          `json:"successRate"`
	Executions       uint             `json:"executions"`
	Failures         uint             `json:"failures"`
	Successes        uint             `json:"successes"`
	RemainingDelayMs int64            `json:"remainingDelayMs"`
	LastStateChange  *time.Time       `json:"lastStateChange"`
	Transitions      uint64           `json:"transitions"`
	Probes           []string         `json:"probes"`
	History          []historyEntries `json:"history"`
}

type historyEntries struct {
	At         time.Time `json:"at"`
	Outcome    string    `json:"outcome"`
	DurationMs float64   `json:"durationMs"`
	Error      string    `json:"error,omitempty"`
}

func toBreakerJSON(b breakers.Stats) breakerJSON {
	out := breakerJSON{
		State: b.State, RetryDue: b.RetryDue, FailureRate: b.FailureRate, SuccessRate: b.SuccessRate,
		Executions: b.Executions, Failures: b.Failures, Successes: b.Successes,
		RemainingDelayMs: b.RemainingDelay.Milliseconds(), Transitions: b.Transitions,
		Probes: nonNil(slices.Clone(b.Probes)), History: make([]historyEntries, 0, len(b.History)),
	}
	if !b.LastStateChange.IsZero() {
		t := b.LastStateChange
		out.LastStateChange = &t
	}
	for _, h := range b.History {
		out.History = append(out.History, historyEntries{At: h.At, Outcome: h.Outcome, DurationMs: ms(h.Duration), Error: h.Error})
	}
	return out
}

// ms renders a duration in milliseconds with microsecond precision.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
