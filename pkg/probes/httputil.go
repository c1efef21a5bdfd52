package probes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/redact"
)

// Shared plumbing for the kinds that speak HTTP (http, cdp, figma, mcp): the client, body limits,
// Retry-After, and how a dependency's text is cleaned before it is kept.

// ErrBodyTooLarge means a response body was larger than the probe is willing to read.
var ErrBodyTooLarge = errors.New("body too large")

// maxRedirects bounds the redirects an HTTP probe follows: a health endpoint that redirects more
// than this is misconfigured, and following further would only hide it.
const maxRedirects = 3

// TLSOptions are the `tls` options of an HTTP-speaking kind.
type TLSOptions struct {
	// CAFile is a PEM bundle that replaces the system roots (a private CA). It is read once, when the
	// probe is built: a rotated CA needs a config reload.
	CAFile             string `mapstructure:"caFile"`
	InsecureSkipVerify bool   `mapstructure:"insecureSkipVerify"`
}

// tlsConfig validates o and builds the client TLS config. Errors are FieldErrors relative to `tls`.
func (o TLSOptions) tlsConfig() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // opt-in, warned about
	if o.CAFile == "" {
		return c, nil
	}
	pool, err := config.LoadCAFile(o.CAFile)
	if err != nil {
		return nil, config.Errorf("caFile", "%v", err)
	}
	c.RootCAs = pool
	return c, nil
}

// warnings reports TLS settings an operator should know about. Paths are relative to the probe.
func (o TLSOptions) warnings() []string {
	if o.InsecureSkipVerify {
		return []string{"tls.insecureSkipVerify: server certificates are not verified"}
	}
	return nil
}

// clientOptions are what the HTTP-speaking kinds (http, cdp, figma, mcp) choose of their client; every
// other setting is the same for all of them.
type clientOptions struct {
	// TLS is the client TLS config; nil: the system roots, TLS 1.2 at least.
	TLS *tls.Config
	// ProxyFromEnv sends requests through HTTP(S)_PROXY; off for dependencies inside the pod or cluster.
	ProxyFromEnv bool
	// KeepAlives keeps connections open between the requests of one check (an MCP session sends
	// several). Off, each request opens a fresh connection: it sees what a new client would (a full
	// accept queue, a broken TLS setup), and nothing idles between checks.
	KeepAlives bool
	// Redirect decides on each redirect (http.Client.CheckRedirect); nil: never follow one, the 3xx
	// answer is the result.
	Redirect func(req *http.Request, via []*http.Request) error
	// Dial replaces the dialer (to track or cut a check's connections); nil: a plain net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// maxResponseHeaderBytes bounds the headers of any answer: a health endpoint's are well under 8 KiB.
const maxResponseHeaderBytes = 64 << 10

// newTransport builds the transport described by o. Deadlines come from the ctx of each request.
func newTransport(o clientOptions) *http.Transport {
	tr := &http.Transport{
		TLSClientConfig:        o.TLS,
		DisableKeepAlives:      !o.KeepAlives,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		DialContext:            o.Dial,
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if o.ProxyFromEnv {
		tr.Proxy = http.ProxyFromEnvironment
	}
	if tr.DialContext == nil {
		tr.DialContext = (&net.Dialer{}).DialContext
	}
	return tr
}

// newClient builds the client of one probe from o.
func newClient(o clientOptions) *http.Client {
	redirect := o.Redirect
	if redirect == nil {
		redirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &http.Client{Transport: newTransport(o), CheckRedirect: redirect}
}

// sameOrigin reports whether two URLs have the same scheme and host (port included).
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}

// readBounded reads r up to limit bytes. A longer body gives ErrBodyTooLarge after reading at most
// limit+1 bytes, so an endless body costs a bounded amount of memory and time.
func readBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, bodyTooLargeError{limit}
	}
	return b, nil
}

type bodyTooLargeError struct{ limit int64 }

func (e bodyTooLargeError) Error() string        { return fmt.Sprintf("body exceeds %d bytes", e.limit) }
func (e bodyTooLargeError) Is(target error) bool { return target == ErrBodyTooLarge }

// closeBody discards a little of what is left of a body and closes it. The bound keeps a slow or
// endless body from holding the probe.
func closeBody(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
	_ = body.Close()
}

