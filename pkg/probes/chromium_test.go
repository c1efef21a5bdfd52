//go:build unix

package probes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const chromiumBin = "/usr/bin/chromium"

// chromium is a headless Chromium started by a test, serving DevTools on 127.0.0.1:port.
type chromium struct {
	port    int
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once the process has been waited for
	waitErr error         // valid after exited is closed
}

// cdpFreePort returns a loopback port that was free a moment ago.
func cdpFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startChromium starts Chromium on port and waits until /json/version answers. It is killed when the
// test ends. Without Chromium the test is skipped, except in CI, where that is a failure.
func startChromium(t *testing.T, port int) *chromium {
	t.Helper()
	if _, err := os.Stat(chromiumBin); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s not installed (apt-get install chromium); in CI this fails", chromiumBin)
		}
		t.Fatalf("%s not installed: %v", chromiumBin, err)
	}
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(chromiumBin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		fmt.Sprintf("--remote-debugging-port=%d", port),
		"--user-data-dir="+filepath.Join(dir, "profile"),
		"about:blank")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that killing it takes its zygote and renderers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	c := &chromium{port: port, cmd: cmd, logPath: logf.Name(), exited: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(c.stop)
	if err := c.waitReady(t.Context(), 30*time.Second); err != nil {
		c.stop()
		t.Fatalf("chromium on port %d: %v\n%s", port, err, c.logTail())
	}
	return c
}

func (c *chromium) url() string { return fmt.Sprintf("http://127.0.0.1:%d", c.port) }

// waitReady polls /json/version until it answers 200, Chromium exits, or the deadline passes.
func (c *chromium) waitReady(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url()+"/json/version", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		last = err
		select {
		case <-c.exited:
			return fmt.Errorf("exited early: %v", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("/json/version did not answer within %s: %w", within, last)
		case <-tick.C:
		}
	}
}

// stop kills Chromium's process group and waits for Chromium to exit. It may be called twice.
func (c *chromium) stop() {
	select {
	case <-c.exited:
		return
	default:
	}
	if err := syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = c.cmd.Process.Kill()
	}
	<-c.exited
}

func (c *chromium) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	s := string(b)
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return "chromium log (tail):\n" + s
}

// TestCDPChromium runs the probe against real headless Chromium: one instance for every subtest, and a
// second one on the same port to show the verdict recovers after a restart.
func TestCDPChromium(t *testing.T) {
	port := cdpFreePort(t)
	c := startChromium(t, port)
	dead := cdpDeadURL(t)
	const within = 30 * time.Second // a loaded CI machine may be slow to answer

	assertHealthy := func(t *testing.T, p Probe) {
		t.Helper()
		res, err := cdpCheckWithin(t, p, within)
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		if res.Status != Healthy || res.Reason != "" {
			t.Errorf("got %s %q, want healthy", res.Status, res.Reason)
		}
		pages, _ := res.Fields["pages"].(int)
		version, _ := res.Fields["browserVersion"].(string)
		if pages < 1 || !strings.Contains(version, "Chrome/") || res.Fields["availableBrowsers"] != 1 {
			t.Errorf("fields %v: want pages >= 1 (about:blank) and a Chrome version", res.Fields)
		}
	}

	t.Run("healthy", func(t *testing.T) {
		assertHealthy(t, newTestCDP(t, map[string]any{"urls": c.url()}))
	})
	t.Run("localhost", func(t *testing.T) {
		assertHealthy(t, newTestCDP(t, map[string]any{"urls": fmt.Sprintf("http://localhost:%d/", port)}))
	})
	t.Run("one of two endpoints dead", func(t *testing.T) {
		tests := []struct {
			name         string
			minAvailable int
			wantErr      string
			wantStatus   Status
		}{
			{name: "minAvailable 1: degraded", minAvailable: 1, wantStatus: Degraded},
			{name: "minAvailable 2: unhealthy", minAvailable: 2, wantErr: "1/2 browsers available, need 2: " + dead + ": /json/version: connection refused"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := newTestCDP(t, map[string]any{"urls": c.url() + "," + dead, "minAvailable": tt.minAvailable})
				res, err := cdpCheckWithin(t, p, within)
				if tt.wantErr != "" {
					if err == nil || err.Error() != tt.wantErr {
						t.Fatalf("error %v, want %q", err, tt.wantErr)
					}
				} else if err != nil || res.Status != tt.wantStatus || !strings.Contains(res.Reason, dead+": /json/version: connection refused") {
					t.Fatalf("got %s %q, %v; want %s naming %s", res.Status, res.Reason, err, tt.wantStatus, dead)
				}
				if res.Fields["availableBrowsers"] != 1 || res.Fields["totalBrowsers"] != 2 {
					t.Errorf("fields %v", res.Fields)
				}
			})
		}
	})
	t.Run("killed, then restarted on the same port", func(t *testing.T) {
		p := newTestCDP(t, map[string]any{"urls": c.url()})
		c.stop()
		if _, err := cdpCheckWithin(t, p, within); err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("error %v after killing chromium, want connection refused", err)
		}
		startChromium(t, port)
		assertHealthy(t, p)
	})
}
