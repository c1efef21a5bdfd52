package probes

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
)

// Shared plumbing for the kinds that speak HTTP (http, and any other kind that wants it).

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
	pem, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, config.Errorf("caFile", "cannot read %q: %v", o.CAFile, errors.Unwrap(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, config.Errorf("caFile", "no PEM certificate in %q", o.CAFile)
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

// newHTTPClient builds the client of one probe. Keep-alives are off on purpose: each check opens a
// fresh connection, so it sees what a new client would (a full accept queue, a broken TLS setup), and
// a probe that is dropped on reload leaves no idle connection or goroutine behind. Deadlines come
// from the ctx of each request. The hostBound headers (which may carry secrets) are dropped when a
// redirect leads to another host; net/http itself only drops Authorization and Cookie.
func newHTTPClient(tlsConf *tls.Config, hostBound []string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			TLSClientConfig:        tlsConf,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			if orig := via[0].URL; req.URL.Host != orig.Host || req.URL.Scheme != orig.Scheme {
				for _, name := range hostBound {
					req.Header.Del(name)
				}
			}
			return nil
		},
	}
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

// retryAfter parses a Retry-After header (delay-seconds or an HTTP date, RFC 9110 §10.2.3) relative to
// now. It returns 0 when the header is absent, malformed or in the past.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// redacted replaces a secret in text shown to people.
const redacted = "[redacted]"

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

// redactError returns err with every secret replaced, keeping errors.Is working without unwrapping to
// the original text.
func redactError(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := redactText(err.Error(), secrets)
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

// shownURL is a URL as people may see it: its password and the values of its query hidden (an API key
// is often put there), its fragment dropped. A URL that does not parse is cut before any user info and
// query, so a config error never echoes what they held.
func shownURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i] + "?" + redacted
		}
		if i := strings.Index(raw, "://"); i >= 0 {
			if at := strings.LastIndex(raw[i+3:], "@"); at >= 0 {
				raw = raw[:i+3] + redacted + raw[i+3+at:]
			}
		}
		return raw
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, part := range parts {
			if k, v, ok := strings.Cut(part, "="); ok && v != "" {
				parts[i] = k + "=" + redacted
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

// maxShownText bounds a string a dependency chose (a server's name, a user handle) when it is put in a
// field: it is input, and it is served on every request until the next check.
const maxShownText = 256

// shownText is a dependency's string as a field shows it: the secrets sent to it replaced, at most
// maxShownText bytes (cut at a rune boundary, marked with an ellipsis).
func shownText(s string, secrets []string) string {
	return clipText(redactText(s, secrets), maxShownText)
}

func redactText(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

// minBodySecret is the shortest header value redacted from a body. Any env or file value counts as a
// secret, and a short one ("1", "json") would garble a legacy body (or have it withheld) wherever those
// bytes occur; messages, which it cannot garble in a harmful way, are redacted of every length.
const minBodySecret = 8

// bodySecrets are the secrets long enough to redact from a body.
func bodySecrets(secrets []string) []string {
	var out []string
	for _, s := range secrets {
		if len(s) >= minBodySecret {
			out = append(out, s)
		}
	}
	return out
}

// redactBody replaces the secrets in a raw body. The result may no longer be valid JSON (a secret that
// was a number): the caller checks.
func redactBody(b []byte, secrets []string) []byte {
	for _, sec := range bodySecrets(secrets) {
		if bytes.Contains(b, []byte(sec)) {
			b = bytes.ReplaceAll(b, []byte(sec), []byte(redacted))
		}
	}
	return b
}

// redactJSON returns a copy of a decoded JSON document with the secrets replaced in every string, keys
// included.
func redactJSON(v any, secrets []string) any {
	switch x := v.(type) {
	case string:
		return redactText(x, secrets)
	case json.Number:
		if s := redactText(string(x), secrets); s != string(x) {
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
			out[redactText(k, secrets)] = redactJSON(e, secrets)
		}
		return out
	default:
		return v
	}
}

// holdsSecret reports whether a JSON body still holds a secret once decoded (one written with escapes,
// which redactBody cannot see).
func holdsSecret(body []byte, secrets []string) bool {
	secrets = bodySecrets(secrets)
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
			return redactText(x, secrets) != x
		case json.Number:
			return redactText(string(x), secrets) != string(x)
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
