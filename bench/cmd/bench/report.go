package main

import (
	"fmt"
	"strings"
	"time"
)

// verdict is one target of issue 7, as measured.
type verdict struct {
	Target, Measured string
	Pass             bool
}

func (r *report) verdicts() []verdict {
	var out []verdict
	if len(r.Rows) > 0 {
		worst := r.Rows[0]
		var deps int64
		var reqs int
		for _, row := range r.Rows {
			if row.Ratio() < worst.Ratio() {
				worst = row
			}
			deps += row.Agent.DepRequests
			reqs += row.Agent.Requests
		}
		out = append(out, verdict{Target: "handler throughput >= 0.8x the static handler (every endpoint, every probe count)",
			Measured: fmt.Sprintf("lowest %.2fx (%s, %d probes)", worst.Ratio(), worst.Endpoint, worst.Probes),
			Pass:     worst.Ratio() >= 0.8})
		out = append(out, verdict{Target: "no dependency request caused by health traffic",
			Measured: fmt.Sprintf("%d dependency requests during %d health requests", deps, reqs),
			Pass:     deps == 0})
	}
	floor := -1.0 // the baseline's CPU, when it ran
	for _, row := range r.Idle {
		if row.Floor {
			floor = row.CPUPercent
		}
	}
	for _, row := range r.Idle {
		switch {
		case row.Floor:
		case row.Default:
			// Private memory is what the pod pays for per agent: the binary's file pages are shared and
			// reclaimable (bench/scripts/memory.sh measures the kubelet's working set).
			out = append(out, verdict{Target: "idle private memory (RssAnon) <= 8 MiB, " + row.Config,
				Measured: fmt.Sprintf("%.1f MiB (RSS %.1f = anon %.1f + file %.1f; peak %.1f MiB)", mib(row.AnonKiB), mib(row.RSSKiB), mib(row.AnonKiB), mib(row.FileKiB), mib(row.HWMKiB)),
				Pass:     mib(row.AnonKiB) <= 8})
		case row.Probes == 1000 && !row.GOGC100:
			out = append(out, verdict{Target: "idle private memory (RssAnon) <= 48 MiB, 1,000 probes",
				Measured: fmt.Sprintf("%.1f MiB (RSS %.1f = anon %.1f + file %.1f; peak %.1f MiB)", mib(row.AnonKiB), mib(row.RSSKiB), mib(row.AnonKiB), mib(row.FileKiB), mib(row.HWMKiB)),
				Pass:     mib(row.AnonKiB) <= 48})
		case row.Probes == 100 && !row.GOGC100:
			measured := fmt.Sprintf("%.2f%% over %s", row.CPUPercent, row.Window.Round(time.Second))
			if floor > 0 {
				measured += fmt.Sprintf(" (the same connections alone: %.2f%%; agent/baseline %.1fx)", floor, row.CPUPercent/floor)
			}
			out = append(out, verdict{Target: "idle CPU <= 1% of a core, 100 probes at 10s",
				Measured: measured,
				Pass:     row.CPUPercent <= 1})
		}
	}
	for _, s := range r.Start {
		if s.Config != "default config" {
			continue
		}
		var others []string
		for _, o := range r.Start {
			if o.Config != s.Config {
				others = append(others, fmt.Sprintf("%s %s ms", o.Config, ms(o.ListenMed)))
			}
		}
		out = append(out, verdict{Target: "start to listening <= 50 ms, default config (median)",
			Measured: fmt.Sprintf("%s ms (max %s ms); %s", ms(s.ListenMed), ms(s.ListenMax), strings.Join(others, ", ")),
			Pass:     s.ListenMed <= 50*time.Millisecond})
	}
	var d10, d1000 *tpRow
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Endpoint == "/api/health/detailed" && row.Probes == 10 {
			d10 = row
		}
		if row.Endpoint == "/api/health/detailed" && row.Probes == 1000 {
			d1000 = row
		}
	}
	if d10 != nil && d1000 != nil {
		a10, a1000 := d10.Agent.perRequest(d10.Agent.Mallocs), d1000.Agent.perRequest(d1000.Agent.Mallocs)
		b1000 := d1000.Agent.perRequest(d1000.Agent.AllocBytes)
		out = append(out, verdict{Target: "detailed response with 1,000 probes built once per change, not per request",
			Measured: fmt.Sprintf("snapshot unchanged over %d requests: %v; allocs/request %.1f (10 probes) vs %.1f (1,000 probes); %.0f B allocated/request for a %d B body",
				d1000.Agent.Requests, d1000.SnapshotKept, a10, a1000, b1000, d1000.BodyBytes),
			Pass: d1000.SnapshotKept && a1000 <= a10+5 && b1000 < float64(d1000.BodyBytes)/4,
		})
	}
	return append(out, egressVerdicts(r.Egress)...)
}

