package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/redact"
)

// route is one configured route, ready to serve.
type route struct {
	cfg     config.EgressRoute
	base    string // the prefix without its last "/"
	breaker string
	up      *url.URL
	upPath  string // the upstream's path without a trailing "/"
	upRaw   string // the same, escaped
	headers []*header

	transport *http.Transport
	proxy     *httputil.ReverseProxy

	limitedUntil atomic.Int64 // unix nanoseconds until which an upstream 429's Retry-After runs
	traffic      *traffic
	secrets      *redact.Secrets // the agent's set, hidden from the texts the route shows
	log          *slog.Logger
}

type header struct {
	name  string // canonical
	value config.Value
	known atomic.Pointer[string] // the last value added to Options.Secrets (a rotation adds the new one)
}

func (p *Proxy) newRoute(rc config.EgressRoute) (*route, error) {
	up, err := url.Parse(rc.Upstream)
	if err != nil || (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
		return nil, errors.New("upstream: must be an absolute http(s) URL")
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: rc.TLS.InsecureSkipVerify} //nolint:gosec // opt-in, warned about
	if rc.TLS.CAFile != "" {
		pool, err := config.LoadCAFile(rc.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.caFile: %w", err)
		}
		tlsConf.RootCAs = pool
	}
	r := &route{
		cfg:     rc,
		base:    strings.TrimSuffix(rc.Prefix, "/"),
		breaker: rc.BreakerName(),
		up:      up,
		upPath:  strings.TrimSuffix(up.Path, "/"),
		upRaw:   strings.TrimSuffix(up.EscapedPath(), "/"),
		traffic: newTraffic(),
		secrets: p.opts.Secrets,
		log:     p.log,
	}
	for name, v := range rc.Headers {
		r.headers = append(r.headers, &header{name: textproto.CanonicalMIMEHeaderKey(name), value: v})
	}
	dialer := &net.Dialer{Timeout: rc.Timeout, KeepAlive: 30 * time.Second}
	r.transport = &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    rc.Timeout,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    128,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: MaxHeaderBytes,
		// The app's Accept-Encoding passes as it is, and so does the upstream's encoding.
		DisableCompression: true,
		// HTTP/1.1 toward upstreams, so that websocket upgrades pass on every route.
		ForceAttemptHTTP2: false,
	}
	r.proxy = &httputil.ReverseProxy{
		Rewrite:       r.rewrite,
		Transport:     &upstreamTransport{route: r},
		FlushInterval: -1, // event streams pass event by event
		BufferPool:    p.buffers,
		// Its own log line (a body copy cut short) goes to the agent's logger, not the log package's
		// stderr: the app's client or the upstream going away mid-body is routine, so at debug level.
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ModifyResponse: r.modifyResponse,
		ErrorHandler:   r.errorHandler,
	}
	return r, nil
}

// serveRoute forwards one request on rt, through its rate limit and breaker.
func (p *Proxy) serveRoute(w http.ResponseWriter, r *http.Request, rt *route, rest string) {
	now := time.Now()
	x := &exchange{route: rt, start: now, rest: rest, inHost: r.Host}
	x.restRaw = rest
	if esc := r.URL.EscapedPath(); strings.HasPrefix(esc, rt.base) {
		x.restRaw = esc[len(rt.base):]
	}
	defer p.finish(x)

	if until := rt.limitedUntil.Load(); until > now.UnixNano() {
		wait := time.Duration(until - now.UnixNano())
		w.Header().Set("Retry-After", retryAfterSeconds(wait))
		x.code, x.rejected = http.StatusTooManyRequests, "rate_limited"
		writeError(w, x.code, apiError{Code: "rate_limited", Breaker: rt.breaker,
			Message: fmt.Sprintf("the upstream of egress route %q answered 429; the agent holds its calls back for %s", rt.cfg.Name, roundUp(wait))})
		return
	}

	values := make([]string, len(rt.headers))
	for i, h := range rt.headers {
		v, err := h.value.Resolve(p.opts.LookupEnv)
		if err != nil {
			x.code = http.StatusServiceUnavailable
			writeError(w, x.code, apiError{Code: "secret_absent",
				Message: fmt.Sprintf("egress route %q: header %s: %v", rt.cfg.Name, h.name, err)})
			return
		}
		values[i] = v
		if h.value.IsSecret() {
			raw := strings.TrimPrefix(v, h.value.Prefix)
			x.secrets = append(x.secrets, v, raw)
			if k := h.known.Load(); k == nil || *k != v {
				p.opts.Secrets.Add(v, raw)
				h.known.Store(&v)
			}
		}
	}

	if b := p.opts.Breakers(rt.breaker); b != nil {
		call, err := b.Begin(breakers.TrafficSource + rt.cfg.Name)
		var rej *breakers.RejectedError
		if errors.As(err, &rej) {
			w.Header().Set("Retry-After", retryAfterSeconds(rej.RetryIn))
			x.code, x.rejected = http.StatusServiceUnavailable, "circuit_open"
			writeError(w, x.code, apiError{Code: "circuit_open", Message: p.opts.Secrets.Text(rej.Error()), Breaker: rt.breaker,
				Cause: p.opts.Secrets.Text(rej.Cause)})
			return
		}
		x.call = call
	}
	x.values = values
	rt.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x)))
}

