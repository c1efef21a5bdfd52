package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/health-agent/health-agent/internal/chaos"
	"github.com/health-agent/health-agent/internal/testkit"
)

// egressConfig is an agent with one probe (of target %s) and the egress routes %s. Probes run
// rarely: the traffic through the routes is what these tests watch.
const egressConfig = `
server: {detailsToken: "${DETAILS_TOKEN}"}
defaults:
  interval: 1h
  breaker: {failureThreshold: 2, window: 2, delay: 1m, successThreshold: 1}
probes:
  - {name: target, kind: tcp, address: "%s"}
egress:
  listen: "127.0.0.1:0"
  routes:
%s`

func egressBase(h *harness) string { return "http://" + h.agent.EgressAddr() }

func TestEgressCDPSessionThroughTheProxy(t *testing.T) {
	chromium := testkit.StartChromium(t, testkit.ChromiumOptions{})
	h := startAgent(t, setup{config: fmt.Sprintf(egressConfig, strings.TrimPrefix(chromium.URL(), "http://"),
		fmt.Sprintf("    - {name: browser, prefix: /browser/, upstream: %q, breaker: web-extraction}\n", chromium.URL()))})
	base := egressBase(h)

	resp, err := h.client.Get(base + "/browser/json/version")
	if err != nil {
		t.Fatal(err)
	}
	var version struct {
		Browser string
		WS      string `json:"webSocketDebuggerUrl"`
	}
	err = json.NewDecoder(resp.Body).Decode(&version)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("/json/version through the proxy: %v", err)
	}
	wantPrefix := "ws://" + h.agent.EgressAddr() + "/browser/devtools/browser/"
	if !strings.HasPrefix(version.WS, wantPrefix) {
		t.Fatalf("webSocketDebuggerUrl %q, want it through the proxy (%s…)", version.WS, wantPrefix)
	}

	// The app's client connects to the URL it was given, with an Origin that Chromium would refuse
	// (it allows no remote origins): the proxy drops it, and sends Chromium a Host it accepts.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, version.WS, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://app.example"}}})
	if err != nil {
		t.Fatalf("websocket through the proxy: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"id":1,"method":"Browser.getVersion"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read the answer: %v", err)
		}
		var answer struct {
			ID     int `json:"id"`
			Result struct {
				Product string `json:"product"`
			} `json:"result"`
		}
		if json.Unmarshal(msg, &answer) == nil && answer.ID == 1 {
			if !strings.Contains(answer.Result.Product, "Chrome") || answer.Result.Product != version.Browser {
				t.Errorf("Browser.getVersion product %q, /json/version Browser %q", answer.Result.Product, version.Browser)
			}
			break
		}
	}
	_ = c.Close(websocket.StatusNormalClosure, "")

	// Both requests were executions of the shared breaker, from real traffic.
	s := h.agent.Monitor().Breakers().Get("web-extraction").Stats()
	if len(s.History) != 2 || s.History[1].Source != "route:browser" || s.History[1].Outcome != "success" {
		t.Errorf("web-extraction breaker %+v, want the two proxied requests counted", s)
	}
	// A breaker that only a route names is listed with the probes' breakers.
	cb := decode(t, h.detail("/api/health/circuit-breakers").body)
	if state, _ := dig(cb, "data", "breakers", "web-extraction", "state").(string); state != "CLOSED" {
		t.Errorf("web-extraction in /api/health/circuit-breakers: state %q", state)
	}
}

