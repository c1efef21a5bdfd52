package probes

import (
	"context"
	"net"
	"strconv"

	"github.com/health-agent/health-agent/pkg/config"
)

// tcpOptions are the options of the tcp kind.
type tcpOptions struct {
	Address string `mapstructure:"address"`
}

// tcpProbe opens a TCP connection and closes it at once: healthy means something accepts connections.
type tcpProbe struct {
	address string
	fields  map[string]any // the same every execution: shared, and never written after newTCP
	dialer  net.Dialer
}

func newTCP(spec Spec) (Probe, error) {
	var o tcpOptions
	if err := config.DecodeOptions(spec.Options, &o); err != nil {
		return nil, err
	}
	if err := validateTCPAddress(o.Address); err != nil {
		return nil, err
	}
	// KeepAlive -1: the connection lives for one handshake; keep-alive probes would be wasted.
	return &tcpProbe{address: o.Address, fields: map[string]any{"address": o.Address}, dialer: net.Dialer{KeepAlive: -1}}, nil
}

func validateTCPAddress(addr string) error {
	if addr == "" {
		return config.Errorf("address", "required (host:port)")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return config.Errorf("address", "must be host:port, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return config.Errorf("address", "port must be a number in 1-65535, got %q", port)
	}
	return nil
}

// Check dials the address within ctx.
func (p *tcpProbe) Check(ctx context.Context) (Result, error) {
	res := Result{Status: Unhealthy, Fields: p.fields}
	conn, err := p.dialer.DialContext(ctx, "tcp", p.address)
	if err != nil {
		return res, err // a *net.OpError already names the address
	}
	_ = conn.Close() // the accepted connection is the whole check; a close error says nothing more
	res.Status = Healthy
	return res, nil
}
