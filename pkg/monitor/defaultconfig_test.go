package monitor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/health-agent/health-agent/configs"
	"github.com/health-agent/health-agent/pkg/config"
)

// The default config validates with the real kinds whatever is set: the figma token comes from
// FIGMA_TOKEN, else the file FIGMA_TOKEN_FILE names, in the non-deprecated form.
func TestDefaultConfigWithKinds(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "figma-token")
	if err := os.WriteFile(tokenFile, []byte("figd_from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name         string
		env          map[string]string
		wantWarnings []string // substrings, one per warning
	}{
		{"nothing set", nil, []string{"probes[3]: figma: no Figma token: secret absent: set the environment variable FIGMA_TOKEN;"}},
		{"FIGMA_TOKEN", map[string]string{"FIGMA_TOKEN": "figd_x"}, nil},
		{"FIGMA_TOKEN_FILE", map[string]string{"FIGMA_TOKEN_FILE": tokenFile}, nil},
		{"FIGMA_TOKEN_FILE not mounted yet", map[string]string{"FIGMA_TOKEN_FILE": tokenFile + ".absent"},
			[]string{"set the environment variable FIGMA_TOKEN or mount the Secret at " + tokenFile + ".absent"}},
		{"byte thresholds for memory", map[string]string{"FIGMA_TOKEN": "figd_x", "MEMORY_WARN_BYTES": "700Mi", "MEMORY_CRIT_BYTES": "900Mi"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			// Kinds resolve secrets through the process environment (they get no lookup from Load).
			t.Setenv("FIGMA_TOKEN", tt.env["FIGMA_TOKEN"])
			l, err := config.Load(configs.DefaultName, configs.Default, Kinds(), lookup)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(l.Warnings) != len(tt.wantWarnings) {
				t.Fatalf("warnings = %q, want %d", l.Warnings, len(tt.wantWarnings))
			}
			for i, w := range tt.wantWarnings {
				if !strings.Contains(l.Warnings[i], w) {
					t.Errorf("warning %q, want it to contain %q", l.Warnings[i], w)
				}
			}
		})
	}
}
