// Package observability holds the Grafana dashboard and Prometheus alert rules that go with the agent.
// Its tests check that they parse, that their structure is what Grafana and Prometheus load, and that
// every metric and label value they use exists in a real /metrics scrape of the agent.
package observability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/agent"
	"github.com/health-agent/health-agent/pkg/breakers"
	"github.com/health-agent/health-agent/pkg/probes"
)

// getKind is the real http kind under the name "get".
var getKind = probes.Kinds["http"]

const agentConfig = `
server:
  listen: "127.0.0.1:0"
  shutdownDelay: 0s
  detailsToken: "${METRICS_TOKEN}"
defaults:
  interval: 50ms
  failuresBeforeUnhealthy: 1
  retry: { maxRetries: 0 }
  breaker: { failureThreshold: 2, window: 2, delay: 1h, successThreshold: 1 }
probes:
  - name: app
    kind: get
    critical: true
    url: "${OK_URL}"
  - name: figmaApi
    kind: get
    breaker: figma-api
    url: "${BAD_URL}"
`

// scrapeAgent runs an agent wired as cmd/agent wires it, waits until a breaker has opened, and returns
// its /metrics, fetched with the details token.
func scrapeAgent(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(ok.Close)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	t.Cleanup(bad.Close)
	const token = "metrics-token"
	env := map[string]string{"METRICS_TOKEN": token, "OK_URL": ok.URL, "BAD_URL": bad.URL}
	lookup := func(k string) (string, bool) { v, found := env[k]; return v, found }
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(agentConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	kinds := probes.Registry{"get": getKind}
	loaded, err := agent.LoadConfig(path, kinds, lookup)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	a, err := agent.New(loaded, agent.WithMetricsAndStatusPage(agent.Options{
		ConfigPath: path, Kinds: kinds, LookupEnv: lookup, Version: "test", Tick: 20 * time.Millisecond,
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	testkit.Eventually(t, 60*time.Second, func() bool {
		return a.Addr() != "" &&
			slices.ContainsFunc(a.Monitor().Snapshot().Breakers, func(b breakers.Stats) bool { return b.State == breakers.Open })
	}, "the agent serving with an opened breaker")
	url := "http://" + a.Addr() + "/metrics"
	if resp, err := http.Get(url); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("/metrics without the details token: HTTP %d, want 401", resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: HTTP %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// targetLabels are attached by Prometheus (or the Kubernetes service discovery) at scrape time.
var targetLabels = []string{"instance", "job", "namespace", "pod"}

var (
	stringLit  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	selector   = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
)

// ourMetric reports whether an identifier of a PromQL expression names a metric the agent exports
// (rather than a function, keyword or label).
func ourMetric(id string) bool {
	return strings.HasPrefix(id, "health_agent_") || strings.HasPrefix(id, "go_") ||
		strings.HasPrefix(id, "process_") || strings.HasPrefix(id, "promhttp_")
}

// family resolves a series name to its family: histogram series carry _bucket, _sum and _count.
func family(fams map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	if f := fams[name]; f != nil {
		return f
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f := fams[base]; f != nil && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
				return f
			}
		}
	}
	return nil
}

// checkExpr fails when expr uses a metric the scrape lacks, a label its series do not have, or an
// exact label value no series has.
func checkExpr(t *testing.T, fams map[string]*dto.MetricFamily, where, expr string) (used []string) {
	t.Helper()
	for _, id := range identifier.FindAllString(stringLit.ReplaceAllString(expr, `""`), -1) {
		if !ourMetric(id) {
			continue
		}
		used = append(used, id)
		if family(fams, id) == nil {
			t.Errorf("%s: metric %s is not in /metrics: %s", where, id, expr)
		}
	}
	for _, sel := range selector.FindAllStringSubmatch(expr, -1) {
		f := family(fams, sel[1])
		if f == nil {
			continue
		}
		for _, m := range matcher.FindAllStringSubmatch(sel[2], -1) {
			name, op, value := m[1], m[2], m[3]
			if slices.Contains(targetLabels, name) || (name == "le" && strings.HasSuffix(sel[1], "_bucket")) {
				continue
			}
			values := labelValues(f, name)
			if values == nil {
				t.Errorf("%s: %s has no label %q: %s", where, sel[1], name, expr)
				continue
			}
			if op == "=" && !strings.Contains(value, "$") && !slices.Contains(values, value) {
				t.Errorf("%s: no %s series has %s=%q (have %v): %s", where, sel[1], name, value, values, expr)
			}
		}
	}
	return used
}

func labelValues(f *dto.MetricFamily, name string) []string {
	var out []string
	for _, m := range f.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == name && !slices.Contains(out, lp.GetValue()) {
				out = append(out, lp.GetValue())
			}
		}
	}
	return out
}

// egressFamilies are what the agent exports for its egress routes (CONTRACT.md "Egress",
// health_agent_egress_*), with the label values the dashboard selects on. The scrape's config has no
// egress section, so the scrape holds them only if the agent pre-creates them without routes; where it
// does not, these stand-ins let the dashboard's egress queries be checked against the same names and
// labels.
var egressFamilies = []struct {
	name   string
	typ    dto.MetricType
	labels [][]string // label pairs of each series
}{
	{"health_agent_egress_requests_total", dto.MetricType_COUNTER, [][]string{{"route", "figma", "code", "200"}, {"route", "figma", "code", "502"}}},
	{"health_agent_egress_request_duration_seconds", dto.MetricType_HISTOGRAM, [][]string{{"route", "figma"}}},
	{"health_agent_egress_rejected_total", dto.MetricType_COUNTER, [][]string{{"route", "figma", "reason", "circuit_open"}, {"route", "figma", "reason", "rate_limited"}}},
}

func addEgressFamilies(fams map[string]*dto.MetricFamily) {
	for _, e := range egressFamilies {
		if fams[e.name] != nil {
			continue
		}
		f := &dto.MetricFamily{Name: &e.name, Type: e.typ.Enum()}
		for _, pairs := range e.labels {
			m := &dto.Metric{}
			for i := 0; i+1 < len(pairs); i += 2 {
				m.Label = append(m.Label, &dto.LabelPair{Name: &pairs[i], Value: &pairs[i+1]})
			}
			f.Metric = append(f.Metric, m)
		}
		fams[e.name] = f
	}
}

func TestDeployAgainstScrape(t *testing.T) {
	fams := scrapeAgent(t)
	// The monitor's breaker calls reach /metrics through agent.WithMetricsAndStatusPage: figma-api's breaker opened
	// after two failed executions, so the first one's call was counted before the second began.
	var failures float64
	for _, m := range fams["health_agent_breaker_calls_total"].GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		if labels["breaker"] == "figma-api" && labels["outcome"] == "failure" {
			failures = m.GetCounter().GetValue()
		}
	}
	if failures < 1 {
		t.Errorf("health_agent_breaker_calls_total{breaker=figma-api,outcome=failure} = %v after its breaker opened, want >= 1", failures)
	}
	addEgressFamilies(fams)
	t.Run("dashboard", func(t *testing.T) { checkDashboard(t, fams) })
	t.Run("alert rules", func(t *testing.T) { checkRules(t, fams) })
}

// Grafana's dashboard model, as far as the checks go.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Repeat     string `json:"repeat"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

var panelTypes = []string{"row", "stat", "timeseries", "state-timeline", "table", "gauge", "bargauge"}

func checkDashboard(t *testing.T, fams map[string]*dto.MetricFamily) {
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 || len(d.Panels) == 0 {
		t.Fatalf("dashboard lacks uid, title, a recent schemaVersion or panels: uid %q title %q schema %d panels %d",
			d.UID, d.Title, d.SchemaVersion, len(d.Panels))
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__all": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	varRef := regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
	checkVars := func(where, s string) {
		for _, m := range varRef.FindAllStringSubmatch(s, -1) {
			if !vars[m[1]] {
				t.Errorf("%s: undefined variable $%s", where, m[1])
			}
		}
	}
	used := map[string]bool{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil || q.Query == "" {
			t.Errorf("variable %s: no query (%v)", v.Name, err)
			continue
		}
		checkVars("variable "+v.Name, q.Query)
		for _, m := range checkExpr(t, fams, "variable "+v.Name, q.Query) {
			used[m] = true
		}
	}
	for _, a := range d.Annotations.List {
		checkVars("annotation "+a.Name, a.Expr)
		for _, m := range checkExpr(t, fams, "annotation "+a.Name, a.Expr) {
			used[m] = true
		}
	}
	ids := map[int]bool{}
	type rect struct{ x, y, w, h int }
	var placed []rect
	for _, p := range d.Panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if ids[p.ID] {
			t.Errorf("%s: duplicate id", where)
		}
		ids[p.ID] = true
		if !slices.Contains(panelTypes, p.Type) {
			t.Errorf("%s: unexpected type %q", where, p.Type)
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24-column grid", where, g)
		}
		r := rect{g.X, g.Y, g.W, g.H}
		for _, o := range placed {
			if r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h {
				t.Errorf("%s: overlaps another panel at %+v", where, o)
			}
		}
		placed = append(placed, r)
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: datasource %+v, want the ${datasource} variable", where, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no targets", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: missing or duplicate refId %q", where, tg.RefID)
			}
			refs[tg.RefID] = true
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: target %s has no expr", where, tg.RefID)
			}
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("%s: unbalanced brackets: %s", where, tg.Expr)
			}
			checkVars(where, tg.Expr)
			for _, m := range checkExpr(t, fams, where, tg.Expr) {
				used[m] = true
			}
		}
	}
	// One row per egress route (a row repeated over $route) with its rate, errors and duration.
	var inRouteRow bool
	routeFamilies := map[string]bool{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			inRouteRow = p.Repeat == "route"
			continue
		}
		for _, tg := range p.Targets {
			for _, name := range []string{"health_agent_egress_requests_total", "health_agent_egress_rejected_total", "health_agent_egress_request_duration_seconds_bucket"} {
				if strings.Contains(tg.Expr, name+"{") {
					if !inRouteRow || !strings.Contains(tg.Expr, `route=~"$route"`) {
						t.Errorf("panel %q: %s outside the row repeated per route, or not filtered by $route", p.Title, name)
					}
					routeFamilies[name] = true
				}
			}
		}
	}
	if len(routeFamilies) != 3 {
		t.Errorf("the per-route row uses %v, want requests, rejections and the duration histogram", routeFamilies)
	}

	// The dashboard shows every health_agent family.
	for name := range fams {
		if strings.HasPrefix(name, "health_agent_") && !used[name] && !used[name+"_bucket"] && !used[name+"_count"] {
			t.Errorf("dashboard does not use %s", name)
		}
	}
}

