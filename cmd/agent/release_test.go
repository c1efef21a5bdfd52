package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"
)

// logLine returns the first JSON log line whose msg is msg, decoded, or nil.
func logLine(t *testing.T, logs, msg string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(l), &v) == nil && v["msg"] == msg {
			return v
		}
	}
	return nil
}

// TestReleaseStartup: serve hands back the start-up pages once the first round of probes is done,
// unless HEALTH_AGENT_KEEP_STARTUP_PAGES says not to. The agent runs in this process, so what it
// releases are the test binary's pages.
func TestReleaseStartup(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pkg/footprint releases on Linux only")
	}
	cfg := writeFile(t, "agent.yaml", `
server: { shutdownDelay: 0s }
probes:
  - { name: config, kind: config }
`)
	tests := []struct {
		name     string
		env      map[string]string
		released bool
		also     string // another line it must log
	}{
		{name: "released after the first round", released: true},
		{name: "kept on request", env: map[string]string{keepStartupPagesEnv: "1"}, also: "start-up memory kept"},
		{name: "released when asked to, explicitly", env: map[string]string{keepStartupPagesEnv: "false"}, released: true},
		{
			name: "a value that is not a boolean is ignored, with a warning", env: map[string]string{keepStartupPagesEnv: "yes"},
			released: true, also: "environment variable ignored: want true or false",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			p := serveArgs(t, []string{"--config", cfg, "--listen", "127.0.0.1:0"}, env)
			want := "start-up memory released"
			if !tt.released {
				want = tt.also
			}
			deadline := time.Now().Add(30 * time.Second)
			for logLine(t, p.logs.String(), want) == nil {
				if time.Now().After(deadline) {
					t.Fatalf("no %q within 30s; logs:\n%s", want, p.logs.String())
				}
				time.Sleep(10 * time.Millisecond) // polling interval
			}
			p.stop(t) // waits for the release goroutine too: nothing more can be logged
			logs := p.logs.String()
			if tt.also != "" && logLine(t, logs, tt.also) == nil {
				t.Errorf("no %q; logs:\n%s", tt.also, logs)
			}
			rel := logLine(t, logs, "start-up memory released")
			if !tt.released {
				if rel != nil {
					t.Errorf("released although %s=%s: %v", keepStartupPagesEnv, tt.env[keepStartupPagesEnv], rel)
				}
				return
			}
			before, _ := rel["before"].(map[string]any)
			after, _ := rel["after"].(map[string]any)
			bf, _ := before["file_mib"].(float64)
			af, _ := after["file_mib"].(float64)
			if bf <= 0 || af >= bf {
				t.Errorf("file pages %v MiB -> %v MiB: want a drop; %v", bf, af, rel)
			}
			if _, ok := after["anon_mib"].(float64); !ok {
				t.Errorf("no after.anon_mib: %v", rel)
			}
			if !strings.Contains(rel["advice"].(string), "MADV_DONTNEED") {
				t.Errorf("advice %q: want MADV_DONTNEED among it", rel["advice"])
			}
		})
	}
}
