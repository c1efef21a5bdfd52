package api

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// The HTTP server's limits. They are fixed: the agent serves small GET requests to kubelets, load
// balancers, Prometheus and people, so no deployment needs other values, and a limit nobody tunes
// cannot be set wrong.
const (
	// ReadHeaderTimeout cuts a client that sends its request headers slowly (slow-loris).
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds reading a whole request; WriteTimeout bounds answering it.
	ReadTimeout  = 10 * time.Second
	WriteTimeout = 10 * time.Second
	// IdleTimeout closes a keep-alive connection no request has used for this long.
	IdleTimeout = 60 * time.Second
	// MaxHeaderBytes bounds a request's headers (net/http allows 4 KiB over it); larger ones get 431.
	MaxHeaderBytes = 16 << 10
	// MaxConns is how many client connections the server keeps open at once. A connection past it is
	// still accepted, and the one that has waited longest without a request in flight (idle between
	// keep-alive requests, or never used) is closed to make room. So a client that opens thousands of
	// connections holds at most this many (each costs a goroutine and buffers, about 10 KiB), the agent
	// stays far from its file descriptor limit, and a new connection (the kubelet's) is always served.
	MaxConns = 256
)

// NewServer returns an http.Server for h on addr with the fixed limits above, so that a slow, hostile
// or merely numerous client cannot pin the agent or run it out of memory.
func NewServer(addr string, h http.Handler, errLog *slog.Logger) *http.Server {
	return newServer(addr, h, errLog, MaxConns)
}

func newServer(addr string, h http.Handler, errLog *slog.Logger, maxConns int) *http.Server {
	s := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ConnState:         newConnCap(maxConns).track,
	}
	if errLog != nil {
		s.ErrorLog = slog.NewLogLogger(errLog.Handler(), slog.LevelDebug)
	}
	return s
}

// connCap keeps at most max connections open: net/http reports every connection's state changes to
// track (StateNew synchronously in its accept loop, before the connection is served), and a new
// connection past max closes the waiting one (StateNew or StateIdle) whose state changed longest ago.
// A connection with a request in flight (StateActive) is never closed here.
type connCap struct {
	max   int
	mu    sync.Mutex
	conns map[net.Conn]*connInfo
	open  int    // conns not yet closed by the cap
	seq   uint64 // counts state changes: orders them
}

type connInfo struct {
	state   http.ConnState
	since   uint64 // seq at the last state change
	evicted bool   // closed by the cap; forgotten at StateClosed
}

func newConnCap(max int) *connCap { return &connCap{max: max, conns: map[net.Conn]*connInfo{}} }

func (c *connCap) track(conn net.Conn, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	switch state {
	case http.StateNew:
		c.conns[conn] = &connInfo{state: state, since: c.seq}
		c.open++
		if c.open > c.max {
			c.evictLocked(conn)
		}
	case http.StateActive, http.StateIdle:
		if ci := c.conns[conn]; ci != nil {
			ci.state, ci.since = state, c.seq
		}
	case http.StateHijacked, http.StateClosed:
		if ci := c.conns[conn]; ci != nil {
			if !ci.evicted {
				c.open--
			}
			delete(c.conns, conn)
		}
	}
}

// evictLocked closes the connection, other than keep, that has waited longest without a request in
// flight. With every other connection busy it closes nothing: busy ones end within WriteTimeout.
func (c *connCap) evictLocked(keep net.Conn) {
	var (
		oldest net.Conn
		at     uint64
	)
	for conn, ci := range c.conns {
		if conn == keep || ci.evicted || ci.state == http.StateActive {
			continue
		}
		if oldest == nil || ci.since < at {
			oldest, at = conn, ci.since
		}
	}
	if oldest == nil {
		return
	}
	c.conns[oldest].evicted = true
	c.open--
	_ = oldest.Close() // its serving goroutine sees the error and reports StateClosed
}
