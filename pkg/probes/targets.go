package probes

import (
	"fmt"
	"net"
	"net/url"

	"github.com/health-agent/health-agent/pkg/config"
)

// The Targeter methods of the kinds that connect somewhere: each reports the address its probe dials
// and the option that names it.

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
