package probes

import (
	"testing"
	"time"
)

func TestConfigProbe(t *testing.T) {
	loaded := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	base := ConfigInfo{Source: "/etc/agent.yaml", SHA256: "abc123", LoadedAt: loaded}
	rejected := base
	rejected.LastReload = Reload{At: loaded.Add(time.Minute), Success: false, Error: "probes[0].url: required"}
	accepted := base
	accepted.LastReload = Reload{At: loaded, Success: true}

	tests := []struct {
		name       string
		info       func() ConfigInfo
		wantStatus Status
		wantReason string
		wantReload any
	}{
		{name: "no info", wantStatus: Unknown, wantReason: "config info not available to the probe"},
		{name: "never reloaded", info: func() ConfigInfo { return base }, wantStatus: Healthy, wantReload: nil},
		{name: "reload accepted", info: func() ConfigInfo { return accepted }, wantStatus: Healthy, wantReload: accepted.LastReload},
		{name: "reload rejected", info: func() ConfigInfo { return rejected }, wantStatus: Degraded,
			wantReason: "last reload rejected: probes[0].url: required", wantReload: rejected.LastReload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newConfig(Spec{Name: "config", Env: Env{ConfigInfo: tt.info}})
			if err != nil {
				t.Fatal(err)
			}
			res, err := checkOnce(t, p)
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

func TestConfigRejectsOptions(t *testing.T) {
	p, err := newConfig(Spec{Options: map[string]any{"url": "x"}})
	if err == nil {
		t.Fatalf("built %T, want an error", p)
	}
	assertFieldErrors(t, err, []string{"url"})
}
