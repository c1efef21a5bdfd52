package probes

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
)

// Environment of the idle child process the live tests watch (this test binary, re-executed).
const (
	memChildEnv      = "HEALTH_AGENT_MEMPROBE_CHILD"
	memChildAllocEnv = "HEALTH_AGENT_MEMPROBE_ALLOC"
)

// TestMemoryHelperProcess is not a test: it is the body of the child process. It allocates and touches
// the requested bytes, says "ready", and idles until its stdin closes.
func TestMemoryHelperProcess(t *testing.T) {
	if os.Getenv(memChildEnv) != "1" {
		t.Skip("helper process for the memory tests")
	}
	n, _ := strconv.Atoi(os.Getenv(memChildAllocEnv))
	buf := make([]byte, n)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	os.Stdout.WriteString("ready\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(buf)
	os.Exit(0)
}

// memChildBinary returns a unique process name and a path that runs this test binary under it: the
// kernel takes comm from the name exec'd, so a symlink is enough.
func memChildBinary(t *testing.T) (name, bin string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name = "memprobe-" + hex.EncodeToString(b) // 15 bytes: comm keeps it whole
	bin = filepath.Join(t.TempDir(), name)
	if err := os.Symlink(exe, bin); err != nil {
		t.Fatal(err)
	}
	return name, bin
}

// startMemChild starts bin as an idle child holding alloc extra bytes, waits until it is ready, and
// returns it. Cleanup kills and reaps it.
func startMemChild(t *testing.T, bin string, alloc int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^TestMemoryHelperProcess$")
	cmd.Env = append(os.Environ(), memChildEnv+"=1", memChildAllocEnv+"="+strconv.Itoa(alloc))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// The test framework may print its own lines first.
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("child did not get ready: %q, %v", line, err)
		}
		if line == "ready\n" {
			break
		}
	}
	return cmd
}

// newTestMemory builds a memory probe from options, failing the test on a config error.
func newTestMemory(t *testing.T, opts map[string]any) *memoryProbe {
	t.Helper()
	pr, err := newMemory(Spec{Name: "memory", Options: opts})
	if err != nil {
		t.Fatalf("newMemory(%v): %v", opts, err)
	}
	return pr.(*memoryProbe)
}

func writeMemFile(t *testing.T, file, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeMemProc is a process written into a fake procfs.
type fakeMemProc struct {
	pid     int
	comm    string
	cmdline string // NUL-separated
	state   string // default "S (sleeping)"
	rssKB   int64  // negative: no VmRSS line (a zombie or kernel thread)
	cgroup  string
}

func (p fakeMemProc) write(t *testing.T, procRoot string) {
	t.Helper()
	dir := filepath.Join(procRoot, strconv.Itoa(p.pid))
	state := p.state
	if state == "" {
		state = "S (sleeping)"
	}
	status := "Name:\t" + p.comm + "\nUmask:\t0022\nState:\t" + state + "\nPid:\t" + strconv.Itoa(p.pid) + "\n"
	if p.rssKB >= 0 {
		status += "VmPeak:\t  999999 kB\nVmRSS:\t" + strconv.FormatInt(p.rssKB, 10) + " kB\nRssAnon:\t   100 kB\n"
	}
	status += "Threads:\t1\n"
	writeMemFile(t, filepath.Join(dir, "status"), status)
	writeMemFile(t, filepath.Join(dir, "comm"), p.comm+"\n")
	writeMemFile(t, filepath.Join(dir, "cmdline"), p.cmdline)
	writeMemFile(t, filepath.Join(dir, "cgroup"), p.cgroup)
}

func assertMemFieldError(t *testing.T, err error, wantPath, wantMsg string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got none")
	}
	found := false
	for _, e := range config.Flatten(err) {
		var fe *config.FieldError
		if !errors.As(e, &fe) {
			t.Errorf("error %q is not a FieldError", e)
			continue
		}
		if fe.Path == wantPath && strings.Contains(fe.Msg, wantMsg) {
			found = true
		}
	}
	if !found {
		t.Errorf("want a FieldError at %q containing %q, got %v", wantPath, wantMsg, err)
	}
}

