package standin

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"
)

// newTestWorld starts the stand-ins on free ports. The caller defers Stop (after goleak's defer, so that
// it runs first).
func newTestWorld(t *testing.T) *World {
	t.Helper()
	w := New(Options{AppAddr: "127.0.0.1:0", MCPAddr: "127.0.0.1:0", FigmaAddr: "127.0.0.1:0",
		FigmaToken: "test-token", FigmaRetryAfter: 7 * time.Second})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	return w
}

// request GETs url with optional headers (name, value pairs) on a fresh connection.
func request(t *testing.T, url string, header ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestCommands(t *testing.T) {
	defer goleak.VerifyNone(t)
	w := newTestWorld(t)
	defer w.Stop()
	appURL := w.App.URL() + "/api/health"

	tests := []struct {
		cmd     string
		want    string // in the output
		wantErr string // in the error
		appUp   bool   // whether the app answers afterwards
	}{
		{cmd: "", want: "", appUp: true},
		{cmd: "status", want: "app    running", appUp: true},
		{cmd: "stop app", want: "app: stopped (" + w.App.Addr() + ")", appUp: false},
		{cmd: "stop app", want: "app: already stopped", appUp: false},
		{cmd: "status", want: "app    stopped", appUp: false},
		{cmd: "start app", want: "app: started (" + w.App.Addr() + ")", appUp: true},
		{cmd: "  start   app ", want: "app: already running", appUp: true},
		{cmd: "stop browser", wantErr: `no stand-in "browser"`, appUp: true},
		{cmd: "figma 429", want: "429 (Retry-After: 7)", appUp: true},
		{cmd: "figma 500", wantErr: "figma mode must be ok, 429 or 403", appUp: true},
		{cmd: "fly away", wantErr: `unknown command "fly away"`, appUp: true},
		{cmd: "help", want: "figma ok|429|403", appUp: true},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			out, err := w.Do(tt.cmd)
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case !strings.Contains(out, tt.want):
				t.Fatalf("output %q, want %q in it", out, tt.want)
			}
			resp, _, err := request(t, appURL)
			if up := err == nil && resp.StatusCode == http.StatusOK; up != tt.appUp {
				t.Fatalf("app answers: %v (%v), want %v", up, err, tt.appUp)
			}
		})
	}
}

func TestApp(t *testing.T) {
	defer goleak.VerifyNone(t)
	w := newTestWorld(t)
	defer w.Stop()
	resp, body, err := request(t, w.App.URL()+"/api/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/health: %v %v", resp, err)
	}
	var got struct {
		Status    string            `json:"status"`
		Timestamp time.Time         `json:"timestamp"`
		Uptime    *float64          `json:"uptime"`
		Memory    map[string]string `json:"memory"`
		Services  map[string]string `json:"services"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got.Status != "ok" || got.Timestamp.IsZero() || got.Uptime == nil || got.Memory["heapUsed"] != AppHeapUsed || len(got.Services) == 0 {
		t.Fatalf("legacy JSON %s", body)
	}
}

func TestFigma(t *testing.T) {
	defer goleak.VerifyNone(t)
	w := newTestWorld(t)
	defer w.Stop()
	me := w.Figma.URL() + "/v1/me"
	tests := []struct {
		name   string
		mode   FigmaMode
		header []string
		code   int
		want   string // in the body
	}{
		{"valid token", FigmaOK, []string{"X-Figma-Token", "test-token"}, 200, `"handle":"` + FigmaHandle + `"`},
		{"oauth bearer", FigmaOK, []string{"Authorization", "Bearer test-token"}, 200, `"email":"` + FigmaEmail + `"`},
		{"wrong token", FigmaOK, []string{"X-Figma-Token", "test-tokeN"}, 403, "Invalid token"},
		{"no token", FigmaOK, nil, 403, "Invalid token"},
		{"revoked", FigmaTokenRejected, []string{"X-Figma-Token", "test-token"}, 403, "Invalid token"},
		{"rate limited", FigmaRateLimited, []string{"X-Figma-Token", "test-token"}, 429, "Rate limit exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := w.Figma.SetMode(tt.mode); err != nil {
				t.Fatal(err)
			}
			resp, body, err := request(t, me, tt.header...)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.want) {
				t.Fatalf("%d %s, want %d with %q", resp.StatusCode, body, tt.code, tt.want)
			}
			if tt.code == 429 && (resp.Header.Get("Retry-After") != "7" || resp.Header.Get("X-Figma-Rate-Limit-Type") != "low") {
				t.Fatalf("429 headers %v", resp.Header)
			}
		})
	}
}

// TestMCPRestart lists the MCP stand-in's tools with a go-sdk client, stops it, and lists them again
// once it is back on the same address.
func TestMCPRestart(t *testing.T) {
	defer goleak.VerifyNone(t)
	w := newTestWorld(t)
	defer w.Stop()
	list := func() ([]string, error) {
		client := mcp.NewClient(&mcp.Implementation{Name: "standin-test", Version: "0"}, nil)
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: w.MCP.URL() + "/mcp", HTTPClient: hc}, nil)
		if err != nil {
			return nil, err
		}
		defer cs.Close()
		if name := cs.InitializeResult().ServerInfo.Name; name != MCPServerName {
			t.Errorf("server name %q, want %q", name, MCPServerName)
		}
		res, err := cs.ListTools(t.Context(), nil)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
		}
		slices.Sort(names)
		return names, nil
	}
	if names, err := list(); err != nil || !slices.Equal(names, MCPTools) {
		t.Fatalf("tools %v, %v; want %v", names, err, MCPTools)
	}
	addr := w.MCP.Addr()
	if _, err := w.Do("stop mcp"); err != nil {
		t.Fatal(err)
	}
	if _, err := list(); err == nil {
		t.Fatal("listed tools of a stopped server")
	}
	if _, err := w.Do("start mcp"); err != nil {
		t.Fatal(err)
	}
	if w.MCP.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", w.MCP.Addr(), addr)
	}
	if names, err := list(); err != nil || !slices.Equal(names, MCPTools) {
		t.Fatalf("after restart: tools %v, %v; want %v", names, err, MCPTools)
	}
	if n := w.MCP.ToolCalls(); n != 0 {
		t.Fatalf("%d tool calls", n)
	}
}
