package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/egress"
	"github.com/health-agent/health-agent/pkg/monitor"
)

// egressListener is the egress proxy's own listener (egress.listen), beside the health server. It
// exists when the config had an egress section at start.
type egressListener struct {
	proxy  *egress.Proxy
	server *http.Server
	listen string // as started: a reload that changes it is applied at the next restart
	addr   atomic.Pointer[string]
	// stopRequests ends the requests still running at shutdown, upgraded websockets included (the
	// server's Shutdown does not track those).
	stopRequests context.CancelFunc
	done         chan error
}

// newEgress builds the egress proxy of cfg, or nil when cfg has no egress section. It starts nothing.
func (a *Agent) newEgress(cfg *config.Config) (*egressListener, error) {
	if cfg.Egress == nil {
		return nil, nil
	}
	p, err := egress.New(cfg.Egress, egress.Options{
		Breakers:   a.monitor.Breakers().Get,
		Registerer: a.opts.Registerer,
		Logger:     a.log.With("component", "egress"),
		LookupEnv:  a.opts.LookupEnv,
		Secrets:    a.secrets,
	})
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	return &egressListener{proxy: p, listen: cfg.Egress.Listen,
		server: egress.NewServer(cfg.Egress.Listen, p, a.log)}, nil
}

// startEgress listens on egress.listen and serves the proxy until stopEgress.
func (a *Agent) startEgress() error {
	e := a.egress
	if e == nil {
		return nil
	}
	ln, err := net.Listen("tcp", e.listen)
	if err != nil {
		return fmt.Errorf("egress listen: %w", err)
	}
	addr := ln.Addr().String()
	e.addr.Store(&addr)
	base, cancel := context.WithCancel(context.Background())
	e.stopRequests = cancel
	e.server.BaseContext = func(net.Listener) context.Context { return base }
	e.done = make(chan error, 1)
	go func() { e.done <- e.server.Serve(ln) }()
	a.log.Info("egress proxy serving", "addr", addr, "routes", len(a.current.Load().Config.Egress.Routes))
	return nil
}

// stopEgress lets the proxied calls in flight finish until deadline (the agent's stop budget), then
// ends the rest.
func (a *Agent) stopEgress(ctx context.Context, deadline time.Time) {
	e := a.egress
	if e == nil || e.done == nil {
		return
	}
	sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	if err := e.server.Shutdown(sctx); err != nil {
		a.log.Warn("egress proxy shutdown cut short", "err", err)
	}
	e.stopRequests()
	_ = e.server.Close()
	if err := <-e.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Warn("egress proxy stopped", "err", err)
	}
	e.proxy.Close()
}

// reloadEgress applies a reloaded config's routes. The listener itself (on or off, its address) is
// fixed at start.
func (a *Agent) reloadEgress(cfg *config.Config) {
	e := a.egress
	switch {
	case e == nil && cfg.Egress != nil:
		a.log.Warn("config setting takes effect at the next restart", "key", "egress", "running", "off", "configured", "on")
		return
	case e == nil:
		return
	case cfg.Egress == nil:
		a.log.Warn("egress removed: its routes answer 404 until the next restart closes the listener")
	case cfg.Egress.Listen != e.listen:
		a.log.Warn("config setting takes effect at the next restart", "key", "egress.listen",
			"running", e.listen, "configured", cfg.Egress.Listen)
	}
	if err := e.proxy.Update(cfg.Egress); err != nil {
		a.log.Error("egress routes not reloaded, keeping the running ones", "err", err)
	}
}

// EgressAddr returns the address the egress proxy listens on, once it does ("" when off).
func (a *Agent) EgressAddr() string {
	if a.egress == nil {
		return ""
	}
	if p := a.egress.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// EgressTraffic returns each egress route's real traffic over the last minute; nil when egress is off.
func (a *Agent) EgressTraffic() []egress.RouteTraffic {
	if a.egress == nil {
		return nil
	}
	return a.egress.proxy.Traffic()
}

// egressTraffic gives the monitor the egress proxy's per-route traffic, once the proxy exists (the
// monitor is built first: the proxy executes through its breakers).
type egressTraffic struct {
	proxy atomic.Pointer[egress.Proxy]
}

func (t *egressTraffic) routes() []monitor.RouteTraffic {
	p := t.proxy.Load()
	if p == nil {
		return nil
	}
	routes := p.Traffic()
	out := make([]monitor.RouteTraffic, len(routes))
	for i, r := range routes {
		out[i] = monitor.RouteTraffic{Route: r.Route, Prefix: r.Prefix, Breaker: r.Breaker, Requests: r.Requests,
			Errors: r.Errors, Rejected: r.Rejected, P50: r.P50, P99: r.P99, RateLimitedFor: r.RateLimitedFor}
	}
	return out
}
