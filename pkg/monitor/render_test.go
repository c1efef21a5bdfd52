package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// referencePrepare is prepare as it was before pre-rendering (json.Marshal of maps): the rendered
// bytes must stay exactly these.
func referencePrepare(s *Snapshot, legacy json.RawMessage, legacyName string) (health, detailedData, breakersData []byte, err error) {
	err = referenceRender(s, legacy, legacyName, &health, &detailedData, &breakersData)
	return health, detailedData, breakersData, err
}

func referenceRender(s *Snapshot, legacy json.RawMessage, legacyName string, healthData, detailedData, breakersData *[]byte) error {
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
	if *healthData, err = json.Marshal(health); err != nil {
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
		svc[c.Name] = referenceServiceMap(c)
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
		"status":           legacyStatus(s),
	}
	if *detailedData, err = json.Marshal(detailed); err != nil {
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
	if *breakersData, err = json.Marshal(map[string]any{"summary": bsum, "breakers": bm}); err != nil {
		return fmt.Errorf("render /api/health/circuit-breakers: %w", err)
	}
	return nil
}

// referenceServiceMap is a check's member of detailed's services as a map for encoding/json.
func referenceServiceMap(c *CheckView) map[string]any {
	m := make(map[string]any, len(c.Fields)+16)
	maps.Copy(m, c.Fields) // the fixed members below win over a kind's field of the same name
	m["status"] = c.Status
	m["kind"] = c.Kind
	m["critical"] = c.Critical
	m["duration"] = ms(c.Duration)
	m["lastAttempt"] = timeOrNil(c.LastAttempt)
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
	return m
}

// referenceMember is what encoding/json makes of the member name: value in an object, `"name":…`.
func referenceMember(name string, value any) ([]byte, error) {
	b, err := json.Marshal(map[string]any{name: value})
	if err != nil {
		return nil, err
	}
	return b[1 : len(b)-1], nil
}

// scripted is a probe whose outcome the test sets.
type scripted struct {
	fail   atomic.Bool
	fields map[string]any
}

func (p *scripted) Check(context.Context) (probes.Result, error) {
	if p.fail.Load() {
		return probes.Result{}, errors.New("connection refused <&>")
	}
	return probes.Result{Status: probes.Healthy, Fields: p.fields}, nil
}

// TestPreparedMatchesReference: snapshots assembled from pre-rendered members are byte for byte what
// encoding/json makes of the whole, through changes, staleness, blocks, open breakers and a reload.
func TestPreparedMatchesReference(t *testing.T) {
	ps := map[string]*scripted{}
	kinds := probes.Registry{"scripted": {New: func(spec probes.Spec) (probes.Probe, error) {
		p := &scripted{fields: map[string]any{"note": "<b>" + spec.Name + "</b>", "status": "overridden", "n": 1}}
		ps[spec.Name] = p
		return p, nil
	}}}
	pol := config.DefaultPolicy()
	pol.Retry.MaxRetries = 0
	probe := func(name string, deps ...string) config.Probe {
		return config.Probe{Name: name, Kind: "scripted", Critical: name != "zeta", DependsOn: deps, Policy: pol}
	}
	l := loaded(probe("zeta"), probe("alpha"), probe("mid", "alpha"), probe("beta"))
	l.Config.Probes[0].Legacy = true
	m, err := New(l, Options{Kinds: kinds, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		m.mu.Lock()
		m.publishLocked(time.Now())
		m.mu.Unlock()
		s := m.Snapshot()
		ref := *s
		refHealth, refDetailed, refBreakers, err := referencePrepare(&ref, m.LegacyBody(), m.legacyName)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []struct {
			name      string
			got, want []byte
		}{
			{"/api/health", s.HealthData, refHealth},
			{"/api/health/detailed", s.DetailedData(), refDetailed},
			{"/api/health/circuit-breakers", s.BreakersData(), refBreakers},
		} {
			if !bytes.Equal(d.got, d.want) {
				t.Errorf("%s: %s differs from encoding/json's:\n got %s\nwant %s", step, d.name, d.got, d.want)
			}
		}
		if d1, d2 := s.DetailedData(), s.DetailedData(); len(d1) == 0 || &d1[0] != &d2[0] {
			t.Errorf("%s: the detailed document is joined again for a second request", step)
		}
		if s.HealthCode != ref.HealthCode || s.DetailedCode != ref.DetailedCode {
			t.Errorf("%s: codes %d/%d, want %d/%d", step, s.HealthCode, s.DetailedCode, ref.HealthCode, ref.DetailedCode)
		}
	}
	run := func(name string) {
		m.mu.Lock()
		c := m.checks[name]
		m.mu.Unlock()
		m.execute(context.Background(), c)
	}

	check("nothing run yet")
	for _, n := range []string{"zeta", "alpha", "mid", "beta"} {
		run(n)
	}
	check("all healthy")
	check("unchanged")
	ps["alpha"].fail.Store(true)
	for range 4 { // failuresBeforeUnhealthy 2, breaker 3 of 5: opens
		run("alpha")
	}
	run("mid")
	check("alpha unhealthy, breaker open, mid blocked")
	m.mu.Lock()
	m.checks["beta"].lastChecked = time.Now().Add(-time.Hour) // stale
	m.mu.Unlock()
	check("beta stale")
	ps["alpha"].fail.Store(false)
	m.setConfigInfo(l, probes.Reload{At: time.Now(), Success: true})
	check("reload recorded")

	// A reload that changes dependencies but not names: data.container must follow.
	l2 := loaded(probe("zeta"), probe("alpha", "beta"), probe("mid"), probe("beta"))
	checks, err := m.build(l2, m.checks)
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.install(l2, checks)
	m.mu.Unlock()
	check("after reload")
}

// TestAssemblyJoinedOnceUnderConcurrency: requests racing for a fresh snapshot's document all get the
// one joined copy.
func TestAssemblyJoinedOnceUnderConcurrency(t *testing.T) {
	m := benchMonitor(t, 50)
	m.mu.Lock()
	m.publishLocked(time.Now())
	m.mu.Unlock()
	s := m.Snapshot()
	const n = 16
	got := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i] = s.BreakersData() })
	}
	wg.Wait()
	for i := range got {
		if len(got[i]) == 0 || &got[i][0] != &got[0][0] {
			t.Fatalf("request %d got another copy of the document", i)
		}
	}
	if !json.Valid(got[0]) {
		t.Fatalf("joined document is not JSON: %.200s", got[0])
	}
}

