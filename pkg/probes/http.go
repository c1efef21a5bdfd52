package probes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/redact"
)

// defaultMaxBodyBytes bounds the body an http probe reads when it needs one (legacy, expectJSON).
const defaultMaxBodyBytes = 1 << 20

// httpMaxRetryAfter caps what a Retry-After can ask of an http probe; the scheduler caps it further.
const httpMaxRetryAfter = 24 * time.Hour

// userAgent tells the dependency's logs who is calling.
const userAgent = "health-agent"

// httpMethods are the methods an http probe may send. CONNECT and TRACE make no sense for a check.
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// httpOptions are the options of the http kind.
type httpOptions struct {
	URL     string                  `mapstructure:"url"`
	Method  string                  `mapstructure:"method"`
	Headers map[string]config.Value `mapstructure:"headers"`
	// ExpectStatus lists the acceptable status codes; empty means any 2xx.
	ExpectStatus []int                 `mapstructure:"expectStatus"`
	ExpectJSON   []jsonConditionOption `mapstructure:"expectJSON"`
	MaxBodyBytes *int64                `mapstructure:"maxBodyBytes"`
	TLS          TLSOptions            `mapstructure:"tls"`
	// FollowRedirects is sameHost (the default: follow redirects that keep the scheme and host), any
	// (follow to any host, without the configured headers) or none.
	FollowRedirects string `mapstructure:"followRedirects"`
}

// The followRedirects policies of the http kind.
const (
	redirectSameHost = "sameHost"
	redirectAny      = "any"
	redirectNone     = "none"
)

type jsonConditionOption struct {
	Path   string `mapstructure:"path"`
	Equals any    `mapstructure:"equals"`
}

// httpProbe requests a URL and checks the status and, optionally, values in the JSON body.
type httpProbe struct {
	url          string
	target       *url.URL // url, parsed: a body from another scheme and host is not the app's
	redirects    string   // followRedirects
	urlSecrets   []string // what the URL itself carries (password, Basic auth, query values)
	method       string
	headers      []httpHeader // sorted by name, resolved at each check so rotated secrets are picked up
	expectStatus []int
	conditions   []jsonCondition
	maxBodyBytes int64
	legacy       bool
	tls          TLSOptions
	lookupEnv    func(string) (string, bool)
	shared       *redact.Secrets
	client       *http.Client
}

type httpHeader struct {
	name       string // canonical
	configName string // as written, for messages that name the option
	value      config.Value
}

