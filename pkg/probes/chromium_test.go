//go:build unix

package probes

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
)

// TestCDPChromium runs the probe against real headless Chromium: one instance for every subtest, and a
// second one on the same port to show the verdict recovers after a restart.
func TestCDPChromium(t *testing.T) {
	port := testkit.FreePort(t)
	c := testkit.StartChromium(t, testkit.ChromiumOptions{Port: port})
	dead := cdpDeadURL(t)
	const within = 30 * time.Second // a loaded CI machine may be slow to answer

	assertHealthy := func(t *testing.T, p Probe) {
		t.Helper()
		res, err := cdpCheckWithin(t, p, within)
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		if res.Status != Healthy || res.Reason != "" {
			t.Errorf("got %s %q, want healthy", res.Status, res.Reason)
		}
		pages, _ := res.Fields["pages"].(int)
		version, _ := res.Fields["browserVersion"].(string)
		if pages < 1 || !strings.Contains(version, "Chrome/") || res.Fields["availableBrowsers"] != 1 {
			t.Errorf("fields %v: want pages >= 1 (about:blank) and a Chrome version", res.Fields)
		}
	}

	t.Run("healthy", func(t *testing.T) {
		assertHealthy(t, newTestCDP(t, map[string]any{"urls": c.URL()}))
	})
	t.Run("localhost", func(t *testing.T) {
		assertHealthy(t, newTestCDP(t, map[string]any{"urls": fmt.Sprintf("http://localhost:%d/", port)}))
	})
	t.Run("one of two endpoints dead", func(t *testing.T) {
		tests := []struct {
			name         string
			minAvailable int
			wantErr      string
			wantStatus   Status
		}{
			{name: "minAvailable 1: degraded", minAvailable: 1, wantStatus: Degraded},
			{name: "minAvailable 2: unhealthy", minAvailable: 2, wantErr: "1/2 browsers available, need 2: " + dead + ": /json/version: connection refused"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := newTestCDP(t, map[string]any{"urls": c.URL() + "," + dead, "minAvailable": tt.minAvailable})
				res, err := cdpCheckWithin(t, p, within)
				if tt.wantErr != "" {
					if err == nil || err.Error() != tt.wantErr {
						t.Fatalf("error %v, want %q", err, tt.wantErr)
					}
				} else if err != nil || res.Status != tt.wantStatus || !strings.Contains(res.Reason, dead+": /json/version: connection refused") {
					t.Fatalf("got %s %q, %v; want %s naming %s", res.Status, res.Reason, err, tt.wantStatus, dead)
				}
				if res.Fields["availableBrowsers"] != 1 || res.Fields["totalBrowsers"] != 2 {
					t.Errorf("fields %v", res.Fields)
				}
			})
		}
	})
	t.Run("killed, then restarted on the same port", func(t *testing.T) {
		p := newTestCDP(t, map[string]any{"urls": c.URL()})
		c.Kill()
		if _, err := cdpCheckWithin(t, p, within); err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("error %v after killing chromium, want connection refused", err)
		}
		testkit.StartChromium(t, testkit.ChromiumOptions{Port: port})
		assertHealthy(t, p)
	})
}
