package probes

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/health-agent/health-agent/pkg/config"
)

func TestProbeTargets(t *testing.T) {
	tests := []struct {
		kind string
		opts map[string]any
		want []config.Target
	}{
		{"http", map[string]any{"url": "http://127.0.0.1:3008/readyz"}, []config.Target{{Option: "url", Address: "127.0.0.1:3008"}}},
		{"http", map[string]any{"url": "https://app.internal/health"}, []config.Target{{Option: "url", Address: "app.internal:443"}}},
		{"tcp", map[string]any{"address": "localhost:3008"}, []config.Target{{Option: "address", Address: "localhost:3008"}}},
		{"cdp", map[string]any{"urls": "http://127.0.0.1:9222,http://[::1]:3008"}, []config.Target{
			{Option: "urls[0]", Address: "127.0.0.1:9222"}, {Option: "urls[1]", Address: "[::1]:3008"}}},
		{"mcp", map[string]any{"url": "http://localhost/mcp"}, []config.Target{{Option: "url", Address: "localhost:80"}}},
		{"figma", map[string]any{"url": "http://127.0.0.1:3008"}, []config.Target{{Option: "url", Address: "127.0.0.1:3008"}}},
		{"memory", map[string]any{"process": "node"}, nil},
		{"config", nil, nil},
		{"http", map[string]any{"url": "not a url"}, nil}, // options that do not build: their own error says why
		{"smtp", nil, nil},
	}
	for _, tt := range tests {
		got := Kinds.ProbeTargets(&config.Probe{Name: "p", Kind: tt.kind, Options: tt.opts})
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s %v: targets %v, want %v", tt.kind, tt.opts, got, tt.want)
		}
	}
}

// Through config.Load with the real kinds: a critical probe aimed at the agent's own port is refused
// at the option's path, for each kind that connects somewhere.
func TestSelfTargetRefused(t *testing.T) {
	const yaml = `
server: {listen: ":3008"}
probes:
  - {name: readyz, kind: http, critical: true, url: "http://localhost:3008/readyz"}
  - {name: browser, kind: cdp, critical: true, urls: "http://127.0.0.1:9222,http://127.0.0.1:3008"}
  - {name: tools, kind: mcp, critical: true, url: "http://[::]:3008/mcp"}
  - {name: port, kind: tcp, critical: true, address: "127.0.0.1:3008"}
  - {name: fine, kind: http, url: "http://127.0.0.1:3008/readyz"}
`
	_, err := config.Load("test.yaml", []byte(yaml), Kinds, func(string) (string, bool) { return "", false })
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Load = %v, want invalid", err)
	}
	want := []string{"probes[0].url: ", "probes[1].urls[1]: ", "probes[2].url: ", "probes[3].address: "}
	got := config.Flatten(err)
	if len(got) != len(want) {
		t.Fatalf("errors:\n%v\nwant %d", err, len(want))
	}
	for i, w := range want {
		if msg := got[i].Error(); !strings.HasPrefix(msg, w) || !strings.Contains(msg, "targets the agent's own port") {
			t.Errorf("error %q, want one at %s", msg, w)
		}
	}
}
