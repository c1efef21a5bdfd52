// Package egress is the opt-in egress resilience proxy: the app in the pod calls its dependencies
// (Figma, the MCP server, the browser pool) through the agent, and each route's calls are executions
// of the same circuit breaker as the probes that name it. While the breaker is open, or while an
// upstream's 429 Retry-After runs, the agent answers at once without contacting the upstream.
package egress

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/redact"
)

// Bounds on what the app and the upstreams may send.
const (
	// MaxHeaderBytes bounds a request's header block (the listener's) and a response's (the upstream's).
	MaxHeaderBytes = 64 << 10
	// MaxRateLimit caps how long an upstream's Retry-After holds the route's calls back.
	MaxRateLimit = time.Hour
)

// Options configure a Proxy.
type Options struct {
	// Breakers returns the breaker a route names (monitor.Breakers().Get). A route whose breaker it
	// does not know (nil) forwards without one.
	Breakers func(name string) *breakers.Breaker
	// Registerer receives the proxy's metrics; nil: not registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// LookupEnv resolves the routes' {env: …} headers (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Secrets is the agent's set of resolved secrets: the proxy adds the header secrets it injects, so
	// that no text the agent keeps or shows holds them, and hides the set's values in its own answers.
	Secrets *redact.Secrets
}

// Proxy serves the egress routes. Safe for concurrent use; Update swaps the routes in place.
type Proxy struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	buffers *bufferPool // the bodies' copy buffers, shared by every route

	update sync.Mutex // serializes Update and Close
	routes atomic.Pointer[[]*route]
}

// New builds a proxy for cfg. It starts nothing.
func New(cfg *config.Egress, opts Options) (*Proxy, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Breakers == nil {
		opts.Breakers = func(string) *breakers.Breaker { return nil }
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("egress metrics: %w", err)
	}
	p := &Proxy{opts: opts, log: opts.Logger, metrics: m, buffers: &bufferPool{}}
	p.routes.Store(&[]*route{})
	if err := p.Update(cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// Update replaces the routes with cfg's (nil: none). A route whose definition did not change keeps
// its connections, its rate limit and its traffic; a changed one keeps its traffic. Breaker state
// lives in the breaker registry, which the monitor syncs to the same config.
func (p *Proxy) Update(cfg *config.Egress) error {
	p.update.Lock()
	defer p.update.Unlock()
	old := map[string]*route{}
	for _, r := range *p.routes.Load() {
		old[r.cfg.Name] = r
	}
	var next []*route
	var errs []error
	if cfg != nil {
		for i := range cfg.Routes {
			rc := cfg.Routes[i]
			if o := old[rc.Name]; o != nil && reflect.DeepEqual(o.cfg, rc) {
				next = append(next, o)
				delete(old, rc.Name)
				continue
			}
			r, err := p.newRoute(rc)
			if err != nil {
				errs = append(errs, fmt.Errorf("egress.routes[%d]: %w", i, err))
				continue
			}
			if o := old[rc.Name]; o != nil {
				r.traffic = o.traffic
			}
			next = append(next, r)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // the running routes keep serving, with their connections; the new ones hold none yet
	}
	p.routes.Store(&next)
	for _, r := range old {
		r.transport.CloseIdleConnections()
	}
	return nil
}

// Close drops the idle upstream connections. The proxy still serves after it (opening new ones).
func (p *Proxy) Close() {
	p.update.Lock()
	defer p.update.Unlock()
	for _, r := range *p.routes.Load() {
		r.transport.CloseIdleConnections()
	}
}

// NewServer returns the listener's HTTP server for h (a Proxy): bounded request headers, no read or
// write deadline (event streams and websockets live long), idle keep-alive connections closed after
// a while.
func NewServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		MaxHeaderBytes:    MaxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(cmp.Or(log, slog.New(slog.DiscardHandler)).Handler(), slog.LevelDebug),
	}
}

// ServeHTTP serves one request of the app: on a configured prefix, forwarded through the route's
// breaker; anything else refused.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, apiError{Code: "method_not_allowed",
			Message: "CONNECT is refused: the egress proxy forwards only its configured routes"})
		return
	}
	if !strings.HasPrefix(r.RequestURI, "/") {
		writeError(w, http.StatusNotFound, apiError{Code: "no_route",
			Message: "absolute-form request URIs are refused: call a route's prefix, like /figma/v1/…"})
		return
	}
	rt, rest := match(*p.routes.Load(), r.URL.Path)
	if rt == nil {
		writeError(w, http.StatusNotFound, apiError{Code: "no_route",
			Message: fmt.Sprintf("no egress route serves %q", redact.Clip(redact.Printable(r.URL.Path), 128))})
		return
	}
	if hasDotSegment(rest) {
		writeError(w, http.StatusBadRequest, apiError{Code: "bad_path",
			Message: `"." and ".." path segments are refused: they could leave the route's upstream path`})
		return
	}
	p.serveRoute(w, r, rt, rest)
}

// match finds the route serving path, and the rest of the path after the route's prefix (with its
// leading "/", or "" for the prefix without its last "/").
func match(routes []*route, path string) (*route, string) {
	for _, r := range routes {
		if rest, ok := strings.CutPrefix(path, r.base); ok && (rest == "" || rest[0] == '/') {
			return r, rest
		}
	}
	return nil, ""
}

func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// Traffic reports each route's recent real traffic, in config order.
func (p *Proxy) Traffic() []RouteTraffic {
	now := time.Now()
	routes := *p.routes.Load()
	out := make([]RouteTraffic, 0, len(routes))
	for _, r := range routes {
		t := r.traffic.summary(now)
		t.Route, t.Breaker, t.Prefix = r.cfg.Name, r.breaker, r.cfg.Prefix
		if until := r.limitedUntil.Load(); until > now.UnixNano() {
			t.RateLimitedFor = time.Duration(until - now.UnixNano())
		}
		out = append(out, t)
	}
	return out
}

// bufferPool recycles the 32 KiB buffers bodies are copied through: without it each request
// allocates one, and the garbage collector runs far more often under load.
type bufferPool struct{ pool sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if buf, ok := b.pool.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == copyBufferSize {
		buf = buf[:copyBufferSize]
		b.pool.Put(&buf)
	}
}

// exchange is one proxied request's state, shared by the proxy's handler, transport and hooks.
type exchange struct {
	route   *route
	call    *breakers.Call // nil: no breaker
	start   time.Time
	rest    string   // the path after the prefix, decoded
	restRaw string   // the same, as the app escaped it
	values  []string // the route's header values for this request
	secrets []string // the injected secret values among them
	inHost  string   // the Host the app called, for links that must lead back through the proxy

	timedOut atomic.Bool
	// Set by the transport, read by the handler after the ReverseProxy returns.
	code     int
	headers  time.Duration // until the response headers (or the error)
	failed   bool
	ended    bool   // the breaker call is over
	rejected string // "circuit_open" or "rate_limited"
}

// succeed, fail and abandon end the exchange's breaker call, once.
func (x *exchange) succeed() {
	if x.call != nil && !x.ended {
		x.ended = true
		x.call.Succeed()
	}
}

func (x *exchange) fail(err error) {
	x.failed = true
	if x.call != nil && !x.ended {
		x.ended = true
		x.call.Fail(err)
	}
}

func (x *exchange) abandon(err error) {
	if x.call != nil && !x.ended {
		x.ended = true
		x.call.Abandon(err)
	}
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}
