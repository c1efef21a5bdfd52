// Package agent wires a config, the monitor and the HTTP server into the running sidecar: it serves,
// reloads, and drains on shutdown.
package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/health-agent/health-agent/configs"
	"github.com/health-agent/health-agent/pkg/api"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/redact"
)

// Options configure an Agent.
type Options struct {
	// ConfigPath is the config file; empty means the embedded configs/agent.yaml.
	ConfigPath string
	// Listen overrides server.listen (the --listen flag), also across reloads.
	Listen  string
	Logger  *slog.Logger
	Version string
	// LookupEnv resolves ${VAR} in the config and secrets (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Kinds is the probe registry (default monitor.Kinds()).
	Kinds probes.Registry
	// Tick is the monitor's housekeeping period (default 1s).
	Tick time.Duration
	// Observe, when set, is given the monitor before serving, and returns the /metrics handler and
	// the monitor options' hooks (pkg/metrics). Nil: no /metrics.
	Observe func(m *monitor.Monitor) http.Handler
	// Page, when set, builds the status page handler; token returns the current server.detailsToken.
	Page func(m *monitor.Monitor, token func() string) http.Handler
	// Registerer receives the egress proxy's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// MonitorOptions are passed on to monitor.New (its Logger, Version, Kinds, LookupEnv, Tick are
	// filled from these Options).
	MonitorOptions monitor.Options
	// Load reads the config again for a reload (default: LoadConfig of ConfigPath, Kinds, LookupEnv).
	Load func() (*config.Loaded, error)
}

// LoadConfig loads path, or the embedded default config when path is empty.
func LoadConfig(path string, kinds probes.Registry, lookup func(string) (string, bool)) (*config.Loaded, error) {
	if kinds == nil {
		kinds = monitor.Kinds()
	}
	if path == "" {
		return config.Load(configs.DefaultName, configs.Default, kinds, lookup)
	}
	return config.LoadFile(path, kinds, lookup)
}

// Agent is the running sidecar.
type Agent struct {
	opts    Options
	log     *slog.Logger
	monitor *monitor.Monitor
	secrets *redact.Secrets // the secrets hidden from every text a dependency sends
	server  *http.Server
	current atomic.Pointer[config.Loaded]
	token   atomic.Pointer[string]
	reload  sync.Mutex
	addr    atomic.Pointer[string]
	// started are the settings fixed at start (the listener, the probe bulkhead): a reload that
	// changes one is applied otherwise, with a warning naming it.
	started []setting
	egress  *egressListener // nil: no egress section at start
}

// setting is one config value that only a restart applies.
type setting struct{ key, value string }

// restartSettings lists the settings of c that a reload cannot apply, as they would run: listen is the
// --listen override when there is one.
func restartSettings(c *config.Config, listen string) []setting {
	s := c.Server
	return []setting{
		{"server.listen", cmp.Or(listen, s.Listen)},
		{"scheduler.maxConcurrentProbes", strconv.Itoa(c.Scheduler.MaxConcurrentProbes)},
	}
}

// New builds an agent for loaded. It starts nothing.
func New(loaded *config.Loaded, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Kinds == nil {
		opts.Kinds = monitor.Kinds()
	}
	if opts.Load == nil {
		opts.Load = func() (*config.Loaded, error) { return LoadConfig(opts.ConfigPath, opts.Kinds, opts.LookupEnv) }
	}
	if opts.Listen != "" {
		// --listen overrides server.listen: a critical probe aimed at that port is as wrong.
		if err := loaded.Config.CheckSelfTargets(opts.Kinds, opts.Listen); err != nil {
			return nil, err
		}
	}
	mo := opts.MonitorOptions
	mo.Logger, mo.Version, mo.Kinds, mo.LookupEnv = opts.Logger, opts.Version, opts.Kinds, opts.LookupEnv
	if opts.Tick > 0 {
		mo.Tick = opts.Tick
	}
	if mo.Secrets == nil {
		// One set for the agent's life: secrets resolved before a reload stay hidden after it.
		mo.Secrets = &redact.Secrets{}
	}
	traffic := &egressTraffic{}
	mo.Traffic = traffic.routes
	m, err := monitor.New(loaded, mo)
	if err != nil {
		return nil, fmt.Errorf("build probes: %w", err)
	}
	a := &Agent{opts: opts, log: opts.Logger, monitor: m, secrets: mo.Secrets, started: restartSettings(loaded.Config, opts.Listen)}
	a.current.Store(loaded)
	a.setToken(loaded)
	if a.egress, err = a.newEgress(loaded.Config); err != nil {
		return nil, err
	}
	if a.egress != nil {
		traffic.proxy.Store(a.egress.proxy)
	}

	ho := api.Options{Token: a.Token, Logger: opts.Logger}
	if opts.Observe != nil {
		ho.Metrics = opts.Observe(m)
	}
	if opts.Page != nil {
		ho.Page = opts.Page(m, a.Token)
	}
	a.server = api.NewServer(cmp.Or(opts.Listen, loaded.Config.Server.Listen), api.NewHandler(m, ho), opts.Logger)
	return a, nil
}

// Monitor returns the agent's monitor.
func (a *Agent) Monitor() *monitor.Monitor { return a.monitor }

// Token returns the current server.detailsToken.
func (a *Agent) Token() string {
	if t := a.token.Load(); t != nil {
		return *t
	}
	return ""
}

func (a *Agent) setToken(l *config.Loaded) {
	t := l.Config.Server.DetailsToken
	a.token.Store(&t)
	if len(t) >= redact.MinRun {
		a.secrets.Add(t) // a dependency echoing it must not show it
	}
}

