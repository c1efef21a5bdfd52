package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The egress section compares four ways to the same upstream, in one run: direct, a bare
// httputil.ReverseProxy (the floor any Go proxy pays), the agent's egress proxy (the real binary), and
// nginx as a plain reverse proxy; for a 1 KiB JSON answer and a 10 MiB body, at 1 and 64 connections.

// egressBodies are the answers measured, by upstream path.
var egressBodies = []struct {
	name, path string
	size       int
}{
	{"1 KiB JSON", "/small", 1 << 10},
	{"10 MiB", "/large", 10 << 20},
}

var egressConns = []int{1, 64}

// egressRow is one cell: a body size at a connection count, each target measured.
type egressRow struct {
	Body    string
	Conns   int
	Targets []string // in report order
	Runs    map[string]run
	// AgentRSSGrowthKiB is the agent's peak RSS during the cell (VmHWM, reset before it) over its RSS
	// before it.
	AgentRSSGrowthKiB int64
}

func (r egressRow) ratio(a, b string) float64 { return r.Runs[a].ratioTo(r.Runs[b]) }

// runEgress measures the egress proxy. bin is the agent binary ("" builds one).
func runEgress(ctx context.Context, p *params, bin string) ([]egressRow, error) {
	if bin == "" {
		bin = filepath.Join(p.tmp, "agent-egress")
		logf("egress: building cmd/agent")
		args := append(append([]string{"build"}, imageFlags...), "-o", bin, "./cmd/agent")
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Env = p.repo, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build: %w\n%s", err, out)
		}
	}

	up, err := startEgressUpstream()
	if err != nil {
		return nil, err
	}
	defer up.Close()

	bare, bareURL, err := startBareProxy(ctx, p, up.base)
	if err != nil {
		return nil, err
	}
	defer func() { _ = bare.stop() }()

	agent, agentURL, err := startEgressAgent(p, bin, up.base)
	if err != nil {
		return nil, err
	}
	defer func() { _ = agent.stop() }()

	targets := []target{
		{name: "direct", url: up.base},
		{name: "bare ReverseProxy", url: bareURL + "/up"},
		{name: "agent", url: agentURL + "/up"},
	}
	nginx, nginxURL, err := startNginx(p, up.base)
	if err != nil {
		logf("egress: nginx not measured: %v", err)
	} else {
		defer func() { _ = nginx.stop() }()
		targets = append(targets, target{name: "nginx", url: nginxURL + "/up"})
	}

	check := newLoadClient(1)
	for _, t := range targets {
		if err := waitStatus(ctx, check, t.url+"/small", 200, 30*time.Second); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}

	rounds := max(2, p.rounds/5)
	var rows []egressRow
	for _, body := range egressBodies {
		for _, conns := range egressConns {
			row := egressRow{Body: body.name, Conns: conns, Runs: map[string]run{}}
			for _, t := range targets {
				row.Targets = append(row.Targets, t.name)
			}
			logf("egress: %s at %d connections, %d rounds of %s per target", body.name, conns, rounds, p.cell/time.Duration(rounds))
			client := newLoadClient(conns)
			before, _ := procStatus(agent.cmd.Process.Pid, "VmRSS")
			resetPeak(agent.cmd.Process.Pid)
			for i := range rounds {
				order := slices.Clone(targets)
				if i%2 == 1 {
					slices.Reverse(order)
				}
				for _, t := range order {
					res, err := hammer(ctx, client, t.url+body.path, 200, conns, p.cell/time.Duration(rounds), func() int64 { return 0 })
					if err != nil {
						return rows, fmt.Errorf("%s %s: %w", t.name, body.name, err)
					}
					if res.Errors > 0 {
						return rows, fmt.Errorf("%s %s: %d of %d requests failed", t.name, body.name, res.Errors, res.Requests)
					}
					r := row.Runs[t.name]
					r.add(run{loadResult: res})
					row.Runs[t.name] = r
				}
			}
			after, _ := procStatus(agent.cmd.Process.Pid, "VmHWM")
			row.AgentRSSGrowthKiB = after["VmHWM"] - before["VmRSS"]
			for name, r := range row.Runs {
				r.finish()
				row.Runs[name] = r
			}
			client.CloseIdleConnections()
			rows = append(rows, row)
		}
	}
	return rows, ctx.Err()
}

// resetPeak resets the process's VmHWM to its current RSS (Linux clear_refs 5), so that VmHWM after a
// cell is the peak during it.
func resetPeak(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// startEgressUpstream serves the bodies from a process-wide buffer: the upstream costs as little as
// an HTTP server can.
func startEgressUpstream() (*served, error) {
	mux := http.NewServeMux()
	for _, b := range egressBodies {
		body := bytes.Repeat([]byte("x"), b.size)
		if b.path == "/small" {
			body = []byte(`{"data":"` + strings.Repeat("x", b.size-11) + `"}`)
		}
		mux.HandleFunc(b.path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body)
		})
	}
	return serve(mux)
}

