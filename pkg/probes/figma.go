package probes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/redact"
)

const (
	figmaDefaultURL = "https://api.figma.com"
	// figmaMaxBody bounds what the probe reads of a response (/v1/me is a few hundred bytes).
	figmaMaxBody = 64 << 10
	// figmaDefaultRetryAfter applies when a 429 carries no usable Retry-After.
	figmaDefaultRetryAfter = 60 * time.Second
	// figmaMaxRetryAfter caps what a 429 can ask for, so a bogus header cannot park the probe for days.
	figmaMaxRetryAfter = time.Hour
)

// ErrFigmaTokenRejected means Figma answered 401 or 403 to /v1/me: the token is invalid, expired or
// revoked.
var ErrFigmaTokenRejected = errors.New("token rejected")

// figmaOptions are the options of the figma kind.
type figmaOptions struct {
	URL  string `mapstructure:"url"`
	Auth string `mapstructure:"auth"`
	// Token is {env: VAR}, {file: /path}, or both (the variable first, the file when it is unset).
	Token config.Value `mapstructure:"token"`
	// TokenEnv and TokenFile are the deprecated spelling of Token; nil when not written.
	TokenEnv  *string `mapstructure:"tokenEnv"`
	TokenFile *string `mapstructure:"tokenFile"`
}

// figmaDefaultToken is where the token comes from when the config does not say.
var figmaDefaultToken = config.Value{Env: "FIGMA_TOKEN"}

// figmaProbe asks Figma who the token belongs to (GET /v1/me): the cheapest call that proves the API is
// up and the token is accepted.
type figmaProbe struct {
	endpoint string // {url}/v1/me
	insecure bool   // plain http to a host that is not loopback
	oauth    bool
	tokenRef config.Value // env and/or file, resolved at every check
	// deprecated is the warning for tokenEnv/tokenFile, naming the token form that replaces them.
	deprecated string
	lookup     func(string) (string, bool)
	client     *http.Client
	now        func() time.Time
	shared     *redact.Secrets
}

func newFigma(spec Spec) (Probe, error) {
	o := figmaOptions{URL: figmaDefaultURL, Auth: "personal"}
	if err := config.DecodeOptions(spec.Options, &o); err != nil {
		return nil, err
	}
	var errs []error
	var endpoint string
	var insecure bool
	u, err := url.Parse(o.URL)
	switch {
	case o.URL == "":
		errs = append(errs, config.Errorf("url", "must not be empty (default %s)", figmaDefaultURL))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, config.Errorf("url", "must be an absolute http or https URL, got %q", shownURL(o.URL)))
	case u.User != nil:
		errs = append(errs, config.Errorf("url", "must not carry credentials (user:password@)"))
	case u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, config.Errorf("url", "must be a base URL without query or fragment, got %q", shownURL(o.URL)))
	default:
		endpoint = u.JoinPath("v1", "me").String()
		insecure = u.Scheme == "http" && !figmaIsLoopback(u.Hostname())
	}
	switch o.Auth {
	case "personal", "oauth":
	default:
		errs = append(errs, config.Errorf("auth", "must be personal (X-Figma-Token) or oauth (Authorization: Bearer), got %q", o.Auth))
	}
	token, deprecated, err := figmaTokenOption(o, hasOption(spec.Options, "token"))
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	lookup := spec.Env.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return &figmaProbe{
		endpoint:   endpoint,
		insecure:   insecure,
		oauth:      o.Auth == "oauth",
		tokenRef:   token,
		deprecated: deprecated,
		lookup:     lookup,
		// No redirect is followed: X-Figma-Token is not stripped on a cross-host redirect.
		client: newClient(clientOptions{ProxyFromEnv: true}),
		now:    time.Now,
		shared: spec.Env.Secrets,
	}, nil
}

