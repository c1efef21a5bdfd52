package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/health-agent/health-agent/internal/chaos"
	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/agent"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// secret is a value that must never leave the agent: not in a log line, a response or an error. It
// is random hex, so that any piece of it found anywhere is a leak, not a coincidence.
type secret struct{ name, value string }

func newSecret(name string) secret {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return secret{name: name, value: hex.EncodeToString(b)}
}

// leakWindow is the shortest piece of a secret the scan looks for: a clipped message that keeps part
// of a token leaks that part.
const leakWindow = 10

// leaks reports whether p holds the secret or any leakWindow-long piece of it.
func (s secret) leaks(p []byte) bool {
	for i := 0; i+leakWindow <= len(s.value); i++ {
		if bytes.Contains(p, []byte(s.value[i:i+leakWindow])) {
			return true
		}
	}
	return false
}

// scanner is an io.Writer that checks every write for the secrets. It keeps the text only when asked:
// a long run would otherwise hold every log line in memory. slog handlers and the response recorder
// write one whole record per Write, so a secret never straddles two writes.
type scanner struct {
	what    string
	secrets []secret
	keep    bool

	mu     sync.Mutex
	text   strings.Builder
	writes int
	leaks  map[string]int    // secret name -> writes that held it
	where  map[string]string // secret name -> the first such write, every hex run masked
}

// hexRun masks what could be a secret (they are random hex) in the excerpt a leak report shows.
var hexRun = regexp.MustCompile(`[0-9a-f]{8,}`)

func newScanner(what string, keep bool, secrets []secret) *scanner {
	return &scanner{what: what, keep: keep, secrets: secrets, leaks: map[string]int{}, where: map[string]string{}}
}

func (s *scanner) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	for _, sec := range s.secrets {
		if sec.leaks(p) {
			if s.leaks[sec.name] == 0 {
				s.where[sec.name] = hexRun.ReplaceAllString(string(p[:min(len(p), 400)]), "<hex>")
			}
			s.leaks[sec.name]++
		}
	}
	if s.keep {
		s.text.Write(p)
	}
	return len(p), nil
}

func (s *scanner) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.text.String()
}

// assertClean fails the test for every secret seen, naming the secret, never showing its value.
func (s *scanner) assertClean(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range s.secrets {
		if n := s.leaks[sec.name]; n > 0 {
			t.Errorf("%s: secret %s appeared in %d of %d writes, first in: %q", s.what, sec.name, n, s.writes, s.where[sec.name])
		}
	}
	if s.writes == 0 && len(s.secrets) > 0 {
		t.Errorf("%s: nothing was scanned: the leak check would be vacuous", s.what)
	}
}

// setup describes one agent under test.
type setup struct {
	config  string            // the YAML
	env     map[string]string // what the agent sees as its environment
	secrets []secret          // values to scan logs and responses for
	token   string            // detailsToken to send on the detail endpoints
	keep    bool              // keep log text (for assertions on it)
}

// harness is a real agent on loopback, built and run the way cmd/agent does it.
type harness struct {
	t      *testing.T
	agent  *agent.Agent
	base   string
	path   string
	token  string
	logs   *scanner
	wire   *scanner // every response the tests read
	client *http.Client
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, s setup) *harness {
	t.Helper()
	// Every agent runs with a details token, scanned for like any secret: a config that references
	// ${DETAILS_TOKEN} gets it, so each suite doubles as a leak check.
	if _, ok := s.env["DETAILS_TOKEN"]; !ok {
		canary := newSecret("detailsToken")
		s.env = maps.Clone(s.env)
		if s.env == nil {
			s.env = map[string]string{}
		}
		s.env["DETAILS_TOKEN"] = canary.value
		s.secrets = append(slices.Clone(s.secrets), canary)
		s.token = canary.value
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, path, s.config)
	lookup := func(k string) (string, bool) { v, ok := s.env[k]; return v, ok }
	h := &harness{
		t: t, path: path, token: s.token,
		logs:   newScanner("logs", s.keep, s.secrets),
		wire:   newScanner("responses", false, s.secrets),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		done:   make(chan error, 1),
	}
	loaded, err := agent.LoadConfig(path, nil, lookup)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// As cmd/agent serves it: real metrics, the real status page.
	a, err := agent.New(loaded, agent.WithMetricsAndStatusPage(agent.Options{
		ConfigPath: path, Listen: "127.0.0.1:0", Logger: log, Version: "test", LookupEnv: lookup,
		Tick: 10 * time.Millisecond,
	}))
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	h.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- a.Run(ctx, nil) }()
	t.Cleanup(func() {
		h.stop()
		h.client.CloseIdleConnections()
		h.logs.assertClean(t)
		h.wire.assertClean(t)
	})
	testkit.EventuallyState(t, 20*time.Second, func() (bool, string) {
		select {
		case err := <-h.done:
			t.Fatalf("agent stopped: %v", err)
		default:
		}
		return a.Addr() != "", ""
	}, "the agent listening")
	h.base = "http://" + a.Addr()
	return h
}

