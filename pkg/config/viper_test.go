package config

import (
	"reflect"
	"testing"
	"time"
)

// decodeConfig must leave the caller's map as it was (viper lower-cases the keys of the map it is
// given, in place) and hand back the held subtrees with their keys as written.
func TestDecodeConfigLeavesRawAndKeepsHeldKeys(t *testing.T) {
	rawConfig := func() map[string]any {
		return map[string]any{
			"server": map[string]any{"listen": ":1", "shutdownDelay": "2s"},
			"probes": []any{
				map[string]any{
					"name": "api", "kind": "http", "dependsOn": []any{"db"},
					"url":     "http://127.0.0.1:1/health",
					"headers": map[string]any{"X-Api-Key": map[string]any{"env": "API_KEY"}, "x.dotted": "kept"},
				},
				map[string]any{"name": "db", "kind": "tcp", "breakerName": "Storage"},
			},
			"egress": map[string]any{
				"allowNonLoopback": false,
				"routes": []any{map[string]any{
					"name": "figma", "headers": map[string]any{"X-Figma-Token": map[string]any{"env": "FIGMA_TOKEN"}},
				}},
			},
		}
	}
	probeKeys := map[string]bool{"name": true, "kind": true, "dependsOn": true, "breakerName": true}
	hold := func(path, key string) bool {
		return path == "" && key == "egress" || path == "probes[]" && !probeKeys[key]
	}

	raw := rawConfig()
	cfg, held, err := decodeConfig(raw, hold)
	if err != nil {
		t.Fatalf("decodeConfig: %v", err)
	}
	if want := rawConfig(); !reflect.DeepEqual(raw, want) {
		t.Errorf("the caller's map changed:\n%#v\nwant\n%#v", raw, want)
	}

	if cfg.Server.Listen != ":1" || cfg.Server.ShutdownDelay != 2*time.Second || len(cfg.Probes) != 2 ||
		cfg.Probes[0].Name != "api" || !reflect.DeepEqual(cfg.Probes[0].DependsOn, []string{"db"}) ||
		cfg.Probes[1].BreakerName != "Storage" || cfg.Egress != nil {
		t.Errorf("cfg = %+v", cfg)
	}
	for i, p := range cfg.Probes {
		if len(p.Options) != 0 {
			t.Errorf("probes[%d] decoded held keys into Options: %v", i, p.Options)
		}
	}

	want := map[string]any{
		"egress": raw["egress"],
		"probes": []any{
			map[string]any{
				"url":     "http://127.0.0.1:1/health",
				"headers": map[string]any{"X-Api-Key": map[string]any{"env": "API_KEY"}, "x.dotted": "kept"},
			},
			nil,
		},
	}
	if !reflect.DeepEqual(held, want) {
		t.Errorf("held =\n%#v\nwant\n%#v", held, want)
	}
}

// With nothing held, every subtree is decoded and held is empty.
func TestDecodeConfigHoldsNothing(t *testing.T) {
	raw := map[string]any{"scheduler": map[string]any{"maxConcurrentProbes": 3}}
	cfg, held, err := decodeConfig(raw, func(string, string) bool { return false })
	if err != nil || cfg.Scheduler.MaxConcurrentProbes != 3 || len(held) != 0 {
		t.Errorf("decodeConfig = %+v, %v, %v", cfg, held, err)
	}
}
