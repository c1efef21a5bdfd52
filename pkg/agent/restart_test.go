package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/health-agent/health-agent/internal/testkit"
)

// restartWarnings returns the "takes effect at the next restart" records in JSON log output, by key.
func restartWarnings(t *testing.T, logs string) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	for line := range strings.Lines(logs) {
		var rec struct{ Msg, Key, Running, Configured string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Msg == "config setting takes effect at the next restart" {
			out[rec.Key] = [2]string{rec.Running, rec.Configured}
		}
	}
	return out
}

// TestReloadWarnsOfRestartOnlySettings: a reload that changes a setting fixed at start (the listener,
// the probe bulkhead) says so, naming the running and the configured value,
// and the agent keeps serving on the running address. Changing it back to the running value is quiet.
func TestReloadWarnsOfRestartOnlySettings(t *testing.T) {
	const tmpl = `
server: { listen: "%s", shutdownDelay: 0s }
scheduler: { maxConcurrentProbes: %d }
probes:
  - { name: config, kind: config }
`
	path := filepath.Join(t.TempDir(), "agent.yaml")
	write(t, path, fmt.Sprintf(tmpl, "127.0.0.1:0", 16))
	logs := &testkit.SyncBuffer{}
	r := startAgentWith(t, path, func(o *Options) {
		o.Listen = "" // server.listen applies
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	a := r.agent
	addr := a.Addr()

	write(t, path, fmt.Sprintf(tmpl, "127.0.0.1:1", 4))
	if err := a.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		"server.listen":                 {"127.0.0.1:0", "127.0.0.1:1"},
		"scheduler.maxConcurrentProbes": {"16", "4"},
	}
	got := restartWarnings(t, logs.String())
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restart warnings = %v, want %v", got, want)
	}
	if a.Addr() != addr {
		t.Errorf("address %s after the reload, want %s still", a.Addr(), addr)
	}

	// Back to the running values (another change makes the reload happen): nothing to warn about.
	seen := len(logs.String())
	write(t, path, fmt.Sprintf(tmpl, "127.0.0.1:0", 16)+"  - { name: config2, kind: config }\n")
	if err := a.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := restartWarnings(t, logs.String()[seen:]); len(got) != 0 {
		t.Errorf("restart warnings %v after returning to the running values, want none", got)
	}
}
