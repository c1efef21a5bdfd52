package api

import (
	"strings"
	"testing"

	"github.com/health-agent/health-agent/pkg/probes"
)

// TestKubeAnswerFollowsSnapshot: the plain /readyz answer is kept per snapshot, so it must change as
// soon as the snapshot does, and never stand in for a verbose or single-check request.
func TestKubeAnswerFollowsSnapshot(t *testing.T) {
	e := setup(t)
	u := e.srv.URL
	e.waitOverall(t, probes.Healthy)

	steps := []struct {
		name     string
		down     bool
		overall  probes.Status
		path     string
		code     int
		contains string
	}{
		{"healthy, plain", false, probes.Healthy, "/readyz", 200, "ok"},
		{"healthy, again from the kept answer", false, probes.Healthy, "/readyz", 200, "ok"},
		{"healthy, verbose is not the kept answer", false, probes.Healthy, "/readyz?verbose", 200, "readyz check passed\n"},
		{"healthy, one check is not the kept answer", false, probes.Healthy, "/readyz/app?verbose", 200, "[+]app ok\n"},
		{"app down", true, probes.Unhealthy, "/readyz", 503, "[-]app failed: unhealthy: connection refused\n"},
		{"app down, startupz passed once", true, probes.Unhealthy, "/startupz", 200, "ok"},
		{"app back", false, probes.Healthy, "/readyz", 200, "ok"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			e.deps["app"].down.Store(st.down)
			e.waitOverall(t, st.overall)
			code, body, _ := get(t, u+st.path)
			if code != st.code || !strings.Contains(body, st.contains) {
				t.Fatalf("GET %s: %d %q, want %d with %q", st.path, code, body, st.code, st.contains)
			}
		})
	}
}

// TestKubeReasonsArePrintable: a dependency's reason cannot add a line to a text endpoint or drive a
// terminal: every control character but tab is replaced, in failing lines and in notes alike.
func TestKubeReasonsArePrintable(t *testing.T) {
	e := setup(t)
	e.waitOverall(t, probes.Healthy)
	hostile := "refused\r\n[+]fake ok\x1b[31m\x00\u0085\ttab kept"
	for _, name := range []string{"app", "memory"} {
		e.deps[name].why.Store(&hostile)
		e.deps[name].down.Store(true)
	}
	e.waitOverall(t, probes.Unhealthy)
	for _, p := range []string{"/readyz?verbose", "/readyz", "/readyz/app", "/readyz/memory?verbose"} {
		t.Run(p, func(t *testing.T) {
			_, body, _ := get(t, e.srv.URL+p)
			if !strings.Contains(body, "refused  [+]fake ok [31m  \ttab kept") {
				t.Errorf("the reason is not shown cleaned: %q", body)
			}
			for line := range strings.Lines(body) {
				if !strings.HasPrefix(line, "[") && !strings.HasSuffix(line, "check failed\n") && !strings.HasSuffix(line, "check passed\n") {
					t.Errorf("a line the agent did not write: %q in %q", line, body)
				}
			}
			for _, r := range body {
				if r != '\n' && r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) {
					t.Fatalf("control character %U in %q", r, body)
				}
			}
		})
	}
}

// TestKubeReasonsWithheldWithoutToken: with server.detailsToken set, the kube endpoints still answer
// everyone (kubelets carry no token) but show a probe's reason, and the notes on passing checks, only
// to a request that carries the token. The agent's own reasons (shutting down) stay shown.
func TestKubeReasonsWithheldWithoutToken(t *testing.T) {
	e := setup(t)
	const secret = "s3cr3t-token-value"
	e.token.Store(secret)
	u := e.srv.URL
	e.waitOverall(t, probes.Healthy)
	e.deps["memory"].down.Store(true) // non-critical: a note on a passing /readyz line
	e.waitOverall(t, probes.Degraded)

	tests := []struct {
		name     string
		path     string
		token    bool
		code     int
		want     []string
		withheld []string
	}{
		{"verbose, a note withheld", "/readyz?verbose", false, 200, []string{"[+]memory ok\n"}, []string{"connection refused"}},
		{"verbose with the token", "/readyz?verbose", true, 200, []string{"[+]memory ok (non-critical, unhealthy: connection refused)\n"}, nil},
		{"one check", "/readyz/memory", false, 503, []string{"[-]memory failed: reason withheld\n"}, []string{"connection refused"}},
		{"one check with the token", "/readyz/memory", true, 503, []string{"[-]memory failed: unhealthy: connection refused\n"}, nil},
	}
	check := func(t *testing.T, path string, token bool, code int, want, withheld []string) {
		t.Helper()
		var hdr []string
		if token {
			hdr = []string{"Authorization", "Bearer " + secret}
		}
		got, body, _ := get(t, u+path, hdr...)
		if got != code {
			t.Errorf("%s: %d, want %d: %q", path, got, code, body)
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: %q lacks %q", path, body, w)
			}
		}
		for _, w := range withheld {
			if strings.Contains(body, w) {
				t.Errorf("%s without the token shows %q: %q", path, w, body)
			}
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.path, tt.token, tt.code, tt.want, tt.withheld) })
	}

	// A failing answer lists its checks even when plain: the kept plain answer must not carry the
	// reasons to a request without the token, nor withhold them from one with it.
	e.deps["app"].down.Store(true)
	e.waitOverall(t, probes.Unhealthy)
	for range 2 {
		check(t, "/readyz", false, 503, []string{"[-]app failed: reason withheld\n", "readyz check failed\n"}, []string{"connection refused"})
		check(t, "/readyz", true, 503, []string{"[-]app failed: unhealthy: connection refused\n"}, nil)
		check(t, "/readyz", false, 503, []string{"[-]app failed: reason withheld\n"}, []string{"connection refused"})
	}
	check(t, "/startupz/app?verbose", false, 200, []string{"[+]app ok\n"}, nil)
	check(t, "/readyz?verbose", true, 503, []string{"[-]app failed: unhealthy: connection refused\n"}, nil)
	check(t, "/readyz?verbose", false, 503, []string{"[-]app failed: reason withheld\n", "[+]mcpClient ok\n"}, []string{"connection refused", "blocked"})
	for _, wrong := range [][]string{{"Authorization", "Bearer wrong"}, {"Authorization", secret}, {"Authorization", "Basic " + secret}} {
		if _, body, _ := get(t, u+"/readyz?verbose", wrong...); strings.Contains(body, "connection refused") {
			t.Errorf("%v: reasons shown with a wrong credential: %q", wrong, body)
		}
	}

	// The agent's own reason is not a dependency's: shown to all.
	e.mon.SetDraining()
	check(t, "/readyz?verbose", false, 503, []string{"[-]shutdown failed: shutting down\n"}, []string{"connection refused"})
}
