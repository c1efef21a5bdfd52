package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
)

// fakeKinds stands in for probes.Kinds, whose kinds other packages build. It knows the contract's kinds;
// http and mcp need a url; an option named "bogus" is rejected; figma warns when the variable of its token (or tokenEnv) is unset.
type fakeKinds struct {
	lookup func(string) (string, bool)
}

func (k fakeKinds) CheckProbe(p *Probe) (bool, []string, error) {
	var local bool
	switch p.Kind {
	case "http", "tcp", "cdp", "mcp", "figma":
	case "memory", "config":
		local = true
	default:
		return false, nil, Errorf("kind", "unknown kind %q (valid: cdp, config, figma, http, mcp, memory, tcp)", p.Kind)
	}
	var errs []error
	if p.Kind == "http" || p.Kind == "mcp" {
		if u, _ := p.Options["url"].(string); u == "" {
			errs = append(errs, Errorf("url", "is required"))
		}
	}
	if v, ok := p.Options["bogus"]; ok {
		errs = append(errs, Errorf("bogus", "unknown option, got %v", v))
	}
	var warnings []string
	env, _ := p.Options["tokenEnv"].(string)
	key := "tokenEnv"
	if tok, ok := p.Options["token"].(map[string]any); ok {
		env, _ = tok["env"].(string)
		key = "token"
	}
	if p.Kind == "figma" && env != "" {
		lookup := k.lookup
		if lookup == nil {
			lookup = func(string) (string, bool) { return "", false }
		}
		if _, ok := lookup(env); !ok {
			warnings = append(warnings, fmt.Sprintf("%s: %s is not set; the probe reports unhealthy until it is", key, env))
		}
	}
	return local, warnings, errors.Join(errs...)
}

// envOf returns a lookup over vars only, so tests never depend on the machine's environment.
func envOf(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// mustLoad loads yaml with env and fails the test on an error.
func mustLoad(t *testing.T, yaml string, env map[string]string) *Loaded {
	t.Helper()
	l, err := Load("test.yaml", []byte(yaml), fakeKinds{lookup: envOf(env)}, envOf(env))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return l
}

// errorLines returns the messages of the problems in err, one per problem.
func errorLines(err error) []string {
	var out []string
	for _, e := range Flatten(err) {
		out = append(out, e.Error())
	}
	return out
}

// containsLine reports whether one of lines contains want.
func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.Contains(l, want) {
			return true
		}
	}
	return false
}

// ProbeTargets implements TargetLister as probes.Kinds does, for the url and address options.
func (k fakeKinds) ProbeTargets(p *Probe) []Target {
	if a, ok := p.Options["address"].(string); ok && p.Kind == "tcp" {
		return []Target{{Option: "address", Address: a}}
	}
	raw, _ := p.Options["url"].(string)
	u, err := url.Parse(raw)
	if err != nil || u.Port() == "" {
		return nil
	}
	return []Target{{Option: "url", Address: net.JoinHostPort(u.Hostname(), u.Port())}}
}