// finish records the exchange in the metrics and the route's traffic. It runs even when the
// ReverseProxy aborts the handler (a body cut short after the headers).
func (p *Proxy) finish(x *exchange) {
	// The ReverseProxy ended without the transport answering (the app went away first).
	x.abandon(errors.New("request ended before the upstream answered"))
	code := x.code
	if code == 0 {
		code = 499 // the client went away before an answer
	}
	dur := x.headers
	if dur == 0 {
		dur = time.Since(x.start)
	}
	name := x.route.cfg.Name
	p.metrics.observe(name, code, dur, x.rejected)
	x.route.traffic.add(x.start, dur, x.failed, x.rejected != "")
}

// rewrite builds the upstream request: the upstream's scheme, host and path, the route's headers,
// and no Origin on a websocket upgrade (Chromium refuses upgrades from origins it was not told of).
func (rt *route) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeFrom(pr.In.Context())
	u := pr.Out.URL
	u.Scheme, u.Host = rt.up.Scheme, rt.up.Host
	u.Path = rt.upPath + x.rest
	u.RawPath = rt.upRaw + x.restRaw
	if u.Path == "" {
		u.Path, u.RawPath = "/", ""
	}
	pr.Out.Host = "" // the upstream's own host: Chromium accepts an IP address or localhost only
	if pr.Out.Header.Get("Upgrade") != "" {
		pr.Out.Header.Del("Origin")
	}
	for i, h := range rt.headers {
		pr.Out.Header[h.name] = []string{x.values[i]}
	}
}

// modifyResponse keeps injected secrets out of the answer and makes links lead back through the proxy.
func (rt *route) modifyResponse(resp *http.Response) error {
	x := exchangeFrom(resp.Request.Context())
	if len(x.secrets) > 0 {
		for name, vals := range resp.Header {
			for _, v := range vals {
				if redact.Text(v, x.secrets) != v {
					resp.Header.Del(name)
					break
				}
			}
		}
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		resp.Header.Set("Location", rt.proxiedLocation(loc, x.inHost))
	}
	if resp.StatusCode == http.StatusOK && isDevToolsList(x.rest) {
		rt.rewriteDevTools(resp, x.inHost)
	}
	return nil
}

// proxiedLocation maps a redirect to the upstream back onto the route; any other is left alone.
func (rt *route) proxiedLocation(loc, inHost string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	if u.IsAbs() && (u.Scheme != rt.up.Scheme || u.Host != rt.up.Host) {
		return loc
	}
	if u.Host == "" && !strings.HasPrefix(u.Path, "/") {
		return loc // relative to the request: already right
	}
	rest, ok := strings.CutPrefix(u.EscapedPath(), rt.upRaw)
	if !ok || rest != "" && rest[0] != '/' {
		return loc
	}
	out := rt.base + rest
	if u.IsAbs() {
		out = "http://" + inHost + out
	}
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out
}

// errorHandler answers when the upstream could not be reached or did not answer in time.
func (rt *route) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeFrom(r.Context())
	if r.Context().Err() != nil && !x.timedOut.Load() {
		return // the app went away: nobody to answer
	}
	if x.code < 500 {
		// Not a transport error (which records its own code): the upgrade or the copy failed.
		x.code = http.StatusBadGateway
	}
	e := apiError{Code: "upstream_unreachable", Breaker: rt.breaker,
		Message: fmt.Sprintf("egress route %q: the upstream did not answer: %s", rt.cfg.Name, rt.secrets.Text(describeError(err)))}
	if x.timedOut.Load() {
		e.Code = "upstream_timeout"
		e.Message = fmt.Sprintf("egress route %q: no answer from the upstream within %s", rt.cfg.Name, rt.cfg.Timeout)
	}
	writeError(w, x.code, e)
}

// upstreamTransport makes a route's round trips: one breaker call per request, retries of safe
// requests within the route's timeout, which bounds the wait for the response headers.
type upstreamTransport struct{ route *route }

