// Package standin holds the local demo's stand-ins for the legacy app's dependencies: the app's own
// health route, a real go-sdk MCP server and a fake Figma API. Each runs on loopback and can be
// stopped and started again on the same address, to show how the agent reacts. The demo
// (examples/demo) and the end-to-end test (test/e2e) both use them.
package standin

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Errors of Start and Stop.
var (
	ErrRunning = errors.New("already running")
	ErrStopped = errors.New("already stopped")
)

// Server is an HTTP stand-in that can be stopped and started again on the same address.
type Server struct {
	name    string
	handler http.Handler
	onStop  func() // runs after the server is closed (e.g. to drop MCP sessions); may be nil

	mu   sync.Mutex
	addr string        // host:port; a :0 port is fixed to the real one by the first Start
	srv  *http.Server  // nil while stopped
	done chan struct{} // closed when srv's Serve returns
}

func newServer(name, addr string, h http.Handler, onStop func()) *Server {
	return &Server{name: name, addr: addr, handler: h, onStop: onStop}
}

// Name is the stand-in's name in demo commands ("app", "mcp", "figma").
func (s *Server) Name() string { return s.name }

// Addr is the address the stand-in listens on (host:port).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is http://Addr.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Running reports whether the stand-in is serving.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil
}

// Start listens and serves in the background until Stop. After a first Start on port 0, later Starts
// reuse the port that was picked, so the agent finds the dependency where it left it.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return fmt.Errorf("%s: %w", s.name, ErrRunning)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // always http.ErrServerClosed once Stop closes it
	}()
	s.srv, s.done = srv, done
	return nil
}

// Stop closes the listener and every open connection at once, as a crashed dependency would, and
// waits for the server to finish.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return fmt.Errorf("%s: %w", s.name, ErrStopped)
	}
	err := s.srv.Close()
	<-s.done
	s.srv, s.done = nil, nil
	if s.onStop != nil {
		s.onStop()
	}
	if err != nil {
		return fmt.Errorf("%s: close: %w", s.name, err)
	}
	return nil
}
