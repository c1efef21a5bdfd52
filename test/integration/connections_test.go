package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/api"
)

// TestManyIdleConnections runs the real binary as deployed (GOMEMLIMIT=64MiB) and opens 5,000
// keep-alive connections to it, each used for one request and then left idle. The agent keeps at most
// api.MaxConns of them (it closes the longest idle to admit a new one), so its peak RSS stays under
// 48 MiB and a new connection, the kubelet's, gets /readyz answered within 100 ms.
func TestManyIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary")
	}
	const (
		conns   = 5000
		maxHWM  = 48 << 20
		answer  = 100 * time.Millisecond
		workers = 32
	)
	raiseFileLimit(t, conns+1024)

	bin := testkit.BuildAgent(t)
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, cfg, "server: { shutdownDelay: 0s }\nprobes:\n  - { name: config, kind: config, critical: true }\n")
	logs := &testkit.SyncBuffer{}
	cmd := exec.Command(bin, "--config", cfg, "--listen", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GOMEMLIMIT=64MiB"}
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	p := testkit.StartProcess(t, nil, cmd)

	addrRe := regexp.MustCompile(`"addr":"([^"]+)"`)
	var addr string
	testkit.Eventually(t, 30*time.Second, func() bool {
		if m := addrRe.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		return addr != "" || p.Err() != nil
	}, "the agent serves; log:\n%s", logs)
	if addr == "" {
		t.Fatalf("the agent exited: %v\n%s", p.Err(), logs)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { d, err := fresh(addr); return err == nil && d > 0 }, "/readyz passes")

	// 5,000 keep-alive connections, each used once, then idle. The agent closes most of them as
	// newer ones come: a request on a connection it closed is not an error of the test.
	held := make([]net.Conn, conns)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
		next   = make(chan int)
	)
	t.Cleanup(func() {
		for _, c := range held {
			if c != nil {
				c.Close()
			}
		}
	})
	for range workers {
		wg.Go(func() {
			for i := range next {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					continue
				}
				held[i] = c
				if oneRequest(c) != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		})
	}
	for i := range conns {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d connections opened, %d of their requests found the connection already closed", conns, failed)
	if failed > conns/2 {
		t.Errorf("%d of %d connections could not make their one request: the agent closed new connections, not idle ones", failed, conns)
	}

	// A new connection is answered fast: the best of a few tries, so that a busy machine's hiccup does
	// not decide.
	best := time.Duration(1 << 62)
	for range 5 {
		d, err := fresh(addr)
		if err != nil {
			t.Fatalf("a new connection's /readyz: %v", err)
		}
		best = min(best, d)
	}
	if best > answer {
		t.Errorf("/readyz on a new connection took %s at best, want within %s", best, answer)
	}

	fds := countFDs(t, p.Pid())
	hwm := procStatus(t, p.Pid(), "VmHWM")
	t.Logf("agent: %d open files, peak RSS %.1f MiB; best /readyz %s", fds, float64(hwm)/(1<<20), best)
	if fds > api.MaxConns+64 {
		t.Errorf("the agent holds %d files, want at most about api.MaxConns (%d) connections", fds, api.MaxConns)
	}
	if hwm > maxHWM {
		t.Errorf("peak RSS (VmHWM) %.1f MiB, want under %d MiB", float64(hwm)/(1<<20), maxHWM>>20)
	}
}

// raiseFileLimit lets the test process hold n files, within its hard limit.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("needs %d open files, the hard limit is %d", n, lim.Max)
	}
	old := lim
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// oneRequest sends GET /livez on c and reads the answer, leaving c open and idle.
func oneRequest(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET /livez HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// fresh times GET /readyz on a new connection, from dial to the whole answer; an error unless 200.
func fresh(addr string) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/readyz: %s", resp.Status)
	}
	return time.Since(start), nil
}

// countFDs counts the open files of process pid.
func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