func TestMemoryBadOptions(t *testing.T) {
	tests := []struct {
		name     string
		opts     map[string]any
		wantPath string
		wantMsg  string
	}{
		{"process and pidFile", map[string]any{"process": "node", "pidFile": "/run/app.pid"}, "pidFile", "not both"},
		{"neither process nor pidFile", map[string]any{"warnPercent": 80}, "process", "set process"},
		{"no options at all", nil, "process", "set process"},
		{"process is a path", map[string]any{"process": "/usr/bin/node"}, "process", `use "node"`},
		{"warnBytes >= critBytes", map[string]any{"process": "node", "warnBytes": "1GiB", "critBytes": "512MiB"}, "warnBytes", "below critBytes"},
		{"warnBytes == critBytes", map[string]any{"process": "node", "warnBytes": 1024, "critBytes": "1KiB"}, "warnBytes", "below critBytes"},
		{"warnPercent >= critPercent", map[string]any{"process": "node", "warnPercent": 95, "critPercent": 80}, "warnPercent", "below critPercent"},
		{"percent above 100", map[string]any{"process": "node", "critPercent": 120}, "critPercent", "<= 100"},
		{"percent zero", map[string]any{"process": "node", "warnPercent": 0}, "warnPercent", "> 0"},
		{"percent negative", map[string]any{"process": "node", "warnPercent": -5}, "warnPercent", "> 0"},
		{"percent not a number", map[string]any{"process": "node", "warnPercent": "lots"}, "warnPercent", "percent"},
		{"bad byte string", map[string]any{"process": "node", "warnBytes": "lots"}, "warnBytes", "byte size"},
		{"unknown byte unit", map[string]any{"process": "node", "critBytes": "12XB"}, "critBytes", "byte size"},
		{"zero bytes", map[string]any{"process": "node", "warnBytes": 0}, "warnBytes", "at least 1 byte"},
		{"negative bytes", map[string]any{"process": "node", "critBytes": -1}, "critBytes", "at least 1 byte"},
		{"bytes of the wrong type", map[string]any{"process": "node", "warnBytes": []any{1}}, "warnBytes", "byte size"},
		{"unknown key", map[string]any{"process": "node", "warnMegabytes": 5}, "", "warnMegabytes"},
		{"procRoot is not an option", map[string]any{"process": "node", "procRoot": "/host/proc"}, "", "procRoot"},
		{"process of the wrong type", map[string]any{"process": map[string]any{"name": "node"}}, "process", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, err := newMemory(Spec{Name: "memory", Options: tt.opts})
			if pr != nil {
				t.Errorf("got a probe despite the error")
			}
			assertMemFieldError(t, err, tt.wantPath, tt.wantMsg)
		})
	}

	t.Run("every problem is reported", func(t *testing.T) {
		_, err := newMemory(Spec{Options: map[string]any{"warnBytes": "x", "critPercent": 101}})
		if n := len(config.Flatten(err)); n != 3 {
			t.Errorf("want 3 errors (process, warnBytes, critPercent), got %d: %v", n, err)
		}
	})
}

