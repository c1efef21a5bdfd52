package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/chaos"
	"github.com/health-agent/health-agent/pkg/api"
)

// hostileConfig is an agent with one healthy dependency; the server's limits are the fixed ones of
// pkg/api.
const hostileConfig = `
server:
  shutdownDelay: 0s
  detailsToken: "${DETAILS_TOKEN}"
defaults: { interval: 100ms, timeout: 250ms }
probes:
  - { name: dep, kind: http, critical: true, url: "%s/health" }
`

// TestSlowLoris opens 64 connections that send a request's headers one byte every 50ms. The server cuts
// each at its readHeaderTimeout, and other clients are answered fast all along. (Idle keep-alive
// connections: connections_test.go.)
func TestSlowLoris(t *testing.T) {
	dep := startChaos(t, chaos.Healthy())
	h := startAgent(t, setup{config: fmt.Sprintf(hostileConfig, dep.URL())})
	h.waitView("dep", "ready", func(v view) bool { return v.readyz == 200 })
	addr := h.agent.Addr()
	s := h.sample("/readyz", "/api/health")

	const conns = 64
	const readHeaderTimeout = api.ReadHeaderTimeout
	const slack = 4 * time.Second // a loaded machine may be late to cut; a missing timeout would hold forever
	var wg sync.WaitGroup
	var mu sync.Mutex
	var held []time.Duration
	var problems []string
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	for range conns {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				report("dial: %v", err)
				return
			}
			defer c.Close()
			opened := time.Now()
			if _, err := io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: agent\r\nX-Slow: "); err != nil {
				report("write: %v", err)
				return
			}
			answer := make(chan string, 1)
			go func() {
				b, _ := io.ReadAll(io.LimitReader(c, 4096)) // returns when the server closes
				answer <- string(b)
			}()
			drip := time.NewTicker(50 * time.Millisecond)
			defer drip.Stop()
			deadline := time.After(readHeaderTimeout + slack)
			for {
				select {
				case got := <-answer:
					mu.Lock()
					held = append(held, time.Since(opened))
					mu.Unlock()
					if strings.Contains(got, "200 OK") {
						report("a request whose headers never ended was answered: %q", got)
					}
					return
				case <-drip.C:
					_, _ = io.WriteString(c, "a") // an error just means the server has cut us
				case <-deadline:
					report("connection still open after %s", time.Since(opened))
					_ = c.Close()
					<-answer
					return
				}
			}
		})
	}

	wg.Wait()

	for _, p := range problems {
		t.Error(p)
	}
	var longest time.Duration
	for _, d := range held {
		longest = max(longest, d)
	}
	t.Logf("%d slow connections cut, the longest held %s", len(held), longest)
	if len(held) != conns {
		t.Errorf("%d of %d slow connections were cut by the server", len(held), conns)
	}
	assertResponsive(t, "during the slow-loris", s.finish(), 50)
}

// TestOversizedHeaders: headers beyond api.MaxHeaderBytes (16 KiB) get 431 (net/http allows 4 KiB of
// slack over it), a request within it is served, and the agent keeps answering others.
func TestOversizedHeaders(t *testing.T) {
	dep := startChaos(t, chaos.Healthy())
	h := startAgent(t, setup{config: fmt.Sprintf(hostileConfig, dep.URL())})
	h.waitView("dep", "ready", func(v view) bool { return v.readyz == 200 })
	s := h.sample("/readyz", "/api/health")

	many := make([]string, 0, 800)
	for i := range 400 {
		many = append(many, fmt.Sprintf("X-H%d", i), strings.Repeat("v", 60))
	}
	tests := []struct {
		name string
		path string
		hdr  []string
		want int
	}{
		{"within the limit", "/readyz", []string{"X-Pad", strings.Repeat("a", 12<<10)}, 200},
		{"one huge header", "/readyz", []string{"X-Pad", strings.Repeat("a", 24<<10)}, 431},
		{"many headers", "/api/health", many, 431},
		{"huge cookie", "/api/health/detailed", []string{"Cookie", "c=" + strings.Repeat("b", 32<<10)}, 431},
		{"huge query", "/readyz?exclude=" + strings.Repeat("x", 24<<10), nil, 431},
	}
	for range 20 { // repeated, to be sure nothing accumulates
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r, err := h.do(http.MethodGet, tt.path, tt.hdr...)
				if err != nil {
					t.Fatal(err)
				}
				if r.code != tt.want {
					t.Fatalf("%d, want %d: %.200s", r.code, tt.want, r.body)
				}
			})
		}
	}
	assertResponsive(t, "during oversized requests", s.finish(), 20)
}
