package probes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/redact"
)

// The cdp kind checks a pool of Chromium browsers over the DevTools protocol (mode cdp), or a browserless
// service through its /pressure endpoint (mode browserless). Every identifier here starts with cdp so the
// kind cannot collide with the other kinds sharing the package.

const (
	cdpModeCDP         = "cdp"
	cdpModeBrowserless = "browserless"

	// cdpMaxBody bounds an HTTP answer (/json/version, /pressure): both are well under 1 KiB.
	cdpMaxBody = 64 << 10
	// cdpMaxMessage bounds one websocket message: Target.getTargets grows by ~300 bytes per target,
	// so 1 MiB still holds thousands of tabs.
	cdpMaxMessage = 1 << 20
	// cdpMaxSkipped bounds the events and stray replies read while waiting for one response.
	cdpMaxSkipped = 1000
	// cdpMaxReserve is the most of the attempt's time kept back from the endpoints, so Check can
	// report which endpoint hung before the caller's deadline passes.
	cdpMaxReserve = 250 * time.Millisecond
)

type cdpOptions struct {
	// URLs is a list, or one comma-separated string (what ${BROWSER_CDP_URLS} expands to).
	URLs         []string `mapstructure:"urls"`
	MinAvailable *int     `mapstructure:"minAvailable"`
	MaxPages     int      `mapstructure:"maxPages"`
	Mode         string   `mapstructure:"mode"`
	// Token is browserless's API token ({env: VAR} or {file: path}), sent as ?token= on /pressure.
	Token config.Value `mapstructure:"token"`
}

type cdpProbe struct {
	endpoints    []*url.URL
	minAvailable int
	maxPages     int
	mode         string
	timeout      time.Duration
	client       *http.Client
	token        config.Value // zero: no token (browserless mode only)
	lookup       func(string) (string, bool)
	shared       *redact.Secrets
}

