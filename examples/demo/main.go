// Command demo runs a stand-in world for trying health-agent locally: the legacy app's health route,
// a real go-sdk MCP server and a fake Figma API, each of which can be stopped and started from stdin
// to watch the agent react. See examples/demo/README.md.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/health-agent/health-agent/examples/demo/standin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	appAddr := fs.String("app", "127.0.0.1:3007", "address of the stand-in legacy app (GET /api/health)")
	mcpAddr := fs.String("mcp", "127.0.0.1:3333", "address of the MCP server (Streamable HTTP at /mcp)")
	figmaAddr := fs.String("figma", "127.0.0.1:3010", "address of the fake Figma API (GET /v1/me)")
	token := fs.String("figma-token", "demo-token", "the token the fake Figma API accepts")
	retryAfter := fs.Duration("figma-retry-after", 30*time.Second, "the Retry-After of `figma 429`")
	cdpURL := fs.String("cdp", "http://127.0.0.1:9222", "where Chromium's DevTools will listen (printed for BROWSER_CDP_URLS)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cdpPort, err := portOf(*cdpURL)
	if err != nil || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "usage: demo [flags]; --cdp must be an http://host:port URL\n")
		return 2
	}

	world := standin.New(standin.Options{
		AppAddr: *appAddr, MCPAddr: *mcpAddr, FigmaAddr: *figmaAddr,
		FigmaToken: *token, FigmaRetryAfter: *retryAfter,
	})
	if err := world.Start(); err != nil {
		fmt.Fprintf(stderr, "demo: %v (another process on that port? change it with --app, --mcp or --figma)\n", err)
		return 1
	}
	defer world.Stop()

	fmt.Fprintf(stdout, `health-agent demo: stand-ins running
  app    %s/api/health  (the legacy app's health JSON)
  mcp    %s/mcp         (go-sdk MCP server, tools: %s)
  figma  %s/v1/me       (fake Figma API)

1. Start a real headless browser (another terminal):
  chromium --headless --no-sandbox --disable-gpu --disable-quic --disable-background-networking --disable-component-update --disable-sync --no-first-run --remote-debugging-port=%s --user-data-dir=$(mktemp -d) about:blank

2. Start the agent (another terminal, from the repository root):
`, world.App.URL(), world.MCP.URL(), strings.Join(standin.MCPTools, ", "), world.Figma.URL(), cdpPort)
	env := append(world.Env(), "MEMORY_PROCESS="+processName(), "BROWSER_CDP_URLS="+*cdpURL)
	for _, kv := range env {
		fmt.Fprintf(stdout, "  export %s\n", kv)
	}
	fmt.Fprintf(stdout, "  go run ./cmd/agent\n\n3. Take dependencies down and up here; Ctrl-C to stop.\n%s\n> ", standin.Help)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the reader below once it has a line to hand over
	lines := make(chan string)
	// A blocked read of stdin cannot be interrupted: this goroutine ends at EOF, at its next line once
	// run returns, or with the process.
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "\nstopping")
			return 0
		case line, ok := <-lines:
			if !ok {
				// No more commands (stdin closed, e.g. run in the background): keep serving until a signal.
				fmt.Fprintln(stdout, "\nstdin closed: commands off, stand-ins keep running; Ctrl-C or SIGTERM to stop")
				lines = nil
				continue
			}
			switch strings.TrimSpace(line) {
			case "quit", "exit":
				return 0
			}
			out, err := world.Do(line)
			switch {
			case err != nil:
				fmt.Fprintln(stdout, err)
			case out != "":
				fmt.Fprintln(stdout, out)
			}
			fmt.Fprint(stdout, "> ")
		}
	}
}

// processName is this process's name as /proc/<pid>/comm shows it, which the agent's memory probe
// matches (for `go run`, the name of the temporary binary, "demo").
func processName() string {
	if b, err := os.ReadFile("/proc/self/comm"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return filepath.Base(os.Args[0])
}

func portOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" || u.Port() == "" {
		return "", fmt.Errorf("want http://host:port, got %q", raw)
	}
	_, port, err := net.SplitHostPort(u.Host)
	return port, err
}
