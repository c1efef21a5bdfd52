// Command bench measures health-agent on this machine in one run: handler throughput and latency
// beside a static gin handler and two peer libraries, idle footprint of the real binary, start-up time,
// and how fast /readyz follows a dependency. It prints a Markdown report (see BENCHMARKS.md).
//
//	cd bench && go run ./cmd/bench           # full run, about 5 minutes
//	cd bench && go run ./cmd/bench -quick    # about 75 seconds, coarser figures
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// params are the run's knobs, from flags.
type params struct {
	quick         bool
	cell          time.Duration // per target per throughput cell, over all rounds
	rounds        int           // alternating rounds per agent/static cell
	peerRounds    int           // the same for the peers (one of them is slow: fewer, longer rounds)
	conns         int
	probeCounts   []int
	idleCounts    []int
	warmup        time.Duration
	window        time.Duration
	startTrials   int
	reactionScale float64
	reactionRuns  int
	repo          string
	chromium      string
	tmp           string
	only          map[string]bool
}

func (p *params) want(section string) bool { return len(p.only) == 0 || p.only[section] }

var logOut io.Writer = os.Stderr

func logf(format string, args ...any) {
	fmt.Fprintf(logOut, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	os.Exit(mainErr())
}

func mainErr() int {
	var p params
	quick := flag.Bool("quick", false, "short cells and windows, reaction at 1/10 time scale (~75 s)")
	cell := flag.Duration("cell", 0, "load per target per cell (default 3s, quick 0.6s)")
	conns := flag.Int("conns", 8, "concurrent keep-alive connections of the load generator")
	warmup := flag.Duration("warmup", 0, "least age of the idle agents before their CPU window (default 210s: breaker histories full; quick 3s)")
	window := flag.Duration("window", 0, "idle CPU measurement window (default 60s, quick 10s)")
	scale := flag.Float64("reaction-scale", 0, "time scale of the reaction policies (default 1, quick 0.1)")
	runs := flag.Int("reaction-runs", 1, "reaction trials")
	only := flag.String("only", "", "comma-separated sections: throughput,micro,footprint,startup,reaction,egress (default all)")
	out := flag.String("out", "", "also write the report to this file")
	repo := flag.String("repo", "..", "the health-agent repository (to build cmd/agent)")
	chromium := flag.String("chromium", "chromium", "the browser the default config's browserPool probe talks to")
	flag.Parse()

	p = params{quick: *quick, conns: *conns, rounds: 10, peerRounds: 2, probeCounts: []int{10, 100, 1000},
		idleCounts: []int{5, 100, 1000}, cell: 3 * time.Second, warmup: 210 * time.Second,
		window: 60 * time.Second, startTrials: 15, reactionScale: 1, reactionRuns: *runs, chromium: *chromium}
	if p.quick {
		p.cell, p.rounds, p.peerRounds = 800*time.Millisecond, 4, 1
		p.warmup, p.window, p.startTrials, p.reactionScale = 3*time.Second, 10*time.Second, 5, 0.1
	}
	if *cell > 0 {
		p.cell = *cell
	}
	if *window > 0 {
		p.window = *window
	}
	if *warmup > 0 {
		p.warmup = *warmup
	}
	if *scale > 0 {
		p.reactionScale = *scale
	}
	if *only != "" {
		p.only = map[string]bool{}
		for _, s := range strings.Split(*only, ",") {
			p.only[strings.TrimSpace(s)] = true
		}
	}
	var err error
	if p.repo, err = filepath.Abs(*repo); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := os.Stat(filepath.Join(p.repo, "cmd", "agent")); err != nil {
		fmt.Fprintf(os.Stderr, "-repo %s: no cmd/agent there: %v\n", p.repo, err)
		return 2
	}
	if p.tmp, err = os.MkdirTemp("", "health-agent-bench-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(p.tmp)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := runAll(ctx, &p)
	text := rep.markdown(&p)
	fmt.Print(text)
	if *out != "" {
		if werr := os.WriteFile(*out, []byte(text), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// report is everything measured.
type report struct {
	Machine   machine
	Started   time.Time
	Took      time.Duration
	Rows      []tpRow
	Peers     []peerRow
	Bin       binaries
	Browser   bool // the default config had a real browser to talk to
	Idle      []idleRow
	Start     []startRow
	Reaction  []reactionRow
	Micro     []string
	Egress    []egressRow
	LoadAfter string
}

type machine struct {
	CPU, Kernel, Go, Load string
	Cores, GOMAXPROCS     int
}

func readMachine() machine {
	m := machine{Go: runtime.Version(), Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Load = loadavg()
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func runAll(ctx context.Context, p *params) (*report, error) {
	rep := &report{Machine: readMachine(), Started: time.Now()}
	defer func() {
		rep.Took = time.Since(rep.Started)
		rep.LoadAfter = loadavg()
	}()
	deps, err := startTCPDeps(10)
	if err != nil {
		return rep, err
	}
	defer deps.Close()

	var bin binaries
	var world *defaultWorld
	var fp *footprint
	defer func() {
		if fp != nil {
			fp.Close()
		}
		if world != nil {
			world.Close()
		}
	}()
	if p.want("footprint") || p.want("startup") || p.want("reaction") {
		logf("building cmd/agent")
		if bin, err = buildAgent(ctx, p.repo, p.tmp); err != nil {
			return rep, err
		}
		rep.Bin = bin
	}
	if p.want("footprint") || p.want("startup") {
		if world, err = startDefaultWorld(p); err != nil {
			return rep, err
		}
		rep.Browser = world.browser
	}
	if p.want("footprint") {
		// Started now, measured last: meanwhile they age as a long-running pod's agent would.
		logf("footprint: starting the idle agents")
		if fp, err = startFootprint(p, bin, world, p.idleCounts); err != nil {
			return rep, fmt.Errorf("footprint: %w", err)
		}
	}
	if p.want("throughput") {
		if rep.Rows, rep.Peers, err = runThroughput(ctx, p, deps); err != nil {
			return rep, fmt.Errorf("throughput: %w", err)
		}
	}
	if p.want("micro") {
		logf("micro-benchmarks")
		if rep.Micro, err = runMicro(ctx, p); err != nil {
			return rep, fmt.Errorf("micro: %w", err)
		}
	}
	if p.want("startup") {
		logf("startup: %d trials per config", p.startTrials)
		if rep.Start, err = runStartup(p, bin, world, deps); err != nil {
			return rep, fmt.Errorf("startup: %w", err)
		}
	}
	if p.want("reaction") {
		for i := range p.reactionRuns {
			logf("reaction: trial %d (policy time scale %g)", i+1, p.reactionScale)
			r, err := runReaction(p, bin, i)
			if err != nil {
				return rep, fmt.Errorf("reaction: %w", err)
			}
			rep.Reaction = append(rep.Reaction, r)
		}
	}
	if p.want("egress") {
		if rep.Egress, err = runEgress(ctx, p, bin.Image); err != nil {
			return rep, fmt.Errorf("egress: %w", err)
		}
	}
	if fp != nil {
		rep.Idle, err = fp.measure(p.warmup, p.window)
		fp = nil
		if err != nil {
			return rep, fmt.Errorf("footprint: %w", err)
		}
	}
	if world != nil {
		world.Close()
		world = nil
	}
	return rep, ctx.Err()
}

// modVersion is the version of a module this binary was built with.
func modVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "?"
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 2, 64)
}
