package probes

import (
	"context"

	"github.com/health-agent/health-agent/pkg/config"
)

// configProbe reports the agent's own config: which file, which version, and whether the last reload
// was accepted. A rejected reload is Degraded, not Unhealthy: the previous config keeps running.
type configProbe struct {
	info func() ConfigInfo
}

func newConfig(spec Spec) (Probe, error) {
	var none struct{}
	if err := config.DecodeOptions(spec.Options, &none); err != nil {
		return nil, err
	}
	return &configProbe{info: spec.Env.ConfigInfo}, nil
}

// Check reads the config info; it does no I/O.
func (p *configProbe) Check(context.Context) (Result, error) {
	if p.info == nil {
		return Result{Status: Unknown, Reason: "config info not available to the probe"}, nil
	}
	ci := p.info()
	res := Result{
		Status: Healthy,
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
			res.Status = Degraded
			res.Reason = "last reload rejected: " + ci.LastReload.Error
		}
	}
	return res, nil
}
