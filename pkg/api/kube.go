package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/gin-gonic/gin"

	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
	"github.com/health-agent/health-agent/pkg/redact"
)

// namedCheck is one line of a kube-apiserver style health endpoint.
type namedCheck struct {
	name string
	ok   bool
	why  string // why it fails
	note string // a remark on a passing check (a non-critical probe that is not healthy)
	// own: why is the agent's own fixed text (shutting down, the scheduler stopped), shown even when
	// reasons are withheld; a probe's reason comes from its dependency.
	own bool
}

// withheldReason replaces a probe's reason for a request without the details token.
const withheldReason = "reason withheld"

// livez checks the agent itself, never a dependency: a failing dependency must not restart the agent.
func (h *handler) livez(c *gin.Context) {
	code, body := h.kube(c, "livez", []namedCheck{
		{name: "ping", ok: true},
		{name: "probe-loop", ok: h.src.Alive(h.opts.Now()), why: "the probe scheduler has stopped ticking", own: true},
	})
	h.text(c, code, body)
}

// kubeAnswer is a kube endpoint's plain answer (no query, no check name) for one snapshot. Kubelets
// and load balancers ask exactly this, many times per snapshot: it is built on the first request after
// the snapshot changed and served as it is until the next one, so its cost does not grow with the
// number of probes.
type kubeAnswer struct {
	snap     *monitor.Snapshot
	withheld bool
	code     int
	body     []byte
}

// readyz passes when no critical probe is unhealthy, blocked or unknown and the agent is not draining.
func (h *handler) readyz(c *gin.Context) {
	s := h.src.Snapshot()
	h.kubeCached(c, &h.readyzPlain, s, "readyz", func(single string) []namedCheck { return readyChecks(s, single) })
}

func readyChecks(s *monitor.Snapshot, single string) []namedCheck {
	shutdown := namedCheck{name: "shutdown", ok: !s.ShuttingDown, why: "shutting down", own: true}
	if single != "" {
		// Asked for by name: only that check, with its own verdict, critical or not.
		if single == shutdown.name {
			return []namedCheck{shutdown}
		}
		if v := s.Check(single); v != nil {
			return []namedCheck{{name: v.Name, ok: v.OK(), why: describe(v)}}
		}
		return nil
	}
	checks := make([]namedCheck, 0, len(s.Checks)+1)
	checks = append(checks, shutdown)
	for i := range s.Checks {
		v := &s.Checks[i]
		nc := namedCheck{name: v.Name, ok: v.Ready(), why: describe(v)}
		switch {
		case !v.Critical && !v.OK():
			nc.note = "non-critical, " + describe(v)
		case v.Status == probes.Degraded:
			nc.note = describe(v)
		}
		checks = append(checks, nc)
	}
	return checks
}

// startupz passes once every critical probe has been healthy at least once.
func (h *handler) startupz(c *gin.Context) {
	s := h.src.Snapshot()
	h.kubeCached(c, &h.startupzPlain, s, "startupz", func(single string) []namedCheck {
		var checks []namedCheck
		for i := range s.Checks {
			v := &s.Checks[i]
			if v.Critical || single == v.Name {
				checks = append(checks, namedCheck{name: v.Name, ok: v.EverHealthy, why: "never healthy yet: " + describe(v)})
			}
		}
		return checks
	})
}

// kubeCached answers a kube endpoint about snapshot s, from cache when the request is plain and s has
// not changed since the cached answer was built.
func (h *handler) kubeCached(c *gin.Context, cache *atomic.Pointer[kubeAnswer], s *monitor.Snapshot, endpoint string,
	checks func(single string) []namedCheck) {
	single := c.Param("check")
	plain := single == "" && c.Request.URL.RawQuery == ""
	// A passing plain answer is "ok" whoever asks; only a failing one lists reasons, which the details
	// token may withhold. So the kubelet's request, which passes, checks no token.
	a := cache.Load()
	if plain && a != nil && a.snap == s && a.code == http.StatusOK {
		h.text(c, a.code, a.body)
		return
	}
	withheld := h.withheld(c)
	if plain && a != nil && a.snap == s && a.withheld == withheld {
		h.text(c, a.code, a.body)
		return
	}
	code, body := h.kube(c, endpoint, checks(single))
	if plain {
		cache.Store(&kubeAnswer{snap: s, withheld: withheld, code: code, body: body})
	}
	h.text(c, code, body)
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

// withheld reports whether the request may not see probes' reasons: server.detailsToken is set and
// the request does not carry it.
func (h *handler) withheld(c *gin.Context) bool { return !Authorized(c.Request, h.opts.Token()) }

// kube answers like kube-apiserver: "ok", or with ?verbose (or on failure) one line per check, then a
// verdict line; ?exclude=name skips a check; /<endpoint>/<name> evaluates one check. Reasons have
// their control characters replaced; without the details token (when one is set) a probe's reason
// reads "reason withheld" and notes on passing checks are left out. It returns the status code and
// the body.
func (h *handler) kube(c *gin.Context, endpoint string, checks []namedCheck) (int, []byte) {
	withheld := h.withheld(c)
	if name := c.Param("check"); name != "" {
		i := slices.IndexFunc(checks, func(nc namedCheck) bool { return nc.name == name })
		if i < 0 {
			return http.StatusNotFound, fmt.Appendf(nil, "no %s check named %q\n", endpoint, name)
		}
		checks = checks[i : i+1]
	}
	var excluded []string
	verbose := false
	if c.Request.URL.RawQuery != "" {
		q := c.Request.URL.Query()
		excluded = q["exclude"]
		_, verbose = q["verbose"]
	}
	pass := true
	for _, nc := range checks {
		if !nc.ok && !slices.Contains(excluded, nc.name) {
			pass = false
			break
		}
	}
	if pass && !verbose {
		return http.StatusOK, okBody // the listing would be thrown away: do not build it
	}

	var b strings.Builder
	for _, nc := range checks {
		if slices.Contains(excluded, nc.name) {
			fmt.Fprintf(&b, "[+]%s excluded: ok\n", nc.name)
			continue
		}
		switch {
		case nc.ok && nc.note != "" && !withheld:
			fmt.Fprintf(&b, "[+]%s ok (%s)\n", nc.name, redact.Printable(nc.note))
		case nc.ok:
			fmt.Fprintf(&b, "[+]%s ok\n", nc.name)
		case withheld && !nc.own:
			fmt.Fprintf(&b, "[-]%s failed: %s\n", nc.name, withheldReason)
		default:
			fmt.Fprintf(&b, "[-]%s failed: %s\n", nc.name, redact.Printable(nc.why))
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
		fmt.Fprintf(&b, "%s check passed\n", endpoint)
		return http.StatusOK, []byte(b.String())
	}
	fmt.Fprintf(&b, "%s check failed\n", endpoint)
	return http.StatusServiceUnavailable, []byte(b.String())
}

// okBody is the plain passing answer. It is only ever read.
var okBody = []byte("ok")

// Header values shared by every text answer; net/http only reads them.
var (
	noStore = []string{"no-store"}
	noSniff = []string{"nosniff"}
)

func (h *handler) text(c *gin.Context, code int, body []byte) {
	hdr := c.Writer.Header()
	hdr["Cache-Control"] = noStore
	hdr["X-Content-Type-Options"] = noSniff
	c.Data(code, "text/plain; charset=utf-8", body)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