func TestMemoryOptionDefaults(t *testing.T) {
	tests := []struct {
		name              string
		opts              map[string]any
		warnBytes, crit   int64
		warnPct, critPct  float64
		process, procRoot string
	}{
		{"default config", map[string]any{"process": "node", "warnPercent": 80, "critPercent": 95}, 0, 0, 80, 95, "node", "/proc"},
		{"nothing set: default percents", map[string]any{"process": "node"}, 0, 0, defaultWarnPercent, defaultCritPercent, "node", "/proc"},
		{"bytes only: no percents", map[string]any{"pidFile": "/run/app.pid", "warnBytes": "512MiB", "critBytes": "1.5GB"}, 512 << 20, 1_500_000_000, 0, 0, "", "/proc"},
		{"crit percent only", map[string]any{"process": "node", "critPercent": "90%"}, 0, 0, 0, 90, "node", "/proc"},
		{"empty strings are unset", map[string]any{"process": " node ", "warnBytes": "", "critPercent": " "}, 0, 0, defaultWarnPercent, defaultCritPercent, "node", "/proc"},
		{"numbers as strings", map[string]any{"process": "node", "warnBytes": "1000", "critBytes": 2000.0, "warnPercent": "50"}, 1000, 2000, 50, 0, "node", "/proc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestMemory(t, tt.opts)
			if p.warnBytes != tt.warnBytes || p.critBytes != tt.crit || p.warnPct != tt.warnPct || p.critPct != tt.critPct {
				t.Errorf("thresholds = %d/%d bytes, %g/%g%%; want %d/%d, %g/%g",
					p.warnBytes, p.critBytes, p.warnPct, p.critPct, tt.warnBytes, tt.crit, tt.warnPct, tt.critPct)
			}
			if p.process != tt.process || p.procRoot != tt.procRoot {
				t.Errorf("process %q procRoot %q, want %q %q", p.process, p.procRoot, tt.process, tt.procRoot)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   any
		want int64
	}{
		{nil, 0}, {"", 0}, {1, 1}, {int64(4096), 4096}, {uint64(10), 10}, {1e9, 1_000_000_000},
		{"512", 512}, {"512B", 512}, {"1kB", 1000}, {"1KiB", 1024}, {"1Ki", 1024}, {"512MiB", 512 << 20},
		{"512Mi", 512 << 20}, {"512mib", 512 << 20}, {"1.5GB", 1_500_000_000}, {"1.5GiB", 3 << 29},
		{" 2 GiB ", 2 << 30}, {"1TB", 1e12}, {"1TiB", 1 << 40}, {"1.5", 1},
	}
	for _, tt := range tests {
		got, err := parseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseByteSize(%#v) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []any{"x", "MiB", "1.2.3MB", "-1MB", "1e9", "10 apples", 0.5, -3, "9999999TiB", true} {
		if got, err := parseByteSize(bad); err == nil {
			t.Errorf("parseByteSize(%#v) = %d, want an error", bad, got)
		}
	}
}

func TestMemoryFormat(t *testing.T) {
	for b, want := range map[int64]string{0: "0MB", 22020096: "21MB", 1 << 20: "1MB", 1<<20 + 1<<19: "2MB", 3 << 30: "3072MB"} {
		if got := LegacyMB(b); got != want {
			t.Errorf("LegacyMB(%d) = %q, want %q", b, got, want)
		}
	}
	for b, want := range map[int64]string{512: "512B", 1024: "1.0KiB", 1536: "1.5KiB", 850 << 20: "850.0MiB", 3 << 30: "3.0GiB"} {
		if got := formatIEC(b); got != want {
			t.Errorf("formatIEC(%d) = %q, want %q", b, got, want)
		}
	}
}

// checkMemory runs one check and returns its status as the monitor would see it (an error is Unhealthy).
func checkMemory(t *testing.T, p Probe) (Status, string, map[string]any) {
	t.Helper()
	res, err := p.Check(context.Background())
	if err != nil {
		if res.Reason != "" && res.Reason != err.Error() {
			t.Errorf("reason %q differs from error %q", res.Reason, err)
		}
		return Unhealthy, err.Error(), res.Fields
	}
	if res.Status == "" {
		t.Fatal("a nil error with no status")
	}
	return res.Status, res.Reason, res.Fields
}

func TestMemoryLiveProcess(t *testing.T) {
	name, bin := memChildBinary(t)
	child := startMemChild(t, bin, 0)
	pid := child.Process.Pid
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	writeMemFile(t, pidFile, strconv.Itoa(pid)+"\n")

	tests := []struct {
		name       string
		opts       map[string]any
		want       Status
		wantReason string
	}{
		{"by pid file", map[string]any{"pidFile": pidFile, "warnBytes": "1TiB", "critBytes": "2TiB"}, Healthy, ""},
		{"by name", map[string]any{"process": name, "warnBytes": "1TiB"}, Healthy, ""},
		{"by name, default percents", map[string]any{"process": name}, Healthy, ""},
		{"warnBytes crossed", map[string]any{"process": name, "warnBytes": 1}, Degraded, "warnBytes 1B"},
		{"critBytes crossed", map[string]any{"pidFile": pidFile, "critBytes": 1}, Unhealthy, "critBytes 1B"},
		{"both crossed: crit wins", map[string]any{"process": name, "warnBytes": 1, "critBytes": 2}, Unhealthy, "critBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, reason, f := checkMemory(t, newTestMemory(t, tt.opts))
			if status != tt.want {
				t.Fatalf("status %s (%s), want %s", status, reason, tt.want)
			}
			if !strings.Contains(reason, tt.wantReason) {
				t.Errorf("reason %q, want it to contain %q", reason, tt.wantReason)
			}
			if tt.want != Healthy && !strings.Contains(reason, "pid "+strconv.Itoa(pid)) {
				t.Errorf("reason %q does not name the pid", reason)
			}
			if f["pid"] != pid || f["process"] != name {
				t.Errorf("pid %v process %v, want %d %s", f["pid"], f["process"], pid, name)
			}
			rss, _ := f["rssBytes"].(int64)
			if rss <= 0 {
				t.Errorf("rssBytes = %v", f["rssBytes"])
			}
			if f["heapSource"] != "rss" || f["heapUsed"] != LegacyMB(rss) {
				t.Errorf("heapUsed %v (%v), want %s from rss", f["heapUsed"], f["heapSource"], LegacyMB(rss))
			}
			if h, _ := f["agentHeapBytes"].(int64); h <= 0 {
				t.Errorf("agentHeapBytes = %v", f["agentHeapBytes"])
			}
			if _, err := json.Marshal(f); err != nil {
				t.Errorf("fields do not marshal: %v", err)
			}
		})
	}
}

func TestMemoryLargestMatch(t *testing.T) {
	name, bin := memChildBinary(t)
	small := startMemChild(t, bin, 0)
	big := startMemChild(t, bin, 96<<20)
	p := newTestMemory(t, map[string]any{"process": name, "warnBytes": "1TiB"})
	status, reason, f := checkMemory(t, p)
	if status != Healthy {
		t.Fatalf("status %s (%s)", status, reason)
	}
	if f["pid"] != big.Process.Pid || f["matches"] != 2 {
		t.Errorf("pid %v matches %v; want the larger child %d (small is %d) of 2", f["pid"], f["matches"], big.Process.Pid, small.Process.Pid)
	}
	if rss, _ := f["rssBytes"].(int64); rss < 96<<20 {
		t.Errorf("rssBytes %d, want at least the 96MiB the child touched", rss)
	}
}

func TestMemoryProcessGone(t *testing.T) {
	name, bin := memChildBinary(t)
	child := startMemChild(t, bin, 0)
	pid := child.Process.Pid
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait() // reaped: its /proc entry is gone
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	writeMemFile(t, pidFile, strconv.Itoa(pid))

	tests := []struct {
		name string
		opts map[string]any
		want []string
	}{
		{"by name", map[string]any{"process": name}, []string{`no process named "` + name + `" visible`, "shareProcessNamespace: true"}},
		{"by pid file", map[string]any{"pidFile": pidFile}, []string{"process " + strconv.Itoa(pid), "not running", "shareProcessNamespace: true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, reason, f := checkMemory(t, newTestMemory(t, tt.opts))
			if status != Unknown {
				t.Fatalf("status %s (%s), want unknown", status, reason)
			}
			for _, w := range tt.want {
				if !strings.Contains(reason, w) {
					t.Errorf("reason %q, want it to contain %q", reason, w)
				}
			}
			if _, ok := f["pid"]; ok {
				t.Errorf("fields name a pid for a process that is gone: %v", f)
			}
		})
	}
}

func TestMemoryPidFileProblems(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content *string // nil: no file
		want    string
	}{
		{"missing", nil, "does not exist; have the app write its pid there"},
		{"garbage", memStrPtr("not-a-pid\n"), `holds "not-a-pid", not a pid`},
		{"empty", memStrPtr(""), `holds "", not a pid`},
		{"negative", memStrPtr("-42"), "not a pid"},
		{"zero", memStrPtr("0"), "not a pid"},
		{"long garbage is clipped", memStrPtr(strings.Repeat("x", 100)), `"` + strings.Repeat("x", 32) + `…"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, strconv.Itoa(i)+".pid")
			if tt.content != nil {
				writeMemFile(t, file, *tt.content)
			}
			status, reason, _ := checkMemory(t, newTestMemory(t, map[string]any{"pidFile": file}))
			if status != Unknown || !strings.Contains(reason, tt.want) || !strings.Contains(reason, file) {
				t.Errorf("got %s %q, want unknown naming %s and containing %q", status, reason, file, tt.want)
			}
		})
	}
}

func memStrPtr(s string) *string { return &s }

// A pid file that is a FIFO, a device or huge is refused at once, naming the path: the check never
// blocks on it nor reads it without end.
func TestMemoryPidFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "app.pid")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	big := filepath.Join(dir, "big.pid")
	writeMemFile(t, big, strings.Repeat("1", memoryMaxPidFile+1))
	for _, tt := range []struct{ name, file, want string }{
		{"a FIFO", fifo, "named pipe"},
		{"/dev/zero", "/dev/zero", "character device"},
		{"too large", big, "larger than the 4 KiB limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestMemory(t, map[string]any{"pidFile": tt.file})
			done := make(chan struct{})
			var status Status
			var reason string
			go func() {
				defer close(done)
				res, err := p.Check(context.Background())
				status, reason = res.Status, res.Reason
				if err != nil {
					status, reason = Unhealthy, err.Error()
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the check blocked on the pid file")
			}
			if status != Unknown || !strings.Contains(reason, tt.file) || !strings.Contains(reason, tt.want) {
				t.Errorf("got %s %q, want unknown naming %s and saying %q", status, reason, tt.file, tt.want)
			}
		})
	}
}

func TestMemoryCgroupLimit(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name     string
		cgroup   string            // /proc/100/cgroup
		files    map[string]string // relative to a root holding "proc" and "cgroup" (the agent's /sys/fs/cgroup)
		rssMiB   int64
		opts     map[string]any // besides process
		want     Status
		reason   string
		limit    int64 // want limitBytes (0: absent)
		percent  float64
		wantNote string
	}{
		{
			name: "v2 below warn", cgroup: "0::/kubepods/pod1/app\n",
			files:  map[string]string{"cgroup/kubepods/pod1/app/memory.max": "1048576000\n"},
			rssMiB: 100, want: Healthy, limit: 1000 * mib, percent: 10,
		},
		{
			name: "v2 above warnPercent", cgroup: "0::/kubepods/pod1/app\n",
			files:  map[string]string{"cgroup/kubepods/pod1/app/memory.max": "1048576000\n"},
			rssMiB: 850, want: Degraded, reason: "RSS 850.0MiB is 85.0% of the 1000.0MiB memory limit (warnPercent 80)",
			limit: 1000 * mib, percent: 85,
		},
		{
			name: "v2 above critPercent", cgroup: "0::/kubepods/pod1/app\n",
			files:  map[string]string{"cgroup/kubepods/pod1/app/memory.max": "1048576000\n"},
			rssMiB: 960, want: Unhealthy, reason: "96.0% of the 1000.0MiB memory limit (critPercent 95)",
			limit: 1000 * mib, percent: 96,
		},
		{
			name: "custom percents", cgroup: "0::/app\n",
			files:  map[string]string{"cgroup/app/memory.max": "1048576000\n"},
			rssMiB: 600, opts: map[string]any{"warnPercent": 50, "critPercent": 70}, want: Degraded, reason: "(warnPercent 50)",
			limit: 1000 * mib, percent: 60,
		},
		{
			name: "memory.max is max", cgroup: "0::/app\n",
			files:  map[string]string{"cgroup/app/memory.max": "max\n"},
			rssMiB: 960, want: Healthy, wantNote: "no memory limit set",
		},
		{
			name: "no limit readable, only percents: unknown, saying what to do", cgroup: "0::/app\n",
			rssMiB: 960, want: Unknown, wantNote: "memory limit not readable for pid 100",
			reason: "its memory limit is not readable and only percent thresholds are set: run the agent with the app's UID",
		},
		{
			name: "no limit readable, byte thresholds: judged by bytes", cgroup: "0::/app\n",
			rssMiB: 100, opts: map[string]any{"critBytes": "512MiB", "critPercent": 90}, want: Healthy, wantNote: "memory limit not readable for pid 100",
		},
		{
			name: "the smallest ancestor limit wins", cgroup: "0::/kubepods/pod1/app\n",
			files: map[string]string{
				"cgroup/kubepods/pod1/app/memory.max": "max\n",
				"cgroup/kubepods/pod1/memory.max":     "524288000\n",
				"cgroup/kubepods/memory.max":          "2097152000\n",
			},
			rssMiB: 450, want: Degraded, limit: 500 * mib, percent: 90,
		},
		{
			name: "v1 limit", cgroup: "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n",
			files:  map[string]string{"cgroup/memory/docker/abc/memory.limit_in_bytes": "1048576000\n"},
			rssMiB: 970, want: Unhealthy, limit: 1000 * mib, percent: 97,
		},
		{
			name: "v1 huge value means unlimited", cgroup: "4:memory:/docker/abc\n",
			files:  map[string]string{"cgroup/memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n"},
			rssMiB: 970, want: Healthy, wantNote: "no memory limit set",
		},
		{
			name: "the app's own cgroup namespace view", cgroup: "0::/../cri-containerd-app.scope\n",
			files: map[string]string{
				"proc/100/root/sys/fs/cgroup/memory.max": "1048576000\n",
				"cgroup/memory.max":                      "67108864\n", // the agent's own limit: must not be used
			},
			rssMiB: 100, want: Healthy, limit: 1000 * mib, percent: 10,
		},
		{
			name: "a path outside the agent's namespace is not read from its root", cgroup: "0::/../cri-containerd-app.scope\n",
			files:  map[string]string{"cgroup/memory.max": "67108864\n"},
			rssMiB: 100, want: Unknown, wantNote: "not readable",
		},
		{
			name: "absolute thresholds apply without a limit", cgroup: "0::/app\n",
			rssMiB: 300, opts: map[string]any{"warnBytes": "256MiB", "warnPercent": 80}, want: Degraded,
			reason: "RSS 300.0MiB >= warnBytes 256.0MiB", wantNote: "not readable",
		},
		{
			name: "absolute and percent: worst wins", cgroup: "0::/app\n",
			files:  map[string]string{"cgroup/app/memory.max": "1048576000\n"},
			rssMiB: 990, opts: map[string]any{"warnBytes": "256MiB", "critBytes": "2GiB", "warnPercent": 80, "critPercent": 95},
			want: Unhealthy, reason: "(critPercent 95)", limit: 1000 * mib, percent: 99,
		},
		{
			name: "absolute crit beats percent warn", cgroup: "0::/app\n",
			files:  map[string]string{"cgroup/app/memory.max": "1048576000\n"},
			rssMiB: 900, opts: map[string]any{"critBytes": "800MiB", "warnPercent": 80},
			want: Unhealthy, reason: "RSS 900.0MiB >= critBytes 800.0MiB", limit: 1000 * mib, percent: 90,
		},
		{
			name: "both at warn: both reasons", cgroup: "0::/app\n",
			files:  map[string]string{"cgroup/app/memory.max": "1048576000\n"},
			rssMiB: 900, opts: map[string]any{"warnBytes": "800MiB", "warnPercent": 80},
			want: Degraded, reason: "warnBytes 800.0MiB; RSS 900.0MiB is 90.0%", limit: 1000 * mib, percent: 90,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			procRoot := filepath.Join(root, "proc")
			fakeMemProc{pid: 100, comm: "node", cmdline: "node\x00server.js\x00", rssKB: tt.rssMiB * 1024, cgroup: tt.cgroup}.write(t, procRoot)
			for f, content := range tt.files {
				writeMemFile(t, filepath.Join(root, f), content)
			}
			opts := map[string]any{"process": "node"}
			for k, v := range tt.opts {
				opts[k] = v
			}
			p := newTestMemory(t, opts)
			p.procRoot = procRoot
			p.cgroupRoot = filepath.Join(root, "cgroup")
			status, reason, f := checkMemory(t, p)
			if status != tt.want {
				t.Fatalf("status %s (%s), want %s", status, reason, tt.want)
			}
			if !strings.Contains(reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", reason, tt.reason)
			}
			if got, _ := f["limitBytes"].(int64); got != tt.limit {
				t.Errorf("limitBytes %v, want %d", f["limitBytes"], tt.limit)
			}
			if got, ok := f["usedPercent"].(float64); ok != (tt.limit > 0) || got != tt.percent {
				t.Errorf("usedPercent %v, want %v", f["usedPercent"], tt.percent)
			}
			if note, _ := f["note"].(string); tt.wantNote == "" && note != "" || !strings.Contains(note, tt.wantNote) {
				t.Errorf("note %q, want %q", note, tt.wantNote)
			}
			if f["rssBytes"] != tt.rssMiB*mib || f["pid"] != 100 || f["process"] != "node" {
				t.Errorf("fields %v", f)
			}
		})
	}
}

func TestMemoryFindByName(t *testing.T) {
	tests := []struct {
		name    string
		process string
		procs   []fakeMemProc
		self    int
		wantPid int
		matches any // nil: absent (a single match)
	}{
		{
			name: "largest RSS of several", process: "node",
			procs: []fakeMemProc{
				{pid: 10, comm: "node", rssKB: 100},
				{pid: 11, comm: "node", rssKB: 300},
				{pid: 12, comm: "node", rssKB: 200},
				{pid: 13, comm: "chrome", rssKB: 900},
			},
			wantPid: 11, matches: 3,
		},
		{
			name: "the agent itself is skipped", process: "node", self: 11,
			procs: []fakeMemProc{
				{pid: 10, comm: "node", rssKB: 100},
				{pid: 11, comm: "node", rssKB: 300},
			},
			wantPid: 10,
		},
		{
			name: "zombies and kernel threads are skipped", process: "node",
			procs: []fakeMemProc{
				{pid: 10, comm: "node", rssKB: 100},
				{pid: 11, comm: "node", state: "Z (zombie)", rssKB: -1},
				{pid: 12, comm: "node", rssKB: -1},
			},
			wantPid: 10,
		},
		{
			name: "argv[0] base name when comm differs", process: "node",
			procs: []fakeMemProc{
				{pid: 10, comm: "MainThread", cmdline: "/usr/local/bin/node\x00server.js\x00", rssKB: 100},
				{pid: 11, comm: "sh", cmdline: "/bin/sh\x00-c\x00node server.js\x00", rssKB: 500},
			},
			wantPid: 10,
		},
		{
			name: "a retitled process (setproctitle)", process: "node",
			procs:   []fakeMemProc{{pid: 10, comm: "worker", cmdline: "node /app/server.js", rssKB: 100}},
			wantPid: 10,
		},
		{
			name: "a long name against the truncated comm", process: "design-extraction-app",
			procs:   []fakeMemProc{{pid: 10, comm: "design-extracti", rssKB: 100}},
			wantPid: 10,
		},
		{
			name: "a prefix is not a match", process: "node",
			procs:   []fakeMemProc{{pid: 10, comm: "nodejs", cmdline: "/usr/bin/nodejs\x00", rssKB: 100}},
			wantPid: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			procRoot := t.TempDir()
			for _, p := range tt.procs {
				p.cgroup = "0::/\n"
				p.write(t, procRoot)
			}
			// Non-process entries of a real /proc.
			writeMemFile(t, filepath.Join(procRoot, "meminfo"), "MemTotal: 1 kB\n")
			if err := os.MkdirAll(filepath.Join(procRoot, "sys"), 0o755); err != nil {
				t.Fatal(err)
			}
			// No cgroup limit is readable in this fake tree: a byte threshold keeps the verdict known.
			p := newTestMemory(t, map[string]any{"process": tt.process, "critBytes": "1TiB"})
			p.procRoot = procRoot
			p.cgroupRoot = filepath.Join(procRoot, "no-cgroup")
			p.self = tt.self
			status, reason, f := checkMemory(t, p)
			if tt.wantPid == 0 {
				if status != Unknown || !strings.Contains(reason, "no process named") || !strings.Contains(reason, "shareProcessNamespace") {
					t.Errorf("got %s %q, want unknown with the fix", status, reason)
				}
				return
			}
			if status != Healthy || f["pid"] != tt.wantPid || f["matches"] != tt.matches {
				t.Errorf("got %s %q pid %v matches %v, want pid %d matches %v", status, reason, f["pid"], f["matches"], tt.wantPid, tt.matches)
			}
		})
	}

	t.Run("an unreadable proc root is unknown", func(t *testing.T) {
		p := newTestMemory(t, map[string]any{"process": "node"})
		p.procRoot = filepath.Join(t.TempDir(), "absent")
		if status, reason, _ := checkMemory(t, p); status != Unknown || !strings.Contains(reason, "cannot list processes") {
			t.Errorf("got %s %q", status, reason)
		}
	})
}

func TestMemoryContextDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := newTestMemory(t, map[string]any{"process": "node"})
	if _, err := p.Check(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Check on a done context = %v, want context.Canceled", err)
	}
}

func TestMemoryKind(t *testing.T) {
	k, ok := Kinds["memory"]
	if !ok || !k.Local {
		t.Fatalf("memory kind registered %v, local %v; want a local kind", ok, k.Local)
	}
	p := &config.Probe{Name: "memory", Kind: "memory", Options: map[string]any{"process": "node", "warnPercent": 80, "critPercent": 95}}
	local, warnings, err := Kinds.CheckProbe(p)
	if err != nil || !local || len(warnings) != 0 {
		t.Errorf("CheckProbe = %v, %v, %v; want local, no warnings, no error", local, warnings, err)
	}
	bad := &config.Probe{Name: "memory", Kind: "memory", Options: map[string]any{"process": "node", "critPercent": 150}}
	if _, _, err := Kinds.CheckProbe(bad); err == nil {
		t.Error("CheckProbe accepted critPercent 150")
	}
}

// A limit file that is a FIFO (the app's own root, /proc/<pid>/root, is the app's to shape) is skipped,
// never opened for a blocking read: the limit comes from the views that are regular files.
func TestMemoryLimitFileNotRegular(t *testing.T) {
	root := t.TempDir()
	procRoot := filepath.Join(root, "proc")
	fakeMemProc{pid: 100, comm: "node", cmdline: "node\x00", rssKB: 100 * 1024, cgroup: "0::/app\n"}.write(t, procRoot)
	writeMemFile(t, filepath.Join(root, "cgroup", "app", "memory.max"), "1048576000\n")
	fifo := filepath.Join(procRoot, "100", "root", "sys", "fs", "cgroup", "memory.max")
	if err := os.MkdirAll(filepath.Dir(fifo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	p := newTestMemory(t, map[string]any{"process": "node"})
	p.procRoot, p.cgroupRoot = procRoot, filepath.Join(root, "cgroup")
	var res Result
	if err := testkit.Returns(t, 5*time.Second, func() (err error) { res, err = p.Check(t.Context()); return err }); err != nil {
		t.Fatal(err)
	}
	if res.Status != Healthy || res.Fields["limitBytes"] != int64(1000<<20) {
		t.Errorf("got %s %q, limitBytes %v; want healthy with the 1000MiB limit of the readable view", res.Status, res.Reason, res.Fields["limitBytes"])
	}
}

// A /proc file larger than the cap is not read whole: a cmdline past it is not matched by argv[0].
func TestMemoryProcFileBounded(t *testing.T) {
	procRoot := filepath.Join(t.TempDir(), "proc")
	fakeMemProc{pid: 100, comm: "MainThread", cmdline: "/usr/bin/node\x00" + strings.Repeat("x", memoryMaxProcFile), rssKB: 1024}.write(t, procRoot)
	fakeMemProc{pid: 101, comm: "MainThread", cmdline: "/usr/bin/node\x00server.js\x00", rssKB: 1024}.write(t, procRoot)
	p := newTestMemory(t, map[string]any{"process": "node", "critBytes": "1GiB"})
	p.procRoot, p.cgroupRoot = procRoot, t.TempDir()
	if p.nameMatches(filepath.Join(procRoot, "100")) {
		t.Error("a cmdline past memoryMaxProcFile matched: it was read whole")
	}
	if !p.nameMatches(filepath.Join(procRoot, "101")) {
		t.Error("a cmdline within the cap did not match by argv[0]")
	}
}
