package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	alex "github.com/alexliesenfeld/health"
	"github.com/gin-gonic/gin"
	hellofresh "github.com/hellofresh/health-go/v5"

	"github.com/health-agent/health-agent/pkg/agent"
	"github.com/health-agent/health-agent/pkg/api"
)

// probeConfig is an agent config with n critical tcp probes spread over deps, every one at interval
// and otherwise on the built-in default policies. Drain delay 0: the runner stops agents often.
func probeConfig(n int, interval time.Duration, deps *tcpDeps) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  listen: \"127.0.0.1:0\"\n  shutdownDelay: 0s\n")
	fmt.Fprintf(&b, "defaults:\n  interval: %s\n", interval)
	b.WriteString("probes:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: dep-%04d\n    kind: tcp\n    critical: true\n    address: %q\n", i, deps.Addr(i))
	}
	return []byte(b.String())
}

func writeFile(dir, name string, data []byte) (string, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return p, nil
}

// served is an http.Server on a loopback port, with the agent's own server limits (api.NewServer),
// so that every target is served the same way.
type served struct {
	srv  *http.Server
	base string
	done chan struct{}
}

func serve(h http.Handler) (*served, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &served{srv: api.NewServer("", h, nil), base: "http://" + ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *served) Close() {
	_ = s.srv.Close()
	<-s.done
}

// inprocAgent is the real agent (pkg/agent: config loader, monitor, gin API, http.Server) running in
// the runner's process.
type inprocAgent struct {
	a      *agent.Agent
	base   string
	cancel context.CancelFunc
	done   chan error
}

func startInprocAgent(ctx context.Context, cfgPath string) (*inprocAgent, error) {
	loaded, err := agent.LoadConfig(cfgPath, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", cfgPath, err)
	}
	// As cmd/agent serves it: metrics hooks on the monitor, /metrics and the status page.
	a, err := agent.New(loaded, agent.WithMetricsAndStatusPage(agent.Options{ConfigPath: cfgPath, Listen: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), Version: "bench"}))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	ia := &inprocAgent{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { ia.done <- a.Run(ctx, nil) }()
	deadline := time.Now().Add(10 * time.Second)
	for a.Addr() == "" {
		if time.Now().After(deadline) {
			ia.Close()
			return nil, errors.New("agent did not listen within 10s")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	ia.base = "http://" + a.Addr()
	return ia, nil
}

func (ia *inprocAgent) Close() error {
	ia.cancel()
	return <-ia.done
}

// captured is one response of the agent, replayed by the static handler.
type captured struct {
	code   int
	header http.Header
	body   []byte
}

func capture(ctx context.Context, client *http.Client, url string) (captured, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return captured{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return captured{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return captured{}, err
	}
	h := http.Header{}
	for _, k := range []string{"Content-Type", "Cache-Control", "X-Content-Type-Options"} {
		if v := resp.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	return captured{code: resp.StatusCode, header: h, body: body}, nil
}

// staticGin serves each path's captured response as it is: no snapshot, no computation. It is the
// limit a gin handler can reach on this machine for these bytes.
func staticGin(routes map[string]captured) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	for path, c := range routes {
		ct := c.header.Get("Content-Type")
		r.GET(path, func(g *gin.Context) {
			h := g.Writer.Header()
			for k, v := range c.header {
				if k != "Content-Type" {
					h[k] = v
				}
			}
			g.Data(c.code, ct, c.body)
		})
	}
	return r
}

// dialCheck is the peers' equivalent of the agent's tcp probe: connect, close.
func dialCheck(addr string) func(context.Context) error {
	d := net.Dialer{KeepAlive: -1}
	return func(ctx context.Context) error {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// alexPeer is github.com/alexliesenfeld/health with n periodic checks (results cached between runs).
func alexPeer(n int, interval time.Duration, deps *tcpDeps) (http.Handler, func()) {
	opts := []alex.CheckerOption{alex.WithTimeout(10 * time.Second)}
	for i := range n {
		opts = append(opts, alex.WithPeriodicCheck(interval, 0, alex.Check{
			Name: fmt.Sprintf("dep-%04d", i), Timeout: 2 * time.Second, Check: dialCheck(deps.Addr(i)),
		}))
	}
	c := alex.NewChecker(opts...) // starts its goroutines itself
	return alex.NewHandler(c), c.Stop
}

// hellofreshPeer is github.com/hellofresh/health-go with n checks, all run on each request.
func hellofreshPeer(n int, deps *tcpDeps) (http.Handler, error) {
	var cs []hellofresh.Config
	for i := range n {
		cs = append(cs, hellofresh.Config{Name: fmt.Sprintf("dep-%04d", i), Timeout: 2 * time.Second,
			Check: dialCheck(deps.Addr(i))})
	}
	h, err := hellofresh.New(hellofresh.WithChecks(cs...))
	if err != nil {
		return nil, err
	}
	return h.Handler(), nil
}

// waitStatus polls url until it answers want, or the deadline passes.
func waitStatus(ctx context.Context, client *http.Client, url string, want int, within time.Duration) error {
	deadline := time.Now().Add(within)
	last := 0
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			last = resp.StatusCode
			if last == want {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("GET %s: status %d after %s, want %d", url, last, within, want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
