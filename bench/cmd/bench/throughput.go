package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"time"
)

// endpoints are the health endpoints measured, in report order.
var endpoints = []string{"/readyz", "/api/health", "/api/health/detailed"}

// run is one target's measurement in one cell: the load result and what the process allocated and the
// dependencies received meanwhile.
type run struct {
	loadResult
	roundRPS            []float64 // each round's requests per second
	Mallocs, AllocBytes uint64    // whole process (load generator included), summed over rounds
}

func (r run) perRequest(v uint64) float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(v) / float64(r.Requests)
}

// DepsPer1000 is how many dependency requests happened per 1,000 health requests.
func (r run) DepsPer1000() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.DepRequests) * 1000 / float64(r.Requests)
}

func (r *run) add(o run) {
	r.loadResult.merge(o.loadResult)
	r.Mallocs += o.Mallocs
	r.AllocBytes += o.AllocBytes
	r.roundRPS = append(r.roundRPS, o.RPS())
}

// ratioTo is the median over rounds of r's throughput over base's in the same round: each round pair
// ran back to back, so a burst of background load on the machine skews one pair, not the figure.
func (r run) ratioTo(base run) float64 {
	var rs []float64
	for i := range min(len(r.roundRPS), len(base.roundRPS)) {
		rs = append(rs, ratio(r.roundRPS[i], base.roundRPS[i]))
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	if len(rs)%2 == 1 {
		return rs[len(rs)/2]
	}
	return (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
}

type target struct {
	name string
	url  string
	code int
}

// measureOnce runs the load against t for d, counting process allocations and dependency requests.
func measureOnce(ctx context.Context, p *params, client *http.Client, t target, d time.Duration, deps *tcpDeps) (run, error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, err := hammer(ctx, client, t.url, t.code, p.conns, d, deps.Requests)
	runtime.ReadMemStats(&after)
	if err != nil {
		return run{}, fmt.Errorf("%s %s: %w", t.name, t.url, err)
	}
	if res.Errors > 0 {
		return run{}, fmt.Errorf("%s %s: %d of %d requests failed", t.name, t.url, res.Errors, res.Requests)
	}
	return run{loadResult: res, Mallocs: after.Mallocs - before.Mallocs,
		AllocBytes: after.TotalAlloc - before.TotalAlloc}, nil
}

// compare alternates between targets for rounds rounds (AB, BA, AB, …) so that a change in the
// machine's background load hits them alike; each target gets p.cell in total.
func compare(ctx context.Context, p *params, rounds int, client *http.Client, deps *tcpDeps, ts ...target) ([]run, error) {
	out := make([]run, len(ts))
	d := p.cell / time.Duration(rounds)
	for r := range rounds {
		for k := range ts {
			i := k
			if r%2 == 1 {
				i = len(ts) - 1 - k
			}
			got, err := measureOnce(ctx, p, client, ts[i], d, deps)
			if err != nil {
				return nil, err
			}
			out[i].add(got)
		}
	}
	for i := range out {
		out[i].finish()
	}
	return out, nil
}

// tpRow is one endpoint at one probe count: the agent beside the static handler serving its bytes.
type tpRow struct {
	Endpoint      string
	Probes        int
	BodyBytes     int
	Agent, Static run
	// SnapshotKept: the agent served the whole cell from the snapshot it had before (no rebuild).
	SnapshotKept bool
}

func (r tpRow) Ratio() float64 { return r.Agent.ratioTo(r.Static) }

// peerRow is a peer's health endpoint at one probe count, beside the static handler serving the agent's
// /api/health bytes.
type peerRow struct {
	Peer        string
	Probes      int
	Run, Static run
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// runThroughput measures the agent, the static limit and the peers at each probe count.
func runThroughput(ctx context.Context, p *params, deps *tcpDeps) ([]tpRow, []peerRow, error) {
	client := newLoadClient(p.conns)
	defer client.CloseIdleConnections()
	var rows []tpRow
	var peers []peerRow
	for _, n := range p.probeCounts {
		// A long interval: probing must not be what is measured, and any dependency request during a
		// cell would be caused by the health traffic.
		cfgPath, err := writeFile(p.tmp, fmt.Sprintf("tp-%d.yaml", n), probeConfig(n, time.Hour, deps))
		if err != nil {
			return nil, nil, err
		}
		ag, err := startInprocAgent(ctx, cfgPath)
		if err != nil {
			return nil, nil, err
		}
		if err := waitStatus(ctx, client, ag.base+"/startupz", 200, 60*time.Second); err != nil {
			ag.Close()
			return nil, nil, fmt.Errorf("agent with %d probes: %w", n, err)
		}
		if err := waitStatus(ctx, client, ag.base+"/readyz", 200, 60*time.Second); err != nil {
			ag.Close()
			return nil, nil, fmt.Errorf("agent with %d probes: %w", n, err)
		}
		routes := map[string]captured{}
		for _, e := range endpoints {
			c, err := capture(ctx, client, ag.base+e)
			if err != nil {
				ag.Close()
				return nil, nil, err
			}
			routes[e] = c
		}
		st, err := serve(staticGin(routes))
		if err != nil {
			ag.Close()
			return nil, nil, err
		}
		for _, e := range endpoints {
			logf("throughput: %d probes, %s", n, e)
			snap := ag.a.Monitor().Snapshot()
			got, err := compare(ctx, p, p.rounds, client, deps,
				target{"static", st.base + e, routes[e].code},
				target{"agent", ag.base + e, routes[e].code})
			if err != nil {
				st.Close()
				ag.Close()
				return nil, nil, err
			}
			rows = append(rows, tpRow{Endpoint: e, Probes: n, BodyBytes: len(routes[e].body),
				Static: got[0], Agent: got[1], SnapshotKept: ag.a.Monitor().Snapshot() == snap})
		}
		if err := ag.Close(); err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("agent stop: %w", err)
		}

		// Peers: the same checks (a TCP connect to the same dependencies), the same server limits.
		logf("peers: %d probes, alexliesenfeld/health", n)
		ah, stop := alexPeer(n, time.Hour, deps)
		as, err := serve(ah)
		if err != nil {
			stop()
			st.Close()
			return nil, nil, err
		}
		err = waitStatus(ctx, client, as.base+"/", 200, 60*time.Second)
		var got []run
		if err == nil {
			got, err = compare(ctx, p, p.peerRounds, client, deps,
				target{"static", st.base + "/api/health", routes["/api/health"].code},
				target{"alexliesenfeld/health", as.base + "/", 200})
		}
		as.Close()
		stop()
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		peers = append(peers, peerRow{Peer: "alexliesenfeld/health " + modVersion("github.com/alexliesenfeld/health"), Probes: n, Static: got[0], Run: got[1]})

		logf("peers: %d probes, hellofresh/health-go", n)
		hh, err := hellofreshPeer(n, deps)
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		hs, err := serve(hh)
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		got, err = compare(ctx, p, p.peerRounds, client, deps,
			target{"static", st.base + "/api/health", routes["/api/health"].code},
			target{"hellofresh/health-go", hs.base + "/", 200})
		hs.Close()
		st.Close()
		if err != nil {
			return nil, nil, err
		}
		peers = append(peers, peerRow{Peer: "hellofresh/health-go " + modVersion("github.com/hellofresh/health-go/v5"), Probes: n, Static: got[0], Run: got[1]})
	}
	return rows, peers, nil
}
