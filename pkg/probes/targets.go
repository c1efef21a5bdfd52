package probes

import (
	"fmt"
	"net"
	"net/url"

	"github.com/health-agent/health-agent/pkg/config"
)

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

func (p *httpProbe) Targets() []config.Target { return urlTarget("url", p.url) }

func (p *mcpProbe) Targets() []config.Target { return urlTarget("url", p.endpoint) }

func (p *figmaProbe) Targets() []config.Target { return urlTarget("url", p.endpoint) }

func (p *tcpProbe) Targets() []config.Target {
	return []config.Target{{Option: "address", Address: p.address}}
}

func (p *cdpProbe) Targets() []config.Target {
	var out []config.Target
	for i, u := range p.endpoints {
		if hp := urlHostPort(u); hp != "" {
			out = append(out, config.Target{Option: fmt.Sprintf("urls[%d]", i), Address: hp})
		}
	}
	return out
}

func urlTarget(option, raw string) []config.Target {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	if hp := urlHostPort(u); hp != "" {
		return []config.Target{{Option: option, Address: hp}}
	}
	return nil
}

// urlHostPort is the host:port a URL connects to, the port defaulted from the scheme; "" when unknown.
func urlHostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "http", "ws":
			port = "80"
		case "https", "wss":
			port = "443"
		default:
			return ""
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}
