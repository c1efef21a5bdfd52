package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
)

func noEnv(string) (string, bool) { return "", false }

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCommands(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer down.Close()

	good := writeFile(t, "good.yaml", fmt.Sprintf(`
probes:
  - name: web
    kind: http
    url: %s
  - name: dead
    kind: tcp
    address: 127.0.0.1:1
    retry: { maxRetries: 0 }
    timeout: 500ms
`, ok.URL))
	// A listener nobody accepts on: connections complete (the backlog) but nothing answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// A port in use, for serve.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bad := writeFile(t, "bad.yaml", `
server: { shutdownDelay: -1s }
probes:
  - name: a
    kind: nope
  - name: a
    kind: http
    url: "::"
    interval: 0s
    dependsOn: [ghost]
`)

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"version", []string{"version"}, 0, []string{"health-agent "}, nil},
		{"version with args", []string{"version", "x"}, 2, nil, []string{"usage"}},
		{"unknown command", []string{"frobnicate"}, 2, nil, []string{`unknown command "frobnicate"`}},
		{"bad flag", []string{"--nope"}, 2, nil, []string{"flag provided but not defined"}},
		{"bad log level", []string{"--log-level", "loud"}, 2, nil, []string{"--log-level"}},
		{"bad log format", []string{"--log-format", "xml"}, 2, nil, []string{"--log-format"}},
		{"serve with a bad config", []string{"--config", bad, "--listen", "127.0.0.1:0"}, 2, nil, []string{"is invalid"}},
		{"serve with a missing config", []string{"--config", "/nonexistent/agent.yaml"}, 2, nil, []string{"/nonexistent/agent.yaml"}},
		{"validate good", []string{"validate", "--config", good}, 0, []string{"is valid: 2 probes (web, dead)"}, nil},
		{"validate embedded default", []string{"validate"}, 0, []string{"is valid: 6 probes"}, nil},
		{"validate bad lists every error", []string{"validate", "--config", bad}, 2, nil, []string{
			"server.shutdownDelay", "probes[0].kind", `unknown kind "nope"`, "probes[1].name", "probes[1].url",
			"probes[1].interval", "probes[1].dependsOn",
		}},
		{"validate extra arg", []string{"validate", "x"}, 2, nil, []string{"unexpected arguments"}},
		{"probe healthy", []string{"probe", "--config", good, "web"}, 0, []string{`"status": "healthy"`, `"name": "web"`}, nil},
		{"probe unhealthy", []string{"probe", "--config", good, "dead"}, 1, []string{`"status": "unhealthy"`}, nil},
		{"probe unknown name", []string{"probe", "--config", good, "ghost"}, 2, nil, []string{`no such probe "ghost"`}},
		{"probe without name", []string{"probe", "--config", good}, 2, nil, []string{"exactly one probe NAME"}},
		{"healthcheck 200", []string{"healthcheck", "--url", ok.URL}, 0, []string{"200 OK"}, nil},
		{"healthcheck 503", []string{"healthcheck", "--url", down.URL}, 1, []string{"503"}, nil},
		{"healthcheck refused: could not reach", []string{"healthcheck", "--url", "http://127.0.0.1:1/livez", "--timeout", "2s"}, 3, nil, []string{"no answer"}},
		{"healthcheck nothing answered: could not reach", []string{"healthcheck", "--url", "http://" + silent.Addr().String() + "/livez", "--timeout", "300ms"}, 3, nil, []string{"no answer"}},
		{"serve on a port in use: could not run", []string{"--config", good, "--listen", taken.Addr().String()}, 3, nil, []string{"address already in use"}},
		{"healthcheck bad url", []string{"healthcheck", "--url", "ftp://x"}, 2, nil, []string{"bad --url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb testkit.SyncBuffer
			code := run(context.Background(), tt.args, &out, &errb, noEnv)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errb.String())
			}
			for _, w := range tt.stdout {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
		})
	}
}

// agentProc is an agent served in-process by run().
type agentProc struct {
	base   string
	cancel context.CancelFunc
	done   chan int
	logs   *testkit.SyncBuffer
}

var addrRe = regexp.MustCompile(`"addr":"([^"]+)"`)

func serveAgent(t *testing.T, cfg string, env func(string) (string, bool)) *agentProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &agentProc{cancel: cancel, done: make(chan int, 1), logs: &testkit.SyncBuffer{}}
	go func() {
		p.done <- run(ctx, []string{"--config", cfg, "--listen", "127.0.0.1:0"}, io.Discard, p.logs, env)
	}()
	t.Cleanup(func() { p.stop(t) })
	waitServing(t, p)
	return p
}

// waitServing waits until p logs its address, failing the test if it exits first.
func waitServing(t *testing.T, p *agentProc) {
	t.Helper()
	code := -1
	testkit.Eventually(t, 30*time.Second, func() bool {
		if m := anyAddrRe.FindStringSubmatch(p.logs.String()); m != nil {
			p.base = "http://" + m[1] + m[2]
			return true
		}
		select {
		case code = <-p.done:
		default:
		}
		return code != -1
	}, "the agent serves") // no log shown: a test may run it with secrets
	if code != -1 {
		t.Fatalf("agent exited with %d", code)
	}
}

