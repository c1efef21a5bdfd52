package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/health-agent/health-agent/internal/chaos"
	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/agent"
	"github.com/health-agent/health-agent/pkg/api"
	"github.com/health-agent/health-agent/pkg/monitor"
)

const secretsConfig = `
server: { shutdownDelay: 0s, detailsToken: "${DETAILS_TOKEN}" }
defaults:
  interval: 100ms
  timeout: 500ms
  failuresBeforeUnhealthy: 1
  retry: { maxRetries: 0 }
probes:
  - name: app
    kind: http
    critical: true
    legacy: true
    url: "%[1]s/api/health"
    headers: { Authorization: { env: DEP_TOKEN, prefix: "Bearer " } }
  # A dependency that echoes what it was sent, in the JSON a condition reads.
  - name: echo
    kind: http
    url: "%[2]s/health"
    headers: { Authorization: { env: DEP_TOKEN, prefix: "Bearer " }, X-Api-Key: { env: DEP_TOKEN } }
    expectJSON: [ { path: authorization, equals: none }, { path: x-api-key, equals: none } ]
  # Figma answering 403 with the token in its error text, whole or clipped at the 200th byte.
  - { name: figmaApi, kind: figma, url: "%[3]s", tokenEnv: FIGMA_TOKEN }
  - { name: figmaClipped, kind: figma, url: "%[4]s", tokenEnv: FIGMA_TOKEN }
  # An MCP endpoint that echoes the header back in its error.
  - name: mcpClient
    kind: mcp
    url: "%[5]s/mcp"
    headers: { Authorization: { env: DEP_TOKEN, prefix: "Bearer " } }
  # A browserless endpoint whose 401 repeats the token (sent as ?token=).
  - { name: browserPool, kind: cdp, mode: browserless, urls: "%[6]s", token: { env: DEP_TOKEN } }
  - { name: config, kind: config }
`