// RetryAfter reads a Retry-After value (delay-seconds or an HTTP date, RFC 9110 §10.2.3) relative
// to now. An absent, malformed or negative value gives def, a date in the past 0; the result is at most
// limit.
func RetryAfter(v string, now time.Time, def, limit time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	d := def
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs >= 0 {
			d = time.Duration(min(secs, int64(limit/time.Second))) * time.Second
		}
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(now), 0)
	}
	return min(d, limit)
}

// appendSecret adds a resolved secret value to secrets, and the raw secret without its configured
// prefix ("Bearer "), which a dependency may echo alone.
func appendSecret(secrets []string, value, prefix string) []string {
	if value != "" {
		secrets = append(secrets, value)
	}
	if raw := strings.TrimPrefix(value, prefix); prefix != "" && raw != value && raw != "" {
		secrets = append(secrets, raw)
	}
	return secrets
}

// shareSecrets adds a probe's secrets to the agent-wide set, so that another dependency that echoes
// them is cleaned of them too, and returns what the probe hides from a dependency's text: its own
// secrets plus the set's. Values shorter than redact.MinRun stay with the probe alone: the set hides a
// short value wherever it occurs whole, and "1" or "json" would garble every other probe's text.
func shareSecrets(set *redact.Secrets, secrets []string) []string {
	set.Add(longSecrets(secrets)...)
	return withShared(secrets, set)
}

// urlSecrets are the secrets a configured URL carries: its password, base64(user:password) as Basic
// auth sends it, and its query values of redact.MinRun bytes or more (an API key is often put there;
// shorter values such as "1" are flags, not secrets).
func urlSecrets(u *url.URL) []string {
	var out []string
	if pw, ok := u.User.Password(); ok && pw != "" {
		out = append(out, pw, base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw)))
		if esc := url.QueryEscape(pw); esc != pw {
			out = append(out, esc)
		}
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if len(v) >= redact.MinRun {
				out = append(out, v)
				if esc := url.QueryEscape(v); esc != v {
					out = append(out, esc)
				}
			}
		}
	}
	return out
}

// withShared returns secrets plus the agent-wide set's values.
func withShared(secrets []string, set *redact.Secrets) []string {
	shared := set.List()
	if len(shared) == 0 {
		return secrets
	}
	return append(slices.Clip(secrets), shared...)
}

// failure is how a kind returns a failed check's error: marked permanent when no retry can change it
// (see isPermanent), its message as people may see it (secrets hidden, even in pieces, then cut to
// redact.MaxText on a rune boundary). errors.Is and errors.As still see the cause.
func failure(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	if isPermanent(err) && !errors.Is(err, ErrPermanent) {
		err = Permanent(err)
	}
	msg := redact.Shown(err.Error(), secrets, redact.MaxText)
	if msg == err.Error() {
		return err
	}
	return &shownError{msg: msg, err: err}
}

// isPermanent reports a failure that a retry within the same execution cannot change: one already
// marked, a secret that is not there, a certificate that does not verify.
func isPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) || errors.Is(err, config.ErrSecretAbsent) || tlsVerifyFailed(err)
}

// tlsVerifyFailed reports whether err is a failure to verify the server's certificate.
func tlsVerifyFailed(err error) bool {
	var (
		unknown   x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifying *tls.CertificateVerificationError
	)
	return errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verifying)
}

// permanentStatus reports an HTTP status that a retry cannot change: the request or its credentials
// are wrong, or the resource is not there.
func permanentStatus(code int) bool {
	switch code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusGone, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// shownError carries a message cleaned for people and the error it came from, for errors.Is and
// errors.As only: it has no Unwrap, so the original text cannot be reached by unwrapping.
type shownError struct {
	msg string
	err error
}

func (e *shownError) Error() string        { return e.msg }
func (e *shownError) Is(target error) bool { return errors.Is(e.err, target) }
func (e *shownError) As(target any) bool   { return errors.As(e.err, target) }

// shownURL is a URL as people may see it: its password and the values of its query hidden (an API key
// is often put there), its fragment dropped. A URL that does not parse is cut before any user info and
// query, so a config error never echoes what they held.
func shownURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i] + "?" + redact.Mask
		}
		if i := strings.Index(raw, "://"); i >= 0 {
			if at := strings.LastIndex(raw[i+3:], "@"); at >= 0 {
				raw = raw[:i+3] + redact.Mask + raw[i+3+at:]
			}
		}
		return raw
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, part := range parts {
			if k, v, ok := strings.Cut(part, "="); ok && v != "" {
				parts[i] = k + "=" + redact.Mask
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	return u.Redacted()
}

// redactURLError hides, in a *url.Error (what net/http returns), what shownURL hides: net/http strips
// the password, but not the query.
func redactURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		ue.URL = shownURL(ue.URL)
	}
	return err
}

