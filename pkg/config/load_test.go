package config

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/configs"
)

// badCase is a file of testdata/bad: its leading comments say what it must produce.
//
//	# want: <a substring one of the errors must contain>   (one or more)
//	# errors: <the exact number of errors>                 (optional)
//	# env: NAME=value                                      (optional, repeatable)
type badCase struct {
	want   []string
	count  int // -1: not checked
	env    map[string]string
	source []byte
}

func readBadCase(t *testing.T, path string) badCase {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := badCase{count: -1, env: map[string]string{}, source: src}
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#") {
			break
		}
		line = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		key, val, _ := strings.Cut(line, ": ")
		switch key {
		case "want":
			c.want = append(c.want, val)
		case "errors":
			n, err := strconv.Atoi(val)
			if err != nil {
				t.Fatalf("%s: bad errors line %q", path, line)
			}
			c.count = n
		case "env":
			k, v, _ := strings.Cut(val, "=")
			c.env[k] = v
		}
	}
	if len(c.want) == 0 {
		t.Fatalf("%s: no '# want:' line", path)
	}
	return c
}

func TestLoadBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			c := readBadCase(t, file)
			env := envOf(c.env)
			l, err := Load(file, c.source, fakeKinds{lookup: env}, env)
			if err == nil {
				t.Fatalf("Load succeeded, want errors %q (config %+v)", c.want, l.Config)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			lines := errorLines(err)
			for _, w := range c.want {
				if !containsLine(lines, w) {
					t.Errorf("no error contains %q; got:\n%s", w, strings.Join(lines, "\n"))
				}
			}
			if c.count >= 0 && len(lines) != c.count {
				t.Errorf("got %d errors, want %d:\n%s", len(lines), c.count, strings.Join(lines, "\n"))
			}
			for _, e := range Flatten(err) {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Errorf("%q is not a *FieldError", e)
				}
			}
		})
	}
}

func TestLoadGood(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good configs: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			l, err := LoadFile(file, fakeKinds{}, envOf(nil))
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			if len(l.Config.Probes) == 0 {
				t.Fatal("no probes")
			}
			if _, err := l.Config.Order(); err != nil {
				t.Errorf("Order: %v", err)
			}
		})
	}
}

