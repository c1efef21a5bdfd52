package probes

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
)

// mcpWire sits in front of a real go-sdk MCP handler and records what crossed the wire; it can also
// hold chosen requests until the client gives up, to play a server that hangs.
type mcpWire struct {
	next http.Handler
	// block holds requests whose JSON-RPC method (or HTTP method, e.g. "DELETE") is a key.
	block map[string]bool
	// auth, when set, is the Authorization value every request must carry; others get a 401 whose
	// body echoes what they sent (a careless server), to prove the probe scrubs it.
	auth    string
	release chan struct{}

	mu            sync.Mutex
	methods       []string // JSON-RPC methods and bare HTTP methods (GET, DELETE), in order
	initVersions  []string // params.protocolVersion of each initialize
	headerVersion []string // Mcp-Protocol-Version header of requests after initialize
	authSeen      []string
	deletes       int
}

func (w *mcpWire) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	label := r.Method
	var msg struct {
		Method string `json:"method"`
		Params struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"params"`
	}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(rw, "read", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if json.Unmarshal(body, &msg) == nil && msg.Method != "" {
			label = msg.Method
		}
	}
	w.mu.Lock()
	w.methods = append(w.methods, label)
	w.authSeen = append(w.authSeen, r.Header.Get("Authorization"))
	switch {
	case label == "initialize":
		w.initVersions = append(w.initVersions, msg.Params.ProtocolVersion)
	case r.Header.Get("Mcp-Protocol-Version") != "":
		w.headerVersion = append(w.headerVersion, r.Header.Get("Mcp-Protocol-Version"))
	}
	if r.Method == http.MethodDelete {
		w.deletes++
	}
	w.mu.Unlock()

	if w.auth != "" && r.Header.Get("Authorization") != w.auth {
		// A JSON-RPC error body is what the SDK surfaces in its error, echo and all.
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(rw).Encode(map[string]any{"jsonrpc": "2.0", "id": 1,
			"error": map[string]any{"code": -32001, "message": "bad credentials: " + r.Header.Get("Authorization")}})
		return
	}
	if w.block[label] {
		select {
		case <-r.Context().Done():
		case <-w.release:
		}
		return
	}
	w.next.ServeHTTP(rw, r)
}

func (w *mcpWire) snapshot() (methods, initVersions, headerVersion, authSeen []string, deletes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.methods), slices.Clone(w.initVersions), slices.Clone(w.headerVersion),
		slices.Clone(w.authSeen), w.deletes
}

type mcpTestServer struct {
	url       string
	server    *mcp.Server
	wire      *mcpWire
	toolCalls *atomic.Int64
	// initialized records the protocol version each server session was initialized with.
	initialized chan string
}

type mcpServerConfig struct {
	tools     []string
	pageSize  int
	stateless bool
	sse       bool
	block     []string
	auth      string
	name      string // the server's name; "design-mcp" when empty
}

// mcpStartServer runs a real go-sdk MCP server on loopback.
func mcpStartServer(t *testing.T, cfg mcpServerConfig) *mcpTestServer {
	t.Helper()
	ts := &mcpTestServer{toolCalls: new(atomic.Int64), initialized: make(chan string, 100)}
	name := cmp.Or(cfg.name, "design-mcp")
	ts.server = mcp.NewServer(&mcp.Implementation{Name: name, Version: "1.2.3"}, &mcp.ServerOptions{
		PageSize: cfg.pageSize,
		InitializedHandler: func(_ context.Context, req *mcp.InitializedRequest) {
			if p := req.Session.InitializeParams(); p != nil {
				ts.initialized <- p.ProtocolVersion
			}
		},
	})
	type in struct {
		Query string `json:"query"`
	}
	for _, name := range cfg.tools {
		mcp.AddTool(ts.server, &mcp.Tool{Name: name, Description: "test tool " + name},
			func(context.Context, *mcp.CallToolRequest, in) (*mcp.CallToolResult, any, error) {
				ts.toolCalls.Add(1)
				return &mcp.CallToolResult{}, nil, nil
			})
	}
	getServer := func(*http.Request) *mcp.Server { return ts.server }
	var h http.Handler
	if cfg.sse {
		h = mcp.NewSSEHandler(getServer, nil)
	} else {
		h = mcp.NewStreamableHTTPHandler(getServer, &mcp.StreamableHTTPOptions{Stateless: cfg.stateless})
	}
	ts.wire = &mcpWire{next: h, block: map[string]bool{}, auth: cfg.auth, release: make(chan struct{})}
	for _, m := range cfg.block {
		ts.wire.block[m] = true
	}
	srv := httptest.NewServer(ts.wire)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { // sessions a test left on purpose (a DELETE that never got through)
		for ss := range ts.server.Sessions() {
			_ = ss.Close()
		}
	})
	t.Cleanup(func() { close(ts.wire.release) }) // runs first: frees held handlers so Close can return
	ts.url = srv.URL + "/mcp"
	return ts
}

// sessions counts the server's live sessions.
func (ts *mcpTestServer) sessions() int {
	n := 0
	for range ts.server.Sessions() {
		n++
	}
	return n
}

// waitNoSessions polls until the server holds no session: closing is asynchronous on the server side.
func (ts *mcpTestServer) waitNoSessions(t *testing.T) {
	t.Helper()
	testkit.EventuallyState(t, 20*time.Second, func() (bool, string) {
		n := ts.sessions()
		return n == 0, fmt.Sprintf("%d session(s)", n)
	}, "the server holds no session after the check")
}

// TestMCPSessionCountSeesSessions proves waitNoSessions is not vacuous: an unclosed client session is
// counted by the server.
func TestMCPSessionCountSeesSessions(t *testing.T) {
	ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a"}})
	c := mcp.NewClient(&mcp.Implementation{Name: "raw", Version: "0"}, nil)
	// Pinned as the probe pins it. Unpinned, go-sdk v1.8.0 first sends a session-less server/discover
	// (protocol 2026-07-28), which a stateful server serves on an ephemeral session that it tears down
	// asynchronously: that is the second session CI once counted here.
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: ts.url, DisableStandaloneSSE: true},
		&mcp.ClientSessionOptions{ProtocolVersion: mcpProtocolVersion})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if n := ts.sessions(); n != 1 {
		t.Errorf("sessions = %d with one client connected, want 1", n)
	}
	_ = cs.Close()
	ts.waitNoSessions(t)
}

func mcpNewProbe(t *testing.T, opts map[string]any, env map[string]string) *mcpProbe {
	t.Helper()
	p, err := Kinds["mcp"].New(Spec{Name: "mcpClient", Options: opts, Env: Env{LookupEnv: mcpLookup(env)}})
	if err != nil {
		t.Fatalf("newMCP: %v", err)
	}
	return p.(*mcpProbe)
}

func mcpLookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func mcpCheck(t *testing.T, p Probe, timeout time.Duration) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	return p.Check(ctx)
}

func TestMCPHealthy(t *testing.T) {
	tools := []string{"search_design", "extract_tokens", "render_frame"}
	for _, tc := range []struct {
		name string
		cfg  mcpServerConfig
		opts map[string]any
	}{
		{"streamable stateful", mcpServerConfig{tools: tools}, nil},
		{"streamable stateless", mcpServerConfig{tools: tools, stateless: true}, nil},
		{"paginated", mcpServerConfig{tools: tools, pageSize: 1}, nil},
		{"legacy sse", mcpServerConfig{tools: tools, sse: true}, map[string]any{"transport": "sse"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := mcpStartServer(t, tc.cfg)
			opts := map[string]any{"url": ts.url, "minTools": 3, "requiredTools": []any{"extract_tokens", "search_design"}}
			for k, v := range tc.opts {
				opts[k] = v
			}
			p := mcpNewProbe(t, opts, nil)
			for i := range 2 { // a second check proves the first left nothing behind
				res, err := mcpCheck(t, p, 30*time.Second)
				if err != nil {
					t.Fatalf("check %d: %v", i, mcpSafe(err))
				}
				if res.Status != Healthy {
					t.Errorf("status = %q, want healthy", res.Status)
				}
				want := map[string]any{
					"connected": true, "serverName": "design-mcp", "serverVersion": "1.2.3",
					"protocolVersion": "2025-06-18", "tools": 3,
				}
				for k, v := range want {
					if res.Fields[k] != v {
						t.Errorf("fields[%s] = %v, want %v", k, res.Fields[k], v)
					}
				}
				names, _ := res.Fields["toolNames"].([]string)
				if !slices.Equal(names, []string{"extract_tokens", "render_frame", "search_design"}) {
					t.Errorf("toolNames = %v, want sorted names", names)
				}
				if !tc.cfg.stateless {
					ts.waitNoSessions(t)
				}
			}
			methods, initVersions, headerVersions, _, deletes := ts.wire.snapshot()
			if slices.Contains(methods, "tools/call") || ts.toolCalls.Load() != 0 {
				t.Errorf("the probe called a tool: %v", methods)
			}
			for _, m := range []string{"initialize", "notifications/initialized", "ping", "tools/list"} {
				if !slices.Contains(methods, m) {
					t.Errorf("server never saw %s; saw %v", m, methods)
				}
			}
			if tc.cfg.pageSize == 1 {
				if n := mcpCount(methods, "tools/list"); n != 2*3 {
					t.Errorf("tools/list requests = %d, want 3 pages per check", n)
				}
			}
			// The pin, as the server saw it on the wire and in its session.
			if len(initVersions) != 2 || initVersions[0] != "2025-06-18" || initVersions[1] != "2025-06-18" {
				t.Errorf("initialize protocolVersion on the wire = %v, want 2025-06-18 twice", initVersions)
			}
			if !tc.cfg.sse && (len(headerVersions) == 0 || slices.ContainsFunc(headerVersions, func(v string) bool { return v != "2025-06-18" })) {
				t.Errorf("Mcp-Protocol-Version headers = %v, want 2025-06-18", headerVersions)
			}
			if !tc.cfg.stateless {
				for range 2 {
					select {
					case v := <-ts.initialized:
						if v != "2025-06-18" {
							t.Errorf("server session initialized with %q, want 2025-06-18", v)
						}
					case <-time.After(20 * time.Second):
						t.Fatal("server never saw notifications/initialized")
					}
				}
			}
			if !tc.cfg.stateless && !tc.cfg.sse && deletes != 2 {
				t.Errorf("DELETE requests = %d, want one per check", deletes)
			}
		})
	}
}

func mcpCount(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func TestMCPUnusable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    map[string]any
		wantErr []string
		wantIs  error
	}{
		{"required tool missing", map[string]any{"requiredTools": []any{"search_design", "export_pdf", "crop"}},
			[]string{"export_pdf, crop", "server has 2 tools"}, ErrMCPToolsMissing},
		{"required tools as one env string", map[string]any{"requiredTools": "search_design, export_pdf"},
			[]string{"export_pdf"}, ErrMCPToolsMissing},
		{"too few tools", map[string]any{"minTools": 5}, []string{"2 tools, want at least 5"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := mcpStartServer(t, mcpServerConfig{tools: []string{"search_design", "extract_tokens"}})
			opts := map[string]any{"url": ts.url}
			for k, v := range tc.opts {
				opts[k] = v
			}
			res, err := mcpCheck(t, mcpNewProbe(t, opts, nil), 30*time.Second)
			if err == nil {
				t.Fatal("check passed, want an error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", mcpSafe(err), w)
				}
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q is not %v", mcpSafe(err), tc.wantIs)
			}
			if res.Fields["connected"] != true || res.Fields["tools"] != 2 {
				t.Errorf("fields = %v, want connected with 2 tools", res.Fields)
			}
			ts.waitNoSessions(t)
		})
	}
}

func TestMCPServerWithoutTools(t *testing.T) {
	ts := mcpStartServer(t, mcpServerConfig{})
	res, err := mcpCheck(t, mcpNewProbe(t, map[string]any{"url": ts.url}, nil), 30*time.Second)
	if err != nil {
		t.Fatalf("check: %v", mcpSafe(err))
	}
	if names, ok := res.Fields["toolNames"].([]string); res.Fields["tools"] != 0 || !ok || names == nil {
		t.Errorf("tools = %v, toolNames = %#v; want 0 and an empty list (JSON [], not null)", res.Fields["tools"], res.Fields["toolNames"])
	}
	if methods, _, _, _, _ := ts.wire.snapshot(); slices.Contains(methods, "tools/list") {
		t.Errorf("listed tools of a server without the tools capability: %v", methods)
	}
	ts.waitNoSessions(t)
}

func TestMCPHangs(t *testing.T) {
	const timeout = 2 * time.Second
	for _, tc := range []struct {
		name          string
		block         []string
		wantConnected bool
		sse           bool
	}{
		{"initialize", []string{"initialize"}, false, false},
		{"ping", []string{"ping"}, true, false},
		{"tools/list", []string{"tools/list"}, true, false},
		// The whole server stops answering after initialize, the session DELETE included: the probe
		// must still return within its deadline plus the close grace.
		{"everything after initialize", []string{"notifications/initialized", "ping", "tools/list", "notifications/cancelled", "DELETE"}, false, false},
		{"sse tools/list", []string{"tools/list"}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a"}, block: tc.block, sse: tc.sse})
			opts := map[string]any{"url": ts.url}
			if tc.sse {
				opts["transport"] = "sse"
			}
			p := mcpNewProbe(t, opts, nil)
			start := time.Now()
			res, err := mcpCheck(t, p, timeout)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("check passed against a hanging server")
			}
			t.Logf("error after %v: %v", elapsed, mcpSafe(err))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %q is not a deadline", mcpSafe(err))
			}
			// Generous: the point is "bounded by the deadline", not a precise timing.
			if limit := timeout + p.closeGrace + 5*time.Second; elapsed > limit {
				t.Errorf("check took %v, want under %v", elapsed, limit)
			}
			if res.Fields["connected"] != tc.wantConnected {
				t.Errorf("connected = %v, want %v", res.Fields["connected"], tc.wantConnected)
			}
			if !slices.Contains(tc.block, "DELETE") {
				ts.waitNoSessions(t)
			}
		})
	}
}

func TestMCPGarbage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{
		{"html page", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html><body>Welcome to nginx!</body></html>")
		}, "initialize"},
		{"json that is not json-rpc", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"status":"ok"}`)
		}, "initialize"},
		{"not found", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, "Not Found"},
		{"server error", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}, "Internal Server Error"},
		{"truncated event stream", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "event: message\ndata: {\"jsonrpc\":")
		}, "initialize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			res, err := mcpCheck(t, mcpNewProbe(t, map[string]any{"url": srv.URL + "/mcp"}, nil), 10*time.Second)
			if err == nil {
				t.Fatal("check passed against a non-MCP server")
			}
			t.Logf("error: %v", mcpSafe(err))
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "mcp: ") {
				t.Errorf("error %q, want it to start with mcp: and contain %q", mcpSafe(err), tc.wantErr)
			}
			if res.Fields["connected"] != false {
				t.Errorf("connected = %v, want false", res.Fields["connected"])
			}
		})
	}
}

func TestMCPUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	_, err := mcpCheck(t, mcpNewProbe(t, map[string]any{"url": url}, nil), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("error = %v, want connection refused", mcpSafe(err))
	}
}

const (
	mcpTestToken     = "s3cr3t-mcp-token-1234"
	mcpRedirectToken = "redirect-token-5678"
)

// mcpSafe is how tests print an error: test tokens masked, so even a failing run shows none.
func mcpSafe(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	for _, tok := range []string{mcpTestToken, mcpRedirectToken} {
		s = strings.ReplaceAll(s, tok, "[TOKEN]")
	}
	return s
}

func TestMCPHeaderSecrets(t *testing.T) {
	const token = mcpTestToken
	opts := func(url string) map[string]any {
		return map[string]any{"url": url, "headers": map[string]any{
			"authorization": map[string]any{"env": "MCP_TOKEN", "prefix": "Bearer "},
			"X-Env":         "test",
		}}
	}
	t.Run("reaches the server", func(t *testing.T) {
		ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a"}, auth: "Bearer " + token})
		p := mcpNewProbe(t, opts(ts.url), map[string]string{"MCP_TOKEN": token})
		if w := p.Warnings(); len(w) != 0 {
			t.Errorf("warnings with the variable set: %v", w)
		}
		if _, err := mcpCheck(t, p, 30*time.Second); err != nil {
			t.Fatalf("check: %v", mcpSafe(err))
		}
		ts.waitNoSessions(t)
		methods, _, _, authSeen, deletes := ts.wire.snapshot()
		if deletes != 1 {
			t.Errorf("DELETE requests = %d, want 1", deletes)
		}
		for i, a := range authSeen {
			if a != "Bearer "+token {
				t.Errorf("request %d (%s) carried the wrong Authorization", i, methods[i])
			}
		}
	})
	t.Run("a server name echoing the token is redacted", func(t *testing.T) {
		ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a"}, auth: "Bearer " + token, name: "mcp for " + token})
		res, err := mcpCheck(t, mcpNewProbe(t, opts(ts.url), map[string]string{"MCP_TOKEN": token}), 30*time.Second)
		if err != nil {
			t.Fatalf("check: %v", mcpSafe(err))
		}
		// "r " ends both "mcp for " and "Bearer ": an 8-byte piece of the header value, hidden too.
		if got := res.Fields["serverName"]; got != "mcp fo[redacted]" {
			t.Errorf("serverName = %q, want the token redacted", mcpSafe(fmt.Errorf("%v", got)))
		}
		ts.waitNoSessions(t)
	})
	t.Run("a tool named after the token is redacted", func(t *testing.T) {
		ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a", "t-" + token}, auth: "Bearer " + token})
		res, err := mcpCheck(t, mcpNewProbe(t, opts(ts.url), map[string]string{"MCP_TOKEN": token}), 30*time.Second)
		if err != nil {
			t.Fatalf("check: %v", mcpSafe(err))
		}
		if got := fmt.Sprint(res.Fields["toolNames"]); got != "[a t-[redacted]]" {
			t.Errorf("toolNames = %s, want the token redacted", mcpSafe(errors.New(got)))
		}
		ts.waitNoSessions(t)
	})
	t.Run("a long server name is cut", func(t *testing.T) {
		ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a"}, auth: "Bearer " + token, name: strings.Repeat("n", 10_000)})
		res, err := mcpCheck(t, mcpNewProbe(t, opts(ts.url), map[string]string{"MCP_TOKEN": token}), 30*time.Second)
		if err != nil {
			t.Fatalf("check: %v", mcpSafe(err))
		}
		if got := res.Fields["serverName"]; got != strings.Repeat("n", maxShownText-len("…"))+"…" {
			t.Errorf("serverName is %d bytes, want %d and an ellipsis", len(fmt.Sprint(got)), maxShownText)
		}
		ts.waitNoSessions(t)
	})
	t.Run("reaches an sse server, stream and messages", func(t *testing.T) {
		ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a"}, auth: "Bearer " + token, sse: true})
		o := opts(ts.url)
		o["transport"] = "sse"
		if _, err := mcpCheck(t, mcpNewProbe(t, o, map[string]string{"MCP_TOKEN": token}), 30*time.Second); err != nil {
			t.Fatalf("check: %v", mcpSafe(err))
		}
		ts.waitNoSessions(t)
		methods, _, _, authSeen, _ := ts.wire.snapshot()
		if !slices.Contains(methods, "GET") || !slices.Contains(methods, "tools/list") {
			t.Errorf("methods = %v, want the stream and the messages", methods)
		}
		for i, a := range authSeen {
			if a != "Bearer "+token {
				t.Errorf("request %d (%s) carried the wrong Authorization", i, methods[i])
			}
		}
	})
	t.Run("rejected token is not echoed", func(t *testing.T) {
		ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a"}, auth: "Bearer other"})
		p := mcpNewProbe(t, opts(ts.url), map[string]string{"MCP_TOKEN": token})
		res, err := mcpCheck(t, p, 30*time.Second)
		if err == nil {
			t.Fatal("check passed with a rejected token")
		}
		if strings.Contains(err.Error(), token) || strings.Contains(fmt.Sprintf("%+v", res), token) {
			t.Error("the token appears in the error or the result")
		}
		// The server's own message survives, with the secret scrubbed out of it.
		if !strings.Contains(err.Error(), "bad credentials: [redacted]") || !strings.Contains(err.Error(), "Unauthorized") {
			t.Errorf("error %q does not report the redacted rejection", mcpSafe(err))
		}
	})
	t.Run("variable unset", func(t *testing.T) {
		ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a"}})
		p := mcpNewProbe(t, opts(ts.url), nil)
		w := p.Warnings()
		if len(w) != 1 || !strings.Contains(w[0], "MCP_TOKEN") {
			t.Errorf("warnings = %q, want one naming MCP_TOKEN", w)
		}
		_, err := mcpCheck(t, p, 30*time.Second)
		if err == nil || !strings.Contains(err.Error(), "MCP_TOKEN") || !errors.Is(err, config.ErrSecretAbsent) {
			t.Fatalf("error = %v, want an absent secret naming MCP_TOKEN", mcpSafe(err))
		}
		if methods, _, _, _, _ := ts.wire.snapshot(); len(methods) != 0 {
			t.Errorf("the probe contacted the server without its header: %v", methods)
		}
	})
}

