package api

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

// snapshotOf is a published-looking snapshot of the given checks.
func snapshotOf(checks ...monitor.CheckView) *monitor.Snapshot {
	s := &monitor.Snapshot{At: time.Now(), StartedAt: time.Now().Add(-time.Minute), Version: "t", Checks: checks,
		Overall: probes.Healthy}
	for i := range checks {
		if checks[i].Critical && !checks[i].OK() {
			s.Overall = probes.Unhealthy
		}
	}
	return s
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return m
}

// While the agent drains, both health documents say "stopping" and answer 503.
func TestDocumentsWhileStopping(t *testing.T) {
	s := snapshotOf(monitor.CheckView{Name: "app", Critical: true, Status: probes.Healthy, EverHealthy: true})
	s.ShuttingDown = true
	var r renderer
	d := r.documents(s)
	health, hc := d.healthDoc()
	detailed, dc := d.detailedDoc()
	if decode(t, health)["status"] != "stopping" || hc != 503 {
		t.Errorf("/api/health: %s (%d), want stopping and 503", health, hc)
	}
	if m := decode(t, detailed); m["status"] != "stopping" || m["shuttingDown"] != true || dc != 503 {
		t.Errorf("/api/health/detailed: %s (%d), want stopping and 503", detailed, dc)
	}
}

// data.legacyError is the legacy probe's own word about its body, never a placeholder once it ran.
func TestLegacyErrorIsTheProbesOwn(t *testing.T) {
	s := snapshotOf(monitor.CheckView{Name: "app", Critical: true, Status: probes.Healthy, EverHealthy: true,
		LastChecked: time.Now(), Fields: map[string]any{"legacyError": "body is not JSON"}})
	s.LegacyProbe = "app"
	var r renderer
	health, _ := r.documents(s).healthDoc()
	m := decode(t, health)
	if m["legacy"] != nil || m["legacyError"] != "body is not JSON" {
		t.Fatalf("legacy %v, legacyError %v; want null and the probe's reason", m["legacy"], m["legacyError"])
	}
}

// A probe's member carries the fixed members (a kind's field of the same name loses), lastAttempt, and
// its kind's fields; a field that cannot be encoded spoils only that probe's fields.
func TestServiceMember(t *testing.T) {
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	s := snapshotOf(
		monitor.CheckView{Name: "a", Kind: "http", Status: probes.Healthy, LastAttempt: at, LastChecked: at.Add(time.Second),
			Fields: map[string]any{"statusCode": 200, "status": "overridden?"}, Breaker: "a"},
		monitor.CheckView{Name: "b", Kind: "weird", Status: probes.Healthy, Fields: map[string]any{"ratio": math.NaN()}},
	)
	var r renderer
	detailed, _ := r.documents(s).detailedDoc()
	services := decode(t, detailed)["health"].(map[string]any)["services"].(map[string]any)
	a := services["a"].(map[string]any)
	if a["status"] != "healthy" || a["statusCode"] != float64(200) || a["lastAttempt"] != "2026-12-06T12:00:00Z" ||
		a["breaker"] != "a" || a["blockedBy"] != nil {
		t.Errorf("services.a = %v", a)
	}
	if b := services["b"].(map[string]any); b["status"] != "healthy" || !strings.Contains(b["fieldsError"].(string), "NaN") {
		t.Errorf("services.b = %v, want its fields replaced by fieldsError", b)
	}
}

// A member is encoded again only when its probe changed: the next snapshot reuses the bytes of the
// others.
func TestServiceMembersReused(t *testing.T) {
	v := func(name string, rev uint64) monitor.CheckView {
		return monitor.CheckView{Name: name, Status: probes.Healthy, Revision: rev}
	}
	var r renderer
	r.documents(snapshotOf(v("a", 1), v("b", 1))).detailedDoc()
	before := r.serviceMembers["a"]
	r.documents(snapshotOf(v("a", 1), v("b", 2))).detailedDoc()
	if r.serviceMembers["a"] != before {
		t.Error("an unchanged probe's member was encoded again")
	}
	r.documents(snapshotOf(v("b", 2))).detailedDoc()
	if _, ok := r.serviceMembers["a"]; ok {
		t.Error("a probe a reload removed is still cached")
	}
}

// The circuit-breakers document: every breaker with its history entries' source, and the summary.
func TestBreakersDocument(t *testing.T) {
	s := snapshotOf()
	s.Breakers = []breakers.Stats{{Name: "figma-api", State: breakers.Open, RemainingDelay: 1500 * time.Millisecond,
		History: []breakers.Attempt{{At: time.Now(), Outcome: breakers.OutcomeFailure, Error: "status 502", Source: "route:figma"}}}}
	var r renderer
	m := decode(t, r.documents(s).breakersDoc())
	b := m["breakers"].(map[string]any)["figma-api"].(map[string]any)
	h := b["history"].([]any)[0].(map[string]any)
	if b["state"] != "OPEN" || b["remainingDelayMs"] != float64(1500) || h["source"] != "route:figma" || b["probes"] == nil {
		t.Errorf("breaker member = %v", b)
	}
	if sum := m["summary"].(map[string]any); sum["open"] != float64(1) || sum["healthy"] != false {
		t.Errorf("summary = %v", sum)
	}
}

