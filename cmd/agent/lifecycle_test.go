package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
)

// The lifecycle tests run the agent as a real process, built once, and talk to it only through
// signals, its files, its HTTP port and its logs, as the kubelet does.

const lifecycleConfig = `
server: { shutdownDelay: %s }
defaults: { interval: 500ms, timeout: 1s, retry: { maxRetries: 0 } }
probes:
  - { name: app, kind: http, critical: true, url: "%s" }
  - { name: config, kind: config }
%s`

// lifecycleProc is one agent process.
type lifecycleProc struct {
	cmd    *exec.Cmd
	logs   *testkit.SyncBuffer
	base   string
	exited chan struct{} // closed once Wait returned; err and at are set then
	err    error
	at     time.Time
}

func startProc(t *testing.T, bin, cfg string) *lifecycleProc {
	t.Helper()
	p := &lifecycleProc{logs: &testkit.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "--config", cfg, "--listen", "127.0.0.1:0")
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // nothing of the test's own environment
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.at = time.Now()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			t.Error("the agent did not stop within 30s of SIGTERM")
		}
	})
	exited := false
	testkit.Eventually(t, 30*time.Second, func() bool {
		if m := addrRe.FindStringSubmatch(p.logs.String()); m != nil {
			p.base = "http://" + m[1]
			return true
		}
		select {
		case <-p.exited:
			exited = true
		default:
		}
		return exited
	}, "the agent serves; log:\n%s", p.logs)
	if exited {
		t.Fatalf("the agent exited (%v): %s", p.err, p.logs.String())
	}
	p.await(t, "ready", func() bool { code, _ := p.get("/readyz"); return code == http.StatusOK })
	return p
}

// get is one request on a fresh connection: -1 when it got no answer.
func (p *lifecycleProc) get(path string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(p.base + path)
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *lifecycleProc) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, cond, "%s; log:\n%s", what, p.logs)
}

// logged counts the log lines whose message is msg.
func (p *lifecycleProc) logged(msg string) int {
	return strings.Count(p.logs.String(), `"msg":"`+msg+`"`)
}

func (p *lifecycleProc) detailed(t *testing.T, path string) any {
	t.Helper()
	code, body := p.get("/api/health/detailed")
	if code == -1 {
		t.Fatalf("/api/health/detailed: %s", body)
	}
	return jq(t, []byte(body), path)
}

func hexSum(b string) string {
	s := sha256.Sum256([]byte(b))
	return hex.EncodeToString(s[:])
}

// outcome is one request of the load loop.
type outcome struct {
	start time.Time
	code  int // -1: no answer
	err   string
}

func TestLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary")
	}
	bin := testkit.BuildAgent(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"status":"ok"}`) }))
	defer app.Close()

	t.Run("SIGTERM under load answers every request and exits 0", func(t *testing.T) {
		const delay = time.Second
		cfg := writeFile(t, "agent.yaml", fmt.Sprintf(lifecycleConfig, delay, app.URL, ""))
		p := startProc(t, bin, cfg)

		// Load: keep-alive clients, as a load balancer's, hitting what kubelets and dashboards read.
		stop := make(chan struct{})
		var (
			mu       sync.Mutex
			outcomes []outcome
			wg       sync.WaitGroup
		)
		paths := []string{"/api/health", "/livez", "/readyz", "/api/health/detailed"}
		for w := range 4 {
			wg.Go(func() {
				tr := &http.Transport{MaxIdleConnsPerHost: 1}
				defer tr.CloseIdleConnections()
				c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
				for i := 0; i < 200_000; i++ { // bounded; in practice the process exit ends it
					select {
					case <-stop:
						return
					default:
					}
					o := outcome{start: time.Now(), code: -1}
					resp, err := c.Get(p.base + paths[(w+i)%len(paths)])
					if err == nil {
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						o.code = resp.StatusCode
					}
					if err != nil {
						o.code, o.err = -1, err.Error()
					}
					mu.Lock()
					outcomes = append(outcomes, o)
					mu.Unlock()
					if err != nil {
						return // the listener has closed: the process is going
					}
				}
			})
		}
		p.await(t, "load flowing", func() bool { mu.Lock(); defer mu.Unlock(); return len(outcomes) > 50 })

		sent := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// /readyz fails at once, while the server keeps answering.
		var readyz string
		p.await(t, "/readyz 503 shutting down", func() bool {
			code, body := p.get("/readyz")
			readyz = body
			return code == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
		})
		if seen := time.Since(sent); seen >= delay {
			t.Errorf("/readyz reported the shutdown only after %s, not within the %s delay: %q", seen, delay, readyz)
		}
		if code, body := p.get("/livez"); code != http.StatusOK {
			t.Errorf("/livez during the drain = %d %q: the kubelet would restart a draining agent", code, body)
		}

		select {
		case <-p.exited:
		case <-time.After(delay + 30*time.Second):
			t.Fatalf("still running %s after SIGTERM", delay+30*time.Second)
		}
		close(stop)
		wg.Wait()
		took := p.at.Sub(sent)
		if p.err != nil {
			t.Errorf("exit: %v, want status 0; log:\n%s", p.err, p.logs.String())
		}
		if took < delay {
			t.Errorf("exited %s after SIGTERM, before shutdownDelay %s", took, delay)
		}
		if took > delay+5*time.Second {
			t.Errorf("exited %s after SIGTERM, want within shutdownDelay + 5s", took)
		}

		// Every request issued before the server could have begun to close (shutdownDelay after the
		// signal; a margin for a loaded machine) got an answer; only later ones may find it gone.
		closeFrom := sent.Add(delay - 250*time.Millisecond)
		var answeredInDrain, lost int
		for _, o := range outcomes {
			switch {
			case o.code != -1 && !o.start.Before(sent):
				answeredInDrain++
			case o.code == -1 && o.start.Before(closeFrom):
				lost++
				t.Errorf("request issued %s after SIGTERM got no answer: %s", o.start.Sub(sent), o.err)
			}
		}
		if answeredInDrain < 10 {
			t.Errorf("only %d requests answered during the drain: the load did not exercise it", answeredInDrain)
		}
		t.Logf("%d requests, %d answered after SIGTERM, %d lost; exited %s after SIGTERM", len(outcomes), answeredInDrain, lost, took.Round(time.Millisecond))
		if strings.Count(p.logs.String(), `"msg":"health-agent stopped"`) != 1 {
			t.Errorf("no clean stop logged:\n%s", p.logs.String())
		}
	})

	t.Run("the drain shows on every health endpoint", func(t *testing.T) {
		// From SIGTERM until exit: /api/health 503 "stopping" (a load balancer's `curl -f` sees the
		// pod leave), /api/health/detailed the same, /readyz fails, /livez stays 200.
		const delay = 3 * time.Second
		cfg := writeFile(t, "agent.yaml", fmt.Sprintf(lifecycleConfig, delay, app.URL, ""))
		p := startProc(t, bin, cfg)
		p.await(t, "/api/health ok", func() bool { code, _ := p.get("/api/health"); return code == http.StatusOK })

		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		p.await(t, "/readyz failing", func() bool { code, _ := p.get("/readyz"); return code == http.StatusServiceUnavailable })
		// Every answer until the server closes must say the agent is stopping; at least one round must
		// be seen whole within the delay.
		rounds := 0
		for {
			health, hbody := p.get("/api/health")
			detailed, dbody := p.get("/api/health/detailed")
			readyz, rbody := p.get("/readyz")
			livez, lbody := p.get("/livez")
			if health == -1 || detailed == -1 || readyz == -1 || livez == -1 {
				break // the server has closed: the drain is over
			}
			rounds++
			if health != http.StatusServiceUnavailable || jq(t, []byte(hbody), ".data.status") != "stopping" {
				t.Fatalf("/api/health during the drain: %d %s", health, hbody)
			}
			if detailed != http.StatusServiceUnavailable || jq(t, []byte(dbody), ".data.status") != "stopping" {
				t.Fatalf("/api/health/detailed during the drain: %d %.300s", detailed, dbody)
			}
			if readyz != http.StatusServiceUnavailable || !strings.Contains(rbody, "shutting down") {
				t.Fatalf("/readyz during the drain: %d %q", readyz, rbody)
			}
			if livez != http.StatusOK {
				t.Fatalf("/livez during the drain: %d %q: the kubelet would restart a draining agent", livez, lbody)
			}
		}
		if rounds == 0 {
			t.Fatalf("no whole round of answers during a %s drain; log:\n%s", delay, p.logs.String())
		}
		select {
		case <-p.exited:
		case <-time.After(delay + 30*time.Second):
			t.Fatal("did not exit after the drain")
		}
		if p.err != nil {
			t.Errorf("exit: %v, want status 0", p.err)
		}
		t.Logf("%d rounds of the four endpoints answered during the drain", rounds)
	})

	t.Run("SIGHUP reloads the config", func(t *testing.T) {
		body := fmt.Sprintf(lifecycleConfig, "0s", app.URL, "")
		cfg := writeFile(t, "agent.yaml", body)
		p := startProc(t, bin, cfg)

		// Unchanged, the file gives the watcher nothing to report: only the signal reaches Reload.
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		p.await(t, "the SIGHUP reload", func() bool { return p.logged("config unchanged, nothing to reload") == 1 })
		if p.logged("SIGHUP: reloading config") != 1 {
			t.Errorf("SIGHUP not logged:\n%s", p.logs.String())
		}

		// Changed, then signalled: applied (the watcher may see it too; one of the two applies it).
		changed := fmt.Sprintf(lifecycleConfig, "0s", app.URL, "  - { name: second, kind: http, critical: false, url: \""+app.URL+"\" }\n")
		if err := os.WriteFile(cfg, []byte(changed), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		p.await(t, "the changed config applied", func() bool { return p.detailed(t, ".data.config.sha256") == hexSum(changed) })
		p.await(t, "the new probe healthy", func() bool { return p.detailed(t, ".data.health.services.second.status") == "healthy" })
	})

	t.Run("a changed file reloads without a signal", func(t *testing.T) {
		body := fmt.Sprintf(lifecycleConfig, "0s", app.URL, "")
		cfg := writeFile(t, "agent.yaml", body)
		p := startProc(t, bin, cfg)
		changed := fmt.Sprintf(lifecycleConfig, "0s", app.URL, "  - { name: second, kind: http, critical: false, url: \""+app.URL+"\" }\n")
		tmp := cfg + ".tmp"
		if err := os.WriteFile(tmp, []byte(changed), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfg); err != nil {
			t.Fatal(err)
		}
		p.await(t, "the changed config applied", func() bool { return p.detailed(t, ".data.config.sha256") == hexSum(changed) })
		if p.logged("SIGHUP: reloading config") != 0 || p.logged("config file changed") != 1 {
			t.Errorf("the reload did not come from the watcher:\n%s", p.logs.String())
		}
	})

	t.Run("an invalid config is rejected and the running one goes on", func(t *testing.T) {
		body := fmt.Sprintf(lifecycleConfig, "0s", app.URL, "")
		cfg := writeFile(t, "agent.yaml", body)
		p := startProc(t, bin, cfg)
		if err := os.WriteFile(cfg, []byte("probes: [ { name: x, kind: nope } ]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		p.await(t, "the config check degraded", func() bool { return p.detailed(t, ".data.health.services.config.status") == "degraded" })
		if got := p.detailed(t, ".data.config.sha256"); got != hexSum(body) {
			t.Errorf("running sha256 %v, want the original %s", got, hexSum(body))
		}
		if code, b := p.get("/readyz"); code != http.StatusOK {
			t.Errorf("/readyz after a rejected reload = %d %q", code, b)
		}
		if p.logged("config reload rejected, keeping the running config") == 0 {
			t.Errorf("the rejection was not logged:\n%s", p.logs.String())
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.exited:
			var ee *exec.ExitError
			if p.err != nil && errors.As(p.err, &ee) {
				t.Errorf("exit status %d after a rejected reload, want 0", ee.ExitCode())
			} else if p.err != nil {
				t.Error(p.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("did not stop")
		}
	})
}
