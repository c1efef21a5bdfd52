// Package configs embeds the default config, so the agent runs with no file at all.
package configs

import _ "embed"

// Default is configs/agent.yaml.
//
//go:embed agent.yaml
var Default []byte

// DefaultName is how the embedded config is named in logs and in the config check's source.
const DefaultName = "embedded:configs/agent.yaml"
