package probes

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/redact"
)

// A dependency that echoes pieces of a secret (here its first 8 and its last 9 bytes) shows neither,
// in any kind, whether the secret is the probe's own or one another probe resolved.

// pieceToken has bytes that query escaping changes, as real tokens often do.
const pieceToken = "pt/0123456789+abcdefghij=XYZ"

// pieces is what a careless dependency echoes of secret.
func pieces(secret string) string {
	return "first " + secret[:8] + " last " + secret[len(secret)-9:]
}

// assertNoPieces fails when any shown text holds the first 8 or the last 9 bytes of secret.
func assertNoPieces(t *testing.T, secret string, res Result, err error) {
	t.Helper()
	fields, _ := json.Marshal(res.Fields)
	shown := map[string]string{"fields": string(fields), "reason": res.Reason, "legacy body": string(res.Body)}
	if err != nil {
		shown["error"] = err.Error()
	}
	for what, s := range shown {
		for _, piece := range []string{secret[:8], secret[len(secret)-9:]} {
			if strings.Contains(s, piece) {
				t.Errorf("the %s shows a piece of the secret", what)
			}
		}
	}
	if err == nil && res.Reason == "" && !strings.Contains(string(fields)+string(res.Body), redact.Mask) {
		t.Error("nothing shown was redacted: the test did not reach the echo")
	}
}

// echoJSON answers {"status": <the pieces of the secret>}, so the legacy body and a condition show it.
func echoJSON(secret func(*http.Request) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `{"status":%q}`, pieces(secret(r)))
	}
}

func TestHTTPEchoedPiecesAreHidden(t *testing.T) {
	cond := []any{map[string]any{"path": "status", "equals": "ok"}}
	t.Run("a header secret", func(t *testing.T) {
		srv := serve(t, echoJSON(func(r *http.Request) string { return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") }))
		shared := &redact.Secrets{}
		p := buildHTTP(t, Spec{Legacy: true, Env: Env{LookupEnv: envMap(map[string]string{"TOKEN": pieceToken}), Secrets: shared},
			Options: map[string]any{"url": srv.URL, "expectJSON": cond,
				"headers": map[string]any{"Authorization": map[string]any{"env": "TOKEN", "prefix": "Bearer "}}}})
		res, err := checkOnce(t, p)
		assertNoPieces(t, pieceToken, res, err)
		if list := shared.List(); !slices.Contains(list, pieceToken) || !slices.Contains(list, "Bearer "+pieceToken) {
			t.Error("the header secret was not added to the agent's secrets")
		}
	})
	t.Run("another probe's secret", func(t *testing.T) {
		srv := serve(t, echoJSON(func(*http.Request) string { return pieceToken }))
		shared := &redact.Secrets{}
		shared.Add(pieceToken)
		res, err := checkOnce(t, buildHTTP(t, Spec{Legacy: true, Env: Env{Secrets: shared}, Options: map[string]any{"url": srv.URL, "expectJSON": cond}}))
		assertNoPieces(t, pieceToken, res, err)
	})
	t.Run("a URL's password and its Basic form", func(t *testing.T) {
		srv := serve(t, echoJSON(func(r *http.Request) string { return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ") }))
		u, _ := url.Parse(srv.URL)
		u.User = url.UserPassword("health", pieceToken)
		shared := &redact.Secrets{}
		res, err := checkOnce(t, buildHTTP(t, Spec{Legacy: true, Env: Env{Secrets: shared}, Options: map[string]any{"url": u.String(), "expectJSON": cond}}))
		assertNoPieces(t, base64.StdEncoding.EncodeToString([]byte("health:"+pieceToken)), res, err)
		if !slices.Contains(shared.List(), pieceToken) {
			t.Error("the URL's password was not added to the agent's secrets")
		}
	})
	t.Run("a URL's query value", func(t *testing.T) {
		srv := serve(t, echoJSON(func(r *http.Request) string { return r.URL.Query().Get("api_key") }))
		res, err := checkOnce(t, buildHTTP(t, Spec{Legacy: true, Options: map[string]any{
			"url": srv.URL + "/health?verbose=1&api_key=" + url.QueryEscape(pieceToken), "expectJSON": cond}}))
		assertNoPieces(t, pieceToken, res, err)
	})
}

func TestFigmaEchoedPiecesAreHidden(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = fmt.Fprintf(w, `{"status":403,"err":%q}`, pieces(r.Header.Get("X-Figma-Token")))
	})
	shared := &redact.Secrets{}
	p, err := Kinds["figma"].New(Spec{Name: "figmaApi", Options: map[string]any{"url": srv.URL},
		Env: Env{LookupEnv: envMap(map[string]string{"FIGMA_TOKEN": pieceToken}), Secrets: shared}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := checkOnce(t, p)
	if err == nil || !strings.Contains(err.Error(), redact.Mask) {
		t.Fatalf("err = %v, want the rejection with the echo redacted", err)
	}
	assertNoPieces(t, pieceToken, res, err)
	if !slices.Contains(shared.List(), pieceToken) {
		t.Error("the token was not added to the agent's secrets")
	}
}

func TestCDPEchoedPiecesAreHidden(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		// The raw query (escaped) and the decoded token, as a proxy and browserless might echo them.
		http.Error(w, pieces(r.URL.RawQuery)+" "+pieces(r.URL.Query().Get("token")), http.StatusUnauthorized)
	})
	shared := &redact.Secrets{}
	p, err := newCDP(Spec{Name: "browserPool", Timeout: 2 * time.Second,
		Env:     Env{LookupEnv: envMap(map[string]string{"BROWSERLESS_TOKEN": pieceToken}), Secrets: shared},
		Options: map[string]any{"urls": srv.URL, "mode": "browserless", "token": map[string]any{"env": "BROWSERLESS_TOKEN"}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := cdpCheckWithin(t, p, 20*time.Second)
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("err = %v, want the 401", err)
	}
	assertNoPieces(t, pieceToken, res, err)
	assertNoPieces(t, url.QueryEscape(pieceToken), res, err)
	if list := shared.List(); !slices.Contains(list, pieceToken) || !slices.Contains(list, url.QueryEscape(pieceToken)) {
		t.Error("the token and its query-escaped form were not added to the agent's secrets")
	}
}

func TestMCPEchoedPiecesAreHidden(t *testing.T) {
	fs := &mcpFuzzServer{}
	fs.set([]byte(mcpFuzzInit),
		fmt.Appendf(nil, `{"jsonrpc":"2.0","id":$ID,"error":{"code":-32603,"message":%q}}`, pieces(pieceToken)),
		[]byte(mcpFuzzList), false)
	srv := serve(t, fs.ServeHTTP)
	shared := &redact.Secrets{}
	p, err := Kinds["mcp"].New(Spec{Name: "mcpClient",
		Env:     Env{LookupEnv: envMap(map[string]string{"MCP_TOKEN": pieceToken}), Secrets: shared},
		Options: map[string]any{"url": srv.URL + "/mcp", "headers": map[string]any{"Authorization": map[string]any{"env": "MCP_TOKEN", "prefix": "Bearer "}}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := checkOnce(t, p)
	if err == nil || !strings.Contains(err.Error(), "ping") {
		t.Fatalf("err = %v, want the ping to fail", err)
	}
	assertNoPieces(t, pieceToken, res, err)
	if !slices.Contains(shared.List(), pieceToken) {
		t.Error("the header secret was not added to the agent's secrets")
	}
}