// figmaTokenOption returns where the token comes from: `token` (written says the key is there, even
// as `token: {}`), the deprecated tokenEnv/tokenFile (with the warning that names the form replacing
// them), or FIGMA_TOKEN when neither is written.
func figmaTokenOption(o figmaOptions, written bool) (token config.Value, deprecated string, err error) {
	legacy := o.TokenEnv != nil || o.TokenFile != nil
	switch {
	case written && legacy:
		return token, "", config.Errorf("token", "set token or the deprecated tokenEnv/tokenFile, not both")
	case written:
		if err := o.Token.ValidateSecret(); err != nil {
			return token, "", config.Errorf("token", "%v", err)
		}
		if o.Token.Prefix != "" {
			return token, "", config.Errorf("token.prefix", "not used by the figma kind: auth chooses the header (personal: X-Figma-Token, oauth: Authorization: Bearer)")
		}
		return o.Token, "", nil
	case !legacy:
		return figmaDefaultToken, "", nil
	}
	// tokenEnv defaulted to FIGMA_TOKEN when only tokenFile was written.
	token = config.Value{Env: figmaDefaultToken.Env}
	key := "tokenFile"
	if o.TokenEnv != nil {
		token.Env, key = strings.TrimSpace(*o.TokenEnv), "tokenEnv"
	}
	if o.TokenFile != nil {
		token.File = strings.TrimSpace(*o.TokenFile)
	}
	if token.Env == "" && token.File == "" {
		return token, "", config.Errorf("tokenEnv", "set tokenEnv or tokenFile: the token is never written in the config")
	}
	var form []string
	if token.Env != "" {
		form = append(form, "env: "+token.Env)
	}
	if token.File != "" {
		form = append(form, "file: "+token.File)
	}
	return token, fmt.Sprintf("%s: tokenEnv and tokenFile are deprecated; write token: {%s} instead", key, strings.Join(form, ", ")), nil
}

// hasOption reports whether options hold key with a value (option keys match case-insensitively; null
// means not set).
func hasOption(options map[string]any, key string) bool {
	for k, v := range options {
		if strings.EqualFold(k, key) && v != nil {
			return true
		}
	}
	return false
}

func figmaIsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Warnings reports a token that is not there yet, a token that would travel in clear, and the
// deprecated tokenEnv/tokenFile.
func (p *figmaProbe) Warnings() []string {
	var out []string
	if p.deprecated != "" {
		out = append(out, p.deprecated)
	}
	if _, _, err := p.token(); err != nil {
		out = append(out, fmt.Sprintf("figma: %v; the probe reports unhealthy until it is", err))
	}
	if p.insecure {
		out = append(out, "figma: url is plain http to a remote host: the token would travel unencrypted")
	}
	return out
}

// token reads the token now, so a rotated or late-mounted Secret is picked up: the variable first, the
// file when the variable is unset or empty. source names where it came from, never what it is.
func (p *figmaProbe) token() (token, source string, err error) {
	t, source, err := p.tokenRef.ResolveSource(p.lookup)
	if err != nil {
		return "", "", fmt.Errorf("no Figma token: %w", err)
	}
	return p.checkToken(strings.TrimSpace(t), source)
}

// checkToken rejects what cannot be sent as a header value, naming the source, not the value (net/http
// would otherwise fail with a less helpful error).
func (p *figmaProbe) checkToken(t, source string) (string, string, error) {
	if !httpguts.ValidHeaderFieldValue(t) {
		return "", "", fmt.Errorf("the Figma token from %s contains control characters", source)
	}
	return t, source, nil
}

// figmaMe is the part of Figma's /v1/me answer the probe reads. The email is deliberately not read.
type figmaMe struct {
	Handle string `json:"handle"`
}

