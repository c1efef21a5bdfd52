package probes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"runtime/metrics"
	"strconv"
	"strings"

	"github.com/health-agent/health-agent/pkg/config"
)

// memoryOptions are the options of the memory kind.
type memoryOptions struct {
	// Process is matched against /proc/<pid>/comm, then against argv[0]'s base name.
	Process string `mapstructure:"process"`
	// PidFile names a file holding the pid to watch.
	PidFile string `mapstructure:"pidFile"`
	// Byte sizes and percents are decoded by hand: they may be numbers or strings ("512MiB", "80%").
	WarnBytes   any `mapstructure:"warnBytes"`
	CritBytes   any `mapstructure:"critBytes"`
	WarnPercent any `mapstructure:"warnPercent"`
	CritPercent any `mapstructure:"critPercent"`
}

// memoryMaxPidFile caps a pid file: a pid is a few digits.
const memoryMaxPidFile = 4 << 10

// memoryMaxProcFile caps every /proc and cgroup file the probe reads (status, comm, cmdline, cgroup,
// the limit files). cmdline is the largest; one past the cap is simply not matched by argv[0]. The
// limit files are read through the app's own root (/proc/<pid>/root), which the app controls, so
// they go through config.ReadFile too: a FIFO or a device there is skipped, never read.
const memoryMaxProcFile = 1 << 20

// Default percent thresholds, used when no threshold is configured at all.
const (
	defaultWarnPercent = 80
	defaultCritPercent = 95
)

// commLen is the kernel's TASK_COMM_LEN-1: /proc/<pid>/comm keeps only the first 15 bytes of a name.
const commLen = 15

// unlimitedBytes: cgroup v1 reports "no limit" as a huge page-aligned number (2^63-4096); anything
// from 1 EiB up is treated the same.
const unlimitedBytes = 1 << 60

// memoryProbe watches the resident memory (RSS) of one process against absolute thresholds and
// against its cgroup's memory limit.
type memoryProbe struct {
	process, pidFile     string
	warnBytes, critBytes int64   // 0: not set
	warnPct, critPct     float64 // 0: not set
	// procRoot is where procfs is mounted; tests point it at a fake tree.
	procRoot string
	// cgroupRoot is the agent's own view of the cgroup hierarchy; tests point it at a fake tree.
	cgroupRoot string
	// self is the agent's pid, never a match by name (its comm is not the app's, but argv tricks could be).
	self int
}

