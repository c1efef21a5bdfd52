package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := []string{"--app", "127.0.0.1:0", "--mcp", "127.0.0.1:0", "--figma", "127.0.0.1:0"}

	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout []string
		stderr string
	}{
		{
			name: "commands, then quit", args: append(free, "--cdp", "http://127.0.0.1:9333"),
			stdin: "status\nstop app\nfigma 429\nnonsense\nquit\nstatus\n", code: 0,
			stdout: []string{
				"--remote-debugging-port=9333 ", "export FIGMA_TOKEN=demo-token\n", "export BROWSER_CDP_URLS=http://127.0.0.1:9333\n",
				"export MEMORY_PROCESS=", "export LEGACY_HEALTH_URL=http://127.0.0.1:", "export MCP_URL=http://127.0.0.1:",
				"app    running", "app: stopped", "429 (Retry-After: 30)", `unknown command "nonsense"`,
			},
		},
		{name: "port in use", args: []string{"--app", busy.Addr().String(), "--mcp", "127.0.0.1:0", "--figma", "127.0.0.1:0"}, code: 1, stderr: "address already in use"},
		{name: "bad cdp url", args: append(free, "--cdp", "127.0.0.1:9222"), code: 2, stderr: "--cdp must be"},
		{name: "unknown flag", args: []string{"--nope"}, code: 2, stderr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tt.args, strings.NewReader(tt.stdin), &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errb.String())
			}
			for _, w := range tt.stdout {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			if !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, errb.String())
			}
			if strings.Count(out.String(), "app    running") > 1 {
				t.Error("a command after quit was run")
			}
		})
	}
}

// TestRunStopsOnSignal: cancelling the context (SIGINT) stops the demo, stdin still open or closed.
func TestRunStopsOnSignal(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--app", "127.0.0.1:0", "--mcp", "127.0.0.1:0", "--figma", "127.0.0.1:0"},
			strings.NewReader(""), &out, &bytes.Buffer{})
	}()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d, want 0: %s", code, out.String())
	}
}
