package probes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/net/http/httpguts"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/redact"
	"github.com/health-agent/health-agent/pkg/version"
)

// mcpProtocolVersion is the protocol version the probe asks for. It is pinned because the SDK's default
// (2026-07-28) has no ping, and the app's MCP servers speak the 2025 protocol.
const mcpProtocolVersion = "2025-06-18"

const (
	// mcpMaxToolPages bounds tools/list pagination, so a server that hands out cursors forever cannot
	// hold a check until its deadline.
	mcpMaxToolPages = 100
	// mcpMaxToolNames caps the toolNames field: it is for people, the count is in tools.
	mcpMaxToolNames = 50
	// mcpMaxToolsKept bounds the distinct tool names a check remembers (to count them and match
	// requiredTools). Past it, tools are counted without deduplication and toolsCapped is set.
	mcpMaxToolsKept = 10_000
	// mcpMaxResponseBytes bounds any one HTTP response body, so a broken server cannot make the probe
	// buffer without limit (the SDK reads a body whole, error bodies too). A tools/list page of a
	// thousand tools with schemas fits.
	mcpMaxResponseBytes = 1 << 20
	// mcpCloseGrace is how long past its deadline a check may spend closing its session (see hardStop).
	mcpCloseGrace = time.Second
)

// ErrMCPToolsMissing means the server answered but lacks tools the app needs.
var ErrMCPToolsMissing = errors.New("required MCP tools missing")

// mcpOptions are the options of the mcp kind.
type mcpOptions struct {
	URL           string                  `mapstructure:"url"`
	Transport     string                  `mapstructure:"transport"`
	MinTools      int                     `mapstructure:"minTools"`
	RequiredTools []string                `mapstructure:"requiredTools"`
	Headers       map[string]config.Value `mapstructure:"headers"`
}

// mcpManagedHeaders are set by the MCP client itself; a configured value would break the protocol.
var mcpManagedHeaders = []string{"Accept", "Content-Type", "Content-Length", "Host", "Mcp-Session-Id",
	"Mcp-Protocol-Version", "Last-Event-Id", "Connection", "Transfer-Encoding"}

// mcpProbe connects to an MCP server, pings it and lists its tools, then closes the session.
type mcpProbe struct {
	endpoint   string
	origin     string // scheme://host of endpoint: configured headers go there and nowhere else
	sse        bool
	minTools   int
	required   []string
	headers    []httpHeader // resolved at each check so rotated secrets are picked up
	lookup     func(string) (string, bool)
	shared     *redact.Secrets
	client     *mcp.Client
	closeGrace time.Duration
	maxKept    int // mcpMaxToolsKept; smaller in tests
}

func newMCP(spec Spec) (Probe, error) {
	var o mcpOptions
	if err := config.DecodeOptions(spec.Options, &o); err != nil {
		return nil, err
	}
	var errs []error
	u, err := mcpParseURL(o.URL)
	if err != nil {
		errs = append(errs, config.Errorf("url", "%v", err))
	}
	var sse bool
	switch o.Transport {
	case "", "streamable":
	case "sse":
		sse = true
	default:
		errs = append(errs, config.Errorf("transport", "must be streamable or sse, got %q", o.Transport))
	}
	if o.MinTools < 0 {
		errs = append(errs, config.Errorf("minTools", "must be >= 0, got %d", o.MinTools))
	}
	var required []string
	for i, entry := range o.RequiredTools {
		if strings.Trim(entry, ", ") == "" {
			errs = append(errs, config.Errorf(fmt.Sprintf("requiredTools[%d]", i), "must not be empty"))
		}
		// A single env-expanded string ("${MCP_TOOLS}") arrives as one comma-separated entry.
		for name := range strings.SplitSeq(entry, ",") {
			if name = strings.TrimSpace(name); name != "" && !slices.Contains(required, name) {
				required = append(required, name)
			}
		}
	}
	var headers []httpHeader    // sorted by name as written
	seen := map[string]string{} // canonical name -> name as written
	for _, name := range slices.Sorted(maps.Keys(o.Headers)) {
		v := o.Headers[name]
		path := "headers." + name
		canon := http.CanonicalHeaderKey(name)
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			errs = append(errs, config.Errorf(path, "not a valid HTTP header name"))
			continue
		case slices.Contains(mcpManagedHeaders, canon):
			errs = append(errs, config.Errorf(path, "is set by the MCP client and cannot be configured"))
			continue
		case seen[canon] != "":
			errs = append(errs, config.Errorf(path, "duplicate of headers.%s (header names are case-insensitive)", seen[canon]))
			continue
		}
		seen[canon] = name
		if err := v.Validate(); err != nil {
			errs = append(errs, config.Errorf(path, "%v", err))
			continue
		}
		if v.Prefix != "" && !v.IsSecret() {
			errs = append(errs, config.Errorf(path+".prefix", "applies only to env or file; write it into value"))
			continue
		}
		headers = append(headers, httpHeader{name: canon, configName: name, value: v})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &mcpProbe{
		endpoint: u.String(),
		origin:   u.Scheme + "://" + u.Host,
		sse:      sse,
		minTools: o.MinTools,
		required: required,
		headers:  headers,
		lookup:   spec.Env.LookupEnv,
		shared:   spec.Env.Secrets,
		client: mcp.NewClient(&mcp.Implementation{Name: "health-agent", Version: version.String()},
			// Advertise nothing: the probe serves no roots, sampling or elicitation.
			&mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}}),
		closeGrace: mcpCloseGrace,
		maxKept:    mcpMaxToolsKept,
	}, nil
}

