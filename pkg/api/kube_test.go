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
