//go:build linux

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
)

// startAppProcess starts a stand-in for the app's process, for the memory probe to find by name: a copy
// of sleep under a distinctive name (the kernel names a process after the file it executes).
// cleanup is the owner's: a parent test's when the process must outlive the subtest t.
func startAppProcess(t *testing.T, cleanup func(func()), bin, name string) *testkit.Process {
	t.Helper()
	cmd := exec.Command(bin, "600")
	cmd.Args[0] = "sleep" // argv[0] for a multi-call binary (busybox); /proc/<pid>/comm is still name
	p := testkit.StartProcess(t, cleanup, cmd)
	comm := fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)
	testkit.EventuallyState(t, 10*time.Second, func() (bool, string) {
		b, err := os.ReadFile(comm)
		if err != nil {
			return false, err.Error()
		}
		return strings.TrimSpace(string(b)) == name, fmt.Sprintf("%q", b)
	}, "%s is %q", comm, name)
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

// agentProc is the agent, running as a real process.
type agentProc struct {
	*testkit.Process
	base   string
	stderr *testkit.SyncBuffer
}

func startAgent(t *testing.T, bin, cfg string, env []string) *agentProc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	cmd := exec.Command(bin, "--config", cfg, "--listen", addr, "--log-level", "debug")
	cmd.Env = env
	a := &agentProc{base: "http://" + addr, stderr: &testkit.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = a.stderr, a.stderr
	a.Process = testkit.StartProcess(t, t.Cleanup, cmd)
	var err error // why the agent does not serve (yet)
	if !testkit.Poll(30*time.Second, func() bool {
		select {
		case <-a.Exited():
			err = fmt.Errorf("agent exited: %v", a.Err())
			return true
		default:
		}
		var code int
		code, _, err = get(a.base + "/livez")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/livez: HTTP %d", code)
		}
		return err == nil
	}) || err != nil {
		t.Fatalf("agent on %s not serving (waited up to 30s): %v\nagent log (tail): %s", addr, err, tail(a.stderr.String(), 4000))
	}
	return a
}

// terminate sends SIGTERM and returns the exit code.
func (a *agentProc) terminate(t *testing.T, within time.Duration) int {
	t.Helper()
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-a.Exited():
	case <-time.After(within):
		a.Kill()
		t.Fatalf("agent did not exit within %s of SIGTERM", within)
	}
	var ee *exec.ExitError
	if errors.As(a.Err(), &ee) {
		return ee.ExitCode()
	}
	if err := a.Err(); err != nil {
		t.Fatalf("agent: %v", err)
	}
	return 0
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