func newHTTP(spec Spec) (Probe, error) {
	var o httpOptions
	if err := config.DecodeOptions(spec.Options, &o); err != nil {
		return nil, err
	}
	p := &httpProbe{
		method:       "GET",
		expectStatus: o.ExpectStatus,
		maxBodyBytes: defaultMaxBodyBytes,
		legacy:       spec.Legacy,
		tls:          o.TLS,
		lookupEnv:    spec.Env.LookupEnv,
		shared:       spec.Env.Secrets,
		redirects:    redirectSameHost,
	}
	var errs []error

	u, err := url.Parse(o.URL)
	switch {
	case o.URL == "":
		errs = append(errs, config.Errorf("url", "required"))
	case err != nil:
		errs = append(errs, config.Errorf("url", "must be an absolute http(s) URL, got %q", shownURL(o.URL)))
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, config.Errorf("url", "must be an absolute http(s) URL, got %q", shownURL(o.URL)))
	default:
		p.url, p.target, p.urlSecrets = o.URL, u, urlSecrets(u)
	}
	switch o.FollowRedirects {
	case "":
	case redirectSameHost, redirectAny, redirectNone:
		p.redirects = o.FollowRedirects
	default:
		errs = append(errs, config.Errorf("followRedirects", "must be %s, %s or %s, got %q", redirectSameHost, redirectAny, redirectNone, o.FollowRedirects))
	}

	if o.Method != "" {
		p.method = strings.ToUpper(o.Method)
		if !slices.Contains(httpMethods, p.method) {
			errs = append(errs, config.Errorf("method", "must be one of %s, got %q", strings.Join(httpMethods, ", "), o.Method))
		}
	}
	if p.method == "HEAD" && (spec.Legacy || len(o.ExpectJSON) > 0) {
		errs = append(errs, config.Errorf("method", "HEAD responses have no body, but legacy or expectJSON needs one"))
	}

	seen := map[string]string{} // canonical name -> name as written
	for _, name := range slices.Sorted(maps.Keys(o.Headers)) {
		v := o.Headers[name]
		path := "headers[" + name + "]"
		verr := v.Validate()
		canon := http.CanonicalHeaderKey(name)
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			errs = append(errs, config.Errorf(path, "not a valid header name"))
		case seen[canon] != "":
			errs = append(errs, config.Errorf(path, "duplicate of headers[%s] (header names are case-insensitive)", seen[canon]))
		case verr != nil:
			errs = append(errs, config.Errorf(path, "%v", verr))
		case v.Prefix != "" && !v.IsSecret():
			errs = append(errs, config.Errorf(path+".prefix", "applies only to env or file; write it into value"))
		default:
			seen[canon] = name
			p.headers = append(p.headers, httpHeader{name: canon, configName: name, value: v})
		}
	}

	for i, code := range o.ExpectStatus {
		if code < 100 || code > 599 {
			errs = append(errs, config.Errorf(fmt.Sprintf("expectStatus[%d]", i), "must be an HTTP status 100-599, got %d", code))
		}
	}

	for i, c := range o.ExpectJSON {
		path := fmt.Sprintf("expectJSON[%d]", i)
		if !hasOptionKey(spec.Options, "expectJSON", i, "equals") {
			errs = append(errs, config.Errorf(path+".equals", "required (use null to require a JSON null)"))
			continue
		}
		cond, err := newJSONCondition(c.Path, c.Equals)
		if err != nil {
			errs = append(errs, config.Prefix(path, err))
			continue
		}
		p.conditions = append(p.conditions, cond)
	}

	if o.MaxBodyBytes != nil {
		if *o.MaxBodyBytes <= 0 {
			errs = append(errs, config.Errorf("maxBodyBytes", "must be > 0, got %d", *o.MaxBodyBytes))
		}
		p.maxBodyBytes = *o.MaxBodyBytes
	}

	tlsConf, err := o.TLS.tlsConfig()
	if err != nil {
		errs = append(errs, config.Prefix("tls", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	shareSecrets(p.shared, p.urlSecrets)
	p.client = newClient(clientOptions{TLS: tlsConf, ProxyFromEnv: true, Redirect: p.checkRedirect})
	return p, nil
}

// checkRedirect applies followRedirects, bounded by maxRedirects. A redirect that is not followed
// leaves its 3xx answer as the result, which Check reports. The configured headers (which may carry
// secrets) never go to another host; net/http itself only drops Authorization and Cookie.
func (p *httpProbe) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	switch {
	case p.redirects == redirectNone:
		return http.ErrUseLastResponse
	case sameOrigin(req.URL, via[0].URL):
		return nil
	case p.redirects == redirectSameHost:
		return http.ErrUseLastResponse
	}
	for _, h := range p.headers {
		req.Header.Del(h.name)
	}
	return nil
}

// unfollowed describes a redirect answer that followRedirects kept the probe from following, or "".
func (p *httpProbe) unfollowed(resp *http.Response) string {
	if resp.StatusCode < 300 || resp.StatusCode > 399 {
		return ""
	}
	loc, err := resp.Location()
	if err != nil {
		return ""
	}
	return fmt.Sprintf(": redirect to %s not followed (followRedirects: %s)", shownURL(loc.String()), p.redirects)
}

// Check requests the URL once. A response is healthy when its status is expected and every JSON
// condition holds. The body is read (at most maxBodyBytes) only when a condition or legacy needs it.
func (p *httpProbe) Check(ctx context.Context) (Result, error) {
	res := Result{Status: Unhealthy, Fields: map[string]any{}}
	// The secrets sent with this request (header values, what the URL carries) and the agent's other
	// secrets: a dependency may echo them back (in a body a condition reads, in the app's legacy JSON),
	// and they must not travel on into reasons or responses.
	secrets := slices.Clone(p.urlSecrets)
	fail := func(err error) (Result, error) {
		err = failure(redactURLError(err), withShared(secrets, p.shared))
		if p.legacy && res.Body == nil && res.Fields["legacyError"] == nil {
			res.Fields["legacyError"] = err.Error()
		}
		return res, err
	}

	req, err := http.NewRequestWithContext(ctx, p.method, p.url, nil)
	if err != nil {
		return fail(fmt.Errorf("build request: %w", err))
	}
	req.Header.Set("User-Agent", userAgent)
	for _, h := range p.headers {
		v, err := h.value.Resolve(p.lookupEnv)
		if err != nil {
			// The error names the variable or file, never a value.
			return fail(fmt.Errorf("header %s: %w", h.name, err))
		}
		if h.name == "Host" {
			req.Host = v // net/http ignores a Host entry in req.Header
		} else {
			req.Header.Set(h.name, v)
		}
		if h.value.IsSecret() {
			secrets = appendSecret(secrets, v, h.value.Prefix)
		}
	}
	hidden := shareSecrets(p.shared, secrets)

	resp, err := p.client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer closeBody(resp.Body)
	res.Fields["statusCode"] = resp.StatusCode
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.RetryAfter = RetryAfter(resp.Header.Get("Retry-After"), time.Now(), 0, httpMaxRetryAfter)
		res.RateLimited = resp.StatusCode == http.StatusTooManyRequests
	}

	var body []byte
	if p.legacy || len(p.conditions) > 0 {
		if body, err = readBounded(resp.Body, p.maxBodyBytes); err != nil {
			return fail(err)
		}
	}
	if p.legacy && p.unfollowed(resp) == "" {
		// Kept even when the status is unexpected: an app's 503 body says why it is unhealthy. A
		// redirect's body is not the app's health: the failure below says why there is none.
		body, why := p.legacyBody(resp.Request.URL, body, hidden)
		if why != "" {
			res.Fields["legacyError"] = why
		}
		res.Body = body
	}

	if !p.statusExpected(resp.StatusCode) {
		err := fmt.Errorf("status %d, want %s%s", resp.StatusCode, p.wantStatus(), p.unfollowed(resp))
		if permanentStatus(resp.StatusCode) {
			err = Permanent(err)
		}
		return fail(err)
	}
	if len(p.conditions) > 0 {
		doc, err := decodeJSONBody(body)
		if err != nil {
			return fail(err)
		}
		var failed []string
		var shown any // doc with the secrets redacted, for messages: the verdict is taken on doc itself
		for _, c := range p.conditions {
			if err := c.check(doc); err != nil {
				if len(hidden) > 0 {
					if shown == nil {
						shown = redactJSON(doc, hidden)
					}
					if err = c.check(shown); err == nil {
						err = fmt.Errorf("json %s: unexpected value (withheld: it holds a secret header value)", c.Path)
					}
				}
				failed = append(failed, err.Error())
			}
		}
		if len(failed) > 0 {
			return fail(errors.New(strings.Join(failed, "; ")))
		}
	}
	res.Status = Healthy
	return res, nil
}