func newMemory(spec Spec) (Probe, error) {
	var o memoryOptions
	if err := config.DecodeOptions(spec.Options, &o); err != nil {
		return nil, err
	}
	p := &memoryProbe{
		process:    strings.TrimSpace(o.Process),
		pidFile:    strings.TrimSpace(o.PidFile),
		procRoot:   "/proc",
		cgroupRoot: "/sys/fs/cgroup",
		self:       os.Getpid(),
	}
	var errs []error
	switch {
	case p.process != "" && p.pidFile != "":
		errs = append(errs, config.Errorf("pidFile", "set either process or pidFile, not both"))
	case p.process == "" && p.pidFile == "":
		errs = append(errs, config.Errorf("process", "set process (the name of the process to watch) or pidFile (a file holding its pid)"))
	case strings.Contains(p.process, "/"):
		errs = append(errs, config.Errorf("process", "must be a process name, not a path, got %q (use %q)", p.process, path.Base(p.process)))
	}

	var err error
	if p.warnBytes, err = parseByteSize(o.WarnBytes); err != nil {
		errs = append(errs, config.Errorf("warnBytes", "%v", err))
	}
	if p.critBytes, err = parseByteSize(o.CritBytes); err != nil {
		errs = append(errs, config.Errorf("critBytes", "%v", err))
	}
	if p.warnPct, err = parseMemoryPercent(o.WarnPercent); err != nil {
		errs = append(errs, config.Errorf("warnPercent", "%v", err))
	}
	if p.critPct, err = parseMemoryPercent(o.CritPercent); err != nil {
		errs = append(errs, config.Errorf("critPercent", "%v", err))
	}
	if p.warnBytes > 0 && p.critBytes > 0 && p.warnBytes >= p.critBytes {
		errs = append(errs, config.Errorf("warnBytes", "must be below critBytes (%s), got %s",
			formatIEC(p.critBytes), formatIEC(p.warnBytes)))
	}
	if p.warnPct > 0 && p.critPct > 0 && p.warnPct >= p.critPct {
		errs = append(errs, config.Errorf("warnPercent", "must be below critPercent (%g), got %g", p.critPct, p.warnPct))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if p.warnBytes == 0 && p.critBytes == 0 && p.warnPct == 0 && p.critPct == 0 {
		p.warnPct, p.critPct = defaultWarnPercent, defaultCritPercent
	}
	return p, nil
}

// memoryTarget is the process being watched.
type memoryTarget struct {
	pid     int
	name    string // comm
	rss     int64
	matches int // processes that matched by name
}

// Check finds the process, reads its RSS and cgroup limit, and judges them. A process it cannot find is
// Unknown, not a failure: the app may be restarting, or the agent may not see it at all.
func (p *memoryProbe) Check(ctx context.Context) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("memory check: %w", err)
	}
	fields := map[string]any{"agentHeapBytes": agentHeapBytes()}
	t, why, err := p.find(ctx)
	if err != nil {
		return Result{Fields: fields}, err
	}
	if why != "" {
		return Result{Status: Unknown, Reason: why, Fields: fields}, nil
	}
	fields["pid"] = t.pid
	fields["process"] = t.name
	fields["rssBytes"] = t.rss
	if t.matches > 1 {
		fields["matches"] = t.matches
	}
	// The seed's dashboard reads heapUsed; the process's RSS is what the agent sees from outside (the
	// API shows the app's own heap figure instead when its legacy body has one).
	fields["heapUsed"], fields["heapSource"] = LegacyMB(t.rss), "rss"

	limit, readable := p.limit(t.pid)
	var pct float64
	if limit > 0 {
		pct = float64(t.rss) * 100 / float64(limit)
		fields["limitBytes"] = limit
		fields["usedPercent"] = math.Round(pct*10) / 10
	} else if p.warnPct > 0 || p.critPct > 0 {
		if readable {
			fields["note"] = "no memory limit set on the process's cgroup; percent thresholds not applied"
		} else {
			fix := fmt.Sprintf("run the agent with the app's UID (or CAP_SYS_PTRACE) so %s is readable, or set warnBytes/critBytes",
				filepath.Join(p.procRoot, strconv.Itoa(t.pid), "root"))
			fields["note"] = fmt.Sprintf("memory limit not readable for pid %d (%s); percent thresholds not applied", t.pid, fix)
			if p.warnBytes == 0 && p.critBytes == 0 {
				// Percents of an unknown limit judge nothing: saying "healthy" would be a guess.
				return Result{Status: Unknown, Fields: fields, Reason: fmt.Sprintf(
					"process %s (pid %d): RSS %s, but its memory limit is not readable and only percent thresholds are set: %s",
					t.name, t.pid, formatIEC(t.rss), fix)}, nil
			}
		}
	}

	// Worst level wins; the reasons at that level are all given.
	const ok, warn, crit = 0, 1, 2
	level, reasons := ok, []string(nil)
	raise := func(l int, reason string) {
		if l > level {
			level, reasons = l, nil
		}
		if l == level {
			reasons = append(reasons, reason)
		}
	}
	switch {
	case p.critBytes > 0 && t.rss >= p.critBytes:
		raise(crit, fmt.Sprintf("RSS %s >= critBytes %s", formatIEC(t.rss), formatIEC(p.critBytes)))
	case p.warnBytes > 0 && t.rss >= p.warnBytes:
		raise(warn, fmt.Sprintf("RSS %s >= warnBytes %s", formatIEC(t.rss), formatIEC(p.warnBytes)))
	}
	if limit > 0 {
		of := fmt.Sprintf("RSS %s is %.1f%% of the %s memory limit", formatIEC(t.rss), pct, formatIEC(limit))
		switch {
		case p.critPct > 0 && pct >= p.critPct:
			raise(crit, fmt.Sprintf("%s (critPercent %g)", of, p.critPct))
		case p.warnPct > 0 && pct >= p.warnPct:
			raise(warn, fmt.Sprintf("%s (warnPercent %g)", of, p.warnPct))
		}
	}
	reason := fmt.Sprintf("process %s (pid %d): %s", t.name, t.pid, strings.Join(reasons, "; "))
	switch level {
	case crit:
		return Result{Status: Unhealthy, Reason: reason, Fields: fields}, errors.New(reason)
	case warn:
		return Result{Status: Degraded, Reason: reason, Fields: fields}, nil
	}
	return Result{Status: Healthy, Fields: fields}, nil
}

