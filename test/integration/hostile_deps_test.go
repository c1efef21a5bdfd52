package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/health-agent/health-agent/internal/testkit"
)

// The agent binary, run as deployed (GOMEMLIMIT=64MiB), against dependencies that answer with huge
// texts: what it keeps of them is bounded, and so is its peak RSS.

const (
	// hostilePeakRSS is the bound on the agent's peak RSS (VmHWM) while it probes a hostile dependency.
	hostilePeakRSS = 48 << 20
	// hostileProbeJSON is the bound on one probe's entry in /api/health/detailed.
	hostileProbeJSON = 64 << 10
)

// hostileDepsConfig is the default config's shape (a legacy app, retries, a breaker) with a short
// interval, plus the probe under test.
const hostileDepsConfig = `
server: { shutdownDelay: 0s }
defaults:
  interval: 200ms
  timeout: 5s
  failuresBeforeUnhealthy: 2
  retry: { maxRetries: 1, backoff: 10ms, maxBackoff: 50ms }
  breaker: { failureThreshold: 3, window: 5, delay: 30s, successThreshold: 2 }
probes:
  - { name: app, kind: http, critical: true, legacy: true, url: "%s" }
%s
`

func TestHostileDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary")
	}
	bin := testkit.BuildAgent(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	t.Cleanup(app.Close)

	t.Run("MCP ping answered with a 7 MB error message", func(t *testing.T) {
		mcp := startHostileMCP(t, 7<<20, 0)
		runHostile(t, bin, app.URL, fmt.Sprintf(`  - { name: mcpClient, kind: mcp, critical: false, url: "%s/mcp" }`, mcp.url), "mcpClient", mcp.hits)
	})
	t.Run("MCP tools/list page of 100,000 tools", func(t *testing.T) {
		mcp := startHostileMCP(t, 0, 100_000)
		runHostile(t, bin, app.URL, fmt.Sprintf(`  - { name: mcpClient, kind: mcp, critical: false, url: "%s/mcp" }`, mcp.url), "mcpClient", mcp.hits)
	})
	t.Run("CDP product and DevTools error of 4 MB", func(t *testing.T) {
		product := startHostileCDP(t, `{"id":%d,"result":{"product":"`+strings.Repeat("p", 4<<20)+`"}}`)
		devtools := startHostileCDP(t, `{"id":%d,"error":{"code":-32000,"message":"`+strings.Repeat("e", 4<<20)+`"}}`)
		hits := func() int64 { return min(product.hits(), devtools.hits()) }
		runHostile(t, bin, app.URL, fmt.Sprintf(`  - { name: browserPool, kind: cdp, critical: true, urls: "%s,%s" }`, product.url, devtools.url), "browserPool", hits)
	})
}

