package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"golang.org/x/net/http/httpguts"
)

// Built-in values of the egress section.
const (
	DefaultEgressListen  = "127.0.0.1:3009"
	DefaultEgressTimeout = 30 * time.Second
)

// DefaultEgressRetry is a route's retry policy when it sets none (key by key): GET, HEAD and OPTIONS
// are tried once more after a connection failure or a 502, 503 or 504.
func DefaultEgressRetry() Retry {
	return Retry{MaxRetries: 1, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second, Jitter: 0.2}
}

// Egress is the opt-in egress proxy: a second listener through which the app's own calls to its
// dependencies pass, each route sharing a circuit breaker with the probes that name it. Nil: off.
type Egress struct {
	// Listen is the proxy's address; it must be a loopback address unless AllowNonLoopback is set.
	Listen string `mapstructure:"listen"`
	// AllowNonLoopback lets Listen be reachable from outside the pod. Anyone who reaches it can spend
	// the injected credentials, so it is off by default.
	AllowNonLoopback bool          `mapstructure:"allowNonLoopback"`
	Routes           []EgressRoute `mapstructure:"routes"`
}

// EgressRoute forwards the requests under Prefix to Upstream.
type EgressRoute struct {
	Name string `mapstructure:"name"`
	// Prefix is the path the app calls ("/figma/"): it starts and ends with "/". A request for
	// Prefix+"x" goes to Upstream's path + "/x"; one for Prefix without its last "/" to Upstream's path.
	Prefix   string `mapstructure:"prefix"`
	Upstream string `mapstructure:"upstream"`
	// Breaker names the circuit breaker; empty means the route's name. A breaker a probe also names
	// is shared, with that probe's policy; any other takes `defaults.breaker`.
	Breaker string `mapstructure:"breaker"`
	// Timeout bounds the wait for the upstream's response headers, retries included. Bodies, event
	// streams and websockets then flow for as long as both ends keep them open.
	Timeout time.Duration `mapstructure:"timeout"`
	Retry   Retry         `mapstructure:"retry"`
	// Headers are set on every request of this route (replacing what the app sent), e.g. a token read
	// from a Secret, so that the app need not hold it.
	Headers map[string]Value `mapstructure:"headers"`
	TLS     TLS              `mapstructure:"tls"`
}

// TLS are the client TLS options toward an upstream, as the probes have them.
type TLS struct {
	// CAFile is a PEM bundle that replaces the system roots (a private CA).
	CAFile             string `mapstructure:"caFile"`
	InsecureSkipVerify bool   `mapstructure:"insecureSkipVerify"`
}

// BreakerName returns the name of the breaker guarding r.
func (r *EgressRoute) BreakerName() string {
	if r.Breaker != "" {
		return r.Breaker
	}
	return r.Name
}

// decodeEgress lays the built-in values under the section's keys, route by route, and decodes it
// strictly (no weak typing), with header names as written. Nil: no egress.
func (l *loader) decodeEgress(raw any) *Egress {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil // absent or null; another shape was reported by canon
	}
	r := DefaultEgressRetry()
	mergeUnder(m, map[string]any{"listen": DefaultEgressListen})
	routes, _ := m["routes"].([]any)
	for _, e := range routes {
		rm, ok := e.(map[string]any)
		if !ok {
			continue
		}
		mergeUnder(rm, map[string]any{
			"timeout": DefaultEgressTimeout,
			"retry": map[string]any{
				"maxRetries": r.MaxRetries, "backoff": r.Backoff, "maxBackoff": r.MaxBackoff, "jitter": r.Jitter,
			},
		})
	}
	var out Egress
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:      &out,
		ErrorUnused: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.DecodeHookFuncType(durationHook),
			stringToValueHook,
		),
	})
	if err != nil {
		l.fail("egress", "%v", err)
		return &out
	}
	for _, e := range decodeLeaves(dec.Decode(m)) {
		fe := translateDecodeError(e)
		l.add(&FieldError{Path: joinPath("egress", fe.Path), Msg: fe.Msg})
	}
	return &out
}