// newCDP validates the options of a cdp probe and builds it; it starts nothing.
func newCDP(spec Spec) (Probe, error) {
	var o cdpOptions
	if err := config.DecodeOptions(spec.Options, &o); err != nil {
		return nil, err
	}
	var errs []error
	mode := o.Mode
	switch mode {
	case "":
		mode = cdpModeCDP
	case cdpModeCDP, cdpModeBrowserless:
	default:
		errs = append(errs, config.Errorf("mode", "must be %q or %q, got %q", cdpModeCDP, cdpModeBrowserless, o.Mode))
	}
	var raws []string
	for _, item := range o.URLs {
		for s := range strings.SplitSeq(item, ",") {
			if s = strings.TrimSpace(s); s != "" {
				raws = append(raws, s)
			}
		}
	}
	if len(raws) == 0 {
		errs = append(errs, config.Errorf("urls", "must list at least one endpoint (e.g. http://127.0.0.1:9222)"))
	}
	p := &cdpProbe{mode: mode, maxPages: o.MaxPages, minAvailable: 1, timeout: spec.Timeout}
	seen := map[string]int{}
	for i, raw := range raws {
		u, err := cdpParseEndpoint(raw, mode)
		if err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("urls[%d]", i), "%v", err))
			continue
		}
		if j, dup := seen[u.String()]; dup {
			errs = append(errs, config.Errorf(fmt.Sprintf("urls[%d]", i), "duplicate of urls[%d] (%s)", j, u))
			continue
		}
		seen[u.String()] = i
		p.endpoints = append(p.endpoints, u)
	}
	if o.MinAvailable != nil {
		p.minAvailable = *o.MinAvailable
		if p.minAvailable < 0 || (len(raws) > 0 && p.minAvailable > len(raws)) {
			errs = append(errs, config.Errorf("minAvailable", "must be between 0 and the number of urls (%d), got %d", len(raws), p.minAvailable))
		}
	}
	if o.MaxPages < 0 {
		errs = append(errs, config.Errorf("maxPages", "must be >= 0 (0: no limit), got %d", o.MaxPages))
	}
	if o.MaxPages != 0 && mode == cdpModeBrowserless {
		errs = append(errs, config.Errorf("maxPages", "only applies to mode %q", cdpModeCDP))
	}
	if o.Token != (config.Value{}) {
		switch err := o.Token.Validate(); {
		case err != nil:
			errs = append(errs, config.Errorf("token", "%v", err))
		case mode != cdpModeBrowserless:
			errs = append(errs, config.Errorf("token", "only applies to mode %q", cdpModeBrowserless))
		case !o.Token.IsSecret():
			errs = append(errs, config.Errorf("token", "reference it with env or file: a token is never written in the config"))
		case o.Token.Prefix != "":
			errs = append(errs, config.Errorf("token.prefix", "does not apply to a token"))
		default:
			p.token = o.Token
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.lookup = spec.Env.LookupEnv
	p.shared = spec.Env.Secrets
	// A DevTools or browserless endpoint has no reason to redirect, and following one could lead to a
	// host Chromium rejects: the 3xx is reported instead.
	p.client = newClient(cdpClientOptions(nil))
	return p, nil
}

// cdpParseEndpoint checks one configured endpoint. In cdp mode the host must be an IP address or
// localhost: Chromium's DevTools server answers any other Host header with an error (DNS-rebinding
// protection), so a service name would fail at every check.
func cdpParseEndpoint(raw, mode string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", errors.Unwrap(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("must be an absolute http URL like http://127.0.0.1:9222, got %q", shownURL(raw))
	case u.User != nil:
		return nil, fmt.Errorf("must not contain user info, got %q", shownURL(raw))
	case u.Hostname() == "":
		return nil, fmt.Errorf("has no host, got %q", shownURL(raw))
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("must not have a query or fragment, got %q", shownURL(raw))
	}
	if h := u.Hostname(); mode == cdpModeCDP && !strings.EqualFold(h, "localhost") && net.ParseIP(h) == nil {
		return nil, fmt.Errorf("host %q must be an IP address or localhost: Chromium's DevTools server rejects other Host headers", h)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// cdpClientOptions are the client of one probe (or one websocket session when onDial is set). It
// ignores HTTP(S)_PROXY, since the browsers are in the pod or the cluster, and keeps no idle
// connections, since a check every few seconds gains nothing from them and they would outlive it.
func cdpClientOptions(onDial func(net.Conn)) clientOptions {
	d := &net.Dialer{}
	return clientOptions{
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil && onDial != nil {
				onDial(c)
			}
			return c, err
		},
	}
}

// cdpBrowser is what one cdp-mode endpoint showed; it is reported in the `browsers` field.
type cdpBrowser struct {
	URL       string `json:"url"`
	Available bool   `json:"available"`
	Pages     int    `json:"pages"`
	Version   string `json:"version,omitempty"`
	Error     string `json:"error,omitempty"`
	permanent bool   // Error is one a retry cannot change (a certificate that does not verify)
}

// cdpPool is what one browserless endpoint showed; it is reported in the `browsers` field.
type cdpPool struct {
	URL           string `json:"url"`
	Reachable     bool   `json:"reachable"`
	Available     bool   `json:"available"`
	Running       int    `json:"running"`
	Queued        int    `json:"queued"`
	MaxConcurrent int    `json:"maxConcurrent"`
	Reason        string `json:"reason,omitempty"`
	// TokenRejected: browserless answered 401 or 403, so it is up but will not take a session with the
	// configured token.
	TokenRejected bool   `json:"tokenRejected,omitempty"`
	Error         string `json:"error,omitempty"`
	permanent     bool   // Error is one a retry cannot change (a rejected token, a certificate)
}

// Check probes every endpoint concurrently and aggregates the verdict.
func (p *cdpProbe) Check(ctx context.Context) (Result, error) {
	ctx, cancel := p.endpointContext(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if p.mode == cdpModeBrowserless {
		token, err := p.resolveToken()
		if err != nil {
			return Result{Status: Unhealthy, Fields: map[string]any{}}, failure(err, p.shared.List())
		}
		var secrets []string
		if token != "" {
			secrets = []string{token, url.QueryEscape(token)}
		}
		secrets = shareSecrets(p.shared, secrets)
		pools := make([]cdpPool, len(p.endpoints))
		for i, u := range p.endpoints {
			wg.Go(func() { pools[i] = p.checkPressure(ctx, u, token, secrets) })
		}
		wg.Wait()
		res, err := p.browserlessVerdict(pools)
		res.Reason = shownMessage(res.Reason, secrets)
		return res, failure(err, secrets)
	}
	secrets := p.shared.List()
	browsers := make([]cdpBrowser, len(p.endpoints))
	for i, u := range p.endpoints {
		wg.Go(func() { browsers[i] = p.checkBrowser(ctx, u, secrets) })
	}
	wg.Wait()
	res, err := p.cdpVerdict(browsers)
	res.Reason = shownMessage(res.Reason, secrets)
	return res, failure(err, secrets)
}

// cdpVerdictError is the error of a failed verdict: permanent when every endpoint that failed did so
// in a way a retry cannot change.
func cdpVerdictError(reason string, permanent bool) error {
	if permanent {
		return Permanent(errors.New(reason))
	}
	return errors.New(reason)
}

// endpointContext bounds the endpoints a little before ctx ends, so that a hanging endpoint is reported
// as such while the other endpoints' answers still count. Without a deadline it falls back to the
// probe's timeout.
func (p *cdpProbe) endpointContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		if p.timeout > 0 {
			return context.WithTimeout(ctx, p.timeout)
		}
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, dl.Add(-min(time.Until(dl)/10, cdpMaxReserve)))
}