// maxShownText bounds a short string a dependency chose (a server's name, a tool's name, a user handle)
// when it is put in a field: it is input, and it is served on every request until the next check.
const maxShownText = 256

// shownText is a dependency's short string as a field shows it: secrets hidden, at most maxShownText
// bytes, cut on a rune boundary.
func shownText(s string, secrets []string) string {
	return redact.Shown(s, secrets, maxShownText)
}

// shownMessage is a dependency's message (an error, a reason) as it is kept: secrets hidden, at most
// redact.MaxText bytes.
func shownMessage(s string, secrets []string) string {
	return redact.Shown(s, secrets, redact.MaxText)
}

// longSecrets are the secrets of redact.MinRun bytes or more: the ones redacted from a body and shared
// with other probes. Any env or file value counts as a secret, and a short one ("1", "json") would
// garble a legacy body (or have it withheld) wherever those bytes occur; messages, which it cannot
// garble in a harmful way, are redacted of every length.
func longSecrets(secrets []string) []string {
	var out []string
	for _, s := range secrets {
		if len(s) >= redact.MinRun {
			out = append(out, s)
		}
	}
	return out
}

// redactBody hides the secrets (any redact.MinRun-byte piece of one) in a raw body. The result may no
// longer be valid JSON (a secret that was a number): the caller checks.
func redactBody(b []byte, secrets []string) []byte {
	secrets = longSecrets(secrets)
	if len(secrets) == 0 {
		return b
	}
	if s := redact.Text(string(b), secrets); s != string(b) {
		return []byte(s)
	}
	return b
}

// redactJSON returns a copy of a decoded JSON document with the secrets hidden in every string, keys
// included.
func redactJSON(v any, secrets []string) any {
	switch x := v.(type) {
	case string:
		return redact.Text(x, secrets)
	case json.Number:
		if s := redact.Text(string(x), secrets); s != string(x) {
			return s
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactJSON(e, secrets)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[redact.Text(k, secrets)] = redactJSON(e, secrets)
		}
		return out
	default:
		return v
	}
}

// holdsSecret reports whether a JSON body still holds a secret once decoded (one written with escapes,
// which redactBody cannot see).
func holdsSecret(body []byte, secrets []string) bool {
	secrets = longSecrets(secrets)
	if len(secrets) == 0 {
		return false
	}
	doc, err := decodeJSONBody(body)
	if err != nil {
		return false
	}
	var holds func(v any) bool
	holds = func(v any) bool {
		switch x := v.(type) {
		case string:
			return redact.Text(x, secrets) != x
		case json.Number:
			return redact.Text(string(x), secrets) != string(x)
		case []any:
			for _, e := range x {
				if holds(e) {
					return true
				}
			}
		case map[string]any:
			for k, e := range x {
				if holds(k) || holds(e) {
					return true
				}
			}
		}
		return false
	}
	return holds(doc)
}

// maxJSONDepth is the deepest nesting of a legacy body that is embedded: parsers that read
// /api/health (jq, Python, browsers) have depth limits of their own, and an app's health needs few.
const maxJSONDepth = 64

// jsonShape scans a valid JSON document for what some parsers refuse although encoding/json takes it:
// its deepest nesting of arrays and objects, and whether a string holds a \u escape of a lone UTF-16
// surrogate ("\ud800" alone), which jq rejects.
func jsonShape(b []byte) (depth int, loneSurrogate bool) {
	level, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '"':
			inString = false
		case inString && c == '\\':
			i++
			if i < len(b) && b[i] == 'u' {
				r := hexRune(b[i+1:])
				switch {
				case r >= 0xD800 && r <= 0xDBFF:
					if len(b) < i+11 || b[i+5] != '\\' || b[i+6] != 'u' {
						loneSurrogate = true
					} else if lo := hexRune(b[i+7:]); lo < 0xDC00 || lo > 0xDFFF {
						loneSurrogate = true
					} else {
						i += 6
					}
				case r >= 0xDC00 && r <= 0xDFFF:
					loneSurrogate = true
				}
				i += 4
			}
		case inString:
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			level++
			depth = max(depth, level)
		case c == ']' || c == '}':
			level--
		}
	}
	return depth, loneSurrogate
}

// hexRune reads the 4 hex digits at the start of b (a valid document has them after \u).
func hexRune(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	if err != nil {
		return -1
	}
	return rune(n)
}