// egress checks the egress section: every problem with its path, warnings for what runs but should
// be looked at.
func (v *validation) egress(c *Config) {
	e := c.Egress
	if e == nil {
		return
	}
	v.egressListen(e, c.Server.Listen)
	if len(e.Routes) == 0 {
		v.fail("egress.routes", "at least one route is required (leave egress out to turn the proxy off)")
	}
	names := map[string]int{}
	prefixes := map[int]string{}
	for i := range e.Routes {
		r := &e.Routes[i]
		at := fmt.Sprintf("egress.routes[%d]", i)
		if v.name(at+".name", r.Name) {
			if j, dup := names[r.Name]; dup {
				v.fail(at+".name", "duplicate name %q: egress.routes[%d] already has it", r.Name, j)
			} else {
				names[r.Name] = i
			}
		}
		if v.routePrefix(at+".prefix", r.Prefix) {
			for j, p := range prefixes {
				if strings.HasPrefix(r.Prefix, p) || strings.HasPrefix(p, r.Prefix) {
					v.fail(at+".prefix", "%s overlaps egress.routes[%d].prefix %s: a request must match one route",
						quoteShort(r.Prefix), j, quoteShort(p))
				}
			}
			prefixes[i] = r.Prefix
		}
		v.routeUpstream(at+".upstream", r.Upstream)
		if r.Breaker != "" && !validName(r.Breaker) {
			v.fail(at+".breaker", "a breaker name must match [a-zA-Z0-9_-]+, got %s", quoteShort(r.Breaker))
		}
		v.positive(at+".timeout", r.Timeout)
		v.retry(at+".retry", r.Retry)
		v.routeHeaders(at+".headers", r.Headers)
		v.routeTLS(at+".tls", r.TLS)
	}
}

