//go:build unix

package testkit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ChromiumBin is where the tests look for Chromium (Debian's package, as CI installs it).
const ChromiumBin = "/usr/bin/chromium"

// chromiumReady bounds the wait for DevTools to answer: generous, a loaded CI machine starts it slowly.
const chromiumReady = 60 * time.Second

// RequireChromium skips the test when Chromium is not installed, except in CI (env CI non-empty), where
// that is a failure: a CI run must not pass by skipping its browser tests.
func RequireChromium(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(ChromiumBin); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s not installed (apt-get install chromium); in CI this fails", ChromiumBin)
		}
		t.Fatalf("%s not installed: %v", ChromiumBin, err)
	}
}

// ChromiumOptions says how to start Chromium. The zero value is a browser on a port of Chromium's
// choosing, killed when the test ends.
type ChromiumOptions struct {
	// Port is the DevTools port on 127.0.0.1. 0: Chromium picks one (read from its DevToolsActivePort
	// file); a fixed port lets a test restart Chromium where a probe already looks for it.
	Port int
	// Args are extra flags, such as --window-size=1280,900.
	Args []string
	// Cleanup registers the kill and the profile's removal: t.Cleanup when nil, or a parent test's
	// Cleanup when the browser must outlive the subtest that starts it.
	Cleanup func(func())
}

// Chromium is a headless Chromium serving DevTools on 127.0.0.1.
type Chromium struct {
	proc    *Process
	port    int
	profile string
	logPath string
}

// StartChromium starts headless Chromium with an about:blank page and waits until /json/version
// answers (up to a minute; at once if Chromium exits), failing the test with the log's tail if it does
// not. It calls RequireChromium first.
func StartChromium(t testing.TB, opts ChromiumOptions) *Chromium {
	t.Helper()
	RequireChromium(t)
	cleanup := opts.Cleanup
	if cleanup == nil {
		cleanup = t.Cleanup
	}
	// Not t.TempDir(): the profile must live as long as the browser, which cleanup may keep past t.
	dir, err := os.MkdirTemp("", "testkit-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cleanup(func() { _ = os.RemoveAll(dir) }) // registered first, so it runs after the kill
	logf, err := os.Create(filepath.Join(dir, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	c := &Chromium{port: opts.Port, profile: filepath.Join(dir, "profile"), logPath: logf.Name()}
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--remote-debugging-port=" + strconv.Itoa(opts.Port),
		"--user-data-dir=" + c.profile,
	}
	args = append(append(args, opts.Args...), "about:blank")
	cmd := exec.Command(ChromiumBin, args...)
	// A file rather than a pipe: nothing to drain, and Wait does not hang on a helper holding it open.
	cmd.Stdout, cmd.Stderr = logf, logf
	c.proc = StartProcess(t, cleanup, cmd)
	if err := c.waitReady(t.Context()); err != nil {
		c.Kill()
		t.Fatalf("chromium on port %d: %v\nchromium log (tail):\n%s", c.port, err, tail(c.Log(), 2000))
	}
	return c
}

// Port is the DevTools port.
func (c *Chromium) Port() int { return c.port }

// URL is the DevTools HTTP endpoint, http://127.0.0.1:port.
func (c *Chromium) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", c.port) }

// Kill kills Chromium's process group and waits for it. It may be called more than once.
func (c *Chromium) Kill() { c.proc.Kill() }

// Log is what Chromium has written to stdout and stderr so far.
func (c *Chromium) Log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// waitReady learns the port if Chromium picks it, then polls /json/version until it answers 200,
// Chromium exits, or chromiumReady passes.
func (c *Chromium) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, chromiumReady)
	defer cancel()
	// No keep-alive: no idle connection (and its goroutines) outlives the wait.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		last := c.answers(ctx, client)
		if last == nil {
			return nil
		}
		select {
		case <-c.proc.Exited():
			return fmt.Errorf("exited early: %v", c.proc.Err())
		case <-ctx.Done():
			return fmt.Errorf("/json/version did not answer within %s: %w", chromiumReady, last)
		case <-tick.C:
		}
	}
}

// answers is nil once DevTools answers /json/version.
func (c *Chromium) answers(ctx context.Context, client *http.Client) error {
	if c.port == 0 {
		port, err := readActivePort(filepath.Join(c.profile, "DevToolsActivePort"))
		if err != nil {
			return err
		}
		c.port = port
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL()+"/json/version", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/json/version: HTTP %d", resp.StatusCode)
	}
	return nil
}

// errNoPortYet: Chromium has not (completely) written DevToolsActivePort yet.
var errNoPortYet = errors.New("DevToolsActivePort not written yet")

// readActivePort reads the port from Chromium's DevToolsActivePort file: the port on the first line,
// the browser's websocket path on the second. A first line without its newline may be half written.
func readActivePort(path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, errNoPortYet
	}
	if err != nil {
		return 0, err
	}
	line, _, complete := strings.Cut(string(b), "\n")
	if !complete {
		return 0, errNoPortYet
	}
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || port <= 0 || port > 65535 {
		return 0, fmt.Errorf("%s: bad port %q", path, line)
	}
	return port, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