// compareService renders v with serviceJSON after prev and holds it to encoding/json: the same bytes, or
// an error where encoding/json fails. It returns the rendering, for the next call's prev.
func compareService(t *testing.T, v *CheckView, prev *renderedCheck) renderedCheck {
	t.Helper()
	want, wantErr := referenceMember(v.Name, referenceServiceMap(v))
	got, err := serviceJSON(v, prev)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("serviceJSON error %v, encoding/json's %v", err, wantErr)
	}
	if err != nil {
		return *prev
	}
	if !bytes.Equal(got.detail, want) {
		t.Fatalf("serviceJSON differs from encoding/json's:\n got %s\nwant %s", got.detail, want)
	}
	name, _ := json.Marshal(v.Name)
	if got.nameLen != len(name)+1 {
		t.Fatalf("nameLen %d, want %d (%s:)", got.nameLen, len(name)+1, name)
	}
	if cap(got.detail) != len(got.detail) {
		t.Fatalf("detail has spare capacity %d: an append by a reader would write into it", cap(got.detail)-len(got.detail))
	}
	return got
}

// compareBreaker is compareService for a breaker's member.
func compareBreaker(t *testing.T, b *breakers.Stats, prev *renderedBreaker) renderedBreaker {
	t.Helper()
	want, wantErr := referenceMember(b.Name, toBreakerJSON(*b))
	frag, history, err := breakerMember(b, prev)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("breakerMember error %v, encoding/json's %v", err, wantErr)
	}
	if err != nil {
		return *prev
	}
	if !bytes.Equal(frag, want) {
		t.Fatalf("breakerMember differs from encoding/json's:\n got %s\nwant %s", frag, want)
	}
	return renderedBreaker{frag: frag, history: history}
}