func (p *cdpProbe) cdpVerdict(browsers []cdpBrowser) (Result, error) {
	available, pages, version := 0, 0, ""
	var failing []string
	permanent := true
	for _, b := range browsers {
		if !b.Available {
			failing = append(failing, b.URL+": "+b.Error)
			permanent = permanent && b.permanent
			continue
		}
		available++
		pages += b.Pages
		if version == "" {
			version = b.Version
		}
	}
	res := Result{Status: Healthy, Fields: map[string]any{
		"totalBrowsers":     len(browsers),
		"availableBrowsers": available,
		"pages":             pages,
		"browserVersion":    version,
		"browsers":          browsers,
	}}
	if available < p.minAvailable {
		res.Status = Unhealthy
		res.Reason = fmt.Sprintf("%d/%d browsers available, need %d: %s", available, len(browsers), p.minAvailable, strings.Join(failing, "; "))
		return res, cdpVerdictError(res.Reason, permanent && len(failing) > 0)
	}
	var reasons []string
	if len(failing) > 0 {
		reasons = append(reasons, fmt.Sprintf("%d/%d browsers available: %s", available, len(browsers), strings.Join(failing, "; ")))
	}
	if p.maxPages > 0 && pages > p.maxPages {
		reasons = append(reasons, fmt.Sprintf("%d pages open, more than maxPages %d", pages, p.maxPages))
	}
	if len(reasons) > 0 {
		res.Status, res.Reason = Degraded, strings.Join(reasons, "; ")
	}
	return res, nil
}

