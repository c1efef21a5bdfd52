package breakers

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
)

func TestSyncHoldsEgressRouteBreakers(t *testing.T) {
	probePol := testPolicy()
	probePol.Breaker.Delay = 7 * time.Minute
	cfg := testConfig(probePol, "figmaApi:figma-api")
	cfg.Defaults.Breaker = config.BreakerPolicy{FailureThreshold: 1, Window: 1, Delay: time.Hour, SuccessThreshold: 1}
	cfg.Egress = &config.Egress{Routes: []config.EgressRoute{
		{Name: "figma", Breaker: "figma-api"},
		{Name: "mcp"}, // its own breaker, named after the route
	}}
	reg := NewRegistry(nil, nil)
	reg.Sync(cfg)

	shared, own := reg.Get("figma-api"), reg.Get("mcp")
	if shared == nil || own == nil {
		t.Fatalf("registry holds %v, want figma-api and mcp", names(reg.Stats()))
	}
	if s := shared.Stats(); !slices.Equal(s.Probes, []string{"figmaApi"}) || !slices.Equal(s.Routes, []string{"figma"}) {
		t.Errorf("shared breaker users: probes %v routes %v", s.Probes, s.Routes)
	}
	if got := shared.currentPolicy(); got != probePol.Breaker {
		t.Errorf("shared breaker policy = %+v, want the probe's %+v", got, probePol.Breaker)
	}
	if got := own.currentPolicy(); got != cfg.Defaults.Breaker {
		t.Errorf("route-only breaker policy = %+v, want defaults.breaker %+v", got, cfg.Defaults.Breaker)
	}
	if s := own.Stats(); len(s.Probes) != 0 || !slices.Equal(s.Routes, []string{"mcp"}) {
		t.Errorf("route-only breaker users: probes %v routes %v", s.Probes, s.Routes)
	}

	// Real traffic opens the route's breaker; a reload with the same config keeps it open.
	call, err := own.Begin(TrafficSource + "mcp")
	if err != nil {
		t.Fatal(err)
	}
	call.Fail(errors.New("status 502"))
	reg.Sync(cfg)
	if reg.Get("mcp") != own || own.IsClosed() {
		t.Fatalf("reload lost the route breaker's state: %+v", own.Stats())
	}
	var rej *RejectedError
	if _, err := own.Begin(TrafficSource + "mcp"); !errors.As(err, &rej) {
		t.Fatalf("Begin on the open breaker = %v, want a rejection", err)
	}
	if route, ok := rej.FromTraffic(); !ok || route != "mcp" {
		t.Errorf("FromTraffic = %q, %v", route, ok)
	}

	// Without the egress section the route-only breaker goes; the probe's stays.
	cfg.Egress = nil
	reg.Sync(cfg)
	if reg.Get("mcp") != nil || reg.Get("figma-api") != shared || len(shared.Stats().Routes) != 0 {
		t.Errorf("after dropping egress: %v", names(reg.Stats()))
	}
}