// use makes the harness's helpers report to t (a subtest) until the returned func is called.
func (h *harness) use(t *testing.T) (restore func()) {
	prev := h.t
	h.t = t
	return func() { h.t = prev }
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("agent Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Error("agent did not stop")
	}
}

// reply is one HTTP answer.
type reply struct {
	code int
	hdr  http.Header
	body string
}

// do sends a request with header pairs and records the answer for the secret scan.
func (h *harness) do(method, path string, hdr ...string) (reply, error) {
	req, err := http.NewRequest(method, h.base+path, nil)
	if err != nil {
		return reply{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	var rec strings.Builder
	// The request itself is not recorded: a test may send a secret on purpose.
	fmt.Fprintf(&rec, "%s -> %d\n", method, resp.StatusCode)
	_ = resp.Header.Write(&rec)
	rec.Write(b)
	_, _ = io.WriteString(h.wire, rec.String())
	return reply{code: resp.StatusCode, hdr: resp.Header, body: string(b)}, nil
}

func (h *harness) get(path string, hdr ...string) reply {
	h.t.Helper()
	r, err := h.do(http.MethodGet, path, hdr...)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	return r
}

// detail GETs a token-protected endpoint, or a kube endpoint whose reasons it wants, with the token.
func (h *harness) detail(path string) reply {
	h.t.Helper()
	if h.token == "" {
		return h.get(path)
	}
	return h.get(path, "Authorization", "Bearer "+h.token)
}

// view is a probe as the endpoints show it.
type view struct {
	status, reason, breaker, overall, health string
	healthCode, readyz                       int
	transitions, flaps                       float64
	history                                  []string // the breaker's recent errors
}

func (v view) String() string {
	return fmt.Sprintf("status=%s breaker=%s overall=%s /api/health=%d %s /readyz=%d reason=%q",
		v.status, v.breaker, v.overall, v.healthCode, v.health, v.readyz, v.reason)
}

func (h *harness) view(probe string) view {
	h.t.Helper()
	var v view
	detailed := decode(h.t, h.detail("/api/health/detailed").body)
	svc := dig(detailed, "data", "health", "services", probe)
	v.status, _ = dig(svc, "status").(string)
	v.reason, _ = dig(svc, "reason").(string)
	v.transitions, _ = dig(svc, "transitions").(float64)
	v.flaps, _ = dig(svc, "flaps").(float64)
	v.overall, _ = dig(detailed, "data", "health", "overall").(string)
	if name, ok := dig(svc, "breaker").(string); ok {
		b := dig(decode(h.t, h.detail("/api/health/circuit-breakers").body), "data", "breakers", name)
		v.breaker, _ = dig(b, "state").(string)
		hist, _ := dig(b, "history").([]any)
		for _, e := range hist {
			if s, ok := dig(e, "error").(string); ok {
				v.history = append(v.history, s)
			}
		}
	}
	r := h.get("/api/health")
	v.healthCode = r.code
	v.health, _ = dig(decode(h.t, r.body), "data", "status").(string)
	v.readyz = h.get("/readyz").code
	return v
}

// waitView polls until want holds for the probe's view.
func (h *harness) waitView(probe, what string, want func(view) bool) view {
	h.t.Helper()
	var last view
	testkit.EventuallyState(h.t, 20*time.Second, func() (bool, string) {
		last = h.view(probe)
		return want(last), last.String()
	}, "%s: %s", probe, what)
	return last
}

func startChaos(t *testing.T, m chaos.Mode) *chaos.Server {
	t.Helper()
	s := chaos.New(m)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("chaos Close: %v", err)
		}
	})
	return s
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func decode(t *testing.T, body string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("not JSON (%v): %.300s", err, body)
	}
	return v
}

