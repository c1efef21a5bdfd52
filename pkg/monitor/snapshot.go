package monitor

import (
	"encoding/json"
	"time"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/probes"
)

// Snapshot is an immutable picture of the agent's health, in domain terms: pkg/api turns it into the
// endpoints' documents. It is rebuilt when something shown changes and swapped atomically; nothing in
// it is modified after it is published.
type Snapshot struct {
	At           time.Time
	StartedAt    time.Time
	Version      string
	Overall      probes.Status
	Starting     bool // some critical probe has never been healthy
	ShuttingDown bool
	Checks       []CheckView // in config order
	Breakers     []breakers.Stats
	Config       ConfigInfo
	Order        []string // topological order of dependsOn
	// Legacy is the latest JSON body of the probe with `legacy: true` (LegacyProbe), nil when it has
	// none.
	Legacy      json.RawMessage
	LegacyProbe string
	// Traffic is the app's own calls through each egress route over the last minute (nil: egress is
	// off), as Options.Traffic reported it.
	Traffic []RouteTraffic
}

// RouteTraffic is the app's own traffic through one egress route over the last minute.
type RouteTraffic struct {
	Route   string
	Prefix  string
	Breaker string
	// Requests, Errors (failures the breaker counted: 5xx, unreachable, timed out) and Rejected
	// (answered by the agent: breaker open or rate limited).
	Requests, Errors, Rejected int
	P50, P99                   time.Duration // time to the response headers
	// RateLimitedFor is how long an upstream's 429 Retry-After still holds the route's calls back.
	RateLimitedFor time.Duration
}

// CheckView is one probe as the snapshot shows it.
type CheckView struct {
	Name                string
	Kind                string
	Critical            bool
	Status              probes.Status // after staleness: Unknown when the last verdict is too old
	Reason              string
	Duration            time.Duration
	LastAttempt         time.Time // the last execution that reached the dependency (Fields are its)
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
	// Revision changes whenever anything above but Status and Reason changes; with those two it tells
	// a renderer whether the view is the one it rendered before.
	Revision uint64
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