// timelineOf is n points from at, a second apart, cycling through the statuses.
func timelineOf(at time.Time, n int) []Point {
	statuses := []probes.Status{probes.Healthy, probes.Degraded, probes.Unhealthy, probes.Unknown, probes.Blocked}
	tl := make([]Point, n)
	for i := range tl {
		tl[i] = Point{At: at.Add(time.Duration(i) * time.Second), Status: statuses[i%len(statuses)]}
	}
	return tl
}

// TestServiceJSONMatchesReference: a check's member is byte for byte encoding/json's rendering of the
// map it replaced, for every kind of value a kind may put in its fields.
func TestServiceJSONMatchesReference(t *testing.T) {
	at := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	base := func() CheckView {
		return CheckView{
			Name: "db", Kind: "tcp", Critical: true, Status: probes.Healthy, Reason: "",
			Duration: 1500 * time.Microsecond, LastChecked: at, LastSuccess: at, LastTransition: at.Add(-time.Hour),
			ConsecutiveFailures: 0, Transitions: 3, Flaps: 7, Breaker: "db", DependsOn: []string{"net"},
			Fields:   map[string]any{"address": "127.0.0.1:5432"},
			Timeline: timelineOf(at, timelineLen),
		}
	}
	type chan2 chan int
	var nilPtr *time.Time
	cases := []struct {
		name string
		edit func(v *CheckView)
	}{
		{"typical", func(*CheckView) {}},
		{"fields named like fixed members lose to them", func(v *CheckView) {
			v.Fields = map[string]any{
				"status": "overridden", "kind": 1, "timeline": nil, "duration": "1h", "blockedBy": "x",
				"transitions": -1, "lastChecked": true, "aaa": 1, "lastC": 2, "lastCheckedAt": 3, "zzz": 4,
				"Status": "capital sorts first", "": "empty key", "reason2": "after reason",
			}
		}},
		{"nested values and escaping", func(v *CheckView) {
			v.Fields = map[string]any{
				"html":    "<script>alert('&')</script>",
				"jsonp":   "a\u2028b\u2029c",
				"control": "\x00\x01\b\f\n\r\t\x1f\x7f",
				"quotes":  `say "hi" \ bye`,
				"invalid": "ok\xff\xfe\xc0end",
				"unicode": "héllo wörld ✓ 🚀",
				"nested":  map[string]any{"b": []any{1, "<", nil, map[string]any{"z": 1.5, "a": false}}, "a": "&"},
				"list":    []string{"x<y", "", "z"},
				"ints":    []int{1, -2, 3},
				"bytes":   []byte("<raw>"),
				"raw":     json.RawMessage(`{ "b" : "<" , "a":1 }`),
				"<key>":   "key needs escaping",
				"k\u2028": "so does this",
				"k\xff":   "and this",
			}
		}},
		{"nil fields", func(v *CheckView) { v.Fields = nil }},
		{"empty fields", func(v *CheckView) { v.Fields = map[string]any{} }},
		{"nil field values", func(v *CheckView) {
			v.Fields = map[string]any{"none": nil, "ptr": nilPtr, "slice": []string(nil), "map": map[string]int(nil)}
		}},
		{"typed values", func(v *CheckView) {
			v.Fields = map[string]any{
				"status2": probes.Degraded, "dur": 1500 * time.Millisecond, "at": at, "atPtr": &at,
				"struct": struct {
					A int    `json:"a"`
					B string `json:"b,omitempty"`
				}{A: 1},
				"i8": int8(-8), "i16": int16(-16), "i32": int32(-32), "i64": int64(math.MinInt64),
				"u8": uint8(8), "u16": uint16(16), "u32": uint32(math.MaxUint32), "u64": uint64(math.MaxUint64),
				"uint": uint(42), "int": -42, "t": true, "f": false, "uptr": uintptr(7),
			}
		}},
		{"floats", func(v *CheckView) {
			v.Fields = map[string]any{
				"zero": 0.0, "negzero": math.Copysign(0, -1), "tenth": 0.1, "third": 1.0 / 3, "big": 1e20,
				"bigger": 1e21, "small": 1e-6, "smaller": 1e-7, "tiny": 5e-324, "max": math.MaxFloat64,
				"neg": -123456.789, "int": 42.0, "e-9": 1.5e-9, "e-10": 2e-10, "e+100": 1e100,
				"f32": float32(0.1), "f32big": float32(1e21), "f32small": float32(1e-7), "f32max": float32(math.MaxFloat32),
				"f32neg": float32(-3.25), "f32e": float32(1.5e-9),
			}
		}},
		{"float NaN is an error", func(v *CheckView) { v.Fields = map[string]any{"x": math.NaN()} }},
		{"float infinity is an error", func(v *CheckView) { v.Fields = map[string]any{"x": math.Inf(-1)} }},
		{"float32 infinity is an error", func(v *CheckView) { v.Fields = map[string]any{"x": float32(math.Inf(1))} }},
		{"unsupported field type is an error", func(v *CheckView) { v.Fields = map[string]any{"c": make(chan2)} }},
		{"empty timeline", func(v *CheckView) { v.Timeline = []Point{} }},
		{"nil timeline", func(v *CheckView) { v.Timeline = nil }},
		{"zero point time", func(v *CheckView) { v.Timeline = []Point{{}, {Status: "weird<status>"}} }},
		{"zero times are null", func(v *CheckView) {
			v.LastChecked, v.LastSuccess, v.LastTransition = time.Time{}, time.Time{}, time.Time{}
		}},
		{"times in zones, monotonic and whole seconds", func(v *CheckView) {
			v.LastChecked = time.Now()
			v.LastSuccess = time.Date(1999, 12, 31, 23, 59, 59, 0, time.FixedZone("X", -(9*3600+30*60)))
			v.LastTransition = time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)
			v.Timeline = timelineOf(time.Now().In(time.FixedZone("", 5*3600+45*60)), 3)
		}},
		{"year beyond 9999 is an error", func(v *CheckView) { v.LastSuccess = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"year beyond 9999 in the timeline is an error", func(v *CheckView) {
			v.Timeline = timelineOf(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), 3)
		}},
		{"durations", func(v *CheckView) { v.Duration = 123456789 * time.Microsecond }},
		{"duration below a microsecond", func(v *CheckView) { v.Duration = 999 }},
		{"zero duration", func(v *CheckView) { v.Duration = 0 }},
		{"negative duration", func(v *CheckView) { v.Duration = -1500 * time.Microsecond }},
		{"huge duration", func(v *CheckView) { v.Duration = math.MaxInt64 }},
		{"one microsecond", func(v *CheckView) { v.Duration = time.Microsecond }},
		{"name needing escaping", func(v *CheckView) { v.Name = `a<b>&"c"\` + "\u2028\xff" }},
		{"empty strings and nil lists", func(v *CheckView) {
			v.Name, v.Kind, v.Reason, v.Breaker, v.BlockedBy, v.DependsOn, v.Status = "", "", "", "", "", nil, ""
		}},
		{"blocked", func(v *CheckView) {
			v.Status, v.BlockedBy, v.Reason = probes.Blocked, "db<1>", "blocked by db<1>: connection refused"
			v.DependsOn = []string{"a", "b<", ""}
			v.ConsecutiveFailures = -3
			v.Critical = false
		}},
		{"max counters", func(v *CheckView) {
			v.Transitions, v.Flaps, v.ConsecutiveFailures = math.MaxUint64, math.MaxUint64, math.MaxInt
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := base()
			tc.edit(&v)
			first := compareService(t, &v, &renderedCheck{})
			// Again after one more execution: the points still on the timeline are copied from first.
			if len(v.Timeline) > 0 {
				v.Timeline = append(v.Timeline[1:len(v.Timeline):len(v.Timeline)], Point{At: at.Add(time.Minute), Status: probes.Unhealthy})
			}
			v.Reason = "connection refused <&>"
			compareService(t, &v, &first)
		})
	}
}

// TestBreakerMemberMatchesReference: a breaker's member is byte for byte encoding/json's rendering of
// toBreakerJSON.
func TestBreakerMemberMatchesReference(t *testing.T) {
	at := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	history := func(n int) []breakers.Execution {
		h := make([]breakers.Execution, n)
		for i := range h {
			h[i] = breakers.Execution{At: at.Add(time.Duration(i) * time.Second), Outcome: "success", Duration: time.Duration(i) * 333 * time.Microsecond, Source: "probe-<&>"}
			if i%3 == 1 {
				h[i].Outcome, h[i].Error = "failure", `dial tcp 127.0.0.1:1: connect: "refused" <&>`
			}
		}
		return h
	}
	base := func() breakers.Stats {
		return breakers.Stats{
			Name: "db", State: breakers.Closed, FailureRate: 33.33333333333333, SuccessRate: 66.66666666666667,
			Executions: 20, Failures: 7, Successes: 13, Probes: []string{"db", "db-replica"}, History: history(20),
			Transitions: 2, LastStateChange: at.Add(-time.Minute),
		}
	}
	cases := []struct {
		name string
		edit func(b *breakers.Stats)
	}{
		{"typical", func(*breakers.Stats) {}},
		{"new", func(b *breakers.Stats) {
			*b = breakers.Stats{Name: "fresh", State: breakers.Closed}
		}},
		{"empty history", func(b *breakers.Stats) { b.History = []breakers.Execution{} }},
		{"open, retry due", func(b *breakers.Stats) {
			b.State, b.RetryDue, b.RemainingDelay = breakers.Open, true, 1999*time.Microsecond
		}},
		{"open, remaining delay", func(b *breakers.Stats) {
			b.State, b.RemainingDelay = breakers.Open, 29*time.Second+999*time.Millisecond
		}},
		{"half-open", func(b *breakers.Stats) { b.State = breakers.HalfOpen }},
		{"rates", func(b *breakers.Stats) { b.FailureRate, b.SuccessRate = 1e-7, 1e21 }},
		{"NaN rate is an error", func(b *breakers.Stats) { b.FailureRate = math.NaN() }},
		{"infinite rate is an error", func(b *breakers.Stats) { b.SuccessRate = math.Inf(1) }},
		{"year beyond 9999 is an error", func(b *breakers.Stats) { b.LastStateChange = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"year beyond 9999 in the history is an error", func(b *breakers.Stats) { b.History[3].At = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"names needing escaping", func(b *breakers.Stats) {
			b.Name, b.Probes = "b<r>&\u2029", []string{"p\"1", "\xff"}
		}},
		{"equal entries", func(b *breakers.Stats) {
			h := history(1)[0]
			b.History = []breakers.Execution{h, h, h, {}, {}}
		}},
		{"rejected executions", func(b *breakers.Stats) {
			for i := range b.History {
				b.History[i] = breakers.Execution{At: time.Now(), Outcome: "rejected", Error: "breaker open"}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := base()
			tc.edit(&b)
			first := compareBreaker(t, &b, &renderedBreaker{})
			// Again after one more execution: the entries still in the history are copied from first.
			next := breakers.Execution{At: at.Add(time.Hour), Outcome: "failure", Duration: 5 * time.Millisecond, Error: "timeout"}
			if len(b.History) >= 20 {
				b.History = b.History[1:]
			}
			b.History = append(slices.Clone(b.History), next)
			b.Executions++
			compareBreaker(t, &b, &first)
		})
	}
}

// TestRenderSequencesMatchReference: through long random runs of executions and staleness, each
// check's member and each breaker's member (rendered from the last one's pieces) stay byte for byte
// encoding/json's, and no published rendering is ever changed afterwards.
func TestRenderSequencesMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pol := config.DefaultPolicy()
	c := newCheck(config.Probe{Name: "web<1>", Kind: "http", Policy: pol}, nil)
	r := renderCache{}
	stats := breakers.Stats{Name: "web<1>", State: breakers.Closed, Probes: []string{"web<1>"}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type published struct{ got, copy []byte }
	var kept []published
	keep := func(b []byte) { kept = append(kept, published{b, slices.Clone(b)}) }
	outcomes := []string{"success", "failure", "rejected"}
	for step := range 300 {
		now = now.Add(time.Duration(rng.IntN(20000)) * time.Millisecond)
		switch rng.IntN(6) {
		case 0:
			c.record(now, probes.Result{}, errors.New("refused <&>"), time.Duration(rng.IntN(1e9)), nil)
		case 1:
			c.block(now, "db", "blocked by db")
		case 2: // a stale or otherwise re-shown verdict: same gen
		default:
			res := probes.Result{Status: probes.Healthy, Fields: map[string]any{"code": 200, "url": "http://x/?a=1&b=<2>"}}
			if rng.IntN(3) == 0 {
				res.Status, res.Reason = probes.Degraded, "slow"
			}
			c.record(now, res, nil, time.Duration(rng.IntN(1e9)), nil)
		}
		v := CheckView{
			Name: c.def.Name, Kind: c.def.Kind, Status: c.status, Reason: c.reason, Duration: c.duration,
			LastChecked: c.lastChecked, LastSuccess: c.lastSuccess, LastTransition: c.lastTransition,
			ConsecutiveFailures: c.consecutiveFailures, Transitions: c.transitions, Flaps: c.flaps,
			BlockedBy: c.blockedBy, Fields: c.fields, Breaker: c.def.Name,
		}
		if rng.IntN(4) == 0 {
			v.Status, v.Reason = probes.Unknown, fmt.Sprintf("stale: last result %dms ago", rng.IntN(1e6))
		}
		if err := c.render(&v); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		want, err := referenceMember(v.Name, referenceServiceMap(&v))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(v.detail, want) {
			t.Fatalf("step %d: check member differs from encoding/json's:\n got %s\nwant %s", step, v.detail, want)
		}
		keep(v.detail)

		// The breaker's history: up to 20 entries, one more per execution, sometimes equal ones.
		if rng.IntN(3) > 0 {
			e := breakers.Execution{At: now, Outcome: outcomes[rng.IntN(3)], Duration: time.Duration(rng.IntN(1e9))}
			if e.Outcome != "success" {
				e.Error = "refused <&>"
			}
			if rng.IntN(5) == 0 && len(stats.History) > 0 {
				e = stats.History[len(stats.History)-1]
			}
			h := append(slices.Clone(stats.History), e)
			stats.History = h[max(0, len(h)-20):]
			stats.Executions++
			stats.FailureRate = rng.Float64() * 100
			stats.SuccessRate = 100 - stats.FailureRate
		}
		frag, err := r.breaker(&stats)
		if err != nil {
			t.Fatal(err)
		}
		if want, err = referenceMember(stats.Name, toBreakerJSON(stats)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(frag, want) {
			t.Fatalf("step %d: breaker member differs from encoding/json's:\n got %s\nwant %s", step, frag, want)
		}
		keep(frag)
	}
	for i, p := range kept {
		if !bytes.Equal(p.got, p.copy) {
			t.Fatalf("published rendering %d changed afterwards", i)
		}
	}
}

// FuzzServiceJSON holds serviceJSON, and the same member rendered again after one more execution, to
// encoding/json on arbitrary views.
func FuzzServiceJSON(f *testing.F) {
	f.Add("db", "tcp", "", "note", "status", `{"a":1,"b":[true,null,"<x>"]}`, int64(1773500966), int64(535897932), 0, int64(1500000), uint8(20), uint16(0), uint64(0))
	f.Add("a<b>", "http", "connection refused <&>", "a\u2028b", "zz", `{"status":"x","kind":{"n":1e-7}}`, int64(0), int64(1), 3600, int64(-1), uint8(0), uint16(0xffff), math.Float64bits(1e21))
	f.Add("x", "", "\xff", "\x00", "timeline", `[1]`, int64(253402300799), int64(999999999), -86340, int64(math.MaxInt64), uint8(3), uint16(0x0155), math.Float64bits(math.NaN()))
	f.Fuzz(func(t *testing.T, name, kind, reason, text, key, fieldsJSON string, sec, nsec int64, offset int, dur int64, n uint8, flags uint16, bits uint64) {
		flag := func(i uint) bool { return flags&(1<<i) != 0 }
		at := time.Unix(sec, nsec).In(time.FixedZone("", offset))
		v := CheckView{
			Name: name, Kind: kind, Reason: reason, Status: probes.Status(text), Critical: flag(0),
			Duration: time.Duration(dur), LastChecked: at, LastSuccess: at.Add(-time.Duration(dur)),
			LastTransition: at.Add(time.Duration(nsec)), ConsecutiveFailures: int(nsec), Transitions: uint64(sec), Flaps: bits,
			DependsOn: []string{key, text},
		}
		if flag(1) {
			v.Breaker, v.BlockedBy = name, text
		}
		if flag(2) {
			v.LastChecked = time.Time{}
		}
		if flag(3) {
			v.LastSuccess, v.LastTransition = time.Time{}, time.Time{}
		}
		if flag(4) {
			v.DependsOn = nil
		}
		if !flag(5) {
			var fields map[string]any
			if json.Unmarshal([]byte(fieldsJSON), &fields) != nil {
				fields = map[string]any{"raw": fieldsJSON}
			}
			if fields == nil {
				fields = map[string]any{}
			}
			fields[key] = text
			fields["i"], fields["u"], fields["st"], fields["t"] = int(sec), bits, probes.Status(reason), at
			if flag(6) {
				fields["f"], fields["f32"] = math.Float64frombits(bits), math.Float32frombits(uint32(bits))
			}
			if flag(7) {
				fields["nested"] = map[string]any{key: []any{text, float64(nsec) / 1e3, nil}}
			}
			v.Fields = fields
		}
		if !flag(8) {
			v.Timeline = timelineOf(at, int(n)%(timelineLen+1))
			if len(v.Timeline) > 0 {
				v.Timeline[0].Status = probes.Status(text)
			}
		}
		first := compareService(t, &v, &renderedCheck{})
		if v.Timeline != nil {
			v.Timeline = append(slices.Clone(v.Timeline[min(1, len(v.Timeline)):]), Point{At: at.Add(time.Hour), Status: probes.Status(reason)})
		}
		compareService(t, &v, &first)
	})
}

// FuzzBreakerMember holds breakerMember, and the same member rendered again after one more execution,
// to encoding/json on arbitrary stats.
func FuzzBreakerMember(f *testing.F) {
	f.Add("db", breakers.Closed, "", "success", int64(1773500966), int64(535897932), int64(300000), uint8(20), 0.0, 100.0, uint8(0))
	f.Add("b<r>", breakers.Open, "refused <&> \u2028", "failure", int64(0), int64(1), int64(-1), uint8(3), 1e-7, 1e21, uint8(0xff))
	f.Add("\xff", breakers.HalfOpen, "\x00", "", int64(253402300799), int64(999999999), int64(math.MaxInt64), uint8(0), math.NaN(), 0.0, uint8(0x0a))
	f.Fuzz(func(t *testing.T, name, state, errText, outcome string, sec, nsec, dur int64, n uint8, failRate, successRate float64, flags uint8) {
		flag := func(i uint) bool { return flags&(1<<i) != 0 }
		at := time.Unix(sec, nsec).UTC()
		b := breakers.Stats{
			Name: name, State: state, RetryDue: flag(0), FailureRate: failRate, SuccessRate: successRate,
			Executions: uint(n), Failures: uint(n / 2), Successes: uint(n - n/2), RemainingDelay: time.Duration(dur),
			Transitions: uint64(sec), Probes: []string{name, state},
		}
		if flag(1) {
			b.LastStateChange = at
		}
		if flag(2) {
			b.Probes = nil
		}
		for i := range int(n) % 25 {
			e := breakers.Execution{At: at.Add(time.Duration(i) * time.Duration(dur)), Outcome: outcome, Duration: time.Duration(dur) / time.Duration(i+1)}
			if (i%2 == 1) != flag(3) {
				e.Error = errText
			}
			if flag(4) && i > 0 {
				e = b.History[i-1] // equal entries
			}
			b.History = append(b.History, e)
		}
		first := compareBreaker(t, &b, &renderedBreaker{})
		b.History = append(slices.Clone(b.History[min(1, len(b.History)):]), breakers.Execution{At: at.Add(time.Hour), Outcome: errText})
		compareBreaker(t, &b, &first)
	})
}

// The reference renderer's types: what the appenders in render.go must write byte for byte.

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
	Source     string    `json:"source,omitempty"`
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
		out.History = append(out.History, historyEntries{At: h.At, Outcome: h.Outcome, DurationMs: ms(h.Duration), Error: h.Error, Source: h.Source})
	}
	return out
}

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