func TestMCPRefusesCrossOriginRedirect(t *testing.T) {
	const token = mcpRedirectToken
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Authorization"), token) {
			leaked.Store(true)
		}
		http.NotFound(w, r)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/mcp", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	p := mcpNewProbe(t, map[string]any{"url": srv.URL + "/mcp",
		"headers": map[string]any{"Authorization": map[string]any{"env": "T"}}}, map[string]string{"T": token})
	_, err := mcpCheck(t, p, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "another origin") {
		t.Errorf("error = %v, want a refused redirect", mcpSafe(err))
	}
	if leaked.Load() {
		t.Error("the header reached another origin")
	}
}

func TestMCPConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts map[string]any
		want []string
	}{
		{"no url", map[string]any{}, []string{"url: required"}},
		{"relative url", map[string]any{"url": "/mcp"}, []string{"url: must be an absolute http or https URL"}},
		{"ftp url", map[string]any{"url": "ftp://x/mcp"}, []string{"url: must be an absolute"}},
		{"credentials in url", map[string]any{"url": "http://u:p@x/mcp"}, []string{"url: must not carry credentials"}},
		{"bad transport", map[string]any{"url": "http://x/mcp", "transport": "websocket"}, []string{`transport: must be streamable or sse, got "websocket"`}},
		{"negative minTools", map[string]any{"url": "http://x/mcp", "minTools": -1}, []string{"minTools: must be >= 0"}},
		{"empty required tool", map[string]any{"url": "http://x/mcp", "requiredTools": []any{"a", " "}}, []string{"requiredTools[1]: must not be empty"}},
		{"unknown key", map[string]any{"url": "http://x/mcp", "tools": 3}, []string{"tools"}}, // the wording is pkg/config's
		{"header without source", map[string]any{"url": "http://x/mcp", "headers": map[string]any{"Authorization": map[string]any{"prefix": "Bearer "}}},
			[]string{"headers.Authorization: must set exactly one of value, env or file"}},
		{"duplicate header", map[string]any{"url": "http://x/mcp", "headers": map[string]any{"X-A": "1", "x-a": "2"}},
			[]string{"headers.x-a: duplicate of headers.X-A (header names are case-insensitive)"}},
		{"prefix on literal", map[string]any{"url": "http://x/mcp", "headers": map[string]any{"X-A": map[string]any{"value": "v", "prefix": "p"}}},
			[]string{"headers.X-A.prefix: applies only to env or file; write it into value"}},
		{"managed header", map[string]any{"url": "http://x/mcp", "headers": map[string]any{"mcp-session-id": "x"}}, []string{"headers.mcp-session-id: is set by the MCP client"}},
		{"invalid header name", map[string]any{"url": "http://x/mcp", "headers": map[string]any{"bad name": "x"}}, []string{"headers.bad name: not a valid HTTP header name"}},
		{"every problem at once", map[string]any{"transport": "ws", "minTools": -2}, []string{"url: required", "transport:", "minTools:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Kinds["mcp"].New(Spec{Name: "m", Options: tc.opts})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", mcpSafe(err), w)
				}
			}
			for _, e := range config.Flatten(err) {
				var fe *config.FieldError
				if !errors.As(e, &fe) {
					t.Errorf("%q is not a FieldError", e)
				}
			}
		})
	}
}