// TestNoSecretLeaks runs an agent whose dependencies echo the secrets they are sent, then reads every
// endpoint, every check by name, and the `agent probe` outcome of every probe. The harness scans all of
// it, and every log line at debug level, for any 10-character piece of the details token, the header
// token or the Figma token.
func TestNoSecretLeaks(t *testing.T) {
	details, dep, figma := newSecret("detailsToken"), newSecret("DEP_TOKEN"), newSecret("FIGMA_TOKEN")
	app := startChaos(t, chaos.Echoing(200)) // the legacy app echoes the headers in its health JSON
	echo := startChaos(t, chaos.Echoing(200))
	figmaEcho := startChaos(t, chaos.Echoing(403))
	// The token starts 12 bytes before the 200-byte cut of Figma's error text.
	figmaClip := startChaos(t, chaos.Responding(403, `{"status":403,"err":"`+strings.Repeat("x", 188)+figma.value+`"}`))
	mcpEcho := startChaos(t, chaos.Echoing(401))
	browserlessEcho := startChaos(t, chaos.Responding(401, `{"message":"bad token `+dep.value+`"}`))
	env := map[string]string{"DETAILS_TOKEN": details.value, "DEP_TOKEN": dep.value, "FIGMA_TOKEN": figma.value}
	cfg := fmt.Sprintf(secretsConfig, app.URL(), echo.URL(), figmaEcho.URL(), figmaClip.URL(), mcpEcho.URL(), browserlessEcho.URL())
	secrets := []secret{details, dep, figma}
	h := startAgent(t, setup{config: cfg, env: env, secrets: secrets, token: details.value})

	names := []string{"app", "echo", "figmaApi", "figmaClipped", "mcpClient", "browserPool"}
	testkit.EventuallyState(t, 20*time.Second, func() (bool, string) {
		var state []string
		done := true
		for _, n := range names {
			v := h.view(n)
			state = append(state, n+"="+v.status)
			if want := map[bool]string{true: "healthy", false: "unhealthy"}[n == "app"]; v.status != want {
				done = false
			}
		}
		return done, strings.Join(state, " ")
	}, "every dependency probed and judged")
	// The dependencies did receive the secrets: the echo is real, so the scan is not vacuous.
	if hs := echo.Headers(); len(hs) == 0 || !strings.Contains(hs[len(hs)-1].Get("Authorization"), dep.value) {
		t.Fatal("the echo dependency never received the header token")
	}
	if hs := figmaEcho.Headers(); len(hs) == 0 || hs[len(hs)-1].Get("X-Figma-Token") != figma.value {
		t.Fatal("the Figma stand-in never received the token")
	}
	// Any 8-byte piece of a secret is hidden: the space before the token goes too when the secret set
	// holds "Bearer <token>" (the echo probe's header).
	if r := h.detail("/readyz/browserPool?verbose"); !regexp.MustCompile(`bad token ?\[redacted\]`).MatchString(r.body) {
		t.Errorf("/readyz/browserPool?verbose does not show the echoed token redacted: %q", r.body)
	}

	legacy := dig(decode(t, h.get("/api/health").body), "data", "legacy")
	if got := dig(legacy, "authorization"); got != "[redacted]" {
		t.Errorf("data.legacy.authorization = %v, want the echoed header redacted", got)
	}
	if r := h.detail("/readyz/echo?verbose"); !strings.Contains(r.body, `json authorization = "[redacted]"`) {
		t.Errorf("/readyz/echo?verbose does not show the redacted value: %q", r.body)
	}

	paths := []string{"/", "/api/health", "/livez?verbose", "/readyz?verbose", "/startupz?verbose"}
	for _, n := range names {
		paths = append(paths, "/readyz/"+n+"?verbose", "/startupz/"+n+"?verbose")
	}
	for _, p := range paths {
		h.get(p)
		h.detail(p) // with the token the kube endpoints show the reasons: they must be clean too
	}
	for _, p := range []string{"/api/health/detailed", "/api/health/circuit-breakers", "/metrics"} {
		h.detail(p)
		h.get(p)
		h.get(p, "Authorization", "Bearer wrong")
	}

	// `agent probe NAME` prints monitor.RunOnce's outcome.
	loaded, err := agent.LoadConfig(h.path, nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		out, err := monitor.RunOnce(context.Background(), loaded, n, monitor.Options{
			LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(out)
		fmt.Fprintf(h.wire, "agent probe %s: %s", n, b)
	}
}

// TestDetailsToken: the detail endpoints and /metrics need "Authorization: Bearer <detailsToken>";
// anything else gets a 401 that names no token; kubelet endpoints stay open.
func TestDetailsToken(t *testing.T) {
	details := newSecret("detailsToken")
	dep := startChaos(t, chaos.Healthy())
	cfg := fmt.Sprintf(`
server: { shutdownDelay: 0s, detailsToken: "${DETAILS_TOKEN}" }
defaults: { interval: 100ms, timeout: 250ms }
probes:
  - { name: dep, kind: http, critical: true, url: "%s" }
`, dep.URL())
	h := startAgent(t, setup{config: cfg, env: map[string]string{"DETAILS_TOKEN": details.value},
		secrets: []secret{details}, token: details.value})
	h.waitView("dep", "ready", func(v view) bool { return v.readyz == 200 })

	q := url.QueryEscape(details.value)
	refused := []struct {
		name, query string
		hdr         []string
	}{
		{"no header", "", nil},
		{"wrong token", "", []string{"Authorization", "Bearer " + strings.Repeat("0", len(details.value))}},
		{"token prefix", "", []string{"Authorization", "Bearer " + details.value[:len(details.value)-1]}},
		{"token with a suffix", "", []string{"Authorization", "Bearer " + details.value + "x"}},
		{"no scheme", "", []string{"Authorization", details.value}},
		{"basic scheme", "", []string{"Authorization", "Basic " + details.value}},
		{"other header", "", []string{"X-Auth-Token", details.value}},
		{"query parameter", "?token=" + q + "&access_token=" + q, nil},
		{"empty bearer", "", []string{"Authorization", "Bearer "}},
	}
	for _, p := range []string{"/api/health/detailed", "/api/health/circuit-breakers", "/metrics"} {
		for _, tt := range refused {
			r := h.get(p+tt.query, tt.hdr...)
			if r.code != 401 || r.hdr.Get("WWW-Authenticate") == "" {
				t.Errorf("%s with %s: %d (WWW-Authenticate %q), want 401", p, tt.name, r.code, r.hdr.Get("WWW-Authenticate"))
				continue
			}
			if dig(decode(t, r.body), "error", "code") != "unauthorized" || strings.Contains(r.body, "0000000000") {
				t.Errorf("%s with %s: body %q, want the unauthorized error and nothing sent back", p, tt.name, r.body)
			}
		}
		if r := h.detail(p); r.code != 200 {
			t.Errorf("%s with the token: %d", p, r.code)
		}
	}
	for _, p := range []string{"/livez", "/readyz", "/startupz", "/api/health", "/readyz/dep", "/"} {
		if r := h.get(p); r.code != 200 {
			t.Errorf("%s without a token: %d, want 200 (kubelets and load balancers carry none)", p, r.code)
		}
	}
}

// TestOnlyGetAndHead takes every route the handler registers (with /metrics and the status page on)
// and sends every other method to it: 405 with the error envelope. GET and HEAD are served alike.
func TestOnlyGetAndHead(t *testing.T) {
	dep := startChaos(t, chaos.Healthy())
	h := startAgent(t, setup{config: fmt.Sprintf(faultConfig, dep.URL())})
	h.waitView("dep", "ready", func(v view) bool { return v.readyz == 200 })

	// The same options the agent's handler has (metrics and status page on); only the routes matter.
	stub := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	engine, ok := api.NewHandler(h.agent.Monitor(), api.Options{Metrics: stub, Page: stub}).(*gin.Engine)
	if !ok {
		t.Fatal("api.NewHandler is no longer a *gin.Engine: enumerate its routes another way")
	}
	var paths []string
	for _, r := range engine.Routes() {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			t.Errorf("route %s %s: only GET and HEAD may be registered", r.Method, r.Path)
		}
		if strings.Contains(r.Path, "*") && r.Path != "/static/*filepath" {
			t.Errorf("route %s: a catch-all route could take a URL", r.Path)
		}
		check := "dep"
		if strings.HasPrefix(r.Path, "/livez") {
			check = "ping" // /livez checks the agent itself, never a probe
		}
		p := strings.ReplaceAll(r.Path, ":check", check)
		p = strings.ReplaceAll(p, "*filepath", "status.css") // the status page's embedded assets
		if strings.Contains(p, ":") {
			t.Errorf("route %s takes a parameter other than a check name", r.Path)
		}
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	if len(paths) < 10 {
		t.Fatalf("only %d routes found: %v", len(paths), paths)
	}
	auth := []string{"Authorization", "Bearer " + h.token} // so that a 401 cannot stand in for a 405
	for _, p := range paths {
		get, err := h.do(http.MethodGet, p, auth...)
		if err != nil {
			t.Fatal(err)
		}
		head, err := h.do(http.MethodHead, p, auth...)
		if err != nil {
			t.Fatal(err)
		}
		if get.code != head.code || head.body != "" || get.code != 200 && get.code != 503 {
			t.Errorf("%s: GET %d, HEAD %d with %d body bytes", p, get.code, head.code, len(head.body))
		}
		for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "PURGE"} {
			r, err := h.do(m, p, auth...)
			if err != nil {
				t.Errorf("%s %s: %v", m, p, err)
				continue
			}
			if r.code != 405 || dig(decode(t, r.body), "error", "code") != "method_not_allowed" {
				t.Errorf("%s %s: %d %.100s, want 405 method_not_allowed", m, p, r.code, r.body)
			}
		}
	}
}