// mcpParseURL accepts an absolute http(s) URL without credentials (secrets belong in headers).
func mcpParseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %q", shownURL(raw))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("must be an absolute http or https URL, got %q", shownURL(raw))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("has no host: %q", shownURL(raw))
	}
	if u.User != nil {
		return nil, errors.New("must not carry credentials (user:password@); send them in headers, from env or file")
	}
	return u, nil
}

// Warnings reports header secrets that are not there yet: the probe will fail until they are.
func (p *mcpProbe) Warnings() []string {
	var out []string
	for _, h := range p.headers {
		if _, err := h.value.Resolve(p.lookup); err != nil {
			out = append(out, fmt.Sprintf("headers.%s: %v; the probe reports unhealthy until it is", h.configName, err))
		}
	}
	return out
}

// Check initializes a session, pings, lists the tools (never calls one), and always closes the session.
func (p *mcpProbe) Check(ctx context.Context) (Result, error) {
	fields := map[string]any{"connected": false}
	res := Result{Status: Healthy, Fields: fields}

	headers, secrets, err := p.resolveHeaders()
	if err != nil {
		return res, failure(fmt.Errorf("mcp: %w", err), p.shared.List())
	}
	secrets = shareSecrets(p.shared, secrets)
	conns := &mcpConnSet{conns: map[net.Conn]struct{}{}}
	// Cut whatever the check left open (a best-effort cancellation notice the SDK sends in the
	// background, a legacy SSE stream), so nothing outlives Check.
	defer conns.closeAll()
	defer p.hardStop(ctx, conns)()
	// Keep-alives serve the several requests of one session; conns.closeAll ends them with the check.
	tr := newTransport(clientOptions{ProxyFromEnv: true, KeepAlives: true, Dial: conns.dial})
	hc := &http.Client{
		Transport:     &mcpHeaderTransport{base: tr, origin: p.origin, headers: headers},
		CheckRedirect: p.checkRedirect,
	}
	var transport mcp.Transport
	if p.sse {
		transport = &mcp.SSEClientTransport{Endpoint: p.endpoint, HTTPClient: hc}
	} else {
		transport = &mcp.StreamableClientTransport{
			Endpoint:   p.endpoint,
			HTTPClient: hc,
			MaxRetries: -1, // retries are the policy's job, not the transport's
			// Server-initiated messages are of no use to a probe; the GET would only hold a connection.
			DisableStandaloneSSE: true,
		}
	}

	cs, err := p.client.Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: mcpProtocolVersion})
	if err != nil {
		return res, failure(fmt.Errorf("mcp: initialize: %w", err), secrets)
	}
	// Always close, whatever the verdict: a stateful server would otherwise keep the session.
	defer func() { _ = cs.Close() }() // best effort: the verdict is already made

	info := cs.InitializeResult()
	fields["connected"] = true
	fields["protocolVersion"] = shownText(info.ProtocolVersion, secrets)
	if si := info.ServerInfo; si != nil {
		fields["serverName"] = shownText(si.Name, secrets)
		fields["serverVersion"] = shownText(si.Version, secrets)
	}

	if err := cs.Ping(ctx, nil); err != nil {
		return res, failure(fmt.Errorf("mcp: ping: %w", err), secrets)
	}

	tools := mcpTools{kept: []string{}, required: map[string]bool{}} // no tools capability: none, listed as []
	for _, name := range p.required {
		tools.required[name] = false
	}
	if info.Capabilities != nil && info.Capabilities.Tools != nil {
		if err := tools.list(ctx, cs, p.maxKept); err != nil {
			return res, failure(fmt.Errorf("mcp: tools/list: %w", err), secrets)
		}
	}
	fields["tools"] = tools.count
	if tools.capped {
		fields["toolsCapped"] = true
	}
	shown := make([]string, min(len(tools.kept), mcpMaxToolNames))
	for i := range shown {
		shown[i] = shownText(tools.kept[i], secrets) // the server's words, like its name
	}
	fields["toolNames"] = shown
	if tools.count > mcpMaxToolNames {
		fields["toolNamesTruncated"] = true
	}

	var missing []string
	for _, name := range p.required {
		if !tools.required[name] {
			missing = append(missing, name)
		}
	}
	switch {
	case len(missing) > 0:
		// The server answered; only a change on its side (or in the config) brings the tools back.
		return res, failure(Permanent(fmt.Errorf("mcp: %w: %s (server has %d tools)", ErrMCPToolsMissing, strings.Join(missing, ", "), tools.count)), secrets)
	case tools.count < p.minTools:
		return res, fmt.Errorf("mcp: server has %d tools, want at least %d", tools.count, p.minTools)
	}
	return res, nil
}