// find returns the target, or why it cannot be found (a reason for Unknown that says how to fix it).
// The error is only ever ctx's.
func (p *memoryProbe) find(ctx context.Context) (memoryTarget, string, error) {
	if p.pidFile != "" {
		t, why := p.findByPidFile()
		return t, why, nil
	}
	return p.findByName(ctx)
}

func (p *memoryProbe) findByPidFile() (memoryTarget, string) {
	b, err := config.ReadFile(p.pidFile, memoryMaxPidFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return memoryTarget{}, fmt.Sprintf("pid file %s does not exist; have the app write its pid there, or set process instead", p.pidFile)
	case err != nil:
		return memoryTarget{}, fmt.Sprintf("cannot read the pid file: %v", err)
	}
	s := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		if len(s) > 32 {
			s = s[:32] + "…"
		}
		return memoryTarget{}, fmt.Sprintf("pid file %s holds %q, not a pid; it must contain only the app's process id", p.pidFile, s)
	}
	st, err := readProcStatus(filepath.Join(p.procRoot, strconv.Itoa(pid), "status"))
	if err != nil || !st.alive() {
		return memoryTarget{}, fmt.Sprintf("process %d from pid file %s is not running (stale pid file?); "+
			"in Kubernetes set shareProcessNamespace: true on the pod so the agent sees the app's processes", pid, p.pidFile)
	}
	return memoryTarget{pid: pid, name: st.name, rss: st.rss, matches: 1}, ""
}

// findByName scans procRoot for live processes named p.process and takes the one with the largest RSS
// (with several matches, e.g. a cluster of workers, the largest is the one closest to its limit).
func (p *memoryProbe) findByName(ctx context.Context) (memoryTarget, string, error) {
	entries, err := os.ReadDir(p.procRoot)
	if err != nil {
		return memoryTarget{}, fmt.Sprintf("cannot list processes: %v", err), nil
	}
	var best memoryTarget
	seen := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return memoryTarget{}, "", fmt.Errorf("memory check: %w", err)
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || pid == p.self {
			continue
		}
		seen++
		dir := filepath.Join(p.procRoot, e.Name())
		if !p.nameMatches(dir) {
			continue
		}
		// A process may exit between listing and reading: it is then simply not a match.
		st, err := readProcStatus(filepath.Join(dir, "status"))
		if err != nil || !st.alive() {
			continue
		}
		best.matches++
		if best.pid == 0 || st.rss > best.rss {
			best.pid, best.name, best.rss = pid, st.name, st.rss
		}
	}
	if best.pid == 0 {
		return memoryTarget{}, fmt.Sprintf("no process named %q visible (%d other processes seen in %s); "+
			"in Kubernetes set shareProcessNamespace: true on the pod (or set MEMORY_PROCESS / the process option to the app's process name)",
			p.process, seen, p.procRoot), nil
	}
	return best, "", nil
}

