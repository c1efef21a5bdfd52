package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

// namedCheck is one line of a kube-apiserver style health endpoint.
type namedCheck struct {
	name string
	ok   bool
	why  string // why it fails
	note string // a remark on a passing check (a non-critical probe that is not healthy)
}

// livez checks the agent itself, never a dependency: a failing dependency must not restart the agent.
func (h *handler) livez(c *gin.Context) {
	h.kube(c, "livez", []namedCheck{
		{name: "ping", ok: true},
		{name: "probe-loop", ok: h.src.Alive(h.opts.Now()), why: "the probe scheduler has stopped ticking"},
	})
}

// readyz passes when no critical probe is unhealthy, blocked or unknown and the agent is not draining.
func (h *handler) readyz(c *gin.Context) {
	s := h.src.Snapshot()
	checks := make([]namedCheck, 0, len(s.Checks)+1)
	checks = append(checks, namedCheck{name: "shutdown", ok: !s.ShuttingDown, why: "shutting down"})
	single := c.Param("check")
	for i := range s.Checks {
		v := &s.Checks[i]
		nc := namedCheck{name: v.Name, ok: v.Ready(), why: describe(v)}
		switch {
		case single == v.Name:
			nc.ok = v.OK() // asked for by name: its own verdict, critical or not
		case !v.Critical && !v.OK():
			nc.note = "non-critical, " + describe(v)
		case v.Status == probes.Degraded:
			nc.note = describe(v)
		}
		checks = append(checks, nc)
	}
	h.kube(c, "readyz", checks)
}

// startupz passes once every critical probe has been healthy at least once.
func (h *handler) startupz(c *gin.Context) {
	s := h.src.Snapshot()
	var checks []namedCheck
	for i := range s.Checks {
		v := &s.Checks[i]
		if v.Critical || c.Param("check") == v.Name {
			checks = append(checks, namedCheck{name: v.Name, ok: v.EverHealthy, why: "never healthy yet: " + describe(v)})
		}
	}
	h.kube(c, "startupz", checks)
}

func describe(v *monitor.CheckView) string {
	if v.Reason == "" {
		return string(v.Status)
	}
	if v.Status == probes.Blocked {
		return "blocked: " + v.Reason
	}
	return string(v.Status) + ": " + v.Reason
}

// kube answers like kube-apiserver: "ok", or with ?verbose (or on failure) one line per check, then a
// verdict line; ?exclude=name skips a check; /<endpoint>/<name> evaluates one check.
func (h *handler) kube(c *gin.Context, endpoint string, checks []namedCheck) {
	if name := c.Param("check"); name != "" {
		i := slices.IndexFunc(checks, func(nc namedCheck) bool { return nc.name == name })
		if i < 0 {
			h.text(c, http.StatusNotFound, fmt.Sprintf("no %s check named %q\n", endpoint, name))
			return
		}
		checks = checks[i : i+1]
	}
	q := c.Request.URL.Query()
	excluded := q["exclude"]
	_, verbose := q["verbose"]

	var b strings.Builder
	pass := true
	for _, nc := range checks {
		if slices.Contains(excluded, nc.name) {
			fmt.Fprintf(&b, "[+]%s excluded: ok\n", nc.name)
			continue
		}
		switch {
		case nc.ok && nc.note != "":
			fmt.Fprintf(&b, "[+]%s ok (%s)\n", nc.name, oneLine(nc.note))
		case nc.ok:
			fmt.Fprintf(&b, "[+]%s ok\n", nc.name)
		default:
			pass = false
			fmt.Fprintf(&b, "[-]%s failed: %s\n", nc.name, oneLine(nc.why))
		}
	}
	var unknown []string
	for _, name := range excluded {
		if !slices.ContainsFunc(checks, func(nc namedCheck) bool { return nc.name == name }) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		fmt.Fprintf(&b, "warn: some health checks cannot be excluded: no matches for %s\n", strings.Join(quoteAll(unknown), ","))
	}
	if pass {
		if !verbose {
			h.text(c, http.StatusOK, "ok")
			return
		}
		fmt.Fprintf(&b, "%s check passed\n", endpoint)
		h.text(c, http.StatusOK, b.String())
		return
	}
	fmt.Fprintf(&b, "%s check failed\n", endpoint)
	h.text(c, http.StatusServiceUnavailable, b.String())
}

func (h *handler) text(c *gin.Context, code int, body string) {
	c.Header("Cache-Control", "no-store")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(code, "text/plain; charset=utf-8", []byte(body))
}

// oneLine keeps a reason on its line: a dependency's error text may hold newlines.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