// dig follows object keys, as jq's .a.b.c would.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// sampler plays a kubelet: it requests the paths in turn, one at a time, on fresh connections, and
// records each answer's latency until stopped.
type sampler struct {
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	lat    []time.Duration
	codes  map[int]int
	errors []string
	failed []string // bodies of the first few non-2xx answers
}

func (h *harness) sample(paths ...string) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{}), codes: map[int]int{}}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(s.done)
		defer c.CloseIdleConnections()
		pace := time.NewTicker(2 * time.Millisecond)
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-pace.C:
			}
			start := time.Now()
			resp, err := c.Get(h.base + paths[i%len(paths)])
			var b []byte
			if err == nil {
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			took := time.Since(start)
			s.mu.Lock()
			if err != nil {
				s.errors = append(s.errors, err.Error())
			} else {
				s.lat = append(s.lat, took)
				s.codes[resp.StatusCode]++
				if resp.StatusCode >= 300 && len(s.failed) < 5 {
					s.failed = append(s.failed, fmt.Sprintf("%s %d: %s", paths[i%len(paths)], resp.StatusCode, b))
				}
				_, _ = fmt.Fprintf(h.wire, "GET %s -> %d\n%s", paths[i%len(paths)], resp.StatusCode, b)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// latency is what a sampler saw.
type latency struct {
	n             int
	p50, p95, p99 time.Duration
	max           time.Duration
	codes         map[int]int
	errors        []string
	failed        []string
}

func (l latency) String() string {
	return fmt.Sprintf("%d requests: p50 %s, p95 %s, p99 %s, max %s, codes %v, %d errors",
		l.n, l.p50, l.p95, l.p99, l.max, l.codes, len(l.errors))
}

func (s *sampler) finish() latency {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	l := latency{n: len(s.lat), codes: s.codes, errors: s.errors, failed: s.failed}
	if len(s.lat) == 0 {
		return l
	}
	sorted := slices.Clone(s.lat)
	slices.Sort(sorted)
	l.p50 = sorted[len(sorted)/2]
	l.p95 = sorted[min(len(sorted)-1, len(sorted)*95/100)]
	l.p99 = sorted[min(len(sorted)-1, len(sorted)*99/100)]
	l.max = sorted[len(sorted)-1]
	return l
}

// endpointBudget is how fast the agent's own endpoints must answer while a dependency misbehaves: far
// above what a snapshot read costs, far below what waiting on a dependency (a timeout, a hang) costs.
const endpointBudget = 200 * time.Millisecond

// assertResponsive fails when the sampled endpoints were slow or did not answer.
func assertResponsive(t *testing.T, what string, l latency, minSamples int) {
	t.Helper()
	t.Logf("%s: %s", what, l)
	if len(l.errors) > 0 {
		t.Errorf("%s: %d requests got no answer, first: %s", what, len(l.errors), l.errors[0])
	}
	if l.n < minSamples {
		t.Errorf("%s: only %d samples, want at least %d", what, l.n, minSamples)
	}
	// p95, not p99: a handler that waited on the dependency would wait on every request during the
	// fault, while one scheduler hiccup on a loaded 2-core machine must not fail the suite.
	if l.p95 > endpointBudget {
		t.Errorf("%s: p95 latency %s > %s: an endpoint waited on something", what, l.p95, endpointBudget)
	}
}
