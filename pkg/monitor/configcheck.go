package monitor

import (
	"context"
	"maps"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/probes"
)

// ConfigInfo describes the running config.
type ConfigInfo struct {
	Source     string    `json:"source"`
	SHA256     string    `json:"sha256"`
	LoadedAt   time.Time `json:"loadedAt"`
	LastReload Reload    `json:"lastReload"`
}

// Reload is the outcome of the last reload attempt; the zero value means none was attempted.
type Reload struct {
	At      time.Time `json:"at,omitzero"`
	Success bool      `json:"success"`
	Error   string    `json:"error,omitempty"`
}

// Kinds returns the probe kinds the agent runs: pkg/probes' kinds, which check dependencies, and the
// `config` kind, which checks the agent's own config and so is the monitor's to build. Config
// validation uses it to know every kind.
func Kinds() probes.Registry {
	kinds := maps.Clone(probes.Kinds)
	kinds["config"] = configKind(nil)
	return kinds
}

// configKind builds `config` probes that read info (nil: while validating, when nothing runs).
func configKind(info func() ConfigInfo) probes.Kind {
	return probes.Kind{Local: true, New: func(spec probes.Spec) (probes.Probe, error) {
		var none struct{}
		if err := config.DecodeOptions(spec.Options, &none); err != nil {
			return nil, err
		}
		return configCheck{info: info}, nil
	}}
}

// configCheck reports the agent's own config: which file, which version, and whether the last reload
// was accepted. A rejected reload is Degraded, not Unhealthy: the previous config keeps running.
type configCheck struct {
	info func() ConfigInfo
}

// Check reads the config info; it does no I/O.
func (p configCheck) Check(context.Context) (probes.Result, error) {
	if p.info == nil {
		return probes.Result{Status: probes.Unknown, Reason: "config info not available to the probe"}, nil
	}
	ci := p.info()
	res := probes.Result{
		Status: probes.Healthy,
		Fields: map[string]any{
			"source":     ci.Source,
			"sha256":     ci.SHA256,
			"loadedAt":   ci.LoadedAt,
			"lastReload": nil, // no reload attempted yet
		},
	}
	if ci.LastReload != (Reload{}) {
		res.Fields["lastReload"] = ci.LastReload
		if !ci.LastReload.Success {
			res.Status = probes.Degraded
			res.Reason = "last reload rejected: " + ci.LastReload.Error
		}
	}
	return res, nil
}