func TestLoadDefaultConfig(t *testing.T) {
	fromDisk, err := os.ReadFile("../../configs/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fromDisk, configs.Default) {
		t.Fatal("configs.Default differs from configs/agent.yaml")
	}
	l, err := Load(configs.DefaultName, configs.Default, fakeKinds{}, envOf(nil))
	if err != nil {
		t.Fatalf("the default config does not load with an empty environment: %v", err)
	}
	if l.Source != configs.DefaultName {
		t.Errorf("Source = %q", l.Source)
	}
	sum := sha256.Sum256(configs.Default)
	if l.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("SHA256 = %s", l.SHA256)
	}
	if time.Since(l.LoadedAt) > time.Hour || l.LoadedAt.IsZero() {
		t.Errorf("LoadedAt = %v", l.LoadedAt)
	}
	cfg := l.Config
	if cfg.Server.Listen != ":3008" || cfg.Server.DetailsToken != "" {
		t.Errorf("server = %+v", cfg.Server)
	}
	type row struct {
		name, kind, breaker string
		critical, local     bool
	}
	want := []row{
		{"app", "http", "app", true, false},
		{"browserPool", "cdp", "web-extraction", true, false},
		{"mcpClient", "mcp", "mcp-client", false, false},
		{"figmaApi", "figma", "figma-api", false, false},
		{"memory", "memory", "memory", false, true},
		{"config", "config", "config", false, true},
	}
	if len(cfg.Probes) != len(want) {
		t.Fatalf("%d probes, want %d", len(cfg.Probes), len(want))
	}
	for i, w := range want {
		p := cfg.Probes[i]
		got := row{p.Name, p.Kind, p.Breaker(), p.Critical, p.Local}
		if got != w {
			t.Errorf("probes[%d] = %+v, want %+v", i, got, w)
		}
	}
	if !cfg.Probes[0].Legacy || cfg.Probes[0].Options["url"] != "http://127.0.0.1:3007/api/health" {
		t.Errorf("app = %+v", cfg.Probes[0])
	}
	if cfg.Probes[0].Interval != 5*time.Second || cfg.Probes[1].Interval != 10*time.Second {
		t.Errorf("intervals: app %v, browserPool %v", cfg.Probes[0].Interval, cfg.Probes[1].Interval)
	}
	if f := cfg.Probes[3]; f.Interval != 5*time.Minute || f.Timeout != 5*time.Second || !reflect.DeepEqual(f.Options["token"], map[string]any{"env": "FIGMA_TOKEN", "file": ""}) {
		t.Errorf("figmaApi = %+v", f)
	}
	if !containsLine(l.Warnings, "probes[3].token: FIGMA_TOKEN is not set") {
		t.Errorf("warnings = %q, want the figma token warning", l.Warnings)
	}

	t.Run("environment overrides", func(t *testing.T) {
		env := map[string]string{
			"LEGACY_HEALTH_URL":          "http://app:3007/api/health",
			"BROWSER_CDP_URLS":           "http://b1:9222,http://b2:9222",
			"FIGMA_TOKEN":                "secret",
			"HEALTH_AGENT_DETAILS_TOKEN": "details",
		}
		l := mustLoad(t, string(configs.Default), env)
		c := l.Config
		if c.Probes[0].Options["url"] != env["LEGACY_HEALTH_URL"] || c.Probes[1].Options["urls"] != env["BROWSER_CDP_URLS"] {
			t.Errorf("options = %v, %v", c.Probes[0].Options, c.Probes[1].Options)
		}
		if c.Server.DetailsToken != "details" {
			t.Error("detailsToken not expanded")
		}
		if len(l.Warnings) != 0 {
			t.Errorf("warnings = %q, want none", l.Warnings)
		}
	})
}

func TestLoadFile(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		_, err := LoadFile(filepath.Join(t.TempDir(), "nope.yaml"), fakeKinds{}, envOf(nil))
		if !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrInvalid) {
			t.Errorf("err = %v, want a not-exist error that is not ErrInvalid", err)
		}
	})
	t.Run("source and checksum", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		data := []byte("probes:\n  - {name: db, kind: tcp}\n")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := LoadFile(path, fakeKinds{}, envOf(nil))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if l.Source != path || l.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("Source %q SHA256 %q", l.Source, l.SHA256)
		}
	})
	t.Run("checksum of the bytes, not of the expansion", func(t *testing.T) {
		data := "probes:\n  - {name: db, kind: tcp, address: \"${ADDR}\"}\n"
		a := mustLoad(t, data, map[string]string{"ADDR": "a:1"})
		b := mustLoad(t, data, map[string]string{"ADDR": "b:1"})
		if a.SHA256 != b.SHA256 {
			t.Error("checksum changed with the environment")
		}
	})
}

func TestBuiltinDefaults(t *testing.T) {
	l := mustLoad(t, "probes:\n  - {name: db, kind: tcp}\n", nil)
	c := l.Config
	wantServer := Server{
		Listen: ":3008", ShutdownDelay: 5 * time.Second,
	}
	if c.Server != wantServer {
		t.Errorf("server = %+v, want %+v", c.Server, wantServer)
	}
	if want := (Scheduler{MaxConcurrentProbes: 16, Jitter: 0.1}); c.Scheduler != want {
		t.Errorf("scheduler = %+v, want %+v", c.Scheduler, want)
	}
	want := Policy{
		Interval: 10 * time.Second, Timeout: 2 * time.Second, FailuresBeforeUnhealthy: 2, SuccessesBeforeHealthy: 1,
		Retry:         Retry{MaxRetries: 1, Backoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second, Jitter: 0.2},
		Breaker:       BreakerPolicy{FailureThreshold: 3, Window: 5, Delay: 30 * time.Second, SuccessThreshold: 2},
		MaxRetryAfter: time.Hour,
	}
	if !reflect.DeepEqual(c.Defaults, want) || !reflect.DeepEqual(DefaultPolicy(), want) {
		t.Errorf("defaults = %+v, want %+v", c.Defaults, want)
	}
	if !reflect.DeepEqual(c.Probes[0].Policy, want) {
		t.Errorf("probe policy = %+v, want %+v", c.Probes[0].Policy, want)
	}
	if c.Probes[0].Breaker() != "db" || c.Probes[0].RateLimit != nil {
		t.Errorf("probe = %+v", c.Probes[0])
	}
	if len(l.Warnings) != 0 {
		t.Errorf("warnings = %q", l.Warnings)
	}
}

