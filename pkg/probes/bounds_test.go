package probes

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/health-agent/health-agent/pkg/redact"
)

// Text a dependency chooses is cut before the probe keeps it, and what the probe reads of it is bounded.

// assertBounded fails when s is longer than n bytes or is not valid UTF-8 (a cut inside a rune).
func assertBounded(t *testing.T, what, s string, n int) {
	t.Helper()
	if len(s) > n || !utf8.ValidString(s) {
		t.Errorf("%s is %d bytes (valid UTF-8: %v), want at most %d", what, len(s), utf8.ValidString(s), n)
	}
}

func TestMCPBoundsWhatItReads(t *testing.T) {
	const initTools = `{"jsonrpc":"2.0","id":$ID,"result":{"capabilities":{"tools":{}},"protocolVersion":"2025-06-18","serverInfo":{"name":"n","version":"v"}}}`
	pingError := func(msg string) []byte {
		return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":$ID,"error":{"code":-32603,"message":%q}}`, msg)
	}
	t.Run("a ping error larger than the response cap", func(t *testing.T) {
		fs := &mcpFuzzServer{}
		fs.set([]byte(initTools), pingError(strings.Repeat("é", 2<<20)), []byte(mcpFuzzList), false)
		srv := serve(t, fs.ServeHTTP)
		_, err := checkOnce(t, mcpNewProbe(t, map[string]any{"url": srv.URL + "/mcp"}, nil))
		if err == nil {
			t.Fatal("check passed")
		}
		assertBounded(t, "the error", err.Error(), redact.MaxText)
	})
	t.Run("a ping error under the cap is cut", func(t *testing.T) {
		fs := &mcpFuzzServer{}
		fs.set([]byte(initTools), pingError(strings.Repeat("é", 300<<10)), []byte(mcpFuzzList), false)
		srv := serve(t, fs.ServeHTTP)
		_, err := checkOnce(t, mcpNewProbe(t, map[string]any{"url": srv.URL + "/mcp"}, nil))
		if err == nil || !strings.Contains(err.Error(), "ééé") {
			t.Fatalf("err = %v, want the server's message, cut", err)
		}
		assertBounded(t, "the error", err.Error(), redact.MaxText)
	})
	t.Run("a long protocol version and tool names are cut", func(t *testing.T) {
		long := strings.Repeat("x", 10_000)
		fs := &mcpFuzzServer{}
		fs.set([]byte(`{"jsonrpc":"2.0","id":$ID,"result":{"capabilities":{"tools":{}},"protocolVersion":"2025-06-18","serverInfo":{"name":"`+long+`","version":"`+long+`"}}}`),
			[]byte(mcpFuzzPing),
			[]byte(`{"jsonrpc":"2.0","id":$ID,"result":{"tools":[{"name":"`+long+`","inputSchema":{"type":"object"}}]}}`), false)
		srv := serve(t, fs.ServeHTTP)
		res, err := checkOnce(t, mcpNewProbe(t, map[string]any{"url": srv.URL + "/mcp"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"serverName", "serverVersion", "protocolVersion"} {
			assertBounded(t, k, fmt.Sprint(res.Fields[k]), maxShownText)
		}
		names, _ := res.Fields["toolNames"].([]string)
		if len(names) != 1 {
			t.Fatalf("toolNames = %d entries, want 1", len(names))
		}
		assertBounded(t, "a tool name", names[0], maxShownText)
	})
}

func TestMCPToolsKeptAreCapped(t *testing.T) {
	var tools []string
	for i := range 60 {
		tools = append(tools, fmt.Sprintf("t%02d", i))
	}
	ts := mcpStartServer(t, mcpServerConfig{tools: tools, pageSize: 25})
	p := mcpNewProbe(t, map[string]any{"url": ts.url, "requiredTools": []any{"t00", "t59"}}, nil)
	p.maxKept = 10
	res, err := mcpCheck(t, p, 30*time.Second)
	if err != nil {
		t.Fatalf("check: %v (a required tool past the cap must still be found)", err)
	}
	names, _ := res.Fields["toolNames"].([]string)
	if res.Fields["tools"] != 60 || res.Fields["toolsCapped"] != true || len(names) != 10 {
		t.Errorf("tools = %v, toolsCapped = %v, %d names; want 60, true, 10", res.Fields["tools"], res.Fields["toolsCapped"], len(names))
	}
	p = mcpNewProbe(t, map[string]any{"url": ts.url, "requiredTools": []any{"t60"}}, nil)
	p.maxKept = 10
	if _, err := mcpCheck(t, p, 30*time.Second); !errors.Is(err, ErrMCPToolsMissing) {
		t.Errorf("err = %v, want a missing tool past the cap reported", err)
	}
	ts.waitNoSessions(t)
}

func TestCDPBoundsWhatItReads(t *testing.T) {
	huge := strings.Repeat("é", 300<<10) // 600 KiB: under the message cap, far over what is kept
	for _, tc := range []struct {
		name      string
		answer    func(int64, string) []string
		available bool
		want      string
	}{
		{name: "a long product is cut", available: true,
			answer: cdpAnswerWith("Browser.getVersion", `{"id":%d,"result":{"product":"`+huge+`"}}`)},
		{name: "a long DevTools error is cut",
			answer: cdpAnswerWith("Target.getTargets", `{"id":%d,"error":{"code":-32000,"message":"`+huge+`"}}`), want: "DevTools error -32000: ééé"},
		{name: "a message over the cap is refused",
			answer: cdpAnswerWith("Browser.getVersion", `{"id":%d,"result":{"product":"`+strings.Repeat("x", 2<<20)+`"}}`),
			want:   fmt.Sprintf("message larger than %d bytes", cdpMaxMessage)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := (&cdpFake{answer: tc.answer}).start(t)
			res, err := cdpCheckWithin(t, newTestCDP(t, map[string]any{"urls": f.url(), "minAvailable": 0}), 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			browsers, _ := res.Fields["browsers"].([]cdpBrowser)
			if len(browsers) != 1 || browsers[0].Available != tc.available || !strings.Contains(browsers[0].Error, tc.want) {
				t.Fatalf("browsers = %.300v, want available %v with an error containing %q", browsers, tc.available, tc.want)
			}
			assertBounded(t, "the version", browsers[0].Version, maxShownText)
			assertBounded(t, "the endpoint's error", browsers[0].Error, redact.MaxText)
			assertBounded(t, "the reason", res.Reason, redact.MaxText)
			assertBounded(t, "browserVersion", fmt.Sprint(res.Fields["browserVersion"]), maxShownText)
		})
	}
}

func TestCDPBrowserlessReasonIsCut(t *testing.T) {
	url := cdpPressureServer(t, 200, `{"pressure":{"isAvailable":false,"running":1,"queued":0,"maxConcurrent":1,"reason":"`+strings.Repeat("é", 30_000)+`"}}`)
	res, err := cdpCheckWithin(t, newTestCDP(t, map[string]any{"urls": url, "mode": "browserless"}), 20*time.Second)
	if err != nil || res.Status != Degraded {
		t.Fatalf("got %s, %v; want degraded", res.Status, err)
	}
	pools, _ := res.Fields["browsers"].([]cdpPool)
	if len(pools) != 1 {
		t.Fatalf("browsers = %v", pools)
	}
	assertBounded(t, "the pool's reason", pools[0].Reason, redact.MaxText)
	assertBounded(t, "the probe's reason", res.Reason, redact.MaxText)
}