func (p *agentProc) stop(t *testing.T) {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case code := <-p.done:
		if code != 0 {
			t.Errorf("agent exited with %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Error("agent did not stop")
	}
}

// jq reads a dotted path from a JSON body like the seed's jq checks do.
func jq(t *testing.T, body []byte, path string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	for _, k := range strings.Split(strings.TrimPrefix(path, "."), ".") {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

func fetch(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestSeedChecks runs the seed's curl/jq checks against an agent whose dependencies are loopback servers,
// then takes the critical one down.
func TestSeedChecks(t *testing.T) {
	var appDown atomic.Bool
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if appDown.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"ok","memory":{"heapUsed":"21MB"},"uptime":12}`)
	}))
	defer app.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// The memory probe watches a real child process.
	child := exec.Command("sleep", "300")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	pidFile := writeFile(t, "app.pid", fmt.Sprint(child.Process.Pid))

	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
server: { shutdownDelay: 0s }
defaults:
  interval: 100ms
  timeout: 1s
  failuresBeforeUnhealthy: 1
  retry: { maxRetries: 0 }
  breaker: { failureThreshold: 50, window: 50, delay: 1s, successThreshold: 1 }
probes:
  - { name: app, kind: http, critical: true, legacy: true, url: "%s/api/health" }
  - { name: browserPool, kind: tcp, critical: true, breaker: web-extraction, address: "%s" }
  - { name: memory, kind: memory, pidFile: "%s", critBytes: 100GiB, warnBytes: 50GiB }
  - { name: config, kind: config }
`, app.URL, ln.Addr(), pidFile))
	a := serveAgent(t, cfg, noEnv)

	testkit.Eventually(t, 20*time.Second, func() bool {
		code, body := fetch(t, a.base+"/api/health")
		_, detailed := fetch(t, a.base+"/api/health/detailed")
		// The memory probe reports the app's own heap once the app's legacy JSON has been read.
		return code == 200 && jq(t, body, ".data.status") == "ok" &&
			jq(t, detailed, ".data.health.services.memory.heapUsed") == "21MB"
	}, "/api/health ok with the app's heap")
	// curl -f http://localhost:3008/api/health || exit 1
	if code, _ := fetch(t, a.base+"/api/health"); code != 200 {
		t.Fatalf("curl -f /api/health: %d", code)
	}
	// jq -e '.data.status == "ok"'
	_, body := fetch(t, a.base+"/api/health")
	if jq(t, body, ".data.status") != "ok" || jq(t, body, ".data.legacy.memory.heapUsed") != "21MB" {
		t.Fatalf("/api/health: %s", body)
	}
	// jq -e '.data.health.overall == "healthy"'
	_, body = fetch(t, a.base+"/api/health/detailed")
	if jq(t, body, ".data.health.overall") != "healthy" {
		t.Fatalf("detailed: %s", body)
	}
	// jq '.data.health.services.memory'
	mem, _ := jq(t, body, ".data.health.services.memory").(map[string]any)
	if mem["status"] != "healthy" || mem["heapUsed"] != "21MB" || mem["rssBytes"] == nil {
		t.Fatalf("services.memory: %v", mem)
	}
	// jq '.data.summary.healthy'
	_, body = fetch(t, a.base+"/api/health/circuit-breakers")
	if jq(t, body, ".data.summary.healthy") != true || jq(t, body, ".data.summary.total") != float64(2) {
		t.Fatalf("circuit-breakers: %s", body)
	}

	appDown.Store(true)
	testkit.Eventually(t, 20*time.Second, func() bool {
		code, body := fetch(t, a.base+"/api/health")
		return code == 503 && jq(t, body, ".data.status") == "error"
	}, "/api/health 503 error with the app down")
	if code, _ := fetch(t, a.base+"/readyz"); code != 503 {
		t.Fatalf("/readyz with the app down: %d", code)
	}
	if code, _ := fetch(t, a.base+"/livez"); code != 200 {
		t.Fatalf("/livez with the app down: %d", code)
	}
	a.stop(t)
}

// failingWriter is a stdout that cannot be written (a closed pipe).
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// TestProbeCouldNotReport: a probe whose result cannot be written exits 3 (could not run), not 1
// (unhealthy): the caller learned nothing about the dependency.
func TestProbeCouldNotReport(t *testing.T) {
	cfg := writeFile(t, "agent.yaml", "probes:\n  - { name: config, kind: config }\n")
	var errb testkit.SyncBuffer
	if code := run(context.Background(), []string{"probe", "--config", cfg, "config"}, failingWriter{}, &errb, noEnv); code != exitCannotRun {
		t.Fatalf("exit %d, want %d; stderr: %s", code, exitCannotRun, errb.String())
	}
}
