package probes

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/health-agent/health-agent/pkg/config"
)

// Kinds is the registry of probe kinds, by the name used in `kind:`. Config validation derives the list
// of valid kinds from it.
var Kinds = Registry{
	"http":   {New: newHTTP},
	"tcp":    {New: newTCP},
	"config": {New: newConfig, Local: true},
	"cdp":    {New: newCDP},
	"mcp":    {New: newMCP},
	"figma":  {New: newFigma},
	"memory": {New: newMemory, Local: true},
}

// Registry maps kind names to kinds.
type Registry map[string]Kind

// Names returns the kind names, sorted.
func (r Registry) Names() []string { return slices.Sorted(maps.Keys(r)) }

// Build builds the probe p describes. Errors are config.FieldErrors relative to the probe.
func (r Registry) Build(p *config.Probe, env Env) (Probe, error) {
	k, ok := r[p.Kind]
	if !ok {
		return nil, config.Errorf("kind", "unknown kind %q (valid: %s)", p.Kind, strings.Join(r.Names(), ", "))
	}
	pr, err := k.New(Spec{Name: p.Name, Legacy: p.Legacy, Timeout: p.Timeout, Options: p.Options, Env: env})
	if err != nil {
		return nil, err
	}
	if pr == nil {
		return nil, fmt.Errorf("kind %q built no probe", p.Kind)
	}
	return pr, nil
}

// CheckProbe implements config.Checker: it reports whether p's kind exists, whether it may have a
// breaker, and whether its options are valid.
func (r Registry) CheckProbe(p *config.Probe) (local bool, err error) {
	k, ok := r[p.Kind]
	if !ok {
		return false, config.Errorf("kind", "unknown kind %q (valid: %s)", p.Kind, strings.Join(r.Names(), ", "))
	}
	_, err = r.Build(p, Env{})
	return k.Local, err
}
