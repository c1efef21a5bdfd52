package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/health-agent/health-agent/examples/demo/standin"
)

// defaultWorld is what the default config (configs/agent.yaml) probes, on loopback: the local demo's
// stand-ins (legacy app, a real go-sdk MCP server, a fake Figma API), a real headless Chromium when one
// is installed, and the runner itself as the process the memory probe watches. With it the default
// config runs healthy, so its footprint is that of a sidecar doing its real work.
type defaultWorld struct {
	stand   *standin.World
	chrome  *exec.Cmd
	done    chan error
	browser bool     // a real browser answers CDP
	env     []string // the agent's environment
}

func startDefaultWorld(p *params) (*defaultWorld, error) {
	w := &defaultWorld{stand: standin.New(standin.Options{
		AppAddr: "127.0.0.1:0", MCPAddr: "127.0.0.1:0", FigmaAddr: "127.0.0.1:0", FigmaToken: "bench-token",
	})}
	if err := w.stand.Start(); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		w.Close()
		return nil, err
	}
	cdp := "http://127.0.0.1:" + strconv.Itoa(port)
	if bin, err := exec.LookPath(p.chromium); err == nil {
		if err := w.startChromium(bin, port, filepath.Join(p.tmp, "chromium")); err != nil {
			logf("no browser for the default config: %v", err)
		}
	} else {
		logf("no browser for the default config: %q not found (-chromium)", p.chromium)
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	w.env = append(w.stand.Env(),
		"PATH="+os.Getenv("PATH"), "HOME="+os.Getenv("HOME"),
		"BROWSER_CDP_URLS="+cdp,
		"MEMORY_PROCESS="+strings.TrimSpace(string(comm)))
	return w, nil
}

// startChromium starts headless Chromium as the local demo does (no network beyond loopback) and waits
// for its DevTools endpoint.
func (w *defaultWorld) startChromium(bin string, port int, dir string) error {
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port="+strconv.Itoa(port),
		"--user-data-dir="+dir, "about:blank")
	// Its own process group, so that stopping it also stops the renderer and zygote it forks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	w.chrome, w.done = cmd, make(chan error, 1)
	go func() { w.done <- cmd.Wait() }()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/json/version", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				w.browser = true
				return nil
			}
		}
		if time.Now().After(deadline) {
			w.stopChromium()
			return errors.New("chromium's DevTools did not answer within 30s")
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

func (w *defaultWorld) stopChromium() {
	if w.chrome == nil {
		return
	}
	pgid := w.chrome.Process.Pid // Setpgid: the group is the process's own id
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-w.done
	}
	w.chrome = nil
}

func (w *defaultWorld) Close() {
	w.stopChromium()
	w.stand.Stop()
}
