package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
)

// TestBadConfigMatrix runs bad configs through the real CLI: `validate`, serving and `probe` each exit
// 2, print every error (the count in the header matches, each line names its field path and the bad
// value), start nothing (the port stays free, no "serving" line), and print no secret.
func TestBadConfigMatrix(t *testing.T) {
	const secretValue = "3f9c2a7b1e4d8c6a0b5f2e9d7c1a4b8e" // the details token, from the environment
	env := func(k string) (string, bool) {
		if k == "DETAILS_TOKEN" {
			return secretValue, true
		}
		return "", false
	}
	tests := []struct {
		name string
		yaml string
		want []string // every error line, each a substring of one line of the report
	}{
		{"yaml syntax", "probes: [ {name: a, kind: tcp\n", []string{
			"yaml: line 1: did not find expected ',' or '}'",
		}},
		{"unknown top-level key", "nope: 1\nprobes: [{name: a, kind: tcp, address: \"127.0.0.1:1\"}]\n", []string{
			"nope: unknown key (valid keys: server, scheduler, defaults, probes, egress)",
		}},
		{"no probes", "server: { listen: \":0\" }\n", []string{
			"probes: at least one probe is required",
		}},
		{"server and scheduler", `
server: { listen: "localhost", shutdownDelay: -1s, readHeaderTimeout: 5s, maxHeaderBytes: 16384, detailsToken: "${DETAILS_TOKEN}" }
scheduler: { maxConcurrentProbes: 0, jitter: 1.5 }
probes: [{name: a, kind: tcp, address: "127.0.0.1:1"}]
`, []string{
			`server.listen: must be host:port with a port in 0-65535, like ":3008" or "127.0.0.1:3008", got "localhost"`,
			"server.shutdownDelay: must be >= 0, got -1s",
			// The server's limits are fixed: a config that still sets one is told so.
			"server.readHeaderTimeout: unknown key (valid keys: listen, shutdownDelay, detailsToken)",
			"server.maxHeaderBytes: unknown key (valid keys: listen, shutdownDelay, detailsToken)",
			"scheduler.maxConcurrentProbes: must be >= 1, got 0",
			"scheduler.jitter: must be in [0, 1), got 1.5",
		}},
		{"kind options", `
server: { detailsToken: "${DETAILS_TOKEN}" }
probes:
  - {name: a, kind: http, url: "ftp://x", method: BREW, expectStatus: [99]}
  - {name: b, kind: tcp}
  - {name: c, kind: mcp, url: "http://u:p@h/mcp", transport: ws}
  - {name: d, kind: figma, tokenEnv: "", url: "x"}
  - {name: e, kind: cdp, urls: "", minAvailable: -1}
  - {name: f, kind: memory, warnPercent: 120}
  - {name: g, kind: smtp}
  - {name: h}
`, []string{
			`probes[0].url: must be an absolute http(s) URL, got "ftp://x"`,
			`probes[0].method: must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, got "BREW"`,
			"probes[0].expectStatus[0]: must be an HTTP status 100-599, got 99",
			"probes[1].address: required (host:port)",
			"probes[2].url: must not carry credentials (user:password@)",
			`probes[2].transport: must be streamable or sse, got "ws"`,
			`probes[3].url: must be an absolute http or https URL, got "x"`,
			"probes[3].tokenEnv: set tokenEnv or tokenFile: the token is never written in the config",
			"probes[4].urls: must list at least one endpoint",
			"probes[4].minAvailable: must be between 0 and the number of urls (0), got -1",
			"probes[5].process: set process (the name of the process to watch) or pidFile",
			"probes[5].warnPercent: must be > 0 and <= 100, got 120",
			`probes[6].kind: unknown kind "smtp"`,
			"probes[7].kind: is required",
		}},
		{"policies and the dependency graph", `
probes:
  - {name: a, kind: tcp, address: "h:1", dependsOn: [b], interval: 10 seconds, timeout: -1s}
  - {name: b, kind: tcp, address: "h:1", dependsOn: [a], retry: {maxRetries: -1}, breaker: {failureThreshold: 3, window: 2, delay: 0s}}
  - {name: c, kind: tcp, address: "h:1", dependsOn: [c, ghost]}
  - {name: a, kind: tcp, address: "h:1"}
  - {name: "my probe", kind: tcp, address: "h:1", failuresBeforeUnhealthy: 0}
`, []string{
			`probes[0].interval: must be a duration like 250ms, 10s or 5m, got "10 seconds"`,
			"probes[0].timeout: must be > 0, got -1s",
			"probes[0].dependsOn: cycle a -> b -> a",
			"probes[1].retry.maxRetries: must be >= 0, got -1",
			"probes[1].breaker.window: must be >= failureThreshold (3), got 2",
			"probes[1].breaker.delay: must be > 0, got 0s",
			`probes[2].dependsOn[0]: a probe cannot depend on itself, got "c"`,
			`probes[2].dependsOn[1]: unknown probe "ghost"`,
			`probes[3].name: duplicate name "a": probes[0] already has it`,
			`probes[4].name: must match [a-zA-Z0-9_-]+, got "my probe"`,
			"probes[4].failuresBeforeUnhealthy: must be >= 1, got 0",
		}},
		{"environment", `
server: { detailsToken: "${DETAILS_TOKEN}" }
probes:
  - {name: app, kind: http, url: "${APP_URL:?set APP_URL}"}
  - {name: x, kind: http, url: "http://${HOST"}
`, []string{
			"probes[0].url: environment variable APP_URL is required: set APP_URL",
			`probes[1].url: unclosed "${" at offset 7 in "http://${HOST"`,
		}},
		{"secrets in the wrong place", `
probes:
  - {name: a, kind: cdp, mode: browserless, urls: "http://browserless:3000", token: "${DETAILS_TOKEN}"}
  - {name: b, kind: http, url: "http://user:${DETAILS_TOKEN}@host:port/?key=${DETAILS_TOKEN}"}
`, []string{
			"probes[0].token: reference it with env or file: a token is never written in the config",
			`probes[1].url: must be an absolute http(s) URL, got "http://[redacted]@host:port/?[redacted]"`,
		}},
		{"binary garbage", "\x00\x01\x02\xff\xfe", []string{
			"yaml:",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "agent.yaml", tt.yaml)
			addr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
			for _, args := range [][]string{
				{"validate", "--config", path},
				{"--config", path, "--listen", addr},
				{"probe", "--config", path, "a"},
			} {
				var out, errb testkit.SyncBuffer
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				code := run(ctx, args, &out, &errb, env)
				cancel()
				stderr := errb.String()
				if code != exitUsage {
					t.Errorf("%v: exit %d, want %d; stderr:\n%s", args[0], code, exitUsage, stderr)
				}
				header := fmt.Sprintf("is invalid (%d error(s)):", len(tt.want))
				if !strings.Contains(stderr, header) {
					t.Errorf("%v: stderr lacks %q:\n%s", args[0], header, stderr)
				}
				lines := strings.Split(strings.TrimSpace(stderr), "\n")
				for _, w := range tt.want {
					if !containsLine(lines, w) {
						t.Errorf("%v: no line reports %q:\n%s", args[0], w, stderr)
					}
				}
				if out.String() != "" {
					t.Errorf("%v: stdout %q, want nothing", args[0], out.String())
				}
				if strings.Contains(stderr, "serving") || strings.Contains(stderr, "health-agent stopped") {
					t.Errorf("%v: a bad config started something:\n%s", args[0], stderr)
				}
				if strings.Contains(stderr, secretValue) || strings.Contains(out.String(), secretValue) {
					t.Errorf("%v: the details token was printed", args[0])
				}
			}
			// Nothing listens where the agent was told to.
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("port %s is taken after a bad config: %v", addr, err)
			}
			ln.Close()
		})
	}
}

// TestUnreadableConfig: a config that cannot be read is a usage error, named, with nothing started.
func TestUnreadableConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ name, path string }{
		{"missing file", dir + "/nope.yaml"},
		{"a directory", dir},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
			for _, args := range [][]string{{"validate", "--config", tt.path}, {"--config", tt.path, "--listen", addr}} {
				var out, errb testkit.SyncBuffer
				if code := run(context.Background(), args, &out, &errb, noEnv); code != exitUsage {
					t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
				}
				if !strings.Contains(errb.String(), tt.path) || strings.Contains(errb.String(), "serving") {
					t.Errorf("%v: stderr %q, want the path named and nothing started", args, errb.String())
				}
			}
		})
	}
}

// containsLine reports whether one of lines contains s.
func containsLine(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
