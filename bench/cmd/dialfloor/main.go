// Command dialfloor is the benchmark runner's baseline for idle CPU: the least a Go process can spend
// on the probing an idle agent with tcp probes does. Each of n goroutines opens and closes a TCP
// connection to its address once per interval, spread by the agent's default jitter and landing on
// the same kind of slot grid as the agent's scheduler (interval/40, at most 250ms, at a random phase),
// and nothing else happens: no policies, verdicts, snapshots, metrics or HTTP server. The runner measures it beside the
// agents, in the same window, so that the agent's figure can be read against what the connections
// themselves cost on the machine.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	addrs := flag.String("addrs", "", "comma-separated host:port list; probe i connects to address i mod len")
	n := flag.Int("n", 100, "probes")
	interval := flag.Duration("interval", 10*time.Second, "time between two connections of one probe")
	jitter := flag.Float64("jitter", 0.1, "interval spread, as the agent's scheduler.jitter")
	timeout := flag.Duration("timeout", 2*time.Second, "connect timeout")
	flag.Parse()
	list := strings.Split(*addrs, ",")
	if *addrs == "" || *n < 1 || *interval <= 0 {
		fmt.Fprintln(os.Stderr, "usage: dialfloor -addrs host:port[,host:port…] [-n 100] [-interval 10s]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	phase := rand.Float64()
	var wg sync.WaitGroup
	for i := range *n {
		addr := list[i%len(list)]
		wg.Go(func() { probe(ctx, addr, *interval, *jitter, *timeout, phase) })
	}
	wg.Wait()
}

// probe connects to addr once per interval until ctx is done; failures are the runner's to notice (its
// listeners count connections).
func probe(ctx context.Context, addr string, interval time.Duration, jitter float64, timeout time.Duration, phase float64) {
	d := net.Dialer{KeepAlive: -1}
	slot := min(interval/40, 250*time.Millisecond)
	offset := time.Duration(phase * float64(slot))
	for {
		due := time.Now().Add(interval + time.Duration((rand.Float64()*2-1)*jitter*float64(interval)) - offset)
		if slot > 0 {
			due = due.Add(slot - 1).Truncate(slot) // round up to the grid
		}
		t := time.NewTimer(time.Until(due.Add(offset)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		if c, err := d.DialContext(cctx, "tcp", addr); err == nil {
			_ = c.Close()
		}
		cancel()
	}
}