func TestEgressMCPSessionThroughTheProxy(t *testing.T) {
	server := mcp.NewServer(&mcp.Implementation{Name: "design-mcp", Version: "1.0.0"}, nil)
	type in struct {
		Query string `json:"query"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "extract", Description: "extracts a design"},
		func(_ context.Context, _ *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "extracted " + a.Query}}}, nil, nil
		})
	upstream := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	t.Cleanup(upstream.Close)
	t.Cleanup(func() {
		for ss := range server.Sessions() {
			_ = ss.Close()
		}
	})
	h := startAgent(t, setup{config: fmt.Sprintf(egressConfig, strings.TrimPrefix(upstream.URL, "http://"),
		fmt.Sprintf("    - {name: mcp, prefix: /mcp/, upstream: %q, breaker: mcp-client}\n", upstream.URL+"/mcp"))})

	// The standalone event stream stays on: its GET on the session passes through the proxy too.
	client := mcp.NewClient(&mcp.Implementation{Name: "legacy-app", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: egressBase(h) + "/mcp"},
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatalf("initialize through the proxy: %v", err)
	}
	tools, err := cs.ListTools(t.Context(), nil)
	if err != nil || len(tools.Tools) != 1 || tools.Tools[0].Name != "extract" {
		t.Fatalf("tools/list: %v %+v", err, tools)
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "extract", Arguments: map[string]any{"query": "button"}})
	if err != nil || res.IsError || len(res.Content) != 1 {
		t.Fatalf("tools/call: %v %+v", err, res)
	}
	if text, _ := res.Content[0].(*mcp.TextContent); text == nil || text.Text != "extracted button" {
		t.Errorf("tools/call answered %+v", res.Content[0])
	}
	if err := cs.Close(); err != nil { // DELETE on the session
		t.Fatalf("close: %v", err)
	}
	testkit.EventuallyState(t, 20*time.Second, func() (bool, string) {
		n := 0
		for range server.Sessions() {
			n++
		}
		return n == 0, fmt.Sprintf("%d sessions", n)
	}, "the server dropped the session")
	s := h.agent.Monitor().Breakers().Get("mcp-client").Stats()
	for _, e := range s.History {
		if e.Outcome != "success" || e.Source != "route:mcp" {
			t.Errorf("mcp-client breaker execution %+v, want successes of the route", e)
		}
	}
	if len(s.History) < 4 { // initialize, initialized, tools/list, tools/call (and the GET stream, the DELETE)
		t.Errorf("mcp-client breaker saw %d executions", len(s.History))
	}
	if h.get("/api/health").code != 200 {
		t.Error("/api/health not ok")
	}
}

func TestEgressFaultsFailFast(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + down.Addr().String()
	down.Close()
	servers := map[string]*chaos.Server{
		"hang":  startChaos(t, chaos.Hanging()),
		"500":   startChaos(t, chaos.Failing(500)),
		"reset": startChaos(t, chaos.Resetting()),
		"429":   startChaos(t, chaos.RateLimited("30")),
	}
	var routes strings.Builder
	for _, name := range []string{"down", "hang", "500", "reset", "429"} {
		url := downURL
		if s := servers[name]; s != nil {
			url = s.URL()
		}
		fmt.Fprintf(&routes, "    - {name: r%s, prefix: /%s/, upstream: %q, timeout: 500ms, retry: {maxRetries: 0}}\n", name, name, url)
	}
	h := startAgent(t, setup{config: fmt.Sprintf(egressConfig, servers["500"].Addr(), routes.String())})
	base := egressBase(h)
	get := func(path string) (int, http.Header, string) {
		t.Helper()
		resp, err := h.client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}

	for _, tc := range []struct{ name, firstCode string }{
		{"down", "502"}, {"hang", "504"}, {"500", "500"}, {"reset", "502"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // the breaker's failure threshold
				if code, _, body := get("/" + tc.name + "/x"); strconv.Itoa(code) != tc.firstCode {
					t.Fatalf("answer %d, want %s (%s)", code, tc.firstCode, body)
				}
			}
			var before int64
			if s := servers[tc.name]; s != nil {
				before = s.Requests()
			}
			for range 3 {
				start := time.Now()
				code, hdr, body := get("/" + tc.name + "/x")
				took := time.Since(start)
				if code != 503 || !strings.Contains(body, `"code":"circuit_open"`) || !strings.Contains(body, `"breaker":"r`+tc.name+`"`) {
					t.Fatalf("answer %d %s, want 503 circuit_open", code, body)
				}
				if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
					t.Errorf("Retry-After %q", hdr.Get("Retry-After"))
				}
				if took > 2*time.Second {
					t.Errorf("the open breaker answered after %s", took)
				}
			}
			if s := servers[tc.name]; s != nil && s.Requests() != before {
				t.Errorf("the upstream got %d requests while the breaker was open", s.Requests()-before)
			}
		})
	}

	t.Run("429", func(t *testing.T) {
		if code, hdr, _ := get("/429/x"); code != 429 || hdr.Get("Retry-After") != "30" {
			t.Fatalf("first answer %d Retry-After %q, want the upstream's 429", code, hdr.Get("Retry-After"))
		}
		for range 3 {
			code, hdr, body := get("/429/x")
			if ra, _ := strconv.Atoi(hdr.Get("Retry-After")); code != 429 || ra < 1 || ra > 30 || !strings.Contains(body, `"code":"rate_limited"`) {
				t.Fatalf("answer %d Retry-After %q %s", code, hdr.Get("Retry-After"), body)
			}
		}
		if n := servers["429"].Requests(); n != 1 {
			t.Errorf("the upstream got %d requests, want 1: its Retry-After holds the route back", n)
		}
	})

	// The proxy's metrics are on the agent's /metrics when the agent registers them.
	if body := h.detail("/metrics").body; !strings.Contains(body, `health_agent_egress_rejected_total{reason="circuit_open",route="r500"} 3`) {
		t.Errorf("/metrics does not count the rejections")
	}
}

// TestEgressLargeBodyStreams sends 200 MB through the real agent binary and checks that its resident
// memory grows by at most 8 MiB: the proxy streams, it never holds a body.
func TestEgressLargeBodyStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent and moves 200 MB")
	}
	const size = 200 << 20
	chunk := make([]byte, 64<<10)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(upstream.Close)

	bin := testkit.BuildAgent(t)
	egressPort, serverPort := testkit.FreePort(t), testkit.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
defaults: {interval: 1h}
probes:
  - {name: target, kind: tcp, address: %q}
egress:
  listen: "127.0.0.1:%d"
  routes:
    - {name: blob, prefix: /blob/, upstream: %q}
`, strings.TrimPrefix(upstream.URL, "http://"), egressPort, upstream.URL))
	cmd := exec.Command(bin, "--config", cfg, "--listen", "127.0.0.1:"+strconv.Itoa(serverPort), "--log-level", "warn")
	var logs testkit.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	proc := testkit.StartProcess(t, nil, cmd)
	pid := cmd.Process.Pid
	base := fmt.Sprintf("http://127.0.0.1:%d", egressPort)
	client := &http.Client{Timeout: 5 * time.Minute}
	t.Cleanup(client.CloseIdleConnections)

	fetch := func(n int64) {
		t.Helper()
		resp, err := client.Get(base + "/blob/x")
		if err != nil {
			t.Fatalf("GET through the agent: %v", err)
		}
		defer resp.Body.Close()
		got, err := io.Copy(io.Discard, io.LimitReader(resp.Body, n))
		if err != nil || got != n {
			t.Fatalf("read %d of %d bytes: %v", got, n, err)
		}
	}
	testkit.EventuallyState(t, 30*time.Second, func() (bool, string) {
		select {
		case <-proc.Exited():
			t.Fatalf("agent exited: %v\n%s", proc.Err(), logs.String())
		default:
		}
		resp, err := client.Get(base + "/")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 404, resp.Status
	}, "the egress proxy listening")
	fetch(1 << 20) // warm up: connections, buffers, the runtime's first growth

	before := procStatus(t, pid, "VmRSS")
	// Reset the peak, so that VmHWM after the transfer is the peak during it.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
	fetch(size)
	peak := procStatus(t, pid, "VmHWM")
	growth := peak - before
	t.Logf("VmRSS before %d KiB, VmHWM during 200 MB %d KiB: growth %d KiB", before>>10, peak>>10, growth>>10)
	if growth > 8<<20 {
		t.Errorf("RSS grew by %d KiB while streaming 200 MB, want at most 8 MiB", growth>>10)
	}
}