// nameMatches reports whether the process in dir is named p.process, by comm (which the kernel
// truncates to 15 bytes) or by argv[0]'s base name (for programs whose comm differs, e.g. a renamed thread).
func (p *memoryProbe) nameMatches(dir string) bool {
	if b, err := config.ReadFile(filepath.Join(dir, "comm"), memoryMaxProcFile); err == nil {
		comm := strings.TrimSuffix(string(b), "\n")
		if comm == p.process || (len(p.process) > commLen && comm == p.process[:commLen]) {
			return true
		}
	}
	b, err := config.ReadFile(filepath.Join(dir, "cmdline"), memoryMaxProcFile)
	if err != nil || len(b) == 0 {
		return false
	}
	argv0, _, _ := bytes.Cut(b, []byte{0})
	if path.Base(string(argv0)) == p.process {
		return true
	}
	// Programs that rewrite their title (setproctitle) put the whole command line in argv[0].
	first, _, _ := strings.Cut(string(argv0), " ")
	return first != "" && path.Base(first) == p.process
}

// procStatus is what the memory probe reads from /proc/<pid>/status.
type procStatus struct {
	name   string
	state  string
	rss    int64
	hasRSS bool
}

// alive: zombies and kernel threads have no VmRSS; neither is the app.
func (s procStatus) alive() bool { return s.hasRSS && s.state != "Z" && s.state != "X" }

func readProcStatus(file string) (procStatus, error) {
	b, err := config.ReadFile(file, memoryMaxProcFile)
	if err != nil {
		return procStatus{}, err
	}
	var st procStatus
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "Name":
			st.name = val
		case "State":
			st.state, _, _ = strings.Cut(val, " ")
		case "VmRSS":
			num, unit, _ := strings.Cut(val, " ")
			kb, err := strconv.ParseInt(num, 10, 64)
			if err != nil || strings.TrimSpace(unit) != "kB" {
				return procStatus{}, fmt.Errorf("%s: bad VmRSS %q", file, val)
			}
			st.rss, st.hasRSS = kb*1024, true
		}
	}
	return st, nil
}

// limit returns the memory limit of pid's cgroup (0: none or not known), and whether any limit file
// was readable (so 0 means "no limit" rather than "cannot tell").
//
// It reads every view it can and takes the smallest limit, since the effective limit is the smallest
// along the cgroup's ancestry:
//   - the target's own view, <procRoot>/<pid>/root/sys/fs/cgroup: in a container with a private cgroup
//     namespace (the Kubernetes default), its root is the container's cgroup. This is how a sidecar
//     reads the app container's limit; it needs the app's UID or CAP_SYS_PTRACE.
//   - the agent's view, cgroupRoot plus the path in /proc/<pid>/cgroup and its ancestors. A path
//     that climbs out of the agent's cgroup namespace ("/../…") is not visible there and is skipped:
//     the agent's own root would give the agent's limit, not the app's.
func (p *memoryProbe) limit(pid int) (int64, bool) {
	var files []string
	nsRoot := filepath.Join(p.procRoot, strconv.Itoa(pid), "root", "sys", "fs", "cgroup")
	files = append(files,
		filepath.Join(nsRoot, "memory.max"),
		filepath.Join(nsRoot, "memory", "memory.limit_in_bytes"))

	v2, v1 := readCgroupPaths(filepath.Join(p.procRoot, strconv.Itoa(pid), "cgroup"))
	for dir := range cgroupAncestry(v2) {
		files = append(files, filepath.Join(p.cgroupRoot, dir, "memory.max"))
	}
	for dir := range cgroupAncestry(v1) {
		files = append(files, filepath.Join(p.cgroupRoot, "memory", dir, "memory.limit_in_bytes"))
	}

	var limit int64
	readable := false
	for _, f := range files {
		b, err := config.ReadFile(f, memoryMaxProcFile)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			readable = true
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			continue
		}
		readable = true
		if n < unlimitedBytes && (limit == 0 || n < limit) {
			limit = n
		}
	}
	return limit, readable
}

// readCgroupPaths returns the cgroup v2 path and the v1 memory controller's path from a
// /proc/<pid>/cgroup file (either may be empty).
func readCgroupPaths(file string) (v2, v1 string) {
	b, err := config.ReadFile(file, memoryMaxProcFile)
	if err != nil {
		return "", ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case cgroupHasController(parts[1], "memory"):
			v1 = parts[2]
		}
	}
	return v2, v1
}

func cgroupHasController(list, name string) bool {
	for f := range strings.SplitSeq(list, ",") {
		if f == name {
			return true
		}
	}
	return false
}