func TestMCPDefaultConfigOptions(t *testing.T) {
	// The options of configs/agent.yaml's mcpClient probe, as viper hands them over (lower-cased keys).
	p, err := Kinds["mcp"].New(Spec{Name: "mcpClient", Options: map[string]any{"url": "http://127.0.0.1:3333/mcp", "mintools": 1, "requiredtools": []any{"x"}}})
	if err != nil {
		t.Fatalf("newMCP: %v", err)
	}
	mp := p.(*mcpProbe)
	if mp.sse || mp.minTools != 1 || !slices.Equal(mp.required, []string{"x"}) {
		t.Errorf("decoded %+v", mp)
	}
}

func TestMCPManyTools(t *testing.T) {
	var tools []string
	for i := range 60 {
		tools = append(tools, fmt.Sprintf("tool_%02d", i))
	}
	ts := mcpStartServer(t, mcpServerConfig{tools: tools, pageSize: 25})
	res, err := mcpCheck(t, mcpNewProbe(t, map[string]any{"url": ts.url, "requiredTools": []any{"tool_59"}}, nil), 30*time.Second)
	if err != nil {
		t.Fatalf("check: %v", mcpSafe(err))
	}
	names, _ := res.Fields["toolNames"].([]string)
	if res.Fields["tools"] != 60 || len(names) != 50 || names[0] != "tool_00" || res.Fields["toolNamesTruncated"] != true {
		t.Errorf("tools = %v, %d names (first %v), truncated %v; want 60, 50 from tool_00, true",
			res.Fields["tools"], len(names), names[:min(1, len(names))], res.Fields["toolNamesTruncated"])
	}
	ts.waitNoSessions(t)
}

