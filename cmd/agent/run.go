package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/health-agent/health-agent/pkg/agent"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/redact"
	"github.com/health-agent/health-agent/pkg/reload"
	"github.com/health-agent/health-agent/pkg/version"
)

// Exit codes, documented in docs/operations.md: they tell "unhealthy" from "could not tell".
const (
	exitOK        = 0 // served and stopped cleanly; healthy; valid config
	exitUnhealthy = 1 // an unhealthy answer: a probe not healthy, a healthcheck answered with non-2xx
	exitUsage     = 2 // bad usage or bad config
	exitCannotRun = 3 // could not run or reach: the port in use, the agent unreachable, a probe that could not run
)

const usage = `usage:
  agent [--config FILE] [--listen ADDR] [--log-level debug|info|warn|error] [--log-format json|text]
  agent validate [--config FILE]
  agent probe [--config FILE] NAME
  agent healthcheck [--url URL] [--timeout DURATION]
  agent version
`

// run is the whole program: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stderr, lookup)
	case "validate":
		return validate(args, stdout, stderr, lookup)
	case "probe":
		return probe(ctx, args, stdout, stderr, lookup)
	case "healthcheck":
		return healthcheck(ctx, args, stdout, stderr)
	case "version":
		if len(args) > 0 {
			fmt.Fprint(stderr, "version takes no arguments\n"+usage)
			return exitUsage
		}
		fmt.Fprintln(stdout, "health-agent", version.String())
		return exitOK
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "unknown command %q\n%s", cmd, usage)
		return exitUsage
	}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	return fs
}

func serve(ctx context.Context, args []string, stderr io.Writer, lookup func(string) (string, bool)) int {
	fs := newFlags("agent", stderr)
	cfgPath := fs.String("config", "", "config file (default: the embedded configs/agent.yaml)")
	listen := fs.String("listen", "", "listen address, overriding server.listen")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "json", "json or text")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %v\n%s", fs.Args(), usage)
		return exitUsage
	}
	log, err := newLogger(stderr, *level, *format)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	loaded, ok := loadConfig(stderr, *cfgPath, lookup)
	if !ok {
		return exitUsage
	}
	for _, w := range loaded.Warnings {
		log.Warn("config warning", "warning", w)
	}
	tuneGC(lookup)
	a, err := agent.New(loaded, agent.WithMetricsAndStatusPage(agent.Options{
		ConfigPath: *cfgPath, Listen: *listen, Logger: log, Version: version.String(), LookupEnv: lookup,
	}))
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitUsage
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reloads := make(chan struct{}, 1)
	requestReload := func() {
		select {
		case reloads <- struct{}{}:
		default: // one is pending already, and it will read the file as it is then
		}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				if s == syscall.SIGHUP {
					log.Info("SIGHUP: reloading config")
					requestReload()
					continue
				}
				log.Info("signal received, shutting down", "signal", s.String())
				cancel()
				return
			}
		}
	}()
	// A change of the config file (an edit, a ConfigMap update) reloads it as SIGHUP does.
	var watching sync.WaitGroup
	if *cfgPath != "" {
		watching.Go(func() {
			opts := reload.Options{Logger: log, InitialSHA256: loaded.SHA256}
			if err := reload.Watch(ctx, *cfgPath, requestReload, opts); err != nil {
				log.Error("config file not watched: reload it with SIGHUP", "err", err)
			}
		})
	}
	err = a.Run(ctx, reloads)
	cancel()
	watching.Wait()
	if err != nil {
		log.Error("health-agent failed", "err", err)
		return exitCannotRun
	}
	return exitOK
}

// defaultGCPercent is the agent's GOGC unless the environment sets one. The agent runs in every pod,
// its live heap is small (a few MiB; about 25 MiB with 1,000 probes) and most of what it allocates is
// short-lived snapshot garbage: Go's default of 100 lets the heap grow to twice the live data (60 MiB
// RSS at 1,000 probes). At 50 it stays within 1.5 times. 25 saved a few MiB more but collected twice
// as often: at 100 probes the GC then took 0.15% of a core against 0.055% at 50 (BENCHMARKS.md).
// GOMEMLIMIT is honoured as usual.
const defaultGCPercent = 50

