package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer collects log output written from the agent's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// warnings returns the "takes effect at the next restart" records logged so far, by key.
func (l *lockedBuffer) restartWarnings(t *testing.T) map[string][2]string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][2]string{}
	for line := range strings.Lines(l.b.String()) {
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
// the HTTP server's limits, the probe bulkhead) says so, naming the running and the configured value,
// and the agent keeps serving on the running address. Changing it back to the running value is quiet.
func TestReloadWarnsOfRestartOnlySettings(t *testing.T) {
	const tmpl = `
server: { listen: "%s", readTimeout: %s, maxHeaderBytes: %d, shutdownDelay: 0s }
scheduler: { maxConcurrentProbes: %d }
probes:
  - { name: config, kind: config }
`
	path := filepath.Join(t.TempDir(), "agent.yaml")
	write(t, path, fmt.Sprintf(tmpl, "127.0.0.1:0", "5s", 16384, 16))
	loaded, err := LoadConfig(path, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	a, err := New(loaded, Options{ConfigPath: path, LookupEnv: noEnv, Tick: 10 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitUntil(t, "listening", func() bool { return a.Addr() != "" })
	addr := a.Addr()

	write(t, path, fmt.Sprintf(tmpl, "127.0.0.1:1", "9s", 16384, 4))
	if err := a.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		"server.listen":                 {"127.0.0.1:0", "127.0.0.1:1"},
		"server.readTimeout":            {"5s", "9s"},
		"scheduler.maxConcurrentProbes": {"16", "4"},
	}
	got := logs.restartWarnings(t)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restart warnings = %v, want %v", got, want)
	}
	if a.Addr() != addr {
		t.Errorf("address %s after the reload, want %s still", a.Addr(), addr)
	}

	// Back to the running values (another change makes the reload happen): nothing to warn about.
	logs.mu.Lock()
	logs.b.Reset()
	logs.mu.Unlock()
	write(t, path, fmt.Sprintf(tmpl, "127.0.0.1:0", "5s", 16384, 16)+"  - { name: config2, kind: config }\n")
	if err := a.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := logs.restartWarnings(t); len(got) != 0 {
		t.Errorf("restart warnings %v after returning to the running values, want none", got)
	}
}