func TestMCPEndlessPagination(t *testing.T) {
	ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a", "b"}})
	// A buggy server: every page says there is another.
	ts.server.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if lr, ok := req.(*mcp.ListToolsRequest); ok && lr.Params != nil {
				lr.Params.Cursor = "" // serve the first page again
			}
			res, err := next(ctx, method, req)
			if lt, ok := res.(*mcp.ListToolsResult); ok && err == nil {
				lt.NextCursor = "again"
			}
			return res, err
		}
	})
	_, err := mcpCheck(t, mcpNewProbe(t, map[string]any{"url": ts.url}, nil), 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "repeated a pagination cursor") {
		t.Errorf("error = %v, want a repeated cursor", mcpSafe(err))
	}
	methods, _, _, _, _ := ts.wire.snapshot()
	if n := mcpCount(methods, "tools/list"); n != 2 {
		t.Errorf("tools/list requests = %d, want 2 (stop at the first repeat)", n)
	}
	ts.waitNoSessions(t)
}

// A URL refused by the config shows neither its password nor its query values (a key may be put there).
func TestMCPConfigURLNotEchoed(t *testing.T) {
	for _, raw := range []string{"ftp://u:hunter2@x/mcp?key=hunter2hunter2", "http:///mcp?key=hunter2hunter2", "http://x/%zz?key=hunter2hunter2"} {
		_, err := Kinds["mcp"].New(Spec{Name: "m", Options: map[string]any{"url": raw}})
		if err == nil || !strings.Contains(err.Error(), "url: ") {
			t.Fatalf("url %d: error %v, want one at url", len(raw), err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error shows the URL's secrets: %q", mcpSafe(err))
		}
	}
}

// A header secret not set yet is warned about at the option's path, as written, so that config
// validation prefixes it with the probe's path ("probes[1].headers.x-api-key: …").
func TestMCPWarningNamesTheOption(t *testing.T) {
	p := mcpNewProbe(t, map[string]any{"url": "http://127.0.0.1:1/mcp", "headers": map[string]any{
		"x-api-key": map[string]any{"env": "MCP_KEY_UNSET"}, "X-Env": "test"}}, nil)
	w := p.Warnings()
	if len(w) != 1 || !strings.HasPrefix(w[0], "headers.x-api-key: ") || !strings.Contains(w[0], "MCP_KEY_UNSET") {
		t.Errorf("warnings = %q, want one at headers.x-api-key naming MCP_KEY_UNSET", w)
	}
}
