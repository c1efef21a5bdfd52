package egress

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
)

func TestEventStreamPassesEventByEvent(t *testing.T) {
	next := make(chan struct{})
	up := newUpstream(t, nil)
	up.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Mcp-Session-Id", "s-1")
		for i := range 2 {
			fmt.Fprintf(w, "event: message\ndata: %d\n\n", i)
			w.(http.Flusher).Flush()
			if i == 0 {
				select { // the second event waits until the client has seen the first
				case <-next:
				case <-up.stop:
					return
				}
			}
		}
	})
	h := newHarness(t, nil, testRoute("mcp", "/mcp/", up.URL))
	req, _ := http.NewRequestWithContext(t.Context(), "GET", h.srv.URL+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Mcp-Session-Id") != "s-1" {
		t.Errorf("Mcp-Session-Id = %q", resp.Header.Get("Mcp-Session-Id"))
	}
	br := bufio.NewReader(resp.Body)
	readEvent := func() string {
		var lines []string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read event: %v", err)
			}
			if l == "\n" {
				return strings.Join(lines, "")
			}
			lines = append(lines, l)
		}
	}
	if ev := readEvent(); ev != "event: message\ndata: 0\n" {
		t.Fatalf("first event %q", ev)
	}
	close(next)
	if ev := readEvent(); ev != "event: message\ndata: 1\n" {
		t.Fatalf("second event %q", ev)
	}
}

func TestWebSocketUpgradePasses(t *testing.T) {
	type handshake struct{ host, origin string }
	seen := make(chan handshake, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- handshake{r.Host, r.Header.Get("Origin")}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		_ = c.Write(r.Context(), typ, append([]byte("echo: "), msg...))
		_, _, _ = c.Read(r.Context()) // until the client closes
	})
	h := newHarness(t, nil, testRoute("browser", "/browser/", up.URL))
	c, resp, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(h.srv.URL, "http")+"/browser/devtools/browser/x",
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}})
	if err != nil {
		t.Fatalf("dial through the proxy: %v (%v)", err, resp)
	}
	defer c.CloseNow()
	if err := c.Write(t.Context(), websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(t.Context())
	if err != nil || string(msg) != "echo: hi" {
		t.Fatalf("read %q, %v", msg, err)
	}
	hs := <-seen
	if hs.host != strings.TrimPrefix(up.URL, "http://") || hs.origin != "" {
		t.Errorf("upstream handshake Host %q Origin %q; want the upstream's host and no Origin", hs.host, hs.origin)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	if s := h.breakers.Get("browser").Stats(); s.Successes != 1 {
		t.Errorf("breaker %+v, want the upgrade counted as one success", s)
	}
}

func TestDevToolsURLsLeadBackThroughTheProxy(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		host := r.Host // Chromium builds the URLs from the Host it was sent
		switch r.URL.Path {
		case "/json/version":
			fmt.Fprintf(w, `{"Browser":"HeadlessChrome/1","webSocketDebuggerUrl":"ws://%s/devtools/browser/b1"}`, host)
		case "/json/list":
			fmt.Fprintf(w, `[{"id":"p1","type":"page","devtoolsFrontendUrl":"/devtools/inspector.html?ws=%s/devtools/page/p1","webSocketDebuggerUrl":"ws://%s/devtools/page/p1"}]`, host, host)
		}
	})
	h := newHarness(t, nil, testRoute("browser", "/browser/", up.URL))
	proxyHost := strings.TrimPrefix(h.srv.URL, "http://")

	_, body := h.do(t, "GET", "/browser/json/version", nil)
	var version map[string]string
	if err := json.Unmarshal([]byte(body), &version); err != nil {
		t.Fatal(err)
	}
	if got, want := version["webSocketDebuggerUrl"], "ws://"+proxyHost+"/browser/devtools/browser/b1"; got != want || version["Browser"] != "HeadlessChrome/1" {
		t.Errorf("version %v, want webSocketDebuggerUrl %q", version, want)
	}

	resp, body := h.do(t, "GET", "/browser/json/list", nil)
	var list []map[string]string
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list) != 1 {
		t.Fatalf("list %q: %v", body, err)
	}
	if got, want := list[0]["webSocketDebuggerUrl"], "ws://"+proxyHost+"/browser/devtools/page/p1"; got != want {
		t.Errorf("webSocketDebuggerUrl %q, want %q", got, want)
	}
	if got, want := list[0]["devtoolsFrontendUrl"], "/devtools/inspector.html?ws="+proxyHost+"/browser/devtools/page/p1"; got != want {
		t.Errorf("devtoolsFrontendUrl %q, want %q", got, want)
	}
	if resp.ContentLength != int64(len(body)) {
		t.Errorf("Content-Length %d for a body of %d", resp.ContentLength, len(body))
	}
}

// TestDevToolsListOverTheBoundPassesUnchanged: the proxy reads at most maxDevToolsList bytes of a
// DevTools answer to rewrite it; a larger one reaches the app whole, as the upstream sent it.
func TestDevToolsListOverTheBoundPassesUnchanged(t *testing.T) {
	var sent atomic.Pointer[string]
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		body := fmt.Sprintf(`[{"id":"p1","title":%q,"webSocketDebuggerUrl":"ws://%s/devtools/page/p1"}]`,
			strings.Repeat("t", maxDevToolsList), r.Host)
		sent.Store(&body)
		_, _ = io.WriteString(w, body)
	})
	h := newHarness(t, nil, testRoute("browser", "/browser/", up.URL))
	resp, body := h.do(t, "GET", "/browser/json/list", nil)
	want := sent.Load()
	if resp.StatusCode != http.StatusOK || want == nil {
		t.Fatalf("%d, upstream answered: %v", resp.StatusCode, want != nil)
	}
	if body != *want {
		t.Errorf("a %d-byte answer arrived as %d bytes, want it unchanged", len(*want), len(body))
	}
}
