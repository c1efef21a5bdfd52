package config

import (
	"slices"
	"testing"
	"time"
)

func TestEgressOffWhenAbsent(t *testing.T) {
	for name, yaml := range map[string]string{
		"absent": "probes: [{name: a, kind: tcp}]\n",
		"null":   "probes: [{name: a, kind: tcp}]\negress: null\n",
	} {
		t.Run(name, func(t *testing.T) {
			if e := mustLoad(t, yaml, nil).Config.Egress; e != nil {
				t.Errorf("Egress = %+v, want nil", e)
			}
		})
	}
}

func TestEgressDecodeAndDefaults(t *testing.T) {
	l := mustLoad(t, `
probes: [{name: figmaApi, kind: figma}]
egress:
  routes:
    - name: figma
      prefix: /figma/
      upstream: "${FIGMA_API_URL:-https://api.figma.com}"
      breaker: figma-api
      headers:
        X-Figma-Token: {env: FIGMA_TOKEN}
        Accept: application/json
    - name: mcp
      prefix: /mcp/
      upstream: http://127.0.0.1:3333/mcp
      timeout: 5s
      retry: {maxRetries: 3}
      tls: {insecureSkipVerify: true}
`, map[string]string{"FIGMA_TOKEN": "t0ken-value"})
	e := l.Config.Egress
	if e == nil || e.Listen != DefaultEgressListen || len(e.Routes) != 2 {
		t.Fatalf("Egress = %+v", e)
	}
	figma, mcp := e.Routes[0], e.Routes[1]
	if figma.Upstream != "https://api.figma.com" || figma.BreakerName() != "figma-api" || figma.Timeout != DefaultEgressTimeout ||
		figma.Retry != DefaultEgressRetry() {
		t.Errorf("figma route = %+v", figma)
	}
	// Header names keep their spelling (viper would lower-case them), and a plain string is a literal value.
	if figma.Headers["X-Figma-Token"] != (Value{Env: "FIGMA_TOKEN"}) || figma.Headers["Accept"] != (Value{Value: "application/json"}) {
		t.Errorf("headers = %+v", figma.Headers)
	}
	wantRetry := DefaultEgressRetry()
	wantRetry.MaxRetries = 3
	if mcp.BreakerName() != "mcp" || mcp.Timeout != 5*time.Second || mcp.Retry != wantRetry || !mcp.TLS.InsecureSkipVerify {
		t.Errorf("mcp route = %+v", mcp)
	}
	if !slices.Contains(l.Warnings, "egress.routes[1].tls.insecureSkipVerify: upstream certificates are not verified") {
		t.Errorf("warnings = %q", l.Warnings)
	}
}

func TestEgressListen(t *testing.T) {
	for _, tc := range []struct {
		name, listen string
		allow, ok    bool
	}{
		{"loopback v4", "127.0.0.1:3009", false, true},
		{"loopback v6", "[::1]:3009", false, true},
		{"localhost", "localhost:3009", false, true},
		{"all interfaces refused", ":3009", false, false},
		{"pod address refused", "10.0.0.7:3009", false, false},
		{"all interfaces allowed", ":3009", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			c.Egress = &Egress{Listen: tc.listen, AllowNonLoopback: tc.allow, Routes: []EgressRoute{{
				Name: "r", Prefix: "/r/", Upstream: "http://127.0.0.1:1", Timeout: time.Second, Retry: DefaultEgressRetry(),
			}}}
			_, err := c.Validate(fakeKinds{})
			if (err == nil) != tc.ok {
				t.Errorf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestEgressLiteralCredentialWarns(t *testing.T) {
	l := mustLoad(t, `
probes: [{name: a, kind: tcp}]
egress:
  routes: [{name: r, prefix: /r/, upstream: "http://127.0.0.1:1", headers: {Authorization: "Bearer abc"}}]
`, nil)
	if !slices.Contains(l.Warnings, "egress.routes[0].headers[Authorization]: written in the file; reference a secret instead, e.g. {env: VAR} or {file: /path}") {
		t.Errorf("warnings = %q", l.Warnings)
	}
}

func TestEgressAbsentSecretWarns(t *testing.T) {
	l := mustLoad(t, `
probes: [{name: a, kind: tcp}]
egress:
  routes: [{name: figma, prefix: /figma/, upstream: "https://api.figma.com", headers: {X-Figma-Token: {env: FIGMA_TOKEN}}}]
`, nil)
	want := "egress.routes[0].headers[X-Figma-Token]: secret absent: set the environment variable FIGMA_TOKEN; the route answers 503 until it is"
	if !slices.Contains(l.Warnings, want) {
		t.Errorf("warnings = %q, want %q", l.Warnings, want)
	}
	set := mustLoad(t, `
probes: [{name: a, kind: tcp}]
egress: {routes: [{name: f, prefix: /f/, upstream: "http://x", headers: {T: {env: V}}}]}
`, map[string]string{"V": "set"})
	if len(set.Warnings) != 0 {
		t.Errorf("warnings with the secret set: %q", set.Warnings)
	}
}