func (p *cdpProbe) browserlessVerdict(pools []cdpPool) (Result, error) {
	reachable, usable, available, running, queued, maxConcurrent := 0, 0, 0, 0, 0, 0
	var failing, busy []string
	permanent := true
	for _, b := range pools {
		if b.Reachable {
			reachable++
		}
		if !b.Reachable || b.TokenRejected {
			failing = append(failing, b.URL+": "+b.Error)
			permanent = permanent && b.permanent
			continue
		}
		usable++
		running, queued, maxConcurrent = running+b.Running, queued+b.Queued, maxConcurrent+b.MaxConcurrent
		if b.Available {
			available++
			continue
		}
		why := "not available"
		if b.Reason != "" {
			why += ": " + b.Reason
		}
		busy = append(busy, fmt.Sprintf("%s: %s (running %d/%d, queued %d)", b.URL, why, b.Running, b.MaxConcurrent, b.Queued))
	}
	res := Result{Status: Healthy, Fields: map[string]any{
		"totalBrowsers":     len(pools),
		"availableBrowsers": available,
		"running":           running,
		"queued":            queued,
		"maxConcurrent":     maxConcurrent,
		"isAvailable":       available > 0,
		"browsers":          pools,
	}}
	if usable < p.minAvailable {
		res.Status = Unhealthy
		res.Reason = fmt.Sprintf("%d/%d browserless endpoints usable, need %d: %s", usable, len(pools), p.minAvailable, strings.Join(failing, "; "))
		return res, cdpVerdictError(res.Reason, permanent && len(failing) > 0)
	}
	var reasons []string
	if len(failing) > 0 {
		reasons = append(reasons, fmt.Sprintf("%d/%d browserless endpoints usable: %s", usable, len(pools), strings.Join(failing, "; ")))
	}
	reasons = append(reasons, busy...)
	if len(reasons) > 0 {
		res.Status, res.Reason = Degraded, strings.Join(reasons, "; ")
	}
	return res, nil
}

// checkBrowser asks one Chromium for its version and its targets. Any failure makes it unavailable,
// with the reason in Error.
func (p *cdpProbe) checkBrowser(ctx context.Context, endpoint *url.URL, secrets []string) cdpBrowser {
	b := cdpBrowser{URL: endpoint.String()}
	fail := func(err error) cdpBrowser {
		b.Error, b.permanent = shownMessage(err.Error(), secrets), tlsVerifyFailed(err)
		return b
	}
	body, err := p.get(ctx, endpoint, "/json/version", secrets)
	if err != nil {
		return fail(err)
	}
	v, err := cdpParseVersion(body)
	if err != nil {
		return fail(fmt.Errorf("/json/version: %w", err))
	}
	wsURL, err := cdpWebSocketURL(endpoint, v.WebSocketDebuggerURL)
	if err != nil {
		return fail(fmt.Errorf("/json/version: %w", err))
	}
	product, pages, err := cdpSession(ctx, wsURL)
	if err != nil {
		return fail(err)
	}
	b.Available, b.Pages, b.Version = true, pages, product
	if b.Version == "" {
		b.Version = v.Browser
	}
	b.Version = shownText(b.Version, secrets)
	return b
}

// resolveToken reads the browserless token now (a rotated Secret is picked up): "" when none is
// configured, an error wrapping config.ErrSecretAbsent that names the variable or file when it is missing.
func (p *cdpProbe) resolveToken() (string, error) {
	if p.token == (config.Value{}) {
		return "", nil
	}
	t, err := p.token.Resolve(p.lookup)
	if err != nil {
		return "", fmt.Errorf("browserless token: %w", err)
	}
	return strings.TrimSpace(t), nil
}

// Warnings reports a browserless token that is not there yet.
func (p *cdpProbe) Warnings() []string {
	if _, err := p.resolveToken(); err != nil {
		return []string{fmt.Sprintf("%v; the probe reports unhealthy until it is", err)}
	}
	return nil
}