// Check calls GET /v1/me. 200 is healthy, 429 degraded (the API is up, the budget is spent), 401/403
// mean the token is rejected, anything else is a failure. A rejected token, a missing token and a
// certificate that does not verify are permanent: a retry cannot change them.
func (p *figmaProbe) Check(ctx context.Context) (Result, error) {
	fields := map[string]any{"rateLimited": false, "retryAfterSeconds": 0}
	res := Result{Status: Healthy, Fields: fields}
	token, source, err := p.token()
	if err != nil {
		return res, failure(fmt.Errorf("figma: %w", err), p.shared.List())
	}
	fields["tokenSource"] = source
	secrets := shareSecrets(p.shared, []string{token})

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.endpoint, nil)
	if err != nil {
		return res, failure(fmt.Errorf("figma: %w", err), secrets)
	}
	if p.oauth {
		req.Header.Set("Authorization", "Bearer "+token)
	} else {
		req.Header.Set("X-Figma-Token", token)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := p.client.Do(req)
	if err != nil {
		return res, failure(fmt.Errorf("figma: GET /v1/me: %w", err), secrets)
	}
	defer closeBody(resp.Body)
	fields["statusCode"] = resp.StatusCode
	body, err := readBounded(resp.Body, figmaMaxBody)
	if err != nil && !errors.Is(err, ErrBodyTooLarge) {
		return res, failure(fmt.Errorf("figma: GET /v1/me: reading the answer: %w", err), secrets)
	}

	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		var me figmaMe
		if err != nil {
			return res, fmt.Errorf("figma: GET /v1/me: answer larger than %d KiB", figmaMaxBody>>10)
		}
		if err := json.Unmarshal(body, &me); err != nil {
			return res, failure(fmt.Errorf("figma: GET /v1/me: malformed JSON: %w", err), secrets)
		}
		if me.Handle == "" {
			return res, errors.New("figma: GET /v1/me: answer has no user handle: not the Figma API?")
		}
		fields["handle"] = shownText(me.Handle, secrets)
		return res, nil
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		detail := figmaErrorDetail(body, secrets)
		if detail != "" {
			detail = ": " + detail
		}
		return res, failure(Permanent(fmt.Errorf("figma: %w (HTTP %d): check the token from %s%s", ErrFigmaTokenRejected, code, source, detail)), secrets)
	case code == http.StatusTooManyRequests:
		wait := figmaRetryAfter(resp.Header.Get("Retry-After"), p.now())
		limitType := figmaHeaderWord(resp.Header.Get("X-Figma-Rate-Limit-Type"), secrets)
		fields["rateLimited"] = true
		fields["retryAfterSeconds"] = int(wait / time.Second)
		fields["rateLimitType"] = limitType
		if tier := figmaHeaderWord(resp.Header.Get("X-Figma-Plan-Tier"), secrets); tier != "" {
			fields["planTier"] = tier
		}
		res.Status = Degraded
		res.RetryAfter = wait
		res.RateLimited = true
		res.Reason = "rate limited, retry after " + wait.String()
		if limitType != "" {
			res.Reason = fmt.Sprintf("rate limited (%s), retry after %s", limitType, wait)
		}
		return res, nil
	case code >= 500:
		return res, fmt.Errorf("figma: GET /v1/me: status %d %s", code, http.StatusText(code))
	default:
		return res, fmt.Errorf("figma: GET /v1/me: unexpected status %d %s", code, http.StatusText(code))
	}
}

// figmaMaxDetail bounds Figma's own error text in a reason.
const figmaMaxDetail = 200

// figmaErrorDetail extracts Figma's own error text ({"status":403,"err":"Invalid token"}), short and
// printable, or "". Secrets are hidden before the text is cut: a cut through the token would otherwise
// leave a piece of it that no later redaction recognises.
func figmaErrorDetail(body []byte, secrets []string) string {
	var e struct {
		Err     string `json:"err"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	s := e.Err
	if s == "" {
		s = e.Message
	}
	return redact.Shown(redact.Printable(s), secrets, figmaMaxDetail)
}

// figmaRetryAfter is how long a 429 asks the probe to wait: Retry-After within [1s, figmaMaxRetryAfter],
// figmaDefaultRetryAfter when it is missing or unusable.
func figmaRetryAfter(h string, now time.Time) time.Duration {
	return max(RetryAfter(h, now, figmaDefaultRetryAfter, figmaMaxRetryAfter), time.Second)
}

// figmaHeaderWord keeps a short, printable header value for a field (a dependency's header is input),
// secrets hidden. They are hidden last: dropping characters could otherwise join the pieces of one.
func figmaHeaderWord(s string, secrets []string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f {
			return -1
		}
		return r
	}, s)
	return redact.Text(s[:min(len(s), 32)], secrets)
}
