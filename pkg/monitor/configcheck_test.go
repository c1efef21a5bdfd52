package monitor

import (
	"context"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/probes"
)

func TestConfigCheck(t *testing.T) {
	loaded := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	base := ConfigInfo{Source: "/etc/agent.yaml", SHA256: "abc123", LoadedAt: loaded}
	rejected := base
	rejected.LastReload = Reload{At: loaded.Add(time.Minute), Success: false, Error: "probes[0].url: required"}
	accepted := base
	accepted.LastReload = Reload{At: loaded, Success: true}

	tests := []struct {
		name       string
		info       func() ConfigInfo
		wantStatus probes.Status
		wantReason string
		wantReload any
	}{
		{name: "no info", wantStatus: probes.Unknown, wantReason: "config info not available to the probe"},
		{name: "never reloaded", info: func() ConfigInfo { return base }, wantStatus: probes.Healthy, wantReload: nil},
		{name: "reload accepted", info: func() ConfigInfo { return accepted }, wantStatus: probes.Healthy, wantReload: accepted.LastReload},
		{name: "reload rejected", info: func() ConfigInfo { return rejected }, wantStatus: probes.Degraded,
			wantReason: "last reload rejected: probes[0].url: required", wantReload: rejected.LastReload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := configKind(tt.info).New(probes.Spec{Name: "config"})
			if err != nil {
				t.Fatal(err)
			}
			res, err := p.Check(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.wantStatus || res.Reason != tt.wantReason {
				t.Fatalf("got %s %q, want %s %q", res.Status, res.Reason, tt.wantStatus, tt.wantReason)
			}
			if tt.info == nil {
				return
			}
			if res.Fields["source"] != "/etc/agent.yaml" || res.Fields["sha256"] != "abc123" || res.Fields["loadedAt"] != loaded {
				t.Errorf("fields = %v", res.Fields)
			}
			if got := res.Fields["lastReload"]; got != tt.wantReload {
				t.Errorf("lastReload = %v, want %v", got, tt.wantReload)
			}
		})
	}
}

func TestConfigCheckRejectsOptions(t *testing.T) {
	if p, err := configKind(nil).New(probes.Spec{Options: map[string]any{"url": "x"}}); err == nil {
		t.Fatalf("built %T, want an error", p)
	}
}

// The monitor runs its config probes against its own config info.
func TestConfigKindIsKnownAndLocal(t *testing.T) {
	k, ok := Kinds()["config"]
	if !ok || !k.Local {
		t.Fatalf("Kinds()[config] = %+v, %v; want a local kind", k, ok)
	}
	if _, ok := Kinds()["http"]; !ok {
		t.Fatal("Kinds() lacks pkg/probes' kinds")
	}
}
