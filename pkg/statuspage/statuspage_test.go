package statuspage_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/api"
	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/statuspage"
)

// fixedSource serves whatever snapshot the test stored; it also satisfies api.Source.
type fixedSource struct {
	snap atomic.Pointer[monitor.Snapshot]
}

func (f *fixedSource) Snapshot() *monitor.Snapshot { return f.snap.Load() }
func (f *fixedSource) Alive(time.Time) bool        { return true }

const (
	hostileReason = `<script>alert("reason")</script>"><img src=x onerror=alert(1)>`
	hostileReload = `</dd><script>alert("reload")</script>`
	secretToken   = "s3cret-details-token"
)

var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func snapshot() *monitor.Snapshot {
	return &monitor.Snapshot{
		At: now, StartedAt: now.Add(-90 * time.Minute), Version: "v9.8.7",
		Overall: probes.Unhealthy,
		Order:   []string{"db", "app", "figmaApi"},
		Checks: []monitor.CheckView{
			{Name: "app", Kind: "http", Critical: true, Status: probes.Blocked, Reason: `dependency "db" is unhealthy`,
				BlockedBy: "db", DependsOn: []string{"db"}, EverHealthy: true, LastChecked: now.Add(-3 * time.Second),
				Duration: 12 * time.Millisecond, Breaker: "app"},
			{Name: "db", Kind: "tcp", Critical: true, Status: probes.Unhealthy, Reason: hostileReason,
				ConsecutiveFailures: 3, EverHealthy: true, LastChecked: now.Add(-2 * time.Second),
				Duration: 1500 * time.Millisecond, Breaker: "db",
				Timeline: []monitor.Point{{At: now.Add(-time.Minute), Status: probes.Healthy}, {At: now.Add(-30 * time.Second), Status: probes.Unhealthy}}},
			{Name: "figmaApi", Kind: "figma", Status: probes.Healthy, LastChecked: now.Add(-time.Second),
				Duration: 800 * time.Microsecond, Breaker: "figma-api", EverHealthy: true,
				Timeline: []monitor.Point{{At: now.Add(-time.Minute), Status: probes.Degraded}, {At: now.Add(-time.Second), Status: probes.Healthy}}},
		},
		Breakers: []breakers.Stats{
			{Name: "app", State: breakers.Closed},
			{Name: "db", State: breakers.Open, FailureRate: 100, RemainingDelay: 25 * time.Second, Executions: 3,
				Probes: []string{"db"}, LastStateChange: now.Add(-5 * time.Second),
				History: []breakers.Attempt{{At: now.Add(-5 * time.Second), Outcome: "failure", Error: "connection refused"},
					{At: now.Add(-time.Second), Outcome: "rejected", Error: "breaker open"}}},
			{Name: "figma-api", State: breakers.Closed, Probes: []string{"figmaApi"}},
		},
		Config: monitor.ConfigInfo{Source: "/etc/agent/agent.yaml", SHA256: "0123456789abcdef0123", LoadedAt: now.Add(-time.Hour),
			LastReload: monitor.Reload{At: now.Add(-time.Minute), Error: hostileReload}},
	}
}

