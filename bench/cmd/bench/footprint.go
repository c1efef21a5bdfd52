package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on every Linux
// architecture the agent targets; getconf CLK_TCK says so here).
const clockTicks = 100

// binaries are the agent built the ways that matter.
type binaries struct {
	Plain       string // go build ./cmd/agent: what a developer gets
	Image       string // as the Dockerfile builds it: CGO_ENABLED=0 -tags nomsgpack -trimpath -ldflags "-s -w"
	WithMsgpack string // the image build without gin's nomsgpack tag, for comparison
	Floor       string // bench/cmd/dialfloor: the idle-CPU baseline
	Sizes       map[string]int64
}

// imageFlags are the image's build flags, as in the Dockerfile (CGO_ENABLED=0 besides);
// deploy/k8s/image_test.go checks the Dockerfile's.
var imageFlags = []string{"-tags", "nomsgpack", "-trimpath", "-ldflags", "-s -w"}

func buildAgent(ctx context.Context, repo, tmp string) (binaries, error) {
	b := binaries{Plain: filepath.Join(tmp, "agent-plain"), Image: filepath.Join(tmp, "agent"),
		WithMsgpack: filepath.Join(tmp, "agent-msgpack"), Floor: filepath.Join(tmp, "dialfloor"), Sizes: map[string]int64{}}
	builds := []struct {
		out   string
		cgo   bool
		flags []string
	}{
		{b.Plain, true, nil},
		{b.Image, false, imageFlags},
		{b.WithMsgpack, false, imageFlags[2:]},
	}
	for _, bd := range builds {
		args := append([]string{"build"}, bd.flags...)
		args = append(args, "-o", bd.out, "./cmd/agent")
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = repo
		cmd.Env = os.Environ()
		if !bd.cgo {
			cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		fi, err := os.Stat(bd.out)
		if err != nil {
			return b, err
		}
		b.Sizes[bd.out] = fi.Size()
	}
	floor := exec.CommandContext(ctx, "go", "build", "-o", b.Floor, "./cmd/dialfloor")
	floor.Dir = filepath.Join(repo, "bench")
	if out, err := floor.CombinedOutput(); err != nil {
		return b, fmt.Errorf("go build ./cmd/dialfloor: %w\n%s", err, out)
	}
	return b, nil
}

// proc is an agent process started by the runner.
type proc struct {
	cmd   *exec.Cmd
	addr  string
	start time.Time // just before fork/exec
	done  chan error
	log   string
}

// freePort returns a loopback port nothing listens on (the kernel's pick, released at once).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startProc starts bin serving cfgPath ("" = the embedded default config) on a free loopback port.
func startProc(bin, cfgPath string, env []string, logPath string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"--listen", addr}
	if cfgPath != "" {
		args = append(args, "--config", cfgPath)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	return launch(cmd, addr, logPath)
}

// launch starts cmd with its output in logPath; addr is where it serves ("" for nowhere).
func launch(cmd *exec.Cmd, addr, logPath string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	p := &proc{cmd: cmd, addr: addr, done: make(chan error, 1), log: logPath}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() {
		p.done <- cmd.Wait()
		lf.Close()
	}()
	return p, nil
}

// startFloor starts dialfloor making n probes' connections to deps, as probeConfig assigns them.
func startFloor(bin string, deps *tcpDeps, n int, logPath string) (*proc, error) {
	addrs := make([]string, 0, 10)
	for i := range min(n, 10) {
		addrs = append(addrs, deps.Addr(i))
	}
	cmd := exec.Command(bin, "-addrs", strings.Join(addrs, ","), "-n", strconv.Itoa(n), "-interval", "10s")
	return launch(cmd, "", logPath)
}

// waitListening polls a TCP connect every 200µs; it returns the time from process start.
func (p *proc) waitListening(within time.Duration) (time.Duration, error) {
	deadline := p.start.Add(within)
	for {
		c, err := net.DialTimeout("tcp", p.addr, 100*time.Millisecond)
		if err == nil {
			d := time.Since(p.start)
			c.Close()
			return d, nil
		}
		select {
		case err := <-p.done:
			p.done <- err
			return 0, fmt.Errorf("agent exited before listening (%v); log: %s", err, tail(p.log))
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("agent not listening on %s within %s; log: %s", p.addr, within, tail(p.log))
		}
		time.Sleep(200 * time.Microsecond) // polling interval
	}
}

// waitOK polls GET path every 2ms until it answers 200; it returns the time from process start.
func (p *proc) waitOK(client *http.Client, path string, within time.Duration) (time.Duration, error) {
	deadline := p.start.Add(within)
	for {
		resp, err := client.Get("http://" + p.addr + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.start), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("GET %s not 200 within %s", path, within)
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 20s).
func (p *proc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("agent did not stop within 20s of SIGTERM: %w", <-p.done)
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// cpuTicks is utime+stime of pid, in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count fields after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/pid/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc/pid/stat")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return utime + stime, nil
}

// procStatus returns the kB values of the named fields of /proc/<pid>/status (VmRSS, VmHWM, Threads).
func procStatus(pid int, keys ...string) (map[string]int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !slices.Contains(keys, k) {
			continue
		}
		n, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		if err == nil {
			out[k] = n
		}
	}
	return out, sc.Err()
}

// idleRow is one agent process at idle.
type idleRow struct {
	Config     string
	Default    bool // the RSS target's subject: the default config, as the image runs it
	Probes     int
	RSSWarmKiB int64 // VmRSS after the warm-up
	RSSKiB     int64 // VmRSS at the end of the window
	AnonKiB    int64 // RssAnon: the process's private memory (heap, stacks)
	FileKiB    int64 // RssFile: pages of the binary mapped in
	HWMKiB     int64 // VmHWM (peak RSS) at the end
	Threads    int64
	CPUPercent float64 // of one core, over the window
	Window     time.Duration
	DepPerSec  float64       // dependency connections per second over the window (probing really happens)
	Ready      bool          // /readyz answered 200 at the end
	GOGC100    bool          // run with Go's default GC target instead of the agent's
	Age        time.Duration // how long the process had run at the end of the window
	Floor      bool          // the dialfloor baseline, not an agent
}

// footprintConfig is one process to watch.
type footprintConfig struct {
	name   string
	def    bool
	bin    string
	probes int
	path   string   // "" = embedded default
	env    []string // added to the world's
	deps   *tcpDeps
	floor  bool // bin is dialfloor making the probes' connections, not an agent
}

// footprint is the idle agent processes, started early so that they age (their breaker histories and
// timelines fill, as in a long-running pod) while the other sections run.
type footprint struct {
	cfgs    []footprintConfig
	procs   []*proc
	started time.Time
}

// startFootprint starts one agent process per config.
func startFootprint(p *params, bin binaries, world *defaultWorld, counts []int) (*footprint, error) {
	// The image as it is, then without `-tags nomsgpack`: what that buys.
	f := &footprint{cfgs: []footprintConfig{
		{name: "default config", def: true, bin: bin.Image},
		{name: "default config, without `-tags nomsgpack`", bin: bin.WithMsgpack},
	}}
	type variant struct {
		n    int
		name string
		env  []string
	}
	var vs []variant
	for _, n := range counts {
		vs = append(vs, variant{n, fmt.Sprintf("%d tcp probes, 10s", n), nil})
	}
	// The largest again with Go's default GC target, to show what cmd/agent's GOGC default buys.
	last := counts[len(counts)-1]
	vs = append(vs, variant{last, fmt.Sprintf("%d tcp probes, 10s, `GOGC=100`", last), []string{"GOGC=100"}})
	for i, v := range vs {
		deps, err := startTCPDeps(10)
		if err != nil {
			f.Close()
			return nil, err
		}
		path, err := writeFile(p.tmp, fmt.Sprintf("idle-%d.yaml", i), probeConfig(v.n, 10*time.Second, deps))
		if err != nil {
			deps.Close()
			f.Close()
			return nil, err
		}
		f.cfgs = append(f.cfgs, footprintConfig{name: v.name, bin: bin.Image, probes: v.n, path: path, env: v.env, deps: deps})
	}
	// The baseline for the CPU target's row: the same connections from a process that does nothing else.
	if slices.Contains(counts, 100) {
		deps, err := startTCPDeps(10)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.cfgs = append(f.cfgs, footprintConfig{name: "baseline: 100 TCP connects per 10s and nothing else (`bench/cmd/dialfloor`)",
			bin: bin.Floor, probes: 100, deps: deps, floor: true})
	}
	f.started = time.Now()
	for i, c := range f.cfgs {
		logPath := filepath.Join(p.tmp, fmt.Sprintf("idle-%d.log", i))
		if c.floor {
			pr, err := startFloor(c.bin, c.deps, c.probes, logPath)
			if err != nil {
				f.Close()
				return nil, err
			}
			f.procs = append(f.procs, pr)
			continue
		}
		pr, err := startProc(c.bin, c.path, append(slices.Clone(world.env), c.env...), logPath)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.procs = append(f.procs, pr)
		if _, err := pr.waitListening(10 * time.Second); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return f, nil
}

// Close kills what is still running.
func (f *footprint) Close() {
	for _, pr := range f.procs {
		if pr != nil {
			pr.kill()
		}
	}
	f.procs = nil
	for _, c := range f.cfgs {
		if c.deps != nil {
			c.deps.Close()
		}
	}
	f.cfgs = nil
}

// measure waits until the processes are at least warmup old, then measures them in two groups, each
// over its own window: first the 1,000-probe agents, which are then stopped, then the others. A
// process's CPU time is its own, but on a small shared machine the busy agents' cache and scheduler
// traffic would inflate the small ones' figures.
func (f *footprint) measure(warmup, window time.Duration) ([]idleRow, error) {
	defer f.Close()
	if d := time.Until(f.started.Add(warmup)); d > 0 {
		logf("footprint: warming up for %s more", d.Round(time.Second))
		time.Sleep(d) // the measurement's own schedule, not a wait for a condition
	}
	rows := make([]idleRow, len(f.cfgs))
	var big, small []int
	for i, c := range f.cfgs {
		if c.probes >= 1000 {
			big = append(big, i)
		} else {
			small = append(small, i)
		}
	}
	for _, group := range [][]int{big, small} {
		if err := f.measureGroup(group, window, rows); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// measureGroup measures the processes at indices group over window, fills their rows, and stops them.
func (f *footprint) measureGroup(group []int, window time.Duration, rows []idleRow) error {
	t0 := make(map[int]uint64, len(group))
	d0 := make(map[int]int64, len(group))
	for _, i := range group {
		pr, c := f.procs[i], f.cfgs[i]
		st, err := procStatus(pr.cmd.Process.Pid, "VmRSS")
		if err != nil {
			return fmt.Errorf("%s: %w; log: %s", c.name, err, tail(pr.log))
		}
		rows[i] = idleRow{Config: c.name, Default: c.def, Probes: c.probes, Floor: c.floor, RSSWarmKiB: st["VmRSS"],
			GOGC100: slices.Contains(c.env, "GOGC=100")}
		if t0[i], err = cpuTicks(pr.cmd.Process.Pid); err != nil {
			return err
		}
		if c.deps != nil {
			d0[i] = c.deps.Requests()
		}
	}
	start := time.Now()
	logf("footprint: measuring %d processes over %s (%s old)", len(group), window, start.Sub(f.started).Round(time.Second))
	time.Sleep(window) // the measurement window
	elapsed := time.Since(start)
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	for _, i := range group {
		pr, c := f.procs[i], f.cfgs[i]
		t1, err := cpuTicks(pr.cmd.Process.Pid)
		if err != nil {
			return err
		}
		st, err := procStatus(pr.cmd.Process.Pid, "VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads")
		if err != nil {
			return err
		}
		r := &rows[i]
		r.RSSKiB, r.AnonKiB, r.FileKiB, r.HWMKiB, r.Threads = st["VmRSS"], st["RssAnon"], st["RssFile"], st["VmHWM"], st["Threads"]
		r.Window, r.Age = elapsed, time.Since(f.started)
		r.CPUPercent = float64(t1-t0[i]) / clockTicks / elapsed.Seconds() * 100
		if c.deps != nil {
			r.DepPerSec = float64(c.deps.Requests()-d0[i]) / elapsed.Seconds()
		}
		if pr.addr == "" {
			continue // the baseline serves nothing
		}
		if resp, err := client.Get("http://" + pr.addr + "/readyz"); err == nil {
			resp.Body.Close()
			r.Ready = resp.StatusCode == http.StatusOK
		}
	}
	var errs []error
	for _, i := range group {
		if err := f.procs[i].stop(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w; log: %s", f.cfgs[i].name, err, tail(f.procs[i].log)))
		}
		f.procs[i] = nil
	}
	return errors.Join(errs...)
}

// startRow is the start-up time of one config: to listening and to /startupz passing.
type startRow struct {
	Config               string
	Trials               int
	ListenMed, ListenMax time.Duration
	ReadyMed, ReadyMax   time.Duration // 0 when /startupz cannot pass (the default config's deps are absent)
}

// runStartup starts the binary trials times per config, one at a time, and times it.
func runStartup(p *params, bin binaries, world *defaultWorld, deps *tcpDeps) ([]startRow, error) {
	env := world.env
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	type sc struct {
		name    string
		path    string
		startup bool
	}
	var cases []sc
	cases = append(cases, sc{name: "default config", startup: world.browser})
	for _, n := range []int{5, 1000} {
		path, err := writeFile(p.tmp, fmt.Sprintf("start-%d.yaml", n), probeConfig(n, 10*time.Second, deps))
		if err != nil {
			return nil, err
		}
		cases = append(cases, sc{name: fmt.Sprintf("%d tcp probes", n), path: path, startup: true})
	}
	// One untimed start first, so that the binary is in the page cache like a pod's restarted sidecar.
	if pr, err := startProc(bin.Image, "", env, filepath.Join(p.tmp, "start-warm.log")); err == nil {
		_, _ = pr.waitListening(10 * time.Second)
		pr.kill()
	}
	var rows []startRow
	for _, c := range cases {
		var listen, ready []time.Duration
		for i := range p.startTrials {
			pr, err := startProc(bin.Image, c.path, env, filepath.Join(p.tmp, fmt.Sprintf("start-%d.log", i)))
			if err != nil {
				return nil, err
			}
			l, err := pr.waitListening(10 * time.Second)
			if err == nil && c.startup {
				var r time.Duration
				r, err = pr.waitOK(client, "/startupz", 30*time.Second)
				ready = append(ready, r)
			}
			pr.kill()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			listen = append(listen, l)
		}
		row := startRow{Config: c.name, Trials: p.startTrials}
		row.ListenMed, row.ListenMax = medMax(listen)
		row.ReadyMed, row.ReadyMax = medMax(ready)
		rows = append(rows, row)
	}
	return rows, nil
}

func medMax(ds []time.Duration) (med, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}