// Prometheus' rule file format; unknown keys are errors, as they are for Prometheus.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// wantAlerts are the alerts operators expect beside the agent.
var wantAlerts = []string{
	"HealthAgentNotReady", "HealthAgentBreakerOpenTooLong", "HealthAgentProbeFlapping",
	"HealthAgentProbeDown", "HealthAgentConfigReloadFailing", "HealthAgentTargetDown", "HealthAgentTargetAbsent",
}

// scrapeJob is the job name the rules expect the agent's targets under (README.md's scrape config and
// deploy/k8s's PodMonitor set it); `up` of that job is the only non-agent series a rule may use.
const scrapeJob = "health-agent"

func checkRules(t *testing.T, fams map[string]*dto.MetricFamily) {
	raw, err := os.ReadFile("prometheus-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("prometheus-rules.yaml: %v", err)
	}
	if len(f.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	alertName := regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`)
	seen := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: needs a name and rules", g.Name)
		}
		for i, r := range g.Rules {
			where := fmt.Sprintf("group %s rule %d (%s)", g.Name, i, r.Alert+r.Record)
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("%s: exactly one of alert and record", where)
				continue
			}
			if r.Alert != "" && !alertName.MatchString(r.Alert) {
				t.Errorf("%s: alert names are CamelCase", where)
			}
			if seen[r.Alert] {
				t.Errorf("%s: duplicate alert", where)
			}
			seen[r.Alert] = true
			for _, d := range []string{r.For, r.KeepFiringFor} {
				if _, err := model.ParseDuration(d); d != "" && err != nil {
					t.Errorf("%s: bad duration %q: %v", where, d, err)
				}
			}
			if r.Alert != "" {
				if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
					t.Errorf("%s: severity %q", where, r.Labels["severity"])
				}
				if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
					t.Errorf("%s: needs summary and description annotations", where)
				}
			}
			for k, text := range r.Annotations {
				// As Prometheus expands them: $labels and $value are defined first.
				tmpl, err := template.New(k).Option("missingkey=zero").Funcs(promTemplateFuncs).
					Parse(`{{$labels := .Labels}}{{$value := .Value}}` + text)
				if err != nil {
					t.Errorf("%s: annotation %s: %v", where, k, err)
					continue
				}
				data := map[string]any{"Labels": map[string]string{"instance": "i", "probe": "p", "breaker": "b"}, "Value": 1.0}
				if err := tmpl.Execute(io.Discard, data); err != nil {
					t.Errorf("%s: annotation %s: %v", where, k, err)
				}
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("%s: unbalanced parentheses", where)
			}
			upOfJob := strings.Contains(r.Expr, `up{job="`+scrapeJob+`"}`)
			if strings.Contains(stringLit.ReplaceAllString(r.Expr, `""`), "up{") && !upOfJob {
				t.Errorf("%s: selects up without job=%q: %s", where, scrapeJob, r.Expr)
			}
			if len(checkExpr(t, fams, where, r.Expr)) == 0 && !upOfJob {
				t.Errorf("%s: uses no agent metric: %s", where, r.Expr)
			}
		}
	}
	for _, a := range wantAlerts {
		if !seen[a] {
			t.Errorf("alert %s missing", a)
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "job_name: "+scrapeJob) {
		t.Errorf("README.md's scrape config does not name the job %s, which the rules select", scrapeJob)
	}
}

// promTemplateFuncs stand in for the value-formatting functions Prometheus gives alert templates
// (promtool's tests render the real ones).
var promTemplateFuncs = template.FuncMap{
	"humanize":           func(any) string { return "" },
	"humanize1024":       func(any) string { return "" },
	"humanizeDuration":   func(any) string { return "" },
	"humanizePercentage": func(any) string { return "" },
	"humanizeTimestamp":  func(any) string { return "" },
}

// TestRuleTestsCoverEveryAlert: prometheus-rules.test.yaml has, for every alert, a case where it fires
// (with its annotations, which promtool then compares) and one where it does not.
func TestRuleTestsCoverEveryAlert(t *testing.T) {
	raw, err := os.ReadFile("prometheus-rules.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []struct {
					ExpAnnotations map[string]string `yaml:"exp_annotations"`
				} `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(raw, &tests); err != nil {
		t.Fatalf("prometheus-rules.test.yaml: %v", err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) == 0 {
				silent[a.Alertname] = true
			}
			for _, e := range a.ExpAlerts {
				fires[a.Alertname] = fires[a.Alertname] || e.ExpAnnotations["description"] != ""
			}
		}
	}
	for _, a := range wantAlerts {
		if !fires[a] || !silent[a] {
			t.Errorf("alert %s: a firing case with annotations %t, a silent case %t; want both", a, fires[a], silent[a])
		}
	}
}

// TestPromtool checks the rules with Prometheus' own tool, and runs their unit tests
// (prometheus-rules.test.yaml), when promtool is installed (Debian: apt-get install prometheus). Under
// CI it must be: .ci/run installs it.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not installed, and CI is set: .ci/run installs it (Debian package prometheus)")
		}
		t.Skip("promtool not installed")
	}
	for _, args := range [][]string{
		{"check", "rules", "prometheus-rules.yaml"},
		{"test", "rules", "prometheus-rules.test.yaml"},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}