func TestInheritance(t *testing.T) {
	const cfg = `
defaults:
  interval: 30s
  retry: {maxRetries: 3, backoff: 1s}
  breaker: {failureThreshold: 4, window: 8}
  rateLimit: {max: 10, per: 1m}
probes:
  - name: plain
    kind: tcp
  - name: own
    kind: tcp
    interval: 5s
    timeout: 1s
    failuresBeforeUnhealthy: 5
    retry: {maxRetries: 0}
    breaker: {window: 12, delay: 1m}
    rateLimit: {max: 12}
  - name: named
    kind: tcp
    breaker: shared
  - name: mapNamed
    kind: tcp
    breaker: {name: shared}
  - name: unlimited
    kind: tcp
    rateLimit: null
`
	c := mustLoad(t, cfg, nil).Config
	d := c.Defaults
	wantDefaults := Policy{
		Interval: 30 * time.Second, Timeout: 2 * time.Second, FailuresBeforeUnhealthy: 2, SuccessesBeforeHealthy: 1,
		Retry:         Retry{MaxRetries: 3, Backoff: time.Second, MaxBackoff: 2 * time.Second, Jitter: 0.2},
		MaxRetryAfter: time.Hour,
		Breaker:       BreakerPolicy{FailureThreshold: 4, Window: 8, Delay: 30 * time.Second, SuccessThreshold: 2},
		RateLimit:     &RateLimit{Max: 10, Per: time.Minute},
	}
	if !reflect.DeepEqual(d, wantDefaults) {
		t.Fatalf("defaults = %+v, want built-ins merged key by key: %+v", d, wantDefaults)
	}
	tests := []struct {
		probe       int
		want        Policy
		breakerName string
	}{
		{0, wantDefaults, ""},
		{1, Policy{
			Interval: 5 * time.Second, Timeout: time.Second, FailuresBeforeUnhealthy: 5, SuccessesBeforeHealthy: 1,
			Retry:         Retry{MaxRetries: 0, Backoff: time.Second, MaxBackoff: 2 * time.Second, Jitter: 0.2},
			Breaker:       BreakerPolicy{FailureThreshold: 4, Window: 12, Delay: time.Minute, SuccessThreshold: 2},
			RateLimit:     &RateLimit{Max: 12, Per: time.Minute},
			MaxRetryAfter: time.Hour,
		}, ""},
		{2, wantDefaults, "shared"},
		{3, wantDefaults, "shared"},
		{4, func() Policy { p := wantDefaults; p.RateLimit = nil; return p }(), ""},
	}
	for _, tt := range tests {
		p := c.Probes[tt.probe]
		t.Run(p.Name, func(t *testing.T) {
			if !reflect.DeepEqual(p.Policy, tt.want) {
				t.Errorf("policy = %+v\nwant     %+v", p.Policy, tt.want)
			}
			if p.BreakerName != tt.breakerName {
				t.Errorf("BreakerName = %q, want %q", p.BreakerName, tt.breakerName)
			}
			if len(p.Options) != 0 {
				t.Errorf("Options = %v, want none: policy keys are not options", p.Options)
			}
		})
	}
	if c.Probes[0].RateLimit == c.Defaults.RateLimit {
		t.Error("a probe shares its rate limit with defaults: changing one would change the other")
	}
}

