//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const chromiumBin = "/usr/bin/chromium"

// process is a child process started by the test, killed (with its process group) and waited for at
// its owner's cleanup at the latest.
type process struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has been waited for
	waitErr error         // valid after exited is closed
}

// owner is who kills a process at its cleanup: the test that started it, or a parent test when the
// process must outlive the subtest that started it.
type owner interface{ Cleanup(func()) }

func startProcess(t *testing.T, o owner, cmd *exec.Cmd) *process {
	t.Helper()
	// Its own process group, so that a kill takes Chromium's zygote and renderers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	o.Cleanup(p.kill)
	return p
}

// kill kills the process group and waits for the process. It may be called more than once.
func (p *process) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// requireChromium skips the test without Chromium, except in CI, where that is a failure.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumBin); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s not installed (apt-get install chromium); in CI this fails", chromiumBin)
		}
		t.Fatalf("%s not installed: %v", chromiumBin, err)
	}
}

// startChromium starts headless Chromium with DevTools on 127.0.0.1:port, as the README's demo does,
// and waits until /json/version answers.
func startChromium(t *testing.T, o owner, port int) *process {
	t.Helper()
	// Not t.TempDir(): the profile must live as long as the browser, which o may keep past t.
	dir, err := os.MkdirTemp("", "e2e-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	o.Cleanup(func() { _ = os.RemoveAll(dir) }) // registered first, so it runs after the kill
	cmd := exec.Command(chromiumBin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		fmt.Sprintf("--remote-debugging-port=%d", port),
		"--user-data-dir="+filepath.Join(dir, "profile"),
		"about:blank")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	p := startProcess(t, o, cmd)
	url := fmt.Sprintf("http://127.0.0.1:%d/json/version", port)
	err = poll(t.Context(), 30*time.Second, func() error {
		select {
		case <-p.exited:
			return fmt.Errorf("%w: chromium exited: %v", errGiveUp, p.waitErr)
		default:
		}
		code, _, err := get(url)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("HTTP %d", code)
		}
		return err
	})
	if err != nil {
		p.kill()
		t.Fatalf("chromium on port %d: %v\nchromium log (tail): %s", port, err, tail(logs.String(), 2000))
	}
	return p
}

// startAppProcess starts a stand-in for the app's process, for the memory probe to find by name: a copy
// of sleep under a distinctive name (the kernel names a process after the file it executes).
func startAppProcess(t *testing.T, o owner, bin, name string) *process {
	t.Helper()
	cmd := exec.Command(bin, "600")
	cmd.Args[0] = "sleep" // argv[0] for a multi-call binary (busybox); /proc/<pid>/comm is still name
	p := startProcess(t, o, cmd)
	comm := fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)
	if err := poll(t.Context(), 10*time.Second, func() error {
		b, err := os.ReadFile(comm)
		if err == nil && strings.TrimSpace(string(b)) != name {
			err = fmt.Errorf("%s is %q, want %q", comm, b, name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return p
}

// copySleep copies the sleep binary into dir under name.
func copySleep(t *testing.T, dir, name string) string {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, name)
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// buildAgent builds ./cmd/agent once into a temporary directory.
func buildAgent(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the agent: %v", err)
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if err != nil || root == "." {
		t.Fatalf("cannot find the module root: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "agent")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/agent")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/agent: %v\n%s", err, out)
	}
	return bin
}

// agentProc is the agent, running as a real process.
type agentProc struct {
	*process
	base   string
	stderr *syncBuffer
}

func startAgent(t *testing.T, bin, cfg string, env []string) *agentProc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin, "--config", cfg, "--listen", addr, "--log-level", "debug")
	cmd.Env = env
	a := &agentProc{base: "http://" + addr, stderr: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = a.stderr, a.stderr
	a.process = startProcess(t, t, cmd)
	err := poll(t.Context(), 30*time.Second, func() error {
		select {
		case <-a.exited:
			return fmt.Errorf("%w: agent exited: %v", errGiveUp, a.waitErr)
		default:
		}
		code, _, err := get(a.base + "/livez")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/livez: HTTP %d", code)
		}
		return err
	})
	if err != nil {
		t.Fatalf("agent on %s: %v\nagent log (tail): %s", addr, err, tail(a.stderr.String(), 4000))
	}
	return a
}

// terminate sends SIGTERM and returns the exit code.
func (a *agentProc) terminate(t *testing.T, within time.Duration) int {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-a.exited:
	case <-time.After(within):
		a.kill()
		t.Fatalf("agent did not exit within %s of SIGTERM", within)
	}
	var ee *exec.ExitError
	if errors.As(a.waitErr, &ee) {
		return ee.ExitCode()
	}
	if a.waitErr != nil {
		t.Fatalf("agent: %v", a.waitErr)
	}
	return 0
}

// errGiveUp makes poll stop at once.
var errGiveUp = errors.New("giving up")

// poll calls cond until it returns nil, returns an error wrapping errGiveUp, or within passes; then it
// returns cond's last error.
func poll(ctx context.Context, within time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil || errors.Is(err, errGiveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %s: %w", within, err)
		case <-tick.C:
		}
	}
}

var client = &http.Client{Timeout: 10 * time.Second}

func get(url string) (int, []byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader in different goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
