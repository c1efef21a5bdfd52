// Package statuspage serves the agent's status page for people: one HTML page rendered on the server
// from the monitor's latest Snapshot (usable without JavaScript), plus a script and a stylesheet,
// embedded in the binary, that refresh it from the JSON endpoints. Nothing is fetched from elsewhere.
//
// When server.detailsToken is set, a request without "Authorization: Bearer <token>" gets the restricted
// page: the overall status, each probe's status and the open breakers' names, which is what the open
// /api/health already tells. Reasons, latencies, breaker details and the config are for token holders.
// The token is never accepted in the URL: URLs end up in logs, histories and Referer headers.
package statuspage

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/health-agent/health-agent/pkg/api"
	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

//go:embed assets
var assets embed.FS

// ContentSecurityPolicy is sent with every answer: only this origin's script, style and JSON; no inline
// code, no frames, no forms.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Source is what the page reads: the monitor.
type Source interface {
	Snapshot() *monitor.Snapshot
}

// Options configure the page; all are optional.
type Options struct {
	// Token returns server.detailsToken (it may change on reload). Empty: the full page is open.
	Token func() string
	// Refresh is how often the script refreshes the page (default 5s).
	Refresh time.Duration
	// Now is the clock for "ago" texts (default time.Now).
	Now func() time.Time
}

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Page is the status page's http.Handler. It serves "/" and "/static/<file>".
type Page struct {
	src    Source
	opts   Options
	tmpl   *template.Template
	static map[string]asset // by URL path
	css    string           // URL paths with a content version, so that a new binary's assets are fetched
	js     string
}