// hardStop cuts every connection of the check closeGrace after ctx ends. Until then the SDK may still
// close the session (a DELETE on stateful streamable servers), which is what keeps the server free of
// stale sessions; after it, nothing of the check survives, even against a server that never answers.
func (p *mcpProbe) hardStop(ctx context.Context, conns *mcpConnSet) (stop func()) {
	var mu sync.Mutex
	var timer *time.Timer
	stopped := false
	stopAfter := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			timer = time.AfterFunc(p.closeGrace, conns.closeAll)
		}
	})
	return func() {
		stopAfter()
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		if timer != nil {
			timer.Stop()
		}
	}
}

// mcpTools is what tools/list showed.
type mcpTools struct {
	kept     []string        // distinct names, sorted, at most the cap
	count    int             // distinct names, plus every name past the cap
	capped   bool            // more names than the cap: count may include duplicates past it
	required map[string]bool // requiredTools -> seen
}

// list follows tools/list pagination (bounded), keeping at most maxKept distinct names.
func (t *mcpTools) list(ctx context.Context, cs *mcp.ClientSession, maxKept int) error {
	seen, cursors := map[string]bool{}, map[string]bool{}
	params := &mcp.ListToolsParams{}
	for range mcpMaxToolPages {
		page, err := cs.ListTools(ctx, params)
		if err != nil {
			return err
		}
		for _, tool := range page.Tools {
			if tool == nil || seen[tool.Name] {
				continue
			}
			if _, ok := t.required[tool.Name]; ok {
				t.required[tool.Name] = true
			}
			t.count++
			if len(t.kept) < maxKept {
				seen[tool.Name] = true
				t.kept = append(t.kept, tool.Name)
			} else {
				t.capped = true
			}
		}
		if page.NextCursor == "" {
			slices.Sort(t.kept)
			return nil
		}
		if cursors[page.NextCursor] {
			return errors.New("server repeated a pagination cursor")
		}
		cursors[page.NextCursor] = true
		params = &mcp.ListToolsParams{Cursor: page.NextCursor}
	}
	return fmt.Errorf("more than %d pages of tools", mcpMaxToolPages)
}

// resolveHeaders reads the header values now (so a rotated secret is picked up) and returns them with
// the secret strings that must be scrubbed from errors.
func (p *mcpProbe) resolveHeaders() (http.Header, []string, error) {
	h := make(http.Header, len(p.headers))
	var secrets []string
	for _, hd := range p.headers {
		s, err := hd.value.Resolve(p.lookup)
		if err != nil {
			return nil, nil, fmt.Errorf("header %s: %w", hd.name, err)
		}
		if !httpguts.ValidHeaderFieldValue(s) {
			return nil, nil, fmt.Errorf("header %s: value contains control characters", hd.name)
		}
		h.Set(hd.name, s)
		if hd.value.IsSecret() {
			secrets = appendSecret(secrets, s, hd.value.Prefix)
		}
	}
	return h, secrets, nil
}

// checkRedirect follows redirects within the configured origin only: the headers may carry secrets.
func (p *mcpProbe) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if req.URL.Scheme+"://"+req.URL.Host != p.origin {
		return fmt.Errorf("refusing redirect to another origin %s://%s", req.URL.Scheme, req.URL.Host)
	}
	return nil
}

// mcpHeaderTransport adds the configured headers to requests for the configured origin and bounds
// response bodies.
type mcpHeaderTransport struct {
	base    http.RoundTripper
	origin  string
	headers http.Header
}

func (t *mcpHeaderTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context()) // a RoundTripper must not modify the caller's request
	if req.URL.Scheme+"://"+req.URL.Host == t.origin {
		for name, vs := range t.headers {
			req.Header[name] = vs
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", userAgent)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &mcpLimitedBody{rc: resp.Body, left: mcpMaxResponseBytes}
	return resp, nil
}

// mcpLimitedBody fails a read past its limit instead of silently truncating.
type mcpLimitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *mcpLimitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("response body larger than %d bytes", mcpMaxResponseBytes)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *mcpLimitedBody) Close() error { return b.rc.Close() }

// mcpConnSet dials and remembers the connections of one check, so they can all be cut at once.
type mcpConnSet struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	dialer net.Dialer
}

var errMCPCheckOver = errors.New("the check is over")

func (s *mcpConnSet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errMCPCheckOver
	}
	c, err := s.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return nil, errMCPCheckOver
	}
	s.conns[c] = struct{}{}
	return c, nil
}

func (s *mcpConnSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	clear(s.conns)
}
