package probes

import (
	"errors"
	"net"
	"sync"
	"testing"
)

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by the test
			}
			_ = c.Close()
		}
	})
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	_ = closed.Close() // nothing listens there any more

	tests := []struct {
		name    string
		address string
		healthy bool
	}{
		{name: "listening", address: ln.Addr().String(), healthy: true},
		{name: "closed port", address: closedAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newTCP(Spec{Options: map[string]any{"address": tt.address}})
			if err != nil {
				t.Fatal(err)
			}
			res, err := checkOnce(t, p)
			if res.Fields["address"] != tt.address {
				t.Errorf("address field = %v, want %s", res.Fields["address"], tt.address)
			}
			if tt.healthy {
				if err != nil || res.Status != Healthy {
					t.Fatalf("got %v, %v; want healthy", res.Status, err)
				}
				return
			}
			var opErr *net.OpError
			if !errors.As(err, &opErr) {
				t.Fatalf("err = %v, want a dial error", err)
			}
		})
	}
}

func TestTCPBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    map[string]any
		wantErr string
	}{
		{name: "missing", opts: map[string]any{}, wantErr: "address: required (host:port)"},
		{name: "no port", opts: map[string]any{"address": "localhost"}, wantErr: `address: must be host:port, got "localhost"`},
		{name: "port zero", opts: map[string]any{"address": "localhost:0"}, wantErr: `address: port must be a number in 1-65535, got "0"`},
		{name: "port too big", opts: map[string]any{"address": "localhost:65536"}, wantErr: `address: port must be a number in 1-65535, got "65536"`},
		{name: "named port", opts: map[string]any{"address": "localhost:http"}, wantErr: `address: port must be a number in 1-65535, got "http"`},
		{name: "unknown key", opts: map[string]any{"address": "localhost:1", "url": "x"}, wantErr: "url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newTCP(Spec{Options: tt.opts})
			if err == nil {
				t.Fatalf("built %T, want an error", p)
			}
			assertFieldErrors(t, err, []string{tt.wantErr})
		})
	}
}
