package api

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
)

// startCapped serves a trivial handler with a connection cap of max on loopback.
func startCapped(t *testing.T, max int) (string, *connCap) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer("", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), nil, max)
	done := make(chan struct{})
	cc := newConnCap(max)
	srv.ConnState = cc.track
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String(), cc
}

// idle counts the connections the server sees idle. The client reads an answer before the server
// marks its connection idle: a test that needs the server's order waits for it.
func (c *connCap) idle() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ci := range c.conns {
		if ci.state == http.StateIdle && !ci.evicted {
			n++
		}
	}
	return n
}

// keepAlive is a client connection that sends requests one at a time and keeps the connection open.
type keepAlive struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *keepAlive {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{Conn: c, r: bufio.NewReader(c)}
}

// get sends one request and reads the answer; an error means the server closed the connection.
func (k *keepAlive) get() error {
	_ = k.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(k, "GET /readyz HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && string(b) != "ok" {
		err = errors.New("unexpected body " + string(b))
	}
	return err
}

// closedByServer waits (bounded) for the server to close c.
func (k *keepAlive) closedByServer() bool {
	_ = k.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := k.r.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestConnCapClosesTheLongestIdle: past the cap, a new connection is served and the connection idle
// longest is closed to make room; the others stay open and usable.
func TestConnCapClosesTheLongestIdle(t *testing.T) {
	const max = 4
	addr, cc := startCapped(t, max)
	conns := make([]*keepAlive, max)
	for i := range conns {
		conns[i] = dial(t, addr)
		if err := conns[i].get(); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		testkit.Eventually(t, 20*time.Second, func() bool { return cc.idle() == i+1 }, "conn %d idle", i)
	}
	// conns[0] is now the longest idle: use conns[0] again so that conns[1] is.
	if err := conns[0].get(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { return cc.idle() == max }, "conn 0 idle again")
	fresh := dial(t, addr)
	if err := fresh.get(); err != nil {
		t.Fatalf("a new connection past the cap was not served: %v", err)
	}
	if !conns[1].closedByServer() {
		t.Fatal("the longest idle connection was not closed")
	}
	for _, i := range []int{0, 2, 3} {
		if err := conns[i].get(); err != nil {
			t.Errorf("conn %d, not the longest idle, was closed: %v", i, err)
		}
	}
}

// TestConnCapWithManyUnusedConnections: a client that opens many connections and sends nothing holds
// at most the cap, and a new client is still served.
func TestConnCapWithManyUnusedConnections(t *testing.T) {
	const max, opened = 8, 200
	addr, _ := startCapped(t, max)
	conns := make([]*keepAlive, opened)
	for i := range conns {
		conns[i] = dial(t, addr)
	}
	if err := dial(t, addr).get(); err != nil {
		t.Fatalf("a new client was not served: %v", err)
	}
	// All but the cap's worth are closed by the server (the last ones opened are the ones kept).
	closed := 0
	for _, c := range conns[:opened-max] {
		if c.closedByServer() {
			closed++
		}
	}
	if closed != opened-max {
		t.Errorf("%d of the %d oldest unused connections closed by the server, want all", closed, opened-max)
	}
}

func TestServerLimitsAreFixed(t *testing.T) {
	s := NewServer(":0", http.NotFoundHandler(), nil)
	if s.ReadHeaderTimeout != ReadHeaderTimeout || s.ReadTimeout != ReadTimeout || s.WriteTimeout != WriteTimeout ||
		s.IdleTimeout != IdleTimeout || s.MaxHeaderBytes != MaxHeaderBytes || s.ConnState == nil {
		t.Errorf("server limits %+v are not the documented ones", s)
	}
	if !strings.HasPrefix(s.Addr, ":") {
		t.Errorf("addr %q", s.Addr)
	}
}