// cgroupAncestry yields a cgroup path and its ancestors up to "/", or nothing when the path is not
// absolute or leaves the namespace's root.
func cgroupAncestry(p string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		if !strings.HasPrefix(p, "/") || strings.Contains("/"+p+"/", "/../") {
			return
		}
		for dir := path.Clean(p); ; dir = path.Dir(dir) {
			if !yield(dir) || dir == "/" {
				return
			}
		}
	}
}

// agentHeapBytes is the agent's own live heap. runtime/metrics is used rather than ReadMemStats,
// which stops the world.
func agentHeapBytes() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// byteUnits are the suffixes parseByteSize accepts, lower-cased: SI (kB = 1000) and IEC (KiB = 1024),
// with Kubernetes' Ki/Mi/Gi spellings.
var byteUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "ki": 1 << 10, "kib": 1 << 10,
	"m": 1e6, "mb": 1e6, "mi": 1 << 20, "mib": 1 << 20,
	"g": 1e9, "gb": 1e9, "gi": 1 << 30, "gib": 1 << 30,
	"t": 1e12, "tb": 1e12, "ti": 1 << 40, "tib": 1 << 40,
}

// parseByteSize reads a byte count: a number, or a string such as "512MiB" or "1.5GB". nil or an empty
// string (an unset ${VAR:-}) is 0: not set.
func parseByteSize(v any) (int64, error) {
	const want = "must be a byte size such as 536870912, \"512MiB\" or \"1.5GB\""
	f, isNum := optionNumber(v)
	switch s, isStr := v.(string); {
	case v == nil || isStr && strings.TrimSpace(s) == "":
		return 0, nil
	case isStr:
		s = strings.TrimSpace(s)
		i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if i < 0 {
			i = len(s)
		}
		mult, ok := byteUnits[strings.ToLower(strings.TrimSpace(s[i:]))]
		n, err := strconv.ParseFloat(s[:i], 64)
		if !ok || err != nil {
			return 0, fmt.Errorf("%s, got %q", want, v)
		}
		f = n * mult
	case !isNum:
		return 0, fmt.Errorf("%s, got %v", want, v)
	}
	if !(f >= 1 && f < math.MaxInt64) {
		return 0, fmt.Errorf("must be at least 1 byte and below 8EiB, got %v", v)
	}
	return int64(f), nil
}

// parseMemoryPercent reads a percent of the memory limit: a number or a string such as "80%". nil or an
// empty string is 0: not set.
func parseMemoryPercent(v any) (float64, error) {
	f, isNum := optionNumber(v)
	switch s, isStr := v.(string); {
	case v == nil || isStr && strings.TrimSpace(s) == "":
		return 0, nil
	case isStr:
		n, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%")), 64)
		if err != nil {
			return 0, fmt.Errorf("must be a percent such as 80, got %q", v)
		}
		f = n
	case !isNum:
		return 0, fmt.Errorf("must be a percent such as 80, got %v", v)
	}
	if !(f > 0 && f <= 100) {
		return 0, fmt.Errorf("must be > 0 and <= 100, got %v", v)
	}
	return f, nil
}

// optionNumber converts any Go number a YAML decoder may produce to a float64.
func optionNumber(v any) (float64, bool) {
	rv := reflect.ValueOf(v)
	switch {
	case !rv.IsValid():
		return 0, false
	case rv.CanInt():
		return float64(rv.Int()), true
	case rv.CanUint():
		return float64(rv.Uint()), true
	case rv.CanFloat():
		return rv.Float(), true
	}
	return 0, false
}

// LegacyMB formats bytes the way the legacy dashboard shows heapUsed: whole mebibytes, labelled "MB"
// (Node's Math.round(bytes/1024/1024) + "MB").
func LegacyMB(b int64) string {
	return strconv.FormatInt(int64(math.Round(float64(b)/(1<<20))), 10) + "MB"
}

// formatIEC formats bytes for reasons: "812.3MiB".
func formatIEC(b int64) string {
	const unit = 1024
	if b < unit {
		return strconv.FormatInt(b, 10) + "B"
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
