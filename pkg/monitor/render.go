package monitor

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/health-agent/health-agent/pkg/breakers"
)

// renderCache keeps what a snapshot's JSON is assembled from between snapshots, so that a new snapshot
// encodes only what changed. It belongs to the Monitor and is guarded by Monitor.mu.
type renderCache struct {
	breakers map[string]*renderedBreaker

	container []byte   // data.container of the running config; nil after a reload
	byName    []int    // indices of the checks sorted by name (encoding/json's order of map keys)
	names     []string // the names byName was computed for
}

// renderedBreaker is one breaker's member of the circuit-breakers document, and the stats it shows.
type renderedBreaker struct {
	key    breakerKey
	probes []string
	frag   []byte // `"name":{…}`
}

// breakerKey is everything of breakers.Stats the rendered member shows, but the history, which only
// ever grows at its end: its length and last entry tell whether it changed.
type breakerKey struct {
	state                    string
	retryDue                 bool
	failureRate, successRate float64
	executions               uint
	failures, successes      uint
	remainingMs              int64
	lastStateChange          time.Time
	transitions              uint64
	historyLen               int
	lastAt                   time.Time
	lastOutcome              string
}

func keyOf(b *breakers.Stats) breakerKey {
	k := breakerKey{
		state: b.State, retryDue: b.RetryDue, failureRate: b.FailureRate, successRate: b.SuccessRate,
		executions: b.Executions, failures: b.Failures, successes: b.Successes,
		remainingMs: b.RemainingDelay.Milliseconds(), lastStateChange: b.LastStateChange,
		transitions: b.Transitions, historyLen: len(b.History),
	}
	if n := len(b.History); n > 0 {
		k.lastAt, k.lastOutcome = b.History[n-1].At, b.History[n-1].Outcome
	}
	return k
}

// breaker returns b's member of the circuit-breakers document, rendering it only when b changed.
func (r *renderCache) breaker(b *breakers.Stats) ([]byte, error) {
	if r.breakers == nil {
		r.breakers = map[string]*renderedBreaker{}
	}
	k := keyOf(b)
	if rb := r.breakers[b.Name]; rb != nil && rb.key == k && slices.Equal(rb.probes, b.Probes) {
		return rb.frag, nil
	}
	body, err := json.Marshal(toBreakerJSON(*b))
	if err != nil {
		return nil, fmt.Errorf("breaker %q: %w", b.Name, err)
	}
	frag := append(strconv.AppendQuote(nil, b.Name), ':')
	frag = append(frag, body...)
	r.breakers[b.Name] = &renderedBreaker{key: k, probes: slices.Clone(b.Probes), frag: frag}
	return frag, nil
}

// prune forgets breakers a reload removed.
func (r *renderCache) prune(current []breakers.Stats) {
	if len(r.breakers) <= len(current) {
		return
	}
	keep := make(map[string]bool, len(current))
	for _, b := range current {
		keep[b.Name] = true
	}
	maps.DeleteFunc(r.breakers, func(name string, _ *renderedBreaker) bool { return !keep[name] })
}

// sortedByName returns the indices of checks in name order, computed again only when the names change.
func (r *renderCache) sortedByName(checks []CheckView) []int {
	same := len(r.names) == len(checks)
	for i := 0; same && i < len(checks); i++ {
		same = r.names[i] == checks[i].Name
	}
	if same {
		return r.byName
	}
	r.names = make([]string, len(checks))
	r.byName = make([]int, len(checks))
	for i := range checks {
		r.names[i], r.byName[i] = checks[i].Name, i
	}
	slices.SortFunc(r.byName, func(a, b int) int { return strings.Compare(checks[a].Name, checks[b].Name) })
	r.container = nil // the probes changed: so may their dependencies
	return r.byName
}

// containerJSON is data.container, which only a reload changes.
func (r *renderCache) containerJSON(s *Snapshot) ([]byte, error) {
	if r.container != nil {
		return r.container, nil
	}
	deps := make(map[string][]string, len(s.Checks))
	for i := range s.Checks {
		deps[s.Checks[i].Name] = nonNil(s.Checks[i].DependsOn)
	}
	b, err := json.Marshal(map[string]any{
		"probes":       len(s.Checks),
		"order":        nonNil(s.Order),
		"dependencies": deps,
	})
	if err != nil {
		return nil, err
	}
	r.container = b
	return b, nil
}

// invalidate drops what a reload may have changed.
func (r *renderCache) invalidate() {
	r.container, r.names, r.byName = nil, nil, nil
}

// serviceJSON renders v as a member of detailed's services: `"name":{…}`. The fixed members win over a
// kind's field of the same name.
func serviceJSON(v *CheckView) ([]byte, int, error) {
	m := make(map[string]any, len(v.Fields)+16)
	maps.Copy(m, v.Fields)
	m["status"] = v.Status
	m["kind"] = v.Kind
	m["critical"] = v.Critical
	m["duration"] = ms(v.Duration)
	m["lastChecked"] = timeOrNil(v.LastChecked)
	m["lastSuccess"] = timeOrNil(v.LastSuccess)
	m["lastTransition"] = timeOrNil(v.LastTransition)
	m["consecutiveFailures"] = v.ConsecutiveFailures
	m["transitions"] = v.Transitions
	m["flaps"] = v.Flaps
	m["reason"] = v.Reason
	m["breaker"] = nilIfEmpty(v.Breaker)
	m["dependsOn"] = nonNil(v.DependsOn)
	m["blockedBy"] = nilIfEmpty(v.BlockedBy)
	m["timeline"] = v.Timeline
	body, err := json.Marshal(m)
	if err != nil {
		return nil, 0, fmt.Errorf("probe %q: %w", v.Name, err)
	}
	frag := append(strconv.AppendQuote(nil, v.Name), ':')
	nameLen := len(frag)
	return append(frag, body...), nameLen, nil
}

// renderedCheck is a check's view as last rendered: the timeline and detail member are reused until
// the check changes (gen) or its shown status or reason does (a verdict gone stale).
type renderedCheck struct {
	gen      uint64
	status   string
	reason   string
	timeline []Point
	detail   []byte
	nameLen  int
}

// render fills v's timeline and detail from c's cache, rendering them only when c changed.
func (c *check) render(v *CheckView) error {
	r := &c.rendered
	if r.detail != nil && r.gen == c.gen && r.status == string(v.Status) && r.reason == v.Reason {
		v.Timeline, v.detail, v.nameLen = r.timeline, r.detail, r.nameLen
		return nil
	}
	if r.gen != c.gen || r.timeline == nil {
		r.timeline = c.recent()
	}
	v.Timeline = r.timeline
	detail, nameLen, err := serviceJSON(v)
	if err != nil {
		return err
	}
	*r = renderedCheck{gen: c.gen, status: string(v.Status), reason: v.Reason, timeline: r.timeline,
		detail: detail, nameLen: nameLen}
	v.detail, v.nameLen = detail, nameLen
	return nil
}