// runHostile runs the agent with probe added to the config until the hostile dependency has answered
// at least three times and the probe has reported on it, then checks the bounds.
func runHostile(t *testing.T, bin, appURL, probe, name string, hits func() int64) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, cfg, fmt.Sprintf(hostileDepsConfig, appURL, probe))
	logs := &testkit.SyncBuffer{}
	cmd := exec.Command(bin, "--config", cfg, "--listen", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GOMEMLIMIT=64MiB"}
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	proc := testkit.StartProcess(t, nil, cmd)
	base := waitServing(t, proc, logs)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var entry json.RawMessage
	testkit.EventuallyState(t, 60*time.Second, func() (bool, string) {
		select {
		case <-proc.Exited():
			t.Fatalf("the agent exited (%v): %s", proc.Err(), logs.String())
		default:
		}
		resp, err := client.Get(base + "/api/health/detailed")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var doc struct {
			Data struct {
				Health struct {
					Services map[string]json.RawMessage `json:"services"`
				} `json:"health"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			return false, err.Error()
		}
		entry = doc.Data.Health.Services[name]
		var svc struct {
			Failures int  `json:"consecutiveFailures"`
			Tools    *int `json:"tools"`
		}
		_ = json.Unmarshal(entry, &svc)
		// Reported on: a failure, or (an MCP server that got through) its tool count.
		return hits() >= 3 && (svc.Failures >= 1 || svc.Tools != nil), fmt.Sprintf("%d answers, %.300s", hits(), entry)
	}, "the hostile dependency answered three times and the probe reported on it")
	if len(entry) >= hostileProbeJSON {
		t.Errorf("services.%s in /api/health/detailed is %d bytes, want < %d", name, len(entry), hostileProbeJSON)
	}
	peak := procStatus(t, cmd.Process.Pid, "VmHWM")
	t.Logf("peak RSS %.1f MiB after %d hostile answers; services.%s is %d bytes", float64(peak)/(1<<20), hits(), name, len(entry))
	if peak >= hostilePeakRSS {
		t.Errorf("peak RSS %.1f MiB, want < %d MiB", float64(peak)/(1<<20), hostilePeakRSS>>20)
	}
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if len(line) > 8<<10 {
			t.Errorf("a log line of %d bytes: dependency text reached the log unbounded: %.200s", len(line), line)
		}
	}
}

var servingAddr = regexp.MustCompile(`"addr":"([^"]+)"`)

// waitServing returns the agent's base URL once it logs the address it serves on.
func waitServing(t *testing.T, proc *testkit.Process, logs *testkit.SyncBuffer) string {
	t.Helper()
	var base string
	testkit.EventuallyState(t, 30*time.Second, func() (bool, string) {
		select {
		case <-proc.Exited():
			t.Fatalf("the agent exited (%v): %s", proc.Err(), logs.String())
		default:
		}
		m := servingAddr.FindStringSubmatch(logs.String())
		if m != nil {
			base = "http://" + m[1]
		}
		return m != nil, logs.String()
	}, "the agent serving")
	return base
}

// hostileMCP is an MCP server over streamable HTTP (JSON answers) that answers initialize properly,
// then ping with an error message of ping bytes (when set), and tools/list with one page of tools.
type hostileMCP struct {
	ping  int
	tools int

	url  string
	seen atomic.Int64 // hostile answers sent
}

func (h *hostileMCP) hits() int64 { return h.seen.Load() }

func startHostileMCP(t *testing.T, ping, tools int) *hostileMCP {
	t.Helper()
	s := &hostileMCP{ping: ping, tools: tools}
	// The hostile part of each answer, built once: "%ID%" is the request's id.
	var hostile []byte
	method := "tools/list"
	if s.ping > 0 {
		method = "ping"
		hostile = []byte(`{"jsonrpc":"2.0","id":%ID%,"error":{"code":-32603,"message":"` + strings.Repeat("m", s.ping) + `"}}`)
	} else {
		var b strings.Builder
		b.WriteString(`{"jsonrpc":"2.0","id":%ID%,"result":{"tools":[`)
		for i := range s.tools {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"name":"tool-%06d","inputSchema":{"type":"object"}}`, i)
		}
		b.WriteString(`]}}`)
		hostile = []byte(b.String())
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			return
		}
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if req.ID == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Mcp-Session-Id", "hostile-session")
		switch req.Method {
		case "initialize":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"hostile","version":"1"}}}`, req.ID)
		case method:
			s.seen.Add(1)
			before, after, _ := strings.Cut(string(hostile), "%ID%")
			_, _ = io.WriteString(w, before)
			_, _ = w.Write(req.ID)
			_, _ = io.WriteString(w, after)
		case "ping":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{}}`, req.ID)
		default:
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"method not found"}}`, req.ID)
		}
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// hostileCDP is a DevTools endpoint whose browser answers Browser.getVersion with answer (%d: the id).
type hostileCDP struct {
	url  string
	seen atomic.Int64
}

func (h *hostileCDP) hits() int64 { return h.seen.Load() }

func startHostileCDP(t *testing.T, answer string) *hostileCDP {
	t.Helper()
	h := &hostileCDP{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/json/version":
			fmt.Fprintf(w, `{"Browser":"HeadlessChrome/131.0.0.0","webSocketDebuggerUrl":"ws://%s/devtools/browser/hostile"}`, r.Host)
		case "/devtools/browser/hostile":
			wg.Add(1)
			defer wg.Done()
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				_, b, err := c.Read(ctx)
				if err != nil {
					return
				}
				var req struct {
					ID int64 `json:"id"`
				}
				_ = json.Unmarshal(b, &req)
				h.seen.Add(1)
				if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, answer, req.ID)); err != nil {
					return
				}
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		wg.Wait()
	})
	h.url = srv.URL
	return h
}