// procStatus reads a field of /proc/PID/status in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", field, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestEgressSecretsStayOnTheirRoute injects a token on one route and checks that it reaches that
// route's upstream only, and appears in no answer of the proxy (failures and breaker rejections
// included), no log line and no metric.
func TestEgressSecretsStayOnTheirRoute(t *testing.T) {
	token := newSecret("figmaToken")
	figma := startChaos(t, chaos.Failing(500))
	other := startChaos(t, chaos.Healthy())
	routes := fmt.Sprintf(`    - {name: figma, prefix: /figma/, upstream: %q, breaker: figma-api, retry: {maxRetries: 0},
       headers: {X-Figma-Token: {env: FIGMA_TOKEN}, Authorization: {env: FIGMA_TOKEN, prefix: "Bearer "}}}
    - {name: other, prefix: /other/, upstream: %q}
`, figma.URL(), other.URL())
	h := startAgent(t, setup{config: fmt.Sprintf(egressConfig, other.Addr(), routes),
		env: map[string]string{"FIGMA_TOKEN": token.value}, secrets: []secret{token}})
	base := egressBase(h)
	get := func(path string) int {
		t.Helper()
		resp, err := h.client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var head bytes.Buffer
		_ = resp.Header.Write(&head)
		_, _ = h.wire.Write(append(head.Bytes(), b...)) // scanned for the token
		return resp.StatusCode
	}
	codes := []int{get("/figma/v1/files/a"), get("/figma/v1/files/a"), get("/figma/v1/files/a"), get("/other/x")}
	if want := []int{500, 500, 503, 200}; !slices.Equal(codes, want) {
		t.Errorf("answers %v, want %v (two failures open the breaker)", codes, want)
	}
	for _, hdr := range figma.Headers() {
		if hdr.Get("X-Figma-Token") != token.value || hdr.Get("Authorization") != "Bearer "+token.value {
			t.Error("the figma route's upstream did not get the injected token")
		}
	}
	for _, hdr := range other.Headers() {
		var all bytes.Buffer
		_ = hdr.Write(&all)
		if token.leaks(all.Bytes()) {
			t.Error("the other route's upstream got the figma token")
		}
	}
	_ = h.detail("/metrics")
	_ = h.detail("/api/health/circuit-breakers")
	_ = h.detail("/api/health/detailed")
}

