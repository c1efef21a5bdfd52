package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
)

// The secrets of TestLogsKeepSecrets: distinctive, so that a leak anywhere is found.
var logSecrets = map[string]string{
	"DETAILS_TOKEN": "dt-5ecret-0b9d2c",
	"APP_TOKEN":     "app-5ecret-71fa4e",
	"FIGMA_TOKEN":   "figd_5ecret-c3e810",
}

// echo is a hostile dependency: it fails, and puts every request header it got, the secrets included,
// into its answer, where a careless probe would copy it into a reason.
func echo(code int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		for k, v := range r.Header {
			fmt.Fprintf(&b, "%s: %s; ", k, strings.Join(v, ","))
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo", b.String())
		w.WriteHeader(code)
		msg, _ := json.Marshal(b.String())
		fmt.Fprintf(w, `{"status":%d,"err":%s,"message":%s}`, code, msg, msg)
	})
}

// TestLogsKeepSecrets serves with a details token, an http probe sending a secret header and a figma
// probe with a token, against dependencies that echo what they got, at debug level in both log formats.
// It checks the logs say what happened (transitions with probe and breaker names) and that no secret
// appears in any log line or in any answer the agent gives.
func TestLogsKeepSecrets(t *testing.T) {
	app := httptest.NewServer(echo(http.StatusInternalServerError))
	defer app.Close()
	figma := httptest.NewServer(echo(http.StatusForbidden))
	defer figma.Close()
	secretFile := writeFile(t, "api-key", "file-5ecret-9aa01d\n")
	secrets := []string{"file-5ecret-9aa01d"}
	for _, v := range logSecrets {
		secrets = append(secrets, v)
	}
	env := func(k string) (string, bool) { v, ok := logSecrets[k]; return v, ok }

	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
server:
  shutdownDelay: 0s
  detailsToken: "${DETAILS_TOKEN}"
defaults:
  interval: 50ms
  timeout: 2s
  failuresBeforeUnhealthy: 1
  retry: { maxRetries: 0 }
  breaker: { failureThreshold: 2, window: 2, delay: 200ms, successThreshold: 1 }
probes:
  - name: app
    kind: http
    critical: true
    url: "%s/api/health"
    headers:
      Authorization: { env: APP_TOKEN, prefix: "Bearer " }
      X-Api-Key: { file: "%s" }
  - name: figmaApi
    kind: figma
    breaker: figma-api
    url: "%s"
    tokenEnv: FIGMA_TOKEN
`, app.URL, secretFile, figma.URL))

	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			p := serveArgs(t, []string{"--config", cfg, "--listen", "127.0.0.1:0", "--log-level", "debug", "--log-format", format}, env)

			// Wait until both probes have failed, their breakers opened, and a breaker retried.
			testkit.Eventually(t, 60*time.Second, func() bool {
				return logged(p.logs.String(), format, "breaker state changed", "breaker", "figma-api") &&
					logged(p.logs.String(), format, "breaker state changed", "breaker", "app") &&
					logged(p.logs.String(), format, "probe status changed", "probe", "figmaApi") &&
					logged(p.logs.String(), format, "probe status changed", "probe", "app") &&
					logged(p.logs.String(), format, "probe executed", "probe", "app")
			}, "transitions logged")

			// Every endpoint, with and without the token: no answer carries a secret either.
			bearer := "Bearer " + logSecrets["DETAILS_TOKEN"]
			for _, path := range []string{"/", "/api/health", "/api/health/detailed", "/api/health/circuit-breakers",
				"/metrics", "/readyz?verbose", "/livez?verbose", "/startupz?verbose", "/static/status.js"} {
				for _, auth := range []string{"", bearer, "Bearer wrong"} {
					body := fetchWith(t, p.base+path, auth)
					for _, s := range secrets {
						if strings.Contains(body, s) {
							t.Errorf("GET %s (auth %t) answers with a secret", path, auth != "")
						}
					}
				}
			}
			p.stop(t)

			logs := p.logs.String()
			for _, s := range secrets {
				if strings.Contains(logs, s) {
					t.Errorf("a secret appears in the %s logs", format)
				}
			}
			if format == "json" {
				sc := bufio.NewScanner(strings.NewReader(logs))
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				for sc.Scan() {
					var rec map[string]any
					if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
						t.Errorf("log line is not JSON: %v", err)
					}
				}
			}
			if t.Failed() {
				// The secrets are masked before the logs are shown.
				masked := logs
				for _, s := range secrets {
					masked = strings.ReplaceAll(masked, s, "<SECRET>")
				}
				t.Logf("logs:\n%s", masked)
			}
		})
	}
}

// logged reports whether some log line has message msg and attribute key=value.
func logged(logs, format, msg, key, value string) bool {
	for _, line := range strings.Split(logs, "\n") {
		switch format {
		case "json":
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg && rec[key] == value {
				return true
			}
		default:
			if strings.Contains(line, fmt.Sprintf("msg=%q", msg)) && strings.Contains(line, " "+key+"="+value+" ") {
				return true
			}
		}
	}
	return false
}

func fetchWith(t *testing.T, url, auth string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var hdr strings.Builder
	for k, v := range resp.Header {
		fmt.Fprintf(&hdr, "%s: %s\n", k, strings.Join(v, ","))
	}
	return hdr.String() + string(b)
}

// anyAddrRe finds the listen address in the "serving" line of either log format.
var anyAddrRe = regexp.MustCompile(`"addr":"([^"]+)"|\baddr=(\S+)`)

// serveArgs runs the serve command with args (as serveAgent does with fixed ones) until the test ends.
func serveArgs(t *testing.T, args []string, env func(string) (string, bool)) *agentProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &agentProc{cancel: cancel, done: make(chan int, 1), logs: &testkit.SyncBuffer{}}
	go func() { p.done <- run(ctx, args, io.Discard, p.logs, env) }()
	t.Cleanup(func() { p.stop(t) })
	waitServing(t, p)
	return p
}

// TestTextLogsArePrintable: in --log-format text, a value carrying control characters (a dependency's
// reason, an error) is written with them replaced, so it cannot forge a log line or drive a terminal;
// tab is kept. Secret-looking keys stay redacted.
func TestTextLogsArePrintable(t *testing.T) {
	var out testkit.SyncBuffer
	log, err := newLogger(&out, "info", "text")
	if err != nil {
		t.Fatal(err)
	}
	hostile := "refused\r\nlevel=ERROR msg=forged\x1b[2J\x00\u009b\tend"
	log.Info("probe status changed", "reason", hostile, "err", errors.New(hostile),
		slog.Group("g", "inner", hostile), "token", "s3cret")
	line := out.String()
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("one record took more than one line: %q", line)
	}
	clean := "refused  level=ERROR msg=forged [2J  \tend"
	for _, key := range []string{"reason", "err", "g.inner"} {
		if !strings.Contains(line, key+"="+strconv.Quote(clean)) {
			t.Errorf("%s not written cleaned (%q): %q", key, clean, line)
		}
	}
	if strings.ContainsAny(line, "\x1b\x00\r\u009b") || strings.Contains(line, `\x1b`) || strings.Contains(line, `\r`) {
		t.Errorf("a control character (or its escape) is in the text log: %q", line)
	}
	if strings.Contains(line, "s3cret") || !strings.Contains(line, "token=[REDACTED]") {
		t.Errorf("the token key is not redacted: %q", line)
	}
}
