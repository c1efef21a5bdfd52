package config

import (
	"errors"
	"strings"
	"testing"
)

func TestLiteralCredentialHeaders(t *testing.T) {
	l := mustLoad(t, `
probes:
  - name: app
    kind: http
    url: "http://127.0.0.1:3007/api/health"
    headers:
      Authorization: "Bearer abc"
      X-Api-Key: {value: k}
      x-session-secret: s
      My-Password: {Value: p}
      X-Custom-Token: {env: T}
      Cookie: {file: /run/secrets/cookie}
      Accept: application/json
  - name: tools
    kind: mcp
    url: "http://127.0.0.1:3333/mcp"
    headers: {Proxy-Authorization: "Basic eA==", X-Figma-Token: {env: FIGMA_TOKEN}}
`, nil)
	want := []string{
		"probes[0].headers[Authorization]: a literal value for a header that carries credentials puts the secret in the config file; " +
			"reference it instead: Authorization: {env: VAR} or Authorization: {file: /path/to/secret}",
		"probes[0].headers[X-Api-Key]: a literal value",
		"probes[0].headers[x-session-secret]: a literal value",
		"probes[0].headers[My-Password]: a literal value",
		"probes[1].headers[Proxy-Authorization]: a literal value",
	}
	if len(l.Warnings) != len(want) {
		t.Fatalf("warnings = %q, want %d", l.Warnings, len(want))
	}
	for _, w := range want {
		if !containsLine(l.Warnings, w) {
			t.Errorf("no warning %q in %q", w, l.Warnings)
		}
	}
	for _, w := range l.Warnings {
		if strings.Contains(w, "abc") || strings.Contains(w, "eA==") {
			t.Errorf("a warning shows the header's value: %q", w)
		}
	}
}

func TestCredentialHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"Authorization": true, "proxy-authorization": true, "Cookie": true, "X-Figma-Token": true, "X-API-KEY": true,
		"X-Auth-Token": true, "Client-Secret": true, "Api-Key-Id": true, "X-Db-Password": true,
		"Accept": false, "User-Agent": false, "X-Request-Id": false, "Set-Cookie2": false,
	} {
		if got := CredentialHeader(name); got != want {
			t.Errorf("CredentialHeader(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestCheckSelfTargets(t *testing.T) {
	c := mustLoad(t, `
server: {listen: ":3008"}
probes:
  - {name: other, kind: http, critical: true, url: "http://127.0.0.1:9999/readyz"}
`, nil).Config
	t.Run("the --listen override is checked as given", func(t *testing.T) {
		err := c.CheckSelfTargets(fakeKinds{}, "127.0.0.1:9999")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `probes[0].url: a critical probe of 127.0.0.1:9999 targets the agent's own port (server.listen "127.0.0.1:9999")`) {
			t.Errorf("CheckSelfTargets = %v, want the self-target error", err)
		}
	})
	t.Run("port 0 and kinds without targets check nothing", func(t *testing.T) {
		if err := c.CheckSelfTargets(fakeKinds{}, "127.0.0.1:0"); err != nil {
			t.Errorf("port 0: %v", err)
		}
		if err := c.CheckSelfTargets(noTargets{}, "127.0.0.1:9999"); err != nil {
			t.Errorf("no TargetLister: %v", err)
		}
	})
}

// noTargets is a ProbeKinds that cannot tell where probes connect.
type noTargets struct{}

func (noTargets) CheckProbe(*Probe) (bool, []string, error) { return false, nil, nil }
