package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// validConfig is a config built in code, as a caller of Validate without Load would build it.
func validConfig() *Config {
	p := DefaultPolicy()
	return &Config{
		Server:    Server{Listen: ":3008", ShutdownDelay: time.Second},
		Scheduler: Scheduler{MaxConcurrentProbes: 1},
		Defaults:  p,
		Probes: []Probe{
			{Name: "app", Kind: "http", Policy: p, Options: map[string]any{"url": "http://127.0.0.1:1/"}},
			{Name: "memory", Kind: "memory", Policy: p},
		},
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := validConfig()
	warnings, err := c.Validate(fakeKinds{})
	if err != nil || len(warnings) != 0 {
		t.Fatalf("Validate = %q, %v", warnings, err)
	}
	if c.Probes[0].Local || !c.Probes[1].Local {
		t.Errorf("Local = %v, %v; want false, true", c.Probes[0].Local, c.Probes[1].Local)
	}

	// A probe built in code inherited nothing: its own bad values are reported at its path.
	c.Defaults.Timeout = -time.Second
	c.Probes[0].Timeout = -time.Second
	c.Probes[0].Retry.Jitter = 1
	_, err = c.Validate(fakeKinds{})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	want := []string{
		"defaults.timeout: must be > 0, got -1s",
		"probes[0].timeout: must be > 0, got -1s",
		"probes[0].retry.jitter: must be in [0, 1), got 1",
	}
	if got := errorLines(err); !slices.Equal(got, want) {
		t.Errorf("errors =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "defaults.timeout" {
		t.Errorf("errors.As FieldError = %+v", fe)
	}
}

func TestValidateWithoutChecker(t *testing.T) {
	c := validConfig()
	c.Probes[1].Kind = "anything"
	if _, err := c.Validate(nil); err != nil {
		t.Errorf("Validate(nil) = %v, want kinds unchecked", err)
	}
}

func TestValidListen(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{":3008", true}, {"127.0.0.1:3008", true}, {"[::1]:3008", true}, {"localhost:0", true},
		{"agent.example.internal:65535", true}, {"[fe80::1%eth0]:80", true},
		{"3008", false}, {":", false}, {":http", false}, {":-1", false}, {":65536", false},
		{"bad host:80", false}, {"::1:80", false}, {"", false}, {"-x:80", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := validListen(tt.in); got != tt.ok {
				t.Errorf("validListen(%q) = %v, want %v", tt.in, got, tt.ok)
			}
		})
	}
}

func TestPrefixWarning(t *testing.T) {
	p := &Probe{Options: map[string]any{"tokenEnv": "X", "headers": map[string]any{}}}
	tests := []struct{ in, want string }{
		{"tokenEnv: FIGMA_TOKEN is not set", "probes[3].tokenEnv: FIGMA_TOKEN is not set"},
		{"headers[X-Api-Key]: API_TOKEN is not set", "probes[3].headers[X-Api-Key]: API_TOKEN is not set"},
		{"headers.Authorization: API_TOKEN is not set", "probes[3].headers.Authorization: API_TOKEN is not set"},
		{"figma: no token", "probes[3]: figma: no token"},
		{"header X-Key: not set", "probes[3]: header X-Key: not set"},
		{"the process node is not running", "probes[3]: the process node is not running"},
	}
	for _, tt := range tests {
		if got := prefixWarning("probes[3]", p, tt.in); got != tt.want {
			t.Errorf("prefixWarning(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestOrder(t *testing.T) {
	probes := func(deps ...[]string) *Config {
		c := &Config{}
		for i, d := range deps {
			c.Probes = append(c.Probes, Probe{Name: string(rune('a' + i)), DependsOn: d})
		}
		return c
	}
	tests := []struct {
		name string
		cfg  *Config
		want []string
		err  string
	}{
		{name: "none", cfg: &Config{}, want: []string{}},
		{name: "independent keep config order", cfg: probes(nil, nil, nil), want: []string{"a", "b", "c"}},
		{name: "dependency first", cfg: probes([]string{"c"}, nil, nil), want: []string{"b", "c", "a"}},
		{name: "chain", cfg: probes([]string{"b"}, []string{"c"}, []string{"d"}, nil), want: []string{"d", "c", "b", "a"}},
		{name: "diamond", cfg: probes([]string{"b", "c"}, []string{"d"}, []string{"d"}, nil), want: []string{"d", "b", "c", "a"}},
		{name: "cycle", cfg: probes([]string{"b"}, []string{"a"}), err: "probes[0].dependsOn: cycle a -> b -> a"},
		{name: "unknown", cfg: probes([]string{"z"}), err: `probes[0].dependsOn[0]: unknown probe "z"`},
		{name: "self", cfg: probes([]string{"a"}), err: "cannot depend on itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.Order()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want %q wrapping ErrInvalid", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("Order = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestOrderOfLoadedConfig(t *testing.T) {
	l, err := LoadFile("testdata/good/depends.yaml", fakeKinds{}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Config.Order()
	want := []string{"cdn", "db", "api", "web", "memory"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Order = %q, %v; want %q", got, err, want)
	}
}

func TestSharedBreakerSamePolicy(t *testing.T) {
	l, err := LoadFile("testdata/good/full.yaml", fakeKinds{}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	db, cache := c.Probes[1], c.Probes[2]
	if db.Breaker() != "storage" || cache.Breaker() != "storage" || db.Policy.Breaker != cache.Policy.Breaker {
		t.Errorf("db %+v cache %+v", db, cache)
	}
	if cache.RateLimit != nil || db.RateLimit == nil || *db.RateLimit != (RateLimit{Max: 10, Per: time.Minute}) {
		t.Errorf("rate limits: db %+v cache %+v", db.RateLimit, cache.RateLimit)
	}
	if c.Server.ShutdownDelay != 0 || c.Scheduler.Jitter != 0 {
		t.Errorf("zero values were replaced by defaults: %+v %+v", c.Server, c.Scheduler)
	}
}
