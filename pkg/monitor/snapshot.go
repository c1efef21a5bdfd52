package monitor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
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

	// The prepared "data" member of /api/health, and the HTTP status codes of it and of
	// /api/health/detailed. DetailedData and BreakersData give the other two documents.
	HealthData               []byte
	HealthCode, DetailedCode int
	detailed, breakersDoc    *assembly
}

// DetailedData is the "data" member of /api/health/detailed.
func (s *Snapshot) DetailedData() []byte { return s.detailed.bytes() }

// BreakersData is the "data" member of /api/health/circuit-breakers.
func (s *Snapshot) BreakersData() []byte { return s.breakersDoc.bytes() }

// assembly is a JSON document as the pieces it is made of: literal glue and the members rendered when
// their probe or breaker last changed. The pieces are joined on the first request for the document and
// kept with the snapshot: a snapshot nobody asks for (most of them, at a tick a second) costs no copy
// of its megabytes, and one that is asked for is joined once, not per request.
type assembly struct {
	once   sync.Once
	pieces [][]byte
	size   int
	joined []byte
}

func (a *assembly) add(p []byte) {
	a.pieces = append(a.pieces, p)
	a.size += len(p)
}

func (a *assembly) bytes() []byte {
	if a == nil {
		return nil
	}
	a.once.Do(func() {
		b := make([]byte, 0, a.size)
		for _, p := range a.pieces {
			b = append(b, p...)
		}
		a.joined, a.pieces = b, nil
	})
	return a.joined
}

// Literal pieces of the assembled documents.
var (
	comma         = []byte(",")
	servicesOpen  = []byte(`,"services":{`)
	breakersOpen  = []byte(`{"breakers":{`)
	summaryMember = []byte(`},"summary":`)
	closeBrace    = []byte("}")
)

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

	detail  []byte // `"name":{…}`, its member of detailed's services, rendered once per change
	nameLen int    // len(`"name":`)
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

// prepare renders the JSON members of s. Called once per change, never per request.
//
// The per-probe and per-breaker members, which make up almost all of the bytes, come pre-rendered: each
// CheckView's detail was rendered when its probe last changed, and r keeps each breaker's member until
// the breaker changes. So a snapshot costs O(changes) in encoding plus O(probes) in copying bytes. The
// output is byte for byte what encoding/json makes of the equivalent maps (sorted keys).
func (s *Snapshot) prepare(legacy json.RawMessage, legacyName string, r *renderCache) error {
	var err error
	bsum := breakerSummary(s.Breakers)
	byName := r.sortedByName(s.Checks)

	status := legacyStatus(s)
	var total, slowest time.Duration
	slowestName := ""
	services := make([]byte, 0, 32*len(s.Checks)+2)
	services = append(services, '{')
	for k, i := range byName {
		c := &s.Checks[i]
		if k > 0 {
			services = append(services, ',')
		}
		services = append(services, c.detail[:c.nameLen]...) // `"name":`
		services = strconv.AppendQuote(services, string(c.Status))
	}
	services = append(services, '}')
	for i := range s.Checks {
		c := &s.Checks[i]
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
			"services": json.RawMessage(services),
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
	if status == "error" || status == "starting" || status == "stopping" {
		s.HealthCode = http.StatusServiceUnavailable
	}

	// {"circuitBreakers":…,"config":…,"container":…,"health":{"overall":…,"services":{…}},"shuttingDown":…,"status":…}
	bsumJSON, err := json.Marshal(bsum)
	if err != nil {
		return fmt.Errorf("render /api/health/detailed: %w", err)
	}
	cfgJSON, err := json.Marshal(configJSON(s.Config))
	if err != nil {
		return fmt.Errorf("render /api/health/detailed: %w", err)
	}
	container, err := r.containerJSON(s)
	if err != nil {
		return fmt.Errorf("render /api/health/detailed: %w", err)
	}
	head := make([]byte, 0, 128+len(bsumJSON)+len(cfgJSON))
	head = append(head, `{"circuitBreakers":`...)
	head = append(head, bsumJSON...)
	head = append(head, `,"config":`...)
	head = append(head, cfgJSON...)
	head = append(head, `,"container":`...)
	d := &assembly{pieces: make([][]byte, 0, 2*len(s.Checks)+8)}
	d.add(head)
	d.add(container)
	d.add(strconv.AppendQuote([]byte(`,"health":{"overall":`), string(s.Overall)))
	d.add(servicesOpen)
	for k, i := range byName {
		if k > 0 {
			d.add(comma)
		}
		d.add(s.Checks[i].detail)
	}
	d.add(strconv.AppendBool([]byte(`}},"shuttingDown":`), s.ShuttingDown))
	d.add(strconv.AppendQuote([]byte(`,"status":`), status))
	d.add(closeBrace)
	s.detailed = d
	s.DetailedCode = http.StatusOK
	if s.Overall == probes.Unhealthy || s.ShuttingDown {
		s.DetailedCode = http.StatusServiceUnavailable
	}

	// {"breakers":{"name":{…},…},"summary":{…}}; Stats come sorted by name.
	bd := &assembly{pieces: make([][]byte, 0, 2*len(s.Breakers)+4)}
	bd.add(breakersOpen)
	for k := range s.Breakers {
		frag, err := r.breaker(&s.Breakers[k])
		if err != nil {
			return fmt.Errorf("render /api/health/circuit-breakers: %w", err)
		}
		if k > 0 {
			bd.add(comma)
		}
		bd.add(frag)
	}
	bd.add(summaryMember)
	bd.add(bsumJSON)
	bd.add(closeBrace)
	s.breakersDoc = bd
	r.prune(s.Breakers)
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

// ms renders a duration in milliseconds with microsecond precision.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
