package probes

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// mcpFuzzToken is the header secret the fuzzed server may echo ($SECRET in an answer).
const mcpFuzzToken = "9b1e4f7a2c8d3e6f0a5b9c2d7e1f4a8b"

// mcpFuzzServer answers each JSON-RPC request with the fuzzer's bytes for its method, "$ID" replaced
// by the request's id (so that well-formed answers are reachable) and "$SECRET" by the token the probe
// sent. Notifications get 202, other HTTP methods 405.
type mcpFuzzServer struct {
	mu    sync.Mutex
	parts map[string][]byte // initialize, ping, tools/list
	sse   bool
}

func (s *mcpFuzzServer) set(initialize, ping, list []byte, sse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.parts = map[string][]byte{"initialize": initialize, "ping": ping, "tools/list": list}
	s.sse = sse
}

func (s *mcpFuzzServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The server closes first, so the closed connection waits out TIME_WAIT on the server's side and a
	// long fuzzing session does not run the probe out of loopback ports.
	w.Header().Set("Connection", "close")
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.Unmarshal(b, &msg)
	if msg.ID == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	s.mu.Lock()
	part, sse := s.parts[msg.Method], s.sse
	s.mu.Unlock()
	if part == nil {
		part = []byte(`{"jsonrpc":"2.0","id":$ID,"error":{"code":-32601,"message":"method not found"}}`)
	}
	out := bytes.ReplaceAll(part, []byte("$ID"), msg.ID)
	out = bytes.ReplaceAll(out, []byte("$SECRET"), []byte(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("event: message\ndata: "))
		_, _ = w.Write(out)
		_, _ = w.Write([]byte("\n\n"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// Well-formed answers, as the go-sdk server sends them.
const (
	mcpFuzzInit = `{"jsonrpc":"2.0","id":$ID,"result":{"capabilities":{"tools":{"listChanged":true}},"protocolVersion":"2025-06-18","serverInfo":{"name":"design-mcp","version":"1.2.3"}}}`
	mcpFuzzPing = `{"jsonrpc":"2.0","id":$ID,"result":{}}`
	mcpFuzzList = `{"jsonrpc":"2.0","id":$ID,"result":{"tools":[{"name":"b","inputSchema":{"type":"object"}},{"name":"a","inputSchema":{"type":"object"}}]}}`
)

// TestMCPFuzzServerPlaysAnMCPServer keeps the fuzz harness honest: with well-formed answers the probe
// passes, so the fuzzer can reach the success path.
func TestMCPFuzzServerPlaysAnMCPServer(t *testing.T) {
	for _, sse := range []bool{false, true} {
		fs := &mcpFuzzServer{}
		fs.set([]byte(mcpFuzzInit), []byte(mcpFuzzPing), []byte(mcpFuzzList), sse)
		srv := serve(t, fs.ServeHTTP)
		res, err := checkOnce(t, mcpNewProbe(t, map[string]any{"url": srv.URL + "/mcp"}, nil))
		if err != nil || res.Fields["tools"] != 2 || res.Fields["serverName"] != "design-mcp" {
			t.Fatalf("sse %v: %v, fields %v", sse, err, res.Fields)
		}
	}
}

// FuzzMCPResponse feeds the probe arbitrary answers to initialize, ping and tools/list, as JSON or as an
// event stream. The check must end within its deadline plus the close grace, never pass a server that
// did not answer properly, report only JSON-serialisable fields, and keep the header token out of its
// error (the server may echo it).
func FuzzMCPResponse(f *testing.F) {
	initOK, pingOK, listOK := mcpFuzzInit, mcpFuzzPing, mcpFuzzList
	for _, s := range []struct {
		init, ping, list string
		sse              bool
	}{
		{initOK, pingOK, listOK, false},
		{initOK, pingOK, listOK, true},
		{strings.Replace(initOK, `"tools":{"listChanged":true}`, ``, 1), pingOK, listOK, false},
		{initOK, pingOK, `{"jsonrpc":"2.0","id":$ID,"result":{"tools":[],"nextCursor":"again"}}`, false},
		{initOK, pingOK, `{"jsonrpc":"2.0","id":$ID,"result":{"tools":[null,{"name":""}]}}`, false},
		{initOK, pingOK, `{"jsonrpc":"2.0","id":$ID,"result":{"tools":"many"}}`, true},
		{`{"jsonrpc":"2.0","id":$ID,"error":{"code":-32001,"message":"bad credentials: Bearer $SECRET"}}`, pingOK, listOK, false},
		{initOK, `{"jsonrpc":"2.0","id":$ID,"error":{"code":-32000,"message":"$SECRET","data":"$SECRET"}}`, listOK, true},
		{`{"jsonrpc":"2.0","id":$ID,"result":{"protocolVersion":"1999-01-01","serverInfo":null}}`, pingOK, listOK, false},
		{`{"jsonrpc":"2.0","id":999,"result":{}}`, pingOK, listOK, false},
		{`{"jsonrpc":"1.0","id":$ID}`, pingOK, listOK, false},
		{`[` + initOK + `]`, pingOK, listOK, false},
		{`{"jsonrpc":"2.0","method":"notifications/message","params":{}}`, pingOK, listOK, true},
		{"", "", "", false},
		{"{", "{", "{", true},
		{"\x00\xff", "null", "[]", false},
	} {
		f.Add([]byte(s.init), []byte(s.ping), []byte(s.list), s.sse)
	}
	fs := &mcpFuzzServer{}
	srv := httptest.NewServer(fs)
	f.Cleanup(srv.Close)
	p, err := newMCP(Spec{Name: "mcpClient", Env: Env{LookupEnv: envMap(map[string]string{"MCP_TOKEN": mcpFuzzToken})},
		Options: map[string]any{
			"url":     srv.URL + "/mcp",
			"headers": map[string]any{"Authorization": map[string]any{"env": "MCP_TOKEN", "prefix": "Bearer "}},
		}})
	if err != nil {
		f.Fatal(err)
	}
	probe := p.(*mcpProbe)
	probe.closeGrace = 50 * time.Millisecond
	// Short, so that answers the client waits on in vain (a wrong id, a stream without the response)
	// cost little fuzzing time; nothing asserts that a check passes within it.
	const deadline = 500 * time.Millisecond

	f.Fuzz(func(t *testing.T, initialize, ping, list []byte, sse bool) {
		fs.set(initialize, ping, list, sse)
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		res, err := probe.Check(ctx)
		if took := time.Since(start); took > deadline+probe.closeGrace+5*time.Second {
			t.Fatalf("check took %s, past its deadline and grace", took)
		}
		if _, jerr := json.Marshal(res.Fields); jerr != nil {
			t.Fatalf("fields cannot be rendered: %v", jerr)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "mcp: ") {
				t.Fatalf("error %q does not start with mcp:", err)
			}
			if strings.Contains(err.Error(), mcpFuzzToken) {
				t.Fatal("the header token appears in the error")
			}
			return
		}
		names, _ := res.Fields["toolNames"].([]string)
		if res.Fields["connected"] != true || res.Fields["tools"] == nil || len(names) > mcpMaxToolNames ||
			!slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Fatalf("passed with fields %v", res.Fields)
		}
	})
}