func passFail(v verdict) string {
	if v.Pass {
		return "PASS"
	}
	return "**FAIL**"
}

func (r *report) markdown(p *params) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mode := "full"
	if p.quick {
		mode = "quick"
	}
	w("# health-agent benchmark (%s mode)\n\n", mode)
	m := r.Machine
	w("- Machine: %s, %d cores (GOMAXPROCS %d), Linux %s, %s\n", m.CPU, m.Cores, m.GOMAXPROCS, m.Kernel, m.Go)
	w("- Run: %s, took %s; load average before %s, after %s\n", r.Started.UTC().Format(time.RFC3339),
		r.Took.Round(time.Second), m.Load, r.LoadAfter)
	w("- Load: %d keep-alive connections, closed loop, %s per target per cell in %d alternating rounds; "+
		"load generator and servers share the machine's cores\n\n", p.conns, p.cell, p.rounds)

	if len(r.Rows) > 0 {
		w("## Handler throughput: agent vs a static gin handler serving the same bytes\n\n")
		w("Probes are tcp probes on a 1h interval against 10 loopback listeners; all healthy.\n\n")
		w("| probes | endpoint | body B | static req/s | agent req/s | agent/static | agent p50 / p99 ms | static p50 / p99 ms | allocs/req agent / static | snapshot rebuilt in cell | dep req per 1k |\n")
		w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
		for _, row := range r.Rows {
			rebuilt := "no"
			if !row.SnapshotKept {
				rebuilt = "yes"
			}
			w("| %d | `%s` | %d | %.0f | %.0f | %.2f | %s / %s | %s / %s | %.1f / %.1f | %s | %.1f |\n",
				row.Probes, row.Endpoint, row.BodyBytes, row.Static.RPS(), row.Agent.RPS(), row.Ratio(),
				ms(row.Agent.Quantile(.5)), ms(row.Agent.Quantile(.99)), ms(row.Static.Quantile(.5)), ms(row.Static.Quantile(.99)),
				row.Agent.perRequest(row.Agent.Mallocs), row.Static.perRequest(row.Static.Mallocs), rebuilt, row.Agent.DepsPer1000())
		}
		w("\nallocs/req counts the whole process (load generator included): compare agent with static, and across probe counts.\n\n")
	}
	if len(r.Peers) > 0 {
		w("## Peers: the same checks (TCP connect to the same dependencies) behind each library's handler\n\n")
		w("| probes | target | req/s | vs static `/api/health` | p50 / p99 ms | dependency requests per 1,000 health requests |\n")
		w("|---:|---|---:|---:|---:|---:|\n")
		for _, n := range p.probeCounts {
			for _, row := range r.Rows {
				if row.Probes == n && row.Endpoint == "/api/health" {
					w("| %d | health-agent `/api/health` | %.0f | %.2f | %s / %s | %.1f |\n", n, row.Agent.RPS(), row.Ratio(),
						ms(row.Agent.Quantile(.5)), ms(row.Agent.Quantile(.99)), row.Agent.DepsPer1000())
				}
			}
			for _, row := range r.Peers {
				if row.Probes == n {
					w("| %d | %s | %.0f | %.2f | %s / %s | %.0f |\n", n, row.Peer, row.Run.RPS(), row.Run.ratioTo(row.Static),
						ms(row.Run.Quantile(.5)), ms(row.Run.Quantile(.99)), row.Run.DepsPer1000())
				}
			}
		}
		w("\n")
	}
	if len(r.Bin.Sizes) > 0 {
		w("## Binary\n\n| build | size |\n|---|---:|\n")
		w("| `go build ./cmd/agent` | %.1f MiB |\n", float64(r.Bin.Sizes[r.Bin.Plain])/(1<<20))
		w("| image: `CGO_ENABLED=0 go build -tags nomsgpack -trimpath -ldflags \"-s -w\" ./cmd/agent` | %.1f MiB |\n", float64(r.Bin.Sizes[r.Bin.Image])/(1<<20))
		w("| image build without `-tags nomsgpack` | %.1f MiB |\n\n", float64(r.Bin.Sizes[r.Bin.WithMsgpack])/(1<<20))
		w("Every process below runs the image build, except the idle row that says `without -tags nomsgpack`.\n\n")
	}
	world := "The default config runs against the local demo's stand-ins (legacy app, go-sdk MCP server, fake Figma API)"
	if r.Browser {
		world += ", a real headless Chromium, and the runner as the process its memory probe watches: all its probes are healthy."
	} else {
		world += " and the runner as the memory probe's process; no browser was found (-chromium), so browserPool is unhealthy."
	}
	if len(r.Start) > 0 {
		w("## Start-up (real process, %d trials each)\n\n", r.Start[0].Trials)
		w("| config | to listening, median / max ms | to `/startupz` 200, median / max ms |\n|---|---:|---:|\n")
		for _, s := range r.Start {
			ready := "n/a (no browser)"
			if s.ReadyMed > 0 {
				ready = ms(s.ReadyMed) + " / " + ms(s.ReadyMax)
			}
			w("| %s | %s / %s | %s |\n", s.Config, ms(s.ListenMed), ms(s.ListenMax), ready)
		}
		w("\n%s\n\n", world)
	}
	if len(r.Idle) > 0 {
		w("## Idle footprint (real process)\n\n")
		w("| config | RSS at window start | RSS at end (anon + file) | peak RSS | threads | CPU (%% of one core) | window (age at end) | dependency conn/s | `/readyz` |\n")
		w("|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, row := range r.Idle {
			dep := "-"
			if row.Probes > 0 {
				dep = fmt.Sprintf("%.1f", row.DepPerSec)
			}
			ready := "503"
			switch {
			case row.Floor:
				ready = "-"
			case row.Ready:
				ready = "200"
			}
			w("| %s | %.1f MiB | %.1f MiB (%.1f + %.1f) | %.1f MiB | %d | %.2f%% | %s (%s) | %s | %s |\n", row.Config, mib(row.RSSWarmKiB),
				mib(row.RSSKiB), mib(row.AnonKiB), mib(row.FileKiB), mib(row.HWMKiB), row.Threads, row.CPUPercent,
				row.Window.Round(time.Second), row.Age.Round(time.Second), dep, ready)
		}
		w("\nanon is the process's private memory (heap, stacks); file is the binary's own pages mapped in (shared with every other process running the same file, and reclaimable). %s\n\n", world)
	}
	if len(r.Reaction) > 0 {
		w("## Reaction of `/readyz` (default policies")
		if r.Reaction[0].Scale != 1 {
			w(", every duration x%g", r.Reaction[0].Scale)
		}
		w(")\n\n| trial | failed at phase | dependency down -> `/readyz` 503 | dependency up -> `/readyz` 200 | dep requests while down | breaker history (s from the failure) |\n|---:|---:|---:|---:|---:|---|\n")
		for i, x := range r.Reaction {
			w("| %d | %.1fs | %.2fs | %.2fs | %d | %s |\n", i+1, x.Phase.Seconds(), x.ToFail.Seconds(), x.ToRecover.Seconds(),
				x.DepDuringFail, x.timeline())
		}
		w("\n")
	}
	if len(r.Micro) > 0 {
		w("## Micro-benchmarks\n\n```\n%s\n```\n\n", strings.Join(r.Micro, "\n"))
	}
	w("%s", egressMarkdown(r.Egress))
	vs := r.verdicts()
	if len(vs) > 0 {
		w("## Targets\n\n| target | measured | verdict |\n|---|---|---|\n")
		for _, v := range vs {
			w("| %s | %s | %s |\n", v.Target, v.Measured, passFail(v))
		}
		w("\n")
	}
	if f := r.fleet(); f != "" {
		w("## Per 1,000 pods\n\n%s\n", f)
	}
	return b.String()
}

// fleet turns the idle figures into what a fleet of 1,000 pods pays for the sidecar.
func (r *report) fleet() string {
	var b strings.Builder
	for _, row := range r.Idle {
		if row.Floor {
			continue
		}
		fmt.Fprintf(&b, "- %s: %.2f cores and %.1f GiB RSS (%.1f GiB of it private) per 1,000 pods at idle\n", row.Config,
			row.CPUPercent/100*1000, mib(row.RSSKiB)*1000/1024, mib(row.AnonKiB)*1000/1024)
	}
	for _, row := range r.Rows {
		if row.Probes == 10 && row.Endpoint == "/readyz" && row.Agent.RPS() > 0 {
			// The whole machine's cores served (and generated) that load: an upper bound per request.
			perReq := float64(r.Machine.Cores) / row.Agent.RPS()
			fmt.Fprintf(&b, "- kubelet traffic: one `/readyz` per pod every 10s is 100 req/s per 1,000 pods; at <= %.0f us of CPU per request "+
				"(this machine's %d cores / %.0f req/s, load generator included) that is <= %.4f cores per 1,000 pods\n",
				perReq*1e6, r.Machine.Cores, row.Agent.RPS(), perReq*100)
		}
	}
	return b.String()
}