// checkPressure reads one browserless endpoint's /pressure, with token (when not "") as ?token=, the
// way browserless takes it. The secrets (the token among them) are kept out of the endpoint's error,
// which a careless proxy or browserless itself may echo them into. A 401 or 403 means browserless is up
// but refuses the token: reachable, and a failure no retry can change.
func (p *cdpProbe) checkPressure(ctx context.Context, endpoint *url.URL, token string, secrets []string) cdpPool {
	b := cdpPool{URL: endpoint.String()}
	u := *endpoint
	if token != "" {
		u.RawQuery = url.Values{"token": {token}}.Encode()
	}
	body, err := p.get(ctx, &u, "/pressure", secrets)
	if se, ok := errors.AsType[*cdpStatusError](err); ok && (se.code == http.StatusUnauthorized || se.code == http.StatusForbidden) {
		b.Reachable, b.TokenRejected, b.permanent = true, true, true
		why := "token rejected: set token to browserless's TOKEN"
		if token == "" {
			why = "token required: browserless has a TOKEN set, and this probe sends none (set token)"
		}
		b.Error = shownMessage(err.Error()+": "+why, secrets)
		return b
	}
	if err != nil {
		b.Error, b.permanent = shownMessage(err.Error(), secrets), tlsVerifyFailed(err)
		return b
	}
	pr, err := cdpParsePressure(body)
	if err != nil {
		b.Error = shownMessage("/pressure: "+err.Error(), secrets)
		return b
	}
	b.Reachable, b.Available = true, pr.IsAvailable
	b.Running, b.Queued, b.MaxConcurrent = pr.Running, pr.Queued, pr.MaxConcurrent
	b.Reason = shownMessage(pr.Reason, secrets)
	return b
}

// get fetches endpoint+path and returns its body, which must be a 200 of at most cdpMaxBody bytes. The
// secrets sent with the request are replaced in the snippet of an error body before it is cut, so that a
// secret straddling the cut leaves no piece behind.
func (p *cdpProbe) get(ctx context.Context, endpoint *url.URL, path string, secrets []string) ([]byte, error) {
	u := *endpoint
	u.Path += path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, cdpShort(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, cdpMaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read body: %w", path, cdpShort(err))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &cdpStatusError{path: path, code: resp.StatusCode, snippet: cdpSnippet(redact.Text(string(body), secrets))}
	}
	if len(body) > cdpMaxBody {
		return nil, fmt.Errorf("%s: %w", path, errCDPTooLarge)
	}
	return body, nil
}

// cdpStatusError is an HTTP answer other than 200.
type cdpStatusError struct {
	path    string
	code    int
	snippet string
}

func (e *cdpStatusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d%s", e.path, e.code, e.snippet)
}

var (
	errCDPTooLarge = fmt.Errorf("body larger than %d bytes", cdpMaxBody)
	// errCDPMalformed marks an answer that is not what the protocol promises.
	errCDPMalformed = errors.New("malformed answer")
)

// cdpSnippet quotes the start of an error body (Chromium explains a rejected Host there).
func cdpSnippet(body string) string {
	s := strings.TrimSpace(body)
	if s == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", redact.Clip(s, 120))
}

// cdpVersion is the part of /json/version the probe needs.
type cdpVersion struct {
	Browser              string `json:"Browser"`
	WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
}

func cdpParseVersion(body []byte) (cdpVersion, error) {
	var v cdpVersion
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("%w: %w", errCDPMalformed, err)
	}
	if v.WebSocketDebuggerURL == "" {
		return v, fmt.Errorf("%w: no webSocketDebuggerUrl (is this a Chromium DevTools endpoint?)", errCDPMalformed)
	}
	return v, nil
}