// Warnings reports secret headers that are not set yet, and disabled certificate verification.
func (p *httpProbe) Warnings() []string {
	var w []string
	for _, h := range p.headers {
		if !h.value.IsSecret() {
			continue
		}
		if _, err := h.value.Resolve(p.lookupEnv); err != nil {
			w = append(w, fmt.Sprintf("headers[%s]: %v", h.configName, err))
		}
	}
	return append(w, p.tls.warnings()...)
}

func (p *httpProbe) statusExpected(code int) bool {
	if len(p.expectStatus) == 0 {
		return code >= 200 && code <= 299
	}
	return slices.Contains(p.expectStatus, code)
}

func (p *httpProbe) wantStatus() string {
	if len(p.expectStatus) == 0 {
		return "2xx"
	}
	s := make([]string, len(p.expectStatus))
	for i, c := range p.expectStatus {
		s[i] = strconv.Itoa(c)
	}
	if len(s) == 1 {
		return s[0]
	}
	return "one of " + strings.Join(s, ", ")
}

// legacyBody returns the body as /api/health may embed it, or nil and why not. It must be the app's
// own (served by the configured scheme and host, not one a redirect led to), valid UTF-8, valid JSON
// nested at most maxJSONDepth levels, and hold no secret once redacted: whatever parses it (jq, Python,
// a load balancer's check) must be able to, and it must not carry what the probe sent.
func (p *httpProbe) legacyBody(from *url.URL, body []byte, secrets []string) (json.RawMessage, string) {
	switch {
	case from != nil && !sameOrigin(from, p.target):
		return nil, shownMessage(fmt.Sprintf("body came from another host (redirected to %s)", shownURL(from.String())), secrets)
	case !utf8.Valid(body):
		return nil, "body is not valid UTF-8"
	case !json.Valid(body):
		return nil, errBodyNotJSON.Error()
	}
	switch depth, lone := jsonShape(body); {
	case depth > maxJSONDepth:
		return nil, fmt.Sprintf("body nests deeper than %d levels", maxJSONDepth)
	case lone:
		return nil, "body escapes a lone UTF-16 surrogate (\\ud800 without its pair), which some JSON parsers refuse"
	}
	kept := redactBody(body, secrets)
	if !json.Valid(kept) || holdsSecret(kept, secrets) {
		return nil, "body withheld: it holds a secret this agent sends"
	}
	return json.RawMessage(kept), ""
}

// hasOptionKey reports whether raw[list][i] has key (case-insensitively, as DecodeOptions matches),
// which the decoded struct cannot tell apart from an explicit null.
func hasOptionKey(raw map[string]any, list string, i int, key string) bool {
	for k, v := range raw {
		if !strings.EqualFold(k, list) {
			continue
		}
		var item any
		switch l := v.(type) {
		case []any:
			if i < len(l) {
				item = l[i]
			}
		case []map[string]any:
			if i < len(l) {
				item = l[i]
			}
		default:
			return true // a shape DecodeOptions accepted but we cannot see into: do not second-guess it
		}
		m, ok := item.(map[string]any)
		if !ok {
			return true
		}
		for k := range m {
			if strings.EqualFold(k, key) {
				return true
			}
		}
		return false
	}
	return true
}
