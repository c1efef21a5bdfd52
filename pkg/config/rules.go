package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// CheckSelfTargets refuses every critical probe aimed at the agent's own port: listen's port on a
// loopback address (127.0.0.0/8, ::1), localhost, an unspecified address (0.0.0.0, ::, an empty
// host) or listen's own host. Such a probe makes the agent's readiness depend on itself. Validate
// calls it with server.listen; a caller that overrides the listen address (--listen) calls it again
// with the override. The error wraps ErrInvalid and joins one FieldError per target. kinds that do not
// implement TargetLister, and a listen port of 0, check nothing.
func (c *Config) CheckSelfTargets(kinds ProbeKinds, listen string) error {
	tl, ok := kinds.(TargetLister)
	if !ok {
		return nil
	}
	lhost, lport, err := net.SplitHostPort(listen)
	port, perr := strconv.Atoi(lport)
	if err != nil || perr != nil || port == 0 {
		return nil
	}
	var errs []error
	for i := range c.Probes {
		p := &c.Probes[i]
		if !p.Critical {
			continue
		}
		for _, t := range tl.ProbeTargets(p) {
			host, tport, err := net.SplitHostPort(t.Address)
			if n, perr := strconv.Atoi(tport); err != nil || perr != nil || n != port {
				continue
			}
			if !localHost(host) && !(lhost != "" && strings.EqualFold(strings.TrimSuffix(host, "."), strings.TrimSuffix(lhost, "."))) {
				continue
			}
			errs = append(errs, Errorf(fmt.Sprintf("probes[%d].%s", i, t.Option),
				"a critical probe of %s targets the agent's own port (server.listen %q): the agent's readiness would depend on "+
					"itself (its /readyz would wait on its own answer); point it at the dependency, or set critical: false",
				t.Address, listen))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return newInvalid(errs)
}

// localHost reports whether host reaches this machine: loopback, localhost or unspecified.
func localHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "" || h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return a.IsLoopback() || a.IsUnspecified()
}

// credentialHeaders are the headers that carry credentials by name; any header whose name contains
// one of credentialWords does too.
var (
	credentialHeaders = []string{"authorization", "proxy-authorization", "cookie", "x-figma-token", "x-api-key"}
	credentialWords   = []string{"token", "secret", "key", "password"}
)

// CredentialHeader reports whether a header of this name carries credentials, so its value belongs in
// a secret ({env: …} or {file: …}) rather than in the config.
func CredentialHeader(name string) bool {
	n := strings.ToLower(name)
	if slices.Contains(credentialHeaders, n) {
		return true
	}
	for _, w := range credentialWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// literalCredentialHeaders warns about each header of p's `headers` option that carries credentials
// but has a literal value: the secret then sits in the config file (and in every copy of it).
// Headers are options of several kinds (http, mcp), so they are looked at here, for all of them.
func (v *validation) literalCredentialHeaders(path string, p *Probe) {
	for k, raw := range p.Options {
		if !strings.EqualFold(k, "headers") {
			continue
		}
		headers, ok := raw.(map[string]any)
		if !ok {
			continue
		}
		for _, name := range sortedKeys(headers) {
			if !CredentialHeader(name) || !literalValue(headers[name]) {
				continue
			}
			v.warnings = append(v.warnings, fmt.Sprintf(
				"%s.%s[%s]: a literal value for a header that carries credentials puts the secret in the config file; "+
					"reference it instead: %s: {env: VAR} or %s: {file: /path/to/secret} (prefix: \"Bearer \" if needed)",
				path, k, name, name, name))
		}
	}
}

// literalValue reports whether a raw header value is written in the config: a string, or a mapping
// with a value key.
func literalValue(raw any) bool {
	switch x := raw.(type) {
	case string:
		return x != ""
	case map[string]any:
		for k, e := range x {
			if strings.EqualFold(k, "value") && e != nil && e != "" {
				return true
			}
		}
	}
	return false
}