func get(t *testing.T, h http.Handler, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestPage(t *testing.T) {
	src := &fixedSource{}
	src.snap.Store(snapshot())
	var token atomic.Value
	token.Store("")
	page := statuspage.New(src, statuspage.Options{Token: func() string { return token.Load().(string) }, Now: func() time.Time { return now }})

	bearer := http.Header{"Authorization": {"Bearer " + secretToken}}
	cases := []struct {
		name     string
		token    string
		header   http.Header
		contains []string
		excludes []string
	}{
		{
			name:  "no token configured: full details",
			token: "",
			contains: []string{
				`<header id="banner" class="banner status-unhealthy" data-status="unhealthy">`,
				`<span id="overall" class="overall">unhealthy</span>`,
				`Unhealthy: not ready to serve`,
				`<b id="ready">no</b>`, `<b id="version">v9.8.7</b>`, `<b id="uptime">1h30m</b>`,
				`<tr data-probe="app" data-status="blocked">`,
				`<tr data-probe="db" data-status="unhealthy">`,
				`<tr data-probe="figmaApi" data-status="healthy">`,
				`<span class="pill status-unhealthy">unhealthy</span>`,
				`<span class="critical">critical</span>`,
				`1.50 s`, `12 ms`, `0.8 ms`, `2s ago`,
				`depends on db`,
				`<span class="cell status-healthy" title="2025-03-01T11:59:00Z healthy"></span><span class="cell status-unhealthy"`,
				`&lt;script&gt;alert(&#34;reason&#34;)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(1)&gt;`,
				`<tr data-breaker="db" data-state="OPEN">`, `<span class="pill state-open">OPEN</span>`,
				`100%`, `in 25s`, `<span class="cell outcome-rejected" title="2025-03-01T11:59:59Z rejected: breaker open">`,
				`<code id="config-sha">0123456789ab</code>`, `/etc/agent/agent.yaml`,
				`rejected: &lt;/dd&gt;&lt;script&gt;alert(&#34;reload&#34;)&lt;/script&gt;`,
				`data-mode="full"`,
			},
			excludes: []string{hostileReason, hostileReload, `id="restricted"`},
		},
		{
			name:  "token configured, none sent: overall and statuses only",
			token: secretToken,
			contains: []string{
				`data-mode="restricted"`, `id="restricted"`,
				`class="banner status-unhealthy"`,
				`<tr data-probe="db" data-status="unhealthy">`, `<tr data-probe="app" data-status="blocked">`,
				`<p id="open-breakers">Open: <b>db</b></p>`,
			},
			excludes: []string{"alert", "onerror", "connection refused", "agent.yaml", "0123456789ab",
				"depends on", "critical</span>", " ms<", `id="breakers"`, `id="config"`, secretToken},
		},
		{
			name:     "token configured, wrong one sent",
			token:    secretToken,
			header:   http.Header{"Authorization": {"Bearer nope"}},
			contains: []string{`data-mode="restricted"`},
			excludes: []string{"alert", "agent.yaml", secretToken},
		},
		{
			name:     "token configured and sent",
			token:    secretToken,
			header:   bearer,
			contains: []string{`data-mode="full"`, `<code id="config-sha">0123456789ab</code>`, `in 25s`},
			excludes: []string{hostileReason, secretToken},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			token.Store(tc.token)
			resp, body := get(t, page, "/", tc.header)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); csp != statuspage.ContentSecurityPolicy {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			for _, s := range tc.contains {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %s", s)
				}
			}
			for _, s := range tc.excludes {
				if strings.Contains(body, s) {
					t.Errorf("page contains %s", s)
				}
			}
			assertNoInlineCode(t, body)
			if t.Failed() {
				t.Logf("page:\n%s", body)
			}
		})
	}
}

var (
	scriptTag   = regexp.MustCompile(`(?i)<script\b[^>]*>`)
	anyTag      = regexp.MustCompile(`<[a-zA-Z][^>]*>`)
	inlineAttrs = regexp.MustCompile(`(?i)\s(on[a-z]+|style)\s*=`)
)

// assertNoInlineCode checks the page works under its CSP: scripts only from files, no inline handlers
// or styles.
func assertNoInlineCode(t *testing.T, body string) {
	t.Helper()
	tags := scriptTag.FindAllString(body, -1)
	if len(tags) != 1 || !strings.Contains(tags[0], ` src="static/status.js?v=`) {
		t.Errorf("script tags %q, want exactly one from static/status.js", tags)
	}
	for _, tag := range anyTag.FindAllString(body, -1) {
		if inlineAttrs.MatchString(tag) || strings.HasPrefix(strings.ToLower(tag), "<style") {
			t.Errorf("inline code in %q would be blocked by the CSP", tag)
		}
	}
}

