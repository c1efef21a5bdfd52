package standin

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Options place the stand-ins. Addresses are host:port; port 0 picks a free one.
type Options struct {
	AppAddr, MCPAddr, FigmaAddr string
	// FigmaToken is the token the fake Figma API accepts.
	FigmaToken string
	// FigmaRetryAfter is what the fake Figma API asks for in mode 429 (default 30s).
	FigmaRetryAfter time.Duration
}

// World is the set of stand-ins of the local demo.
type World struct {
	App   *Server
	MCP   *MCP
	Figma *Figma
}

// New builds the stand-ins. It starts nothing.
func New(o Options) *World {
	if o.FigmaRetryAfter <= 0 {
		o.FigmaRetryAfter = 30 * time.Second
	}
	return &World{
		App:   NewApp(o.AppAddr),
		MCP:   NewMCP(o.MCPAddr),
		Figma: NewFigma(o.FigmaAddr, o.FigmaToken, o.FigmaRetryAfter),
	}
}

func (w *World) servers() []*Server { return []*Server{w.App, w.MCP.Server, w.Figma.Server} }

// Start starts every stand-in; on an error it stops those it started.
func (w *World) Start() error {
	for i, s := range w.servers() {
		if err := s.Start(); err != nil {
			for _, started := range w.servers()[:i] {
				_ = started.Stop()
			}
			return err
		}
	}
	return nil
}

// Stop stops every stand-in that is running.
func (w *World) Stop() {
	for _, s := range w.servers() {
		if s.Running() {
			_ = s.Stop()
		}
	}
}

// Env is what the agent needs to find the stand-ins, as NAME=value: the target overrides of the
// default config and the token the fake Figma accepts.
func (w *World) Env() []string {
	return []string{
		"LEGACY_HEALTH_URL=" + w.App.URL() + "/api/health",
		"MCP_URL=" + w.MCP.URL() + "/mcp",
		"FIGMA_API_URL=" + w.Figma.URL(),
		"FIGMA_TOKEN=" + w.Figma.token,
	}
}

// Help lists the commands Do understands.
const Help = `commands:
  stop app|mcp|figma     take a stand-in down (connections refused)
  start app|mcp|figma    bring it back on the same address
  figma ok|429|403       how the fake Figma answers: normally, rate limited, token rejected
  status                 what is running
  quit                   stop everything and exit`

// Do runs one demo command (see Help; quit is the caller's) and says what it did.
func (w *World) Do(line string) (string, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", nil
	}
	switch {
	case f[0] == "status" && len(f) == 1:
		return w.status(), nil
	case f[0] == "help" && len(f) == 1:
		return Help, nil
	case f[0] == "figma" && len(f) == 2:
		if err := w.Figma.SetMode(FigmaMode(f[1])); err != nil {
			return "", err
		}
		return "figma: answering " + describeFigma(FigmaMode(f[1]), w.Figma.retryAfter), nil
	case (f[0] == "stop" || f[0] == "start") && len(f) == 2:
		var s *Server
		for _, c := range w.servers() {
			if c.Name() == f[1] {
				s = c
			}
		}
		if s == nil {
			return "", fmt.Errorf("no stand-in %q (app, mcp or figma)", f[1])
		}
		op, done := s.Start, "started"
		if f[0] == "stop" {
			op, done = s.Stop, "stopped"
		}
		err := op()
		switch {
		case errors.Is(err, ErrRunning), errors.Is(err, ErrStopped):
			return err.Error(), nil
		case err != nil:
			return "", err
		}
		return fmt.Sprintf("%s: %s (%s)", s.Name(), done, s.Addr()), nil
	}
	return "", fmt.Errorf("unknown command %q\n%s", line, Help)
}

func (w *World) status() string {
	var b strings.Builder
	for _, s := range w.servers() {
		state := "stopped"
		if s.Running() {
			state = "running"
		}
		fmt.Fprintf(&b, "%-6s %-8s %s\n", s.Name(), state, s.URL())
	}
	fmt.Fprintf(&b, "figma answers %s; mcp tool calls received: %d", describeFigma(w.Figma.Mode(), w.Figma.retryAfter), w.MCP.ToolCalls())
	return b.String()
}

func describeFigma(m FigmaMode, retryAfter time.Duration) string {
	switch m {
	case FigmaRateLimited:
		return fmt.Sprintf("429 (Retry-After: %d)", int(retryAfter/time.Second))
	case FigmaTokenRejected:
		return "403 (token rejected)"
	}
	return "200 with the user for a valid token"
}