// New returns the status page for src. Its template and assets are embedded and fixed at build time, so
// a failure to parse them is a bug that the package's tests catch: New panics on it, like
// template.Must.
func New(src Source, opts Options) *Page {
	if opts.Token == nil {
		opts.Token = func() string { return "" }
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Page{src: src, opts: opts, static: map[string]asset{}}
	for name, ctype := range map[string]string{"status.css": "text/css; charset=utf-8", "status.js": "text/javascript; charset=utf-8"} {
		b, err := assets.ReadFile("assets/" + name)
		if err != nil {
			panic(fmt.Sprintf("status page asset %s: %v", name, err))
		}
		sum := sha256.Sum256(b)
		p.static["/static/"+name] = asset{body: b, contentType: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	version := func(name string) string {
		return "static/" + name + "?v=" + strings.Trim(p.static["/static/"+name].etag, `"`)
	}
	p.css, p.js = version("status.css"), version("status.js")
	p.tmpl = template.Must(template.New("index.html.tmpl").Funcs(template.FuncMap{"lower": strings.ToLower}).
		ParseFS(assets, "assets/index.html.tmpl"))
	return p
}

func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "only GET and HEAD are served", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/" {
		p.serveIndex(w, r)
		return
	}
	if a, ok := p.static[r.URL.Path]; ok {
		h.Set("Content-Type", a.contentType)
		h.Set("ETag", a.etag)
		h.Set("Cache-Control", "no-cache") // revalidate: a 304 costs nothing, a stale script after an upgrade does
		if matches(r.Header.Get("If-None-Match"), a.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Length", strconv.Itoa(len(a.body)))
		_, _ = w.Write(a.body)
		return
	}
	h.Set("Cache-Control", "no-store")
	http.NotFound(w, r)
}

func (p *Page) serveIndex(w http.ResponseWriter, r *http.Request) {
	full := p.authorized(r)
	data := p.view(p.src.Snapshot(), full)
	var buf bytes.Buffer
	if err := p.tmpl.Execute(&buf, data); err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", "Authorization")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	// Always 200: the page itself is fine; its content says how the agent is. Monitors that want an HTTP
	// verdict have /readyz and /api/health.
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// matches reports whether an If-None-Match header names etag.
func matches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		if t = strings.TrimSpace(t); t == etag || t == "*" || t == "W/"+etag {
			return true
		}
	}
	return false
}

// authorized reports whether r may see the details: no token is configured, or r carries it.
func (p *Page) authorized(r *http.Request) bool {
	return api.Authorized(r, p.opts.Token())
}

// The view model: everything the template shows, already formatted, so that the template stays dumb.
type view struct {
	Full         bool
	Overall      string
	Headline     string
	Ready        bool
	Starting     bool
	ShuttingDown bool
	Version      string
	Uptime       string
	At           string // RFC3339, of the snapshot
	RefreshMs    int64
	CSS, JS      string
	Probes       []probeView
	Breakers     []breakerView
	Routes       []routeView // egress routes, when the egress proxy is on (Egress)
	Egress       bool
	OpenBreakers []string
	Config       configView
}

type probeView struct {
	Name, Kind, Status                  string
	Critical                            bool
	Latency, Reason, LastChecked, Since string
	ConsecutiveFailures                 int
	Breaker, BlockedBy                  string
	DependsOn                           string
	Timeline                            []pointView
}

type pointView struct {
	Class, Title string
}

type breakerView struct {
	Name, State, FailureRate, Retry, Probes, LastChange string
	Executions                                          uint
	History                                             []pointView
}

// routeView is one egress route's last minute of real traffic.
type routeView struct {
	Name, Prefix, Breaker, BreakerState string
	Requests, Errors, Rejected          int
	P50, P99, RateLimited               string
}

type configView struct {
	Source, SHA256, LoadedAt string
	ReloadOK, NoReload       bool
	ReloadAt, ReloadError    string
}

// headlines say the overall status in words, for the banner.
var headlines = map[probes.Status]string{
	probes.Healthy:   "All systems healthy",
	probes.Degraded:  "Degraded: serving, but something is not right",
	probes.Unhealthy: "Unhealthy: not ready to serve",
}

func (p *Page) view(s *monitor.Snapshot, full bool) view {
	v := view{Full: full, RefreshMs: p.opts.Refresh.Milliseconds(), CSS: p.css, JS: p.js}
	if s == nil {
		v.Overall, v.Headline, v.Starting = string(probes.Unknown), "Starting", true
		return v
	}
	now := p.opts.Now()
	v.Overall = string(s.Overall)
	v.Headline = headlines[s.Overall]
	v.Ready, v.Starting, v.ShuttingDown = s.Ready(), s.Starting, s.ShuttingDown
	if v.Starting && s.Overall == probes.Unhealthy {
		v.Headline = "Starting: waiting for critical probes to pass"
	}
	if v.ShuttingDown {
		v.Headline = "Shutting down"
	}
	v.Version = s.Version
	v.Uptime = age(s.At.Sub(s.StartedAt))
	v.At = s.At.UTC().Format(time.RFC3339)
	for _, b := range s.Breakers {
		if b.State != breakers.Closed {
			v.OpenBreakers = append(v.OpenBreakers, b.Name)
		}
	}
	for _, c := range ordered(s) {
		pv := probeView{Name: c.Name, Status: string(c.Status)}
		if full {
			pv.Kind, pv.Critical, pv.Reason = c.Kind, c.Critical, c.Reason
			pv.ConsecutiveFailures, pv.Breaker, pv.BlockedBy = c.ConsecutiveFailures, c.Breaker, c.BlockedBy
			pv.DependsOn = strings.Join(c.DependsOn, ", ")
			if !c.LastChecked.IsZero() {
				pv.Latency = latency(c.Duration)
				pv.LastChecked = c.LastChecked.UTC().Format(time.RFC3339)
				pv.Since = age(now.Sub(c.LastChecked)) + " ago"
			}
			for _, pt := range c.Timeline {
				pv.Timeline = append(pv.Timeline, pointView{Class: string(pt.Status),
					Title: pt.At.UTC().Format(time.RFC3339) + " " + string(pt.Status)})
			}
		}
		v.Probes = append(v.Probes, pv)
	}
	if !full {
		return v
	}
	for _, t := range s.Traffic {
		rv := routeView{Name: t.Route, Prefix: t.Prefix, Breaker: t.Breaker, Requests: t.Requests, Errors: t.Errors,
			Rejected: t.Rejected, P50: "—", P99: "—"}
		if t.P50 > 0 || t.P99 > 0 {
			rv.P50, rv.P99 = latency(t.P50), latency(t.P99)
		}
		if t.RateLimitedFor > 0 {
			rv.RateLimited = "rate limited for " + age(t.RateLimitedFor)
		}
		for _, b := range s.Breakers {
			if b.Name == t.Breaker {
				rv.BreakerState = b.State
			}
		}
		v.Routes = append(v.Routes, rv)
	}
	v.Egress = s.Traffic != nil
	for _, b := range s.Breakers {
		bv := breakerView{Name: b.Name, State: b.State, Executions: b.Executions,
			FailureRate: strconv.FormatFloat(b.FailureRate, 'f', 0, 64) + "%",
			Retry:       retry(b.State, b.RetryDue, b.RemainingDelay), Probes: strings.Join(b.Probes, ", ")}
		if !b.LastStateChange.IsZero() {
			bv.LastChange = age(now.Sub(b.LastStateChange)) + " ago"
		}
		for _, h := range b.History {
			title := h.At.UTC().Format(time.RFC3339) + " " + h.Outcome
			if h.Error != "" {
				title += ": " + h.Error
			}
			bv.History = append(bv.History, pointView{Class: h.Outcome, Title: title})
		}
		v.Breakers = append(v.Breakers, bv)
	}
	c := s.Config
	v.Config = configView{Source: c.Source, SHA256: c.SHA256, ReloadOK: c.LastReload.Success, ReloadError: c.LastReload.Error,
		NoReload: c.LastReload == (monitor.Reload{})}
	if len(v.Config.SHA256) > 12 {
		v.Config.SHA256 = v.Config.SHA256[:12]
	}
	if !c.LoadedAt.IsZero() {
		v.Config.LoadedAt = c.LoadedAt.UTC().Format(time.RFC3339)
	}
	if !c.LastReload.At.IsZero() {
		v.Config.ReloadAt = c.LastReload.At.UTC().Format(time.RFC3339)
	}
	return v
}

// ordered returns the checks in the snapshot's topological order (dependencies first, otherwise config
// order), the order the script uses too.
func ordered(s *monitor.Snapshot) []*monitor.CheckView {
	out := make([]*monitor.CheckView, 0, len(s.Checks))
	seen := make(map[string]bool, len(s.Checks))
	for _, name := range s.Order {
		if c := s.Check(name); c != nil && !seen[name] {
			seen[name] = true
			out = append(out, c)
		}
	}
	for i := range s.Checks {
		if !seen[s.Checks[i].Name] {
			out = append(out, &s.Checks[i])
		}
	}
	return out
}

// latency formats a probe's duration as the page shows it (the script formats the same way).
func latency(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
	}
}

// retry says when an open breaker will let a trial execution through.
func retry(state string, due bool, remaining time.Duration) string {
	switch {
	case state == breakers.HalfOpen:
		return "trying now"
	case state != breakers.Open:
		return "—"
	case due || remaining <= 0:
		return "at the next execution"
	case remaining < time.Second:
		return "in <1s"
	default:
		return "in " + age(remaining)
	}
}

// age formats a duration coarsely, for people: 42s, 3m12s, 2h5m, 3d4h.
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	}
}