func TestStaticAndRouting(t *testing.T) {
	src := &fixedSource{}
	src.snap.Store(snapshot())
	page := statuspage.New(src, statuspage.Options{})
	// Through the API's router, as the agent serves it.
	h := api.NewHandler(src, api.Options{Page: page})

	_, html := get(t, h, "/", nil)
	jsURL := regexp.MustCompile(`src="(static/status\.js\?v=[0-9a-f]+)"`).FindStringSubmatch(html)
	cssURL := regexp.MustCompile(`href="(static/status\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(html)
	if jsURL == nil || cssURL == nil {
		t.Fatalf("page links no versioned assets:\n%s", html)
	}

	cases := []struct {
		name        string
		path        string
		header      http.Header
		code        int
		contentType string
		body        string
	}{
		{"script", "/" + jsURL[1], nil, http.StatusOK, "text/javascript; charset=utf-8", "use strict"},
		{"stylesheet", "/" + cssURL[1], nil, http.StatusOK, "text/css; charset=utf-8", ".banner"},
		{"unknown asset", "/static/nope.js", nil, http.StatusNotFound, "", ""},
		{"no directory listing", "/static/", nil, http.StatusNotFound, "", ""},
		{"template not served", "/static/index.html.tmpl", nil, http.StatusNotFound, "", ""},
		{"traversal", "/static/../statuspage.go", nil, http.StatusNotFound, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, h, tc.path, tc.header)
			if resp.StatusCode != tc.code {
				t.Fatalf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.code)
			}
			if tc.contentType != "" && resp.Header.Get("Content-Type") != tc.contentType {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.contentType)
			}
			if !strings.Contains(body, tc.body) {
				t.Errorf("body lacks %q", tc.body)
			}
			if tc.code == http.StatusOK {
				etag := resp.Header.Get("ETag")
				if etag == "" || !strings.Contains(tc.path, strings.Trim(etag, `"`)) {
					t.Fatalf("ETag %q does not match the versioned URL %s", etag, tc.path)
				}
				again, _ := get(t, h, tc.path, http.Header{"If-None-Match": {etag}})
				if again.StatusCode != http.StatusNotModified {
					t.Errorf("revalidation: status %d, want 304", again.StatusCode)
				}
			}
		})
	}

	t.Run("methods", func(t *testing.T) {
		rec := httptest.NewRecorder()
		page.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST /: %d, want 405", rec.Code)
		}
	})
}

// With the egress proxy on, the full page has a row per route: its last minute of real traffic and its
// breaker's state; without the token, or with egress off, no such section.
func TestPageEgressRoutes(t *testing.T) {
	s := snapshot()
	s.Traffic = []monitor.RouteTraffic{{Route: "figma", Prefix: "/figma/", Breaker: "figma-api", Requests: 42, Errors: 2,
		Rejected: 1, P50: 12 * time.Millisecond, P99: 1500 * time.Millisecond, RateLimitedFor: 30 * time.Second}}
	src := &fixedSource{}
	src.snap.Store(s)
	page := statuspage.New(src, statuspage.Options{Now: func() time.Time { return now }})
	_, body := get(t, page, "/", nil)
	for _, want := range []string{`<tr data-route="figma">`, `<code>/figma/</code>`, `<td class="num">42</td>`,
		`<td class="num">2</td>`, `rate limited for 30s`, `12 ms`, `1.50 s`, `<span class="pill state-closed">CLOSED</span>`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	src.snap.Store(snapshot()) // egress off
	if _, body := get(t, page, "/", nil); strings.Contains(body, "Egress routes") {
		t.Error("the page shows an egress section with egress off")
	}
	src.snap.Store(s)
	restricted := statuspage.New(src, statuspage.Options{Token: func() string { return secretToken }, Now: func() time.Time { return now }})
	if _, body := get(t, restricted, "/", nil); strings.Contains(body, "data-route") {
		t.Error("the restricted page shows egress routes")
	}
}