func (v *validation) egressListen(e *Egress, serverListen string) {
	const at = "egress.listen"
	if !validListen(e.Listen) {
		v.fail(at, `must be host:port with a port in 0-65535, like "127.0.0.1:3009", got %s`, quoteShort(e.Listen))
		return
	}
	host, port, _ := net.SplitHostPort(e.Listen)
	if !e.AllowNonLoopback && !isLoopback(host) {
		v.fail(at, "must be a loopback address like %q, so that only the app in the pod can spend the routes' credentials; "+
			"set egress.allowNonLoopback: true to listen on %s, got %s", DefaultEgressListen, quoteShort(e.Listen), quoteShort(e.Listen))
	}
	if sh, sp, err := net.SplitHostPort(serverListen); err == nil && sp == port && port != "0" && (sh == "" || host == "" || sh == host) {
		v.fail(at, "%s collides with server.listen %s: use another port", quoteShort(e.Listen), quoteShort(serverListen))
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// routePrefix checks a route's prefix and reports whether it is usable for the overlap check.
func (v *validation) routePrefix(at, p string) bool {
	switch {
	case p == "":
		v.fail(at, `is required, e.g. "/figma/"`)
	case !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || p == "/":
		v.fail(at, `must start and end with "/" and name at least one path segment, like "/figma/", got %s`, quoteShort(p))
	case path.Clean(p)+"/" != p || strings.ContainsFunc(p, func(c rune) bool { return !prefixChar(c) }):
		v.fail(at, `must be a clean path of letters, digits and "-._~" segments, like "/figma/", got %s`, quoteShort(p))
	default:
		return true
	}
	return false
}

func prefixChar(c rune) bool {
	return c == '/' || c == '-' || c == '.' || c == '_' || c == '~' ||
		c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (v *validation) routeUpstream(at, s string) {
	if s == "" {
		v.fail(at, "is required, an http(s) URL like https://api.figma.com")
		return
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Opaque != "":
		v.fail(at, "must be an absolute http(s) URL like https://api.figma.com")
	case u.User != nil:
		// The URL is not shown: it holds a credential.
		v.fail(at, "must not hold credentials (user:password@): inject them with headers from a Secret")
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		v.fail(at, "must be an absolute http(s) URL like https://api.figma.com, got %s", quoteShort(s))
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		v.fail(at, "must not have a query or a fragment: the app's request supplies them")
	}
}

func (v *validation) retry(at string, r Retry) {
	v.atLeast(at+".maxRetries", r.MaxRetries, 0)
	if r.MaxRetries > 0 {
		if r.Backoff <= 0 {
			v.fail(at+".backoff", "must be > 0 when maxRetries > 0, got %s", r.Backoff)
		} else if r.MaxBackoff < r.Backoff {
			v.fail(at+".maxBackoff", "must be >= backoff (%s), got %s", r.Backoff, r.MaxBackoff)
		}
	}
	v.fraction(at+".jitter", r.Jitter)
}

// forbiddenHeaders are the headers a route may not set: the connection's own (RFC 9110 §7.6.1) and
// those the proxy derives from the request.
var forbiddenHeaders = []string{"Connection", "Content-Length", "Host", "Keep-Alive", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (v *validation) routeHeaders(at string, headers map[string]Value) {
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	slices.Sort(names)
	seen := map[string]string{}
	for _, name := range names {
		val := headers[name]
		p := at + "[" + name + "]"
		canon := textproto.CanonicalMIMEHeaderKey(name)
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			v.fail(p, "not a valid header name")
			continue
		case slices.Contains(forbiddenHeaders, canon):
			v.fail(p, "the proxy manages %s itself; it cannot be set", canon)
			continue
		case seen[canon] != "":
			v.fail(p, "duplicate of header %q (header names are case-insensitive)", seen[canon])
			continue
		}
		seen[canon] = name
		if err := val.Validate(); err != nil {
			v.fail(p, "%v", err)
			continue
		}
		if val.Prefix != "" && !val.IsSecret() {
			v.fail(p+".prefix", "applies only to env or file; write it into value")
			continue
		}
		if !val.IsSecret() && CredentialHeader(name) {
			v.warnings = append(v.warnings, p+": written in the file; reference a secret instead, e.g. {env: VAR} or {file: /path}")
		}
	}
}

func (v *validation) routeTLS(at string, t TLS) {
	if t.InsecureSkipVerify {
		v.warnings = append(v.warnings, at+".insecureSkipVerify: upstream certificates are not verified")
	}
	if t.CAFile == "" {
		return
	}
	if _, err := LoadCAFile(t.CAFile); err != nil {
		v.fail(at+".caFile", "%v", err)
	}
}

// maxCABytes bounds a caFile: a full public bundle is about 200 KB.
const maxCABytes = 1 << 20

// LoadCAFile reads a PEM bundle (at most 1 MiB) into a certificate pool.
func LoadCAFile(file string) (*x509.CertPool, error) {
	pem, err := ReadFile(file, maxCABytes)
	if err != nil {
		if u := errors.Unwrap(err); u != nil {
			err = u
		}
		return nil, fmt.Errorf("cannot read %q: %w", file, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %q", file)
	}
	return pool, nil
}

// egressSecretWarnings names the routes' header secrets that are absent now: the agent starts, and
// the route answers 503 secret_absent until they appear.
func (c *Config) egressSecretWarnings(lookup func(string) (string, bool)) []string {
	if c.Egress == nil {
		return nil
	}
	var out []string
	for i, r := range c.Egress.Routes {
		names := make([]string, 0, len(r.Headers))
		for name := range r.Headers {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			v := r.Headers[name]
			if !v.IsSecret() || v.Validate() != nil {
				continue
			}
			if _, err := v.Resolve(lookup); errors.Is(err, ErrSecretAbsent) {
				out = append(out, fmt.Sprintf("egress.routes[%d].headers[%s]: %v; the route answers 503 until it is", i, name, err))
			}
		}
	}
	return out
}
