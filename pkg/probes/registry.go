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

// Warner is implemented by probes that can tell, without probing, that they will fail at run time
// (e.g. a secret that is not set yet). `agent validate` prints these as warnings.
type Warner interface {
	Warnings() []string
}

// CheckProbe implements config.ProbeKinds: it reports whether p's kind exists, whether it is local (no
// breaker), whether its options are valid, and what it would warn about.
func (r Registry) CheckProbe(p *config.Probe) (local bool, warnings []string, err error) {
	k, ok := r[p.Kind]
	if !ok {
		return false, nil, config.Errorf("kind", "unknown kind %q (valid: %s)", p.Kind, strings.Join(r.Names(), ", "))
	}
	pr, err := r.Build(p, Env{})
	if w, ok := pr.(Warner); ok && err == nil {
		warnings = w.Warnings()
	}
	return k.Local, warnings, err
}

// Targeter is implemented by probes that connect to network addresses. Config validation uses it (via
// Registry.ProbeTargets) to refuse a critical probe aimed at the agent's own port.
type Targeter interface {
	// Targets lists the host:port addresses the probe connects to, each with the option naming it.
	Targets() []config.Target
}

// ProbeTargets implements config.TargetLister: where p's probe connects, or nothing when its kind
// connects nowhere (memory, config) or its options do not build.
func (r Registry) ProbeTargets(p *config.Probe) []config.Target {
	if _, ok := r[p.Kind]; !ok {
		return nil
	}
	pr, err := r.Build(p, Env{})
	if err != nil {
		return nil
	}
	if t, ok := pr.(Targeter); ok {
		return t.Targets()
	}
	return nil
}