// cdpWebSocketURL points the webSocketDebuggerUrl Chromium reported at the configured endpoint's host:
// Chromium reports 127.0.0.1 or localhost, and a pool behind a Service reports its own address, which
// the agent may not reach (or which would be the wrong Host).
func cdpWebSocketURL(endpoint *url.URL, reported string) (string, error) {
	u, err := url.Parse(reported)
	if err != nil {
		return "", fmt.Errorf("%w: webSocketDebuggerUrl: %w", errCDPMalformed, errors.Unwrap(err))
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return "", fmt.Errorf("%w: webSocketDebuggerUrl %q is not a ws:// URL", errCDPMalformed, u.Redacted())
	}
	if u.Path == "" {
		return "", fmt.Errorf("%w: webSocketDebuggerUrl %q has no path", errCDPMalformed, u.Redacted())
	}
	out := url.URL{Scheme: "ws", Host: endpoint.Host, Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
	if endpoint.Scheme == "https" {
		out.Scheme = "wss"
	}
	return out.String(), nil
}

// cdpSession opens a DevTools websocket, asks Browser.getVersion then Target.getTargets, and closes it.
// It returns the product (e.g. "HeadlessChrome/131.0.6778.85") and the number of page targets.
func cdpSession(ctx context.Context, wsURL string) (product string, pages int, err error) {
	var mu sync.Mutex
	var raw net.Conn
	// Like the probe's own client, it follows no redirect: a 3xx to the handshake is reported.
	client := newClient(cdpClientOptions(func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		raw = c
	}))
	// No Origin header: Chromium refuses websocket clients that send one unless started with
	// --remote-allow-origins, and coder/websocket sends none unless told to.
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		return "", 0, fmt.Errorf("websocket: %w", cdpShort(err))
	}
	defer func() {
		if ctx.Err() != nil {
			_ = conn.CloseNow()
			return
		}
		// Close waits up to 10s for the peer's close frame, regardless of ctx: cut the TCP connection
		// under it if ctx ends first, so Check still returns on time.
		stop := context.AfterFunc(ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			if raw != nil {
				_ = raw.Close()
			}
		})
		defer stop()
		_ = conn.Close(websocket.StatusNormalClosure, "")
	}()
	conn.SetReadLimit(cdpMaxMessage)

	result, err := cdpCall(ctx, conn, 1, "Browser.getVersion")
	if err != nil {
		return "", 0, err
	}
	if product, err = cdpParseBrowserVersion(result); err != nil {
		return "", 0, fmt.Errorf("Browser.getVersion: %w", err)
	}
	result, err = cdpCall(ctx, conn, 2, "Target.getTargets")
	if err != nil {
		return "", 0, err
	}
	if pages, err = cdpParseTargets(result); err != nil {
		return "", 0, fmt.Errorf("Target.getTargets: %w", err)
	}
	return product, pages, nil
}

// cdpCall sends one JSON-RPC request and returns the result of the response with the same id,
// skipping events and other responses.
func cdpCall(ctx context.Context, conn *websocket.Conn, id int64, method string) (json.RawMessage, error) {
	req, err := json.Marshal(struct {
		ID     int64  `json:"id"`
		Method string `json:"method"`
	}{id, method})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	if err := conn.Write(ctx, websocket.MessageText, req); err != nil {
		return nil, fmt.Errorf("%s: send: %w", method, cdpShort(err))
	}
	for range cdpMaxSkipped {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", method, cdpShort(err))
		}
		m, err := cdpParseMessage(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		if m.ID == nil || *m.ID != id {
			continue
		}
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %w", method, m.Error)
		}
		return m.Result, nil
	}
	return nil, fmt.Errorf("%s: %w: no response among %d messages", method, errCDPMalformed, cdpMaxSkipped)
}