// BenchmarkDetailedDocument measures building /api/health/detailed for a new snapshot in which a tenth
// of the probes changed (the steady state of probes on a 10s interval and a 1s tick): encoding/json for
// the changed members, copying bytes for the others.
func BenchmarkDetailedDocument(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("probes=%d", n), func(b *testing.B) {
			at := time.Now()
			timeline := make([]monitor.Point, 20)
			for i := range timeline {
				timeline[i] = monitor.Point{At: at.Add(time.Duration(i) * time.Second), Status: probes.Healthy}
			}
			checks := make([]monitor.CheckView, n)
			for i := range checks {
				checks[i] = monitor.CheckView{Name: fmt.Sprintf("dep-%04d", i), Kind: "http", Critical: true,
					Status: probes.Healthy, LastAttempt: at, LastChecked: at, LastSuccess: at, Breaker: "b",
					Timeline: timeline, Fields: map[string]any{"statusCode": 200, "url": "http://127.0.0.1:8080/health"}}
			}
			var r renderer
			next := 0
			b.ReportAllocs()
			for b.Loop() {
				for range max(n/10, 1) {
					checks[next%n].Revision++
					next++
				}
				s := snapshotOf(slices.Clone(checks)...)
				data, _ := r.documents(s).detailedDoc()
				if len(data) == 0 {
					b.Fatal("empty document")
				}
			}
		})
	}
}

// The app's own traffic through the egress proxy shows beside the probe that shares its breaker, and
// every route in data.egress; a breaker only a route names is in the circuit-breakers document.
func TestTrafficInTheDocuments(t *testing.T) {
	s := snapshotOf(
		monitor.CheckView{Name: "figmaApi", Status: probes.Healthy, Breaker: "figma-api", Revision: 1},
		monitor.CheckView{Name: "memory", Status: probes.Healthy, Revision: 1},
	)
	s.Traffic = []monitor.RouteTraffic{
		{Route: "figma", Prefix: "/figma/", Breaker: "figma-api", Requests: 12, Errors: 3, P50: 40 * time.Millisecond, P99: 900 * time.Millisecond},
		{Route: "cdn", Prefix: "/cdn/", Breaker: "cdn", Requests: 1},
	}
	s.Breakers = []breakers.Stats{{Name: "cdn", State: breakers.Closed, Routes: []string{"cdn"}}}
	var r renderer
	d := r.documents(s)
	detailed, _ := d.detailedDoc()
	m := decode(t, detailed)
	services := m["health"].(map[string]any)["services"].(map[string]any)
	tr, _ := services["figmaApi"].(map[string]any)["traffic"].([]any)
	if len(tr) != 1 || tr[0].(map[string]any)["route"] != "figma" || tr[0].(map[string]any)["errors"] != float64(3) ||
		tr[0].(map[string]any)["p99Ms"] != float64(900) {
		t.Errorf("services.figmaApi.traffic = %v, want the figma route's minute", tr)
	}
	if _, ok := services["memory"].(map[string]any)["traffic"]; ok {
		t.Error("a probe without a breaker shows traffic")
	}
	if routes := m["egress"].(map[string]any)["routes"].([]any); len(routes) != 2 {
		t.Errorf("data.egress.routes = %v, want both routes", routes)
	}
	b := decode(t, d.breakersDoc())["breakers"].(map[string]any)["cdn"].(map[string]any)
	if routes := b["routes"].([]any); len(routes) != 1 || routes[0] != "cdn" {
		t.Errorf("breaker cdn's routes = %v", b["routes"])
	}

	// The next minute's figures make a new member, though the probe did not change.
	before := r.serviceMembers["figmaApi"]
	s2 := snapshotOf(s.Checks...)
	s2.Traffic = []monitor.RouteTraffic{{Route: "figma", Prefix: "/figma/", Breaker: "figma-api", Requests: 13}}
	r.documents(s2).detailedDoc()
	if r.serviceMembers["figmaApi"] == before {
		t.Error("new traffic did not re-encode the probe's member")
	}
}

// The seed's services.memory.heapUsed: the app's own figure when its legacy body has one, else the
// memory probe's (its RSS).
func TestMemoryHeapFromTheAppsBody(t *testing.T) {
	for _, tt := range []struct {
		name       string
		body       json.RawMessage
		want       string
		wantSource string
	}{
		{"memory.heapUsed string", json.RawMessage(`{"status":"ok","memory":{"heapUsed":"21MB","rss":"80MB"}}`), "21MB", "app"},
		{"data.memory.heapUsed bytes", json.RawMessage(`{"success":true,"data":{"memory":{"heapUsed":22020096}}}`), "21MB", "app"},
		{"top-level heapUsed", json.RawMessage(`{"heapUsed":"33MB"}`), "33MB", "app"},
		{"bytes as a string", json.RawMessage(`{"heapUsed":"22020096"}`), "21MB", "app"},
		{"first path that has one", json.RawMessage(`{"memory":{"rss":1},"data":{"memory":{"heapUsed":"7MB"}}}`), "7MB", "app"},
		{"no heapUsed", json.RawMessage(`{"status":"ok"}`), "50MB", "rss"},
		{"heapUsed of the wrong type", json.RawMessage(`{"heapUsed":{"value":1}}`), "50MB", "rss"},
		{"negative bytes", json.RawMessage(`{"heapUsed":-5}`), "50MB", "rss"},
		{"not JSON", json.RawMessage(`<html>`), "50MB", "rss"},
		{"no body yet", nil, "50MB", "rss"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := snapshotOf(monitor.CheckView{Name: "memory", Kind: "memory", Status: probes.Healthy,
				Fields: map[string]any{"heapUsed": "50MB", "heapSource": "rss", "rssBytes": 50 << 20}})
			s.Legacy, s.LegacyProbe = tt.body, "app"
			var r renderer
			detailed, _ := r.documents(s).detailedDoc()
			mem := decode(t, detailed)["health"].(map[string]any)["services"].(map[string]any)["memory"].(map[string]any)
			if mem["heapUsed"] != tt.want || mem["heapSource"] != tt.wantSource {
				t.Errorf("heapUsed %v (%v), want %s (%s)", mem["heapUsed"], mem["heapSource"], tt.want, tt.wantSource)
			}
		})
	}
}