func tuneGC(lookup func(string) (string, bool)) {
	if _, set := lookup("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}

func sourceName(path string) string {
	if path == "" {
		return "embedded configs/agent.yaml"
	}
	return path
}

// loadConfig loads the config at path (the embedded default when empty), printing every problem of a
// bad one to stderr.
func loadConfig(stderr io.Writer, path string, lookup func(string) (string, bool)) (*config.Loaded, bool) {
	loaded, err := agent.LoadConfig(path, nil, lookup)
	if err != nil {
		printConfigError(stderr, sourceName(path), err)
		return nil, false
	}
	return loaded, true
}

// printConfigError prints every problem of a bad config, one per line.
func printConfigError(w io.Writer, source string, err error) {
	if !errors.Is(err, config.ErrInvalid) {
		fmt.Fprintf(w, "config %s: %v\n", source, err)
		return
	}
	errs := config.Flatten(err)
	var lines []string
	for _, e := range errs {
		if errors.Is(e, config.ErrInvalid) && len(errs) > 1 && e.Error() == config.ErrInvalid.Error() {
			continue
		}
		lines = append(lines, strings.TrimPrefix(e.Error(), config.ErrInvalid.Error()+": "))
	}
	fmt.Fprintf(w, "config %s is invalid (%d error(s)):\n", source, len(lines))
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func validate(args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	fs := newFlags("validate", stderr)
	cfgPath := fs.String("config", "", "config file (default: the embedded configs/agent.yaml)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %v\n%s", fs.Args(), usage)
		return exitUsage
	}
	loaded, ok := loadConfig(stderr, *cfgPath, lookup)
	if !ok {
		return exitUsage
	}
	for _, w := range loaded.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	names := make([]string, 0, len(loaded.Config.Probes))
	for _, p := range loaded.Config.Probes {
		names = append(names, p.Name)
	}
	fmt.Fprintf(stdout, "config %s is valid: %d probes (%s), sha256 %s, %d warning(s)\n",
		loaded.Source, len(names), strings.Join(names, ", "), loaded.SHA256[:12], len(loaded.Warnings))
	return exitOK
}

func probe(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	fs := newFlags("probe", stderr)
	cfgPath := fs.String("config", "", "config file (default: the embedded configs/agent.yaml)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, "probe needs exactly one probe NAME\n"+usage)
		return exitUsage
	}
	loaded, ok := loadConfig(stderr, *cfgPath, lookup)
	if !ok {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := monitor.RunOnce(ctx, loaded, fs.Arg(0), monitor.Options{LookupEnv: lookup, Version: version.String()})
	if errors.Is(err, monitor.ErrNoSuchProbe) {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "probe %s could not run: %v\n", fs.Arg(0), err)
		return exitCannotRun
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(stderr, "write the result:", err)
		return exitCannotRun
	}
	if out.Status != probes.Healthy {
		return exitUnhealthy
	}
	return exitOK
}

func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("healthcheck", stderr)
	url := fs.String("url", "http://127.0.0.1:3008/livez", "URL to GET")
	timeout := fs.Duration("timeout", 5*time.Second, "request timeout")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 || *timeout <= 0 {
		fmt.Fprint(stderr, "healthcheck takes only --url and --timeout (> 0)\n"+usage)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") {
		fmt.Fprintf(stderr, "bad --url %q: want an http(s) URL\n", *url)
		return exitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck %s: no answer: %v\n", *url, err)
		return exitCannotRun
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	fmt.Fprintf(stdout, "%s: %s\n", *url, resp.Status)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return exitUnhealthy
	}
	return exitOK
}

// secretKey matches attribute keys whose values must never be logged.
var secretKey = regexp.MustCompile(`(?i)(token|authorization|secret|password|api[-_]?key)`)

// newLogger builds the slog logger for --log-level and --log-format, redacting secret-looking keys.
// In text logs, meant for terminals, string and error values have their control characters replaced
// (redact.Printable): a dependency's text cannot forge a line or drive the terminal. JSON escapes them.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: want debug, info, warn or error, got %q", level)
	}
	redactKeys := func(_ []string, a slog.Attr) slog.Attr {
		if secretKey.MatchString(a.Key) {
			return slog.String(a.Key, "[REDACTED]")
		}
		return a
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: redactKeys}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			a = redactKeys(groups, a)
			switch v := a.Value.Resolve(); {
			case v.Kind() == slog.KindString:
				a.Value = slog.StringValue(redact.Printable(v.String()))
			case v.Kind() == slog.KindAny:
				if err, ok := v.Any().(error); ok {
					a.Value = slog.StringValue(redact.Printable(err.Error()))
				}
			}
			return a
		}
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: want json or text, got %q", format)
	}
}