// Addr returns the address the server listens on, once it does.
func (a *Agent) Addr() string {
	if p := a.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// stopBudget is how long, after server.shutdownDelay, the agent gives the server to finish the
// requests in flight and the probes to stop. Past it the server is closed and Run returns even if a
// probe ignores its cancellation (stuck on I/O), so SIGTERM always ends the process within
// shutdownDelay + 5 s.
const stopBudget = 4 * time.Second

// Run listens, probes and serves until ctx is done, then drains: /readyz and /api/health fail at once,
// the server keeps answering for server.shutdownDelay, then shuts down gracefully and the probes stop.
// Each value on reloads requests a config reload; reloads run one at a time off the loop, and requests
// that come while one runs make one more, so a reload stuck on I/O never delays the shutdown. It
// returns nil after a clean shutdown, and within shutdownDelay + 5 s of ctx being done.
func (a *Agent) Run(ctx context.Context, reloads <-chan struct{}) error {
	ln, err := net.Listen("tcp", a.server.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := a.startEgress(); err != nil {
		_ = ln.Close()
		return err
	}
	addr := ln.Addr().String()
	a.addr.Store(&addr)
	loaded := a.current.Load()
	a.log.Info("health-agent serving", "addr", addr, "config", loaded.Source, "sha256", loaded.SHA256,
		"probes", len(loaded.Config.Probes), "version", a.opts.Version)

	mctx, stopMonitor := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMonitor()
	monitorDone := make(chan error, 1)
	go func() { monitorDone <- a.monitor.Run(mctx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- a.server.Serve(ln) }()
	// The reloader: a goroutine of its own, so that the loop below always sees ctx.Done.
	pending := make(chan struct{}, 1)
	reloaderDone := make(chan struct{})
	go func() {
		defer close(reloaderDone)
		for {
			select {
			case <-mctx.Done():
				return
			case <-pending:
				_ = a.Reload(mctx)
			}
		}
	}()

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-reloads:
			select {
			case pending <- struct{}{}:
			default: // one is pending already: it reads the config as it is when it runs
			}
		case err := <-serveDone:
			runErr = fmt.Errorf("serve: %w", err)
			serveDone = nil
			break loop
		}
	}

	delay := a.current.Load().Config.Server.ShutdownDelay
	if serveDone != nil {
		a.monitor.SetDraining()
		a.log.Info("shutting down: readiness now fails, draining", "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case err := <-serveDone:
			t.Stop()
			runErr = fmt.Errorf("serve: %w", err)
			serveDone = nil
		}
	}
	// The server's shutdown and the probes' stop share the budget, side by side.
	deadline := time.Now().Add(stopBudget)
	stopMonitor()
	if serveDone != nil {
		sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		if err := a.server.Shutdown(sctx); err != nil {
			a.log.Warn("graceful shutdown cut short", "err", err)
			_ = a.server.Close()
		}
		cancel()
		if err := <-serveDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("serve: %w", err)
		}
	}
	a.stopEgress(ctx, deadline)
	left := time.NewTimer(time.Until(deadline))
	defer left.Stop()
	for monitorDone != nil || reloaderDone != nil {
		select {
		case <-monitorDone:
			monitorDone = nil
		case <-reloaderDone:
			reloaderDone = nil
		case <-left.C:
			if monitorDone != nil {
				a.log.Warn("probes did not stop: a probe ignores its cancellation (stuck on I/O?); exiting anyway",
					"waited", stopBudget)
			}
			if reloaderDone != nil {
				a.log.Warn("a config reload did not finish (stuck reading the config?); exiting anyway",
					"waited", stopBudget)
			}
			return runErr
		}
	}
	if runErr == nil {
		a.log.Info("health-agent stopped")
	}
	return runErr
}

// Reload loads the config again from its source. A valid config replaces the running one (probes whose
// definition did not change keep their state); an invalid one is rejected, logged and reported by the
// config check, and the running config stays.
func (a *Agent) Reload(ctx context.Context) error {
	a.reload.Lock()
	defer a.reload.Unlock()
	loaded, err := a.opts.Load()
	// After a rejected reload, the running config coming back (a rollback) is applied, not skipped, so
	// that the config check stops reporting the rejection.
	last := a.monitor.ConfigInfo().LastReload
	if err == nil && loaded.SHA256 == a.current.Load().SHA256 && (last.At.IsZero() || last.Success) {
		a.log.Info("config unchanged, nothing to reload", "sha256", loaded.SHA256)
		return nil
	}
	if err == nil && a.opts.Listen != "" {
		err = loaded.Config.CheckSelfTargets(a.opts.Kinds, a.opts.Listen)
	}
	if err == nil {
		err = a.monitor.Reload(ctx, loaded)
	}
	if err != nil {
		a.monitor.ReloadFailed(err)
		a.log.Error("config reload rejected, keeping the running config", "source", a.sourceName(),
			"err", err, "running_sha256", a.current.Load().SHA256)
		return fmt.Errorf("reload: %w", err)
	}
	a.current.Store(loaded)
	a.setToken(loaded)
	a.reloadEgress(loaded.Config)
	for i, set := range restartSettings(loaded.Config, a.opts.Listen) {
		if run := a.started[i]; set.value != run.value {
			a.log.Warn("config setting takes effect at the next restart", "key", set.key,
				"running", run.value, "configured", set.value)
		}
	}
	for _, w := range loaded.Warnings {
		a.log.Warn("config warning", "warning", w)
	}
	return nil
}

func (a *Agent) sourceName() string {
	if a.opts.ConfigPath == "" {
		return configs.DefaultName
	}
	return a.opts.ConfigPath
}