// startBareProxy builds and runs bench/cmd/bareproxy: httputil.ReverseProxy in its own process, as
// the agent is.
func startBareProxy(ctx context.Context, p *params, upstream string) (*proc, string, error) {
	bin := filepath.Join(p.tmp, "bareproxy")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/bareproxy")
	cmd.Dir = filepath.Join(p.repo, "bench")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("build bareproxy: %w\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	pr, err := launch(exec.Command(bin, "-listen", addr, "-upstream", upstream), addr, filepath.Join(p.tmp, "bareproxy.log"))
	if err != nil {
		return nil, "", err
	}
	return pr, "http://" + addr, nil
}

// startEgressAgent runs the agent binary with one egress route to upstream and one rare probe.
func startEgressAgent(p *params, bin, upstream string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(p.tmp, "egress.yaml")
	text := fmt.Sprintf(`
defaults: {interval: 1h}
probes:
  - {name: upstream, kind: tcp, address: %q}
egress:
  listen: "127.0.0.1:%d"
  routes:
    - {name: up, prefix: /up/, upstream: %q}
`, strings.TrimPrefix(upstream, "http://"), port, upstream)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return nil, "", err
	}
	pr, err := startProc(bin, cfg, os.Environ(), filepath.Join(p.tmp, "egress-agent.log"))
	if err != nil {
		return nil, "", err
	}
	return pr, "http://127.0.0.1:" + strconv.Itoa(port), nil
}

// startNginx runs nginx (Debian's package) as a plain reverse proxy: keep-alive to the upstream, no
// buffering (it streams, like the Go proxies), no access log.
func startNginx(p *params, upstream string) (*proc, string, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return nil, "", err
		}
		bin = "/usr/sbin/nginx"
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(p.tmp, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	conf := fmt.Sprintf(`worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream up { server %[2]s; keepalive 64; }
  server {
    listen 127.0.0.1:%[3]d;
    location /up/ {
      proxy_pass http://up/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
`, dir, strings.TrimPrefix(upstream, "http://"), port)
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", cfg)
	pr, err := launch(cmd, "", filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, "", err
	}
	return pr, "http://127.0.0.1:" + strconv.Itoa(port), nil
}

// egressMarkdown renders the section and its verdicts.
func egressMarkdown(rows []egressRow) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Egress proxy: direct, bare httputil.ReverseProxy, the agent, nginx\n\n")
	w("| body | conns | target | req/s | MB/s | p50 ms | p99 ms | req/s vs bare Go |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		for _, t := range r.Targets {
			run := r.Runs[t]
			mbs := float64(run.Bytes) / run.Elapsed.Seconds() / 1e6
			w("| %s | %d | %s | %.0f | %.1f | %s | %s | %.2fx |\n", r.Body, r.Conns, t, run.RPS(), mbs,
				ms(run.Quantile(0.5)), ms(run.Quantile(0.99)), r.ratio(t, "bare ReverseProxy"))
		}
	}
	w("\nAgent RSS growth during each cell (peak over the RSS before it):")
	for _, r := range rows {
		w(" %s/%d conns %.1f MiB;", r.Body, r.Conns, mib(r.AgentRSSGrowthKiB))
	}
	w("\n\n")
	return b.String()
}

// egressVerdicts are the targets for the proxy.
func egressVerdicts(rows []egressRow) []verdict {
	var out []verdict
	var worstAdded time.Duration
	var worstRatio = -1.0
	var worstRSS int64
	var addedAt, ratioAt string
	for _, r := range rows {
		agent, okA := r.Runs["agent"]
		direct, okD := r.Runs["direct"]
		if !okA || !okD {
			continue
		}
		if r.Conns == 1 && r.Body == egressBodies[0].name { // a 10 MiB body's copy time is not proxy overhead
			if d := agent.Quantile(0.5) - direct.Quantile(0.5); d > worstAdded || addedAt == "" {
				worstAdded, addedAt = d, r.Body
			}
		}
		if r.Conns == 64 {
			if ratio := r.ratio("agent", "bare ReverseProxy"); worstRatio < 0 || ratio < worstRatio {
				worstRatio, ratioAt = ratio, r.Body
			}
			worstRSS = max(worstRSS, r.AgentRSSGrowthKiB)
		}
	}
	if addedAt != "" {
		out = append(out, verdict{Target: "egress: added p50 latency over direct <= 100 µs at 1 connection (1 KiB JSON)",
			Measured: fmt.Sprintf("%d µs", worstAdded.Microseconds()), Pass: worstAdded <= 100*time.Microsecond})
	}
	if ratioAt != "" {
		out = append(out, verdict{Target: "egress: throughput >= 0.8x the bare Go proxy at 64 connections",
			Measured: fmt.Sprintf("lowest %.2fx (%s)", worstRatio, ratioAt), Pass: worstRatio >= 0.8})
		out = append(out, verdict{Target: "egress: agent RSS growth <= 16 MiB at 64 connections",
			Measured: fmt.Sprintf("%.1f MiB", mib(worstRSS)), Pass: worstRSS <= 16<<10})
	}
	return out
}
