package main

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
)

// `agent validate` on the rules that refuse what cannot work (exit 2, the field path in the error) and
// warn about what is unsafe (exit 0, the warning printed).
func TestValidateRules(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantCode int
		want     []string // substrings of stderr
	}{
		{"a critical probe of the agent's own port", `
server: {listen: ":3008"}
probes:
  - {name: self, kind: http, critical: true, url: "http://127.0.0.1:3008/readyz"}
`, exitUsage, []string{`probes[0].url: a critical probe of 127.0.0.1:3008 targets the agent's own port (server.listen ":3008")`}},
		{"a rate limit below the schedule", `
probes:
  - {name: a, kind: tcp, address: "127.0.0.1:1", interval: 10s, rateLimit: {max: 5, per: 1m}}
`, exitUsage, []string{"probes[0].rateLimit.max: allows 5 executions per 1m0s, but interval 10s schedules 6 per 1m0s"}},
		{"a literal credential header", `
probes:
  - name: a
    kind: http
    url: "http://127.0.0.1:1/"
    headers: {Authorization: "Bearer literal-credential"}
`, exitOK, []string{"warning: probes[0].headers[Authorization]: a literal value for a header that carries credentials",
			"Authorization: {env: VAR}"}},
		{"deprecated figma token options", `
probes:
  - {name: f, kind: figma, url: "http://127.0.0.1:1", tokenEnv: FIGMA_TOKEN}
`, exitOK, []string{"warning: probes[0].tokenEnv: tokenEnv and tokenFile are deprecated; write token: {env: FIGMA_TOKEN} instead"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "agent.yaml", tt.yaml)
			var out, errb testkit.SyncBuffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			code := run(ctx, []string{"validate", "--config", path}, &out, &errb, noEnv)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errb.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
			if strings.Contains(errb.String()+out.String(), "literal-credential") {
				t.Error("the header's value was printed")
			}
		})
	}
}

// A config path naming a FIFO is refused at once (exit 2 naming the path), not read forever.
func TestValidateFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	var out, errb testkit.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run(context.Background(), []string{"validate", "--config", path}, &out, &errb, noEnv) }()
	select {
	case code := <-done:
		if code == exitOK || !strings.Contains(errb.String(), path) || !strings.Contains(errb.String(), "named pipe") {
			t.Errorf("exit %d, stderr %q; want a failure naming %s as a named pipe", code, errb.String(), path)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("validate blocked on a FIFO")
	}
}