// cdpMessage is a DevTools protocol message: a response (id, then result or error) or an event (method).
type cdpMessage struct {
	ID     *int64          `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  *cdpRPCError    `json:"error"`
}

// cdpRPCError is the error object of a failed DevTools call.
type cdpRPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *cdpRPCError) Error() string {
	return fmt.Sprintf("DevTools error %d: %s", e.Code, redact.Clip(e.Message, redact.MaxText))
}

func cdpParseMessage(b []byte) (cdpMessage, error) {
	var m cdpMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return cdpMessage{}, fmt.Errorf("%w: %w", errCDPMalformed, err)
	}
	switch {
	case m.ID == nil && m.Method == "":
		return cdpMessage{}, fmt.Errorf("%w: message is neither a response nor an event", errCDPMalformed)
	case m.ID != nil && m.Error == nil && len(m.Result) == 0:
		return cdpMessage{}, fmt.Errorf("%w: response %d has neither result nor error", errCDPMalformed, *m.ID)
	}
	return m, nil
}

func cdpParseBrowserVersion(result json.RawMessage) (string, error) {
	var v struct {
		Product *string `json:"product"`
	}
	if err := json.Unmarshal(result, &v); err != nil {
		return "", fmt.Errorf("%w: %w", errCDPMalformed, err)
	}
	if v.Product == nil {
		return "", fmt.Errorf("%w: no product", errCDPMalformed)
	}
	return *v.Product, nil
}

// cdpParseTargets counts the targets of type "page" (tabs), leaving out workers, iframes and the
// browser's own UI.
func cdpParseTargets(result json.RawMessage) (int, error) {
	var v struct {
		TargetInfos []struct {
			Type string `json:"type"`
		} `json:"targetInfos"`
	}
	if err := json.Unmarshal(result, &v); err != nil {
		return 0, fmt.Errorf("%w: %w", errCDPMalformed, err)
	}
	if v.TargetInfos == nil {
		return 0, fmt.Errorf("%w: no targetInfos", errCDPMalformed)
	}
	pages := 0
	for _, t := range v.TargetInfos {
		if t.Type == "page" {
			pages++
		}
	}
	return pages, nil
}

// cdpPressure is browserless's load report.
type cdpPressure struct {
	IsAvailable   bool
	Running       int
	Queued        int
	MaxConcurrent int
	Reason        string
}

// cdpParsePressure reads browserless v2's {"pressure": {...}}, or the same fields at the top level.
func cdpParsePressure(body []byte) (cdpPressure, error) {
	type fields struct {
		IsAvailable   *bool  `json:"isAvailable"`
		Running       int    `json:"running"`
		Queued        int    `json:"queued"`
		MaxConcurrent int    `json:"maxConcurrent"`
		Reason        string `json:"reason"`
		Message       string `json:"message"`
	}
	var v struct {
		fields
		Pressure *fields `json:"pressure"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return cdpPressure{}, fmt.Errorf("%w: %w", errCDPMalformed, err)
	}
	f := v.fields
	if v.Pressure != nil {
		f = *v.Pressure
	}
	if f.IsAvailable == nil {
		return cdpPressure{}, fmt.Errorf("%w: no isAvailable (is this a browserless /pressure endpoint?)", errCDPMalformed)
	}
	if f.Reason == "" {
		f.Reason = f.Message
	}
	return cdpPressure{IsAvailable: *f.IsAvailable, Running: f.Running, Queued: f.Queued, MaxConcurrent: f.MaxConcurrent, Reason: f.Reason}, nil
}

// cdpShortError replaces a transport error's message with its gist, keeping the chain for errors.Is.
type cdpShortError struct {
	msg string
	err error
}

func (e *cdpShortError) Error() string { return e.msg }
func (e *cdpShortError) Unwrap() error { return e.err }

// cdpShort turns `failed to WebSocket dial: failed to send handshake request: Get "http://…": dial tcp
// 127.0.0.1:9333: connect: connection refused` into `connection refused`, so that a reason naming
// several endpoints stays readable.
func cdpShort(err error) error {
	var msg string
	var ue *url.Error
	var ce websocket.CloseError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		msg = "timed out"
	case errors.Is(err, context.Canceled):
		msg = "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		msg = "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		msg = "connection reset by peer"
	case errors.Is(err, websocket.ErrMessageTooBig):
		msg = fmt.Sprintf("message larger than %d bytes", cdpMaxMessage)
	case errors.As(err, &ce):
		msg = fmt.Sprintf("closed by peer (status %d %s)", int(ce.Code), redact.Clip(ce.Reason, maxShownText))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		msg = "connection closed by peer"
	case errors.As(err, &ue):
		msg = strings.TrimPrefix(ue.Err.Error(), "failed to WebSocket dial: ")
	default:
		msg = strings.TrimPrefix(err.Error(), "failed to WebSocket dial: ")
	}
	return &cdpShortError{msg: msg, err: err}
}