// errHeaderTimeout is the failure of a request whose upstream sent no headers within the timeout.
var errHeaderTimeout = errors.New("no response headers within the route's timeout")

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.route
	x := exchangeFrom(req.Context())
	ctx, cancel := context.WithCancel(req.Context())
	timer := time.AfterFunc(rt.cfg.Timeout, func() { x.timedOut.Store(true); cancel() })
	deadline := time.Now().Add(rt.cfg.Timeout)

	resp, err := rt.roundTrip(ctx, req, deadline)
	x.headers = time.Since(x.start)
	if err == nil && !timer.Stop() {
		// The timeout struck as the headers came: the body is cut off already.
		resp.Body.Close()
		resp, err = nil, errHeaderTimeout
	}
	if err != nil {
		timer.Stop()
		cancel()
		if x.timedOut.Load() {
			err = errHeaderTimeout
		}
		x.code = http.StatusBadGateway
		if x.timedOut.Load() {
			x.code = http.StatusGatewayTimeout
		}
		switch {
		case req.Context().Err() != nil && !x.timedOut.Load():
			x.code = 0
			x.abandon(errors.New("the app went away"))
		case x.timedOut.Load():
			x.fail(fmt.Errorf("no response headers within %s", rt.cfg.Timeout))
		default:
			x.fail(errors.New(rt.secrets.Text(describeError(err))))
		}
		return nil, err
	}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &cancelConn{ReadWriteCloser: rwc, cancel: cancel}
	} else {
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	}
	x.code = resp.StatusCode
	switch {
	case resp.StatusCode >= 500:
		x.fail(fmt.Errorf("upstream answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode)))
	case resp.StatusCode == http.StatusTooManyRequests:
		now := time.Now()
		if wait := probes.RetryAfter(resp.Header.Get("Retry-After"), now, 0, MaxRateLimit); wait > 0 &&
			// Logged when the hold starts, not for each call that was in flight as it did.
			rt.limitedUntil.Swap(now.Add(wait).UnixNano()) <= now.UnixNano() {
			rt.log.Info("egress route rate limited by its upstream: the agent answers its calls with 429 meanwhile",
				"route", rt.cfg.Name, "retry_after", wait)
		}
		x.succeed()
	default:
		x.succeed()
	}
	return resp, nil
}

// roundTrip sends req, again for a safe request after a connection failure before anything was sent
// or a 502, 503 or 504, with jittered backoff, while the deadline leaves room.
func (rt *route) roundTrip(ctx context.Context, req *http.Request, deadline time.Time) (*http.Response, error) {
	pol := rt.cfg.Retry
	safe := (req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == http.MethodOptions) &&
		(req.Body == nil || req.Body == http.NoBody) && req.Header.Get("Upgrade") == ""
	for attempt := 0; ; attempt++ {
		if !safe || attempt >= pol.MaxRetries {
			return rt.transport.RoundTrip(req.WithContext(ctx)) // no retry can follow: no trace needed
		}
		var wrote atomic.Bool
		trace := &httptrace.ClientTrace{WroteHeaderField: func(string, []string) { wrote.Store(true) }}
		resp, err := rt.transport.RoundTrip(req.WithContext(httptrace.WithClientTrace(ctx, trace)))
		if ctx.Err() != nil {
			return resp, err
		}
		if err != nil && wrote.Load() || err == nil && !retryStatus(resp.StatusCode) {
			return resp, err
		}
		wait := backoff(pol, attempt)
		if time.Until(deadline) <= wait {
			return resp, err
		}
		if resp != nil {
			drain(resp.Body)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

func retryStatus(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// backoff is the wait before retry attempt+1: exponential from Backoff, capped at MaxBackoff, spread
// by ±Jitter.
func backoff(pol config.Retry, attempt int) time.Duration {
	d := pol.Backoff << min(attempt, 20)
	if d <= 0 || d > pol.MaxBackoff {
		d = pol.MaxBackoff
	}
	if pol.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + pol.Jitter*(2*rand.Float64()-1)))
	}
	return d
}

// drain discards a little of a body and closes it, so that a small one leaves its connection reusable.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

// cancelBody releases the round trip's context when the ReverseProxy is done with the body.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// cancelConn is cancelBody for an upgraded connection, which the ReverseProxy writes to as well.
type cancelConn struct {
	io.ReadWriteCloser
	cancel context.CancelFunc
}

func (c *cancelConn) Close() error {
	err := c.ReadWriteCloser.Close()
	c.cancel()
	return err
}

// describeError is a transport error as the breaker's cause and the app's message show it: the
// request's URL (whose query may carry the app's own tokens) left out.
func describeError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.Canceled) {
		return "request canceled"
	}
	return redact.Clip(redact.Printable(err.Error()), redact.MaxText)
}

// retryAfterSeconds is d as a Retry-After value: whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10)
}

func roundUp(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}