func TestOptionsPassThrough(t *testing.T) {
	const cfg = `
probes:
  - name: api
    kind: http
    url: http://127.0.0.1:1/health
    method: HEAD
    expectStatus: [200, 204]
    headers:
      X-Env: production
      Authorization: {env: API_TOKEN, prefix: "Bearer "}
      x.dotted: kept
    maxBodyBytes: 1024
    followRedirects: false
    nested: {Deep: {List: [a, {B: c}]}}
    empty:
`
	p := mustLoad(t, cfg, nil).Config.Probes[0]
	want := map[string]any{
		"url":          "http://127.0.0.1:1/health",
		"method":       "HEAD",
		"expectStatus": []any{200, 204},
		"headers": map[string]any{
			"X-Env":         "production",
			"Authorization": map[string]any{"env": "API_TOKEN", "prefix": "Bearer "},
			"x.dotted":      "kept",
		},
		"maxBodyBytes":    1024,
		"followRedirects": false,
		"nested":          map[string]any{"Deep": map[string]any{"List": []any{"a", map[string]any{"B": "c"}}}},
		"empty":           nil,
	}
	if !reflect.DeepEqual(p.Options, want) {
		t.Errorf("Options =\n%#v\nwant\n%#v", p.Options, want)
	}
	// The kind decodes its options with DecodeOptions; they arrive in a shape it can decode.
	var opts struct {
		URL     string           `mapstructure:"url"`
		Method  string           `mapstructure:"method"`
		Expect  []int            `mapstructure:"expectStatus"`
		Headers map[string]Value `mapstructure:"headers"`
		Max     int              `mapstructure:"maxBodyBytes"`
		Follow  bool             `mapstructure:"followRedirects"`
		Nested  map[string]any   `mapstructure:"nested"`
		Empty   string           `mapstructure:"empty"`
	}
	if err := DecodeOptions(p.Options, &opts); err != nil {
		t.Fatalf("DecodeOptions: %v", err)
	}
	if opts.Headers["Authorization"].Env != "API_TOKEN" || opts.Headers["X-Env"].Value != "production" || len(opts.Expect) != 2 {
		t.Errorf("decoded = %+v", opts)
	}
}

func TestCaseInsensitiveKeys(t *testing.T) {
	l, err := LoadFile("testdata/good/case_insensitive.yaml", fakeKinds{}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	p := l.Config.Probes[0]
	if p.Name != "db" || p.Kind != "tcp" || p.Interval != 3*time.Second {
		t.Errorf("probe = %+v", p)
	}
	if _, ok := p.Options["Address"]; !ok {
		t.Errorf("Options = %v, want the key as written", p.Options)
	}
}

func TestDetailsTokenWarning(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		warn bool
	}{
		{"literal", "server: {detailsToken: hunter2}\n", true},
		{"from the environment", "server: {detailsToken: \"${DT}\"}\n", false},
		{"empty", "server: {detailsToken: \"\"}\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustLoad(t, tt.yaml+"probes: [{name: a, kind: tcp}]\n", map[string]string{"DT": "x"})
			got := containsLine(l.Warnings, "server.detailsToken: written in the file")
			if got != tt.warn {
				t.Errorf("warnings = %q, want the literal-token warning: %v", l.Warnings, tt.warn)
			}
			for _, w := range l.Warnings {
				if strings.Contains(w, "hunter2") {
					t.Error("a warning shows the token")
				}
			}
		})
	}
}

func TestLocalProbeWarnings(t *testing.T) {
	const cfg = `
probes:
  - {name: memory, kind: memory, retry: {maxRetries: 5}, rateLimit: {max: 1, per: 1s}}
  - {name: config, kind: config}
`
	l := mustLoad(t, cfg, nil)
	if !containsLine(l.Warnings, "probes[0].retry: ignored: kind memory") || !containsLine(l.Warnings, "probes[0].rateLimit: ignored") {
		t.Errorf("warnings = %q", l.Warnings)
	}
	if containsLine(l.Warnings, "probes[1]") {
		t.Errorf("warnings = %q, want none for probes[1], which inherits only", l.Warnings)
	}
}