// TestEgressTrafficDrivesTheVerdict: the app's own calls through a route open the breaker that a probe
// shares; the probe's verdict follows at the agent's next tick, not at its next interval (an hour), says
// the failures came from real traffic, and /api/health/detailed shows the route's last minute beside it.
func TestEgressTrafficDrivesTheVerdict(t *testing.T) {
	upstream := startChaos(t, chaos.Healthy())
	cfg := fmt.Sprintf(`
server: {detailsToken: "${DETAILS_TOKEN}"}
defaults:
  interval: 1h
  failuresBeforeUnhealthy: 3
  breaker: {failureThreshold: 2, window: 2, delay: 1h, successThreshold: 1}
probes:
  - {name: upstream, kind: http, critical: true, url: %q, breaker: shared}
egress:
  listen: "127.0.0.1:0"
  routes:
    - {name: app, prefix: /app/, upstream: %q, breaker: shared, retry: {maxRetries: 0}}
`, upstream.URL()+"/health", upstream.URL())
	h := startAgent(t, setup{config: cfg})
	h.waitView("upstream", "healthy at start", healthyView)
	probed := upstream.Requests()

	upstream.Set(chaos.Failing(502))
	for range 2 {
		resp, err := h.client.Get(egressBase(h) + "/app/v1/files/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 502 {
			t.Fatalf("the app's call got %d, want the upstream's 502", resp.StatusCode)
		}
	}
	v := h.waitView("upstream", "unhealthy from the app's traffic", func(v view) bool {
		return v.status == "unhealthy" && v.readyz == 503
	})
	if !strings.Contains(v.reason, `from real traffic on egress route "app"`) {
		t.Errorf("reason %q does not say the failures came from real traffic", v.reason)
	}
	if n := upstream.Requests() - probed; n != 2 {
		t.Errorf("the upstream got %d requests, want the app's 2: the probe's refusal must not reach it", n)
	}
	svc := dig(decode(t, h.detail("/api/health/detailed").body), "data", "health", "services", "upstream")
	traffic, _ := dig(svc, "traffic").([]any)
	if len(traffic) != 1 || dig(traffic[0], "route") != "app" || dig(traffic[0], "errors") != float64(2) {
		t.Errorf("services.upstream.traffic = %v, want route app with 2 errors", dig(svc, "traffic"))
	}
}
