package probes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/health-agent/health-agent/pkg/config"
)

// newTestCDP builds a cdp probe from options, failing the test on a config error.
func newTestCDP(t *testing.T, opts map[string]any) Probe {
	t.Helper()
	p, err := newCDP(Spec{Name: "browserPool", Timeout: 2 * time.Second, Options: opts})
	if err != nil {
		t.Fatalf("newCDP(%v): %v", opts, err)
	}
	return p
}

// cdpCheckWithin runs one Check bounded by d.
func cdpCheckWithin(t *testing.T, p Probe, d time.Duration) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	return p.Check(ctx)
}

// cdpDeadURL returns an http URL on a loopback port where nothing listens.
func cdpDeadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

func TestCDPOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    map[string]any
		wantErr []string // substrings of the error; none: valid
		check   func(t *testing.T, p *cdpProbe)
	}{
		{
			name: "defaults",
			opts: map[string]any{"urls": "http://127.0.0.1:9222"},
			check: func(t *testing.T, p *cdpProbe) {
				if p.mode != cdpModeCDP || p.minAvailable != 1 || p.maxPages != 0 || len(p.endpoints) != 1 {
					t.Errorf("got mode %q minAvailable %d maxPages %d endpoints %v", p.mode, p.minAvailable, p.maxPages, p.endpoints)
				}
			},
		},
		{
			name: "comma-separated string as from ${BROWSER_CDP_URLS}",
			opts: map[string]any{"urls": " http://127.0.0.1:9222/, http://localhost:9223 ,http://[::1]:9224", "minAvailable": "2"},
			check: func(t *testing.T, p *cdpProbe) {
				var got []string
				for _, u := range p.endpoints {
					got = append(got, u.String())
				}
				want := "http://127.0.0.1:9222 http://localhost:9223 http://[::1]:9224"
				if strings.Join(got, " ") != want || p.minAvailable != 2 {
					t.Errorf("got %v minAvailable %d, want %s and 2", got, p.minAvailable, want)
				}
			},
		},
		{
			name: "list",
			opts: map[string]any{"urls": []any{"http://10.0.0.5:9222", "http://10.0.0.6:9222"}, "minAvailable": 0, "maxPages": 50},
			check: func(t *testing.T, p *cdpProbe) {
				if len(p.endpoints) != 2 || p.minAvailable != 0 || p.maxPages != 50 {
					t.Errorf("got endpoints %v minAvailable %d maxPages %d", p.endpoints, p.minAvailable, p.maxPages)
				}
			},
		},
		{
			name: "browserless accepts a service name",
			opts: map[string]any{"urls": "http://browserless.default.svc:3000", "mode": "browserless"},
			check: func(t *testing.T, p *cdpProbe) {
				if p.mode != cdpModeBrowserless {
					t.Errorf("mode %q", p.mode)
				}
			},
		},
		{name: "no urls", opts: map[string]any{}, wantErr: []string{"urls: must list at least one endpoint"}},
		{name: "only commas", opts: map[string]any{"urls": " , "}, wantErr: []string{"urls: must list"}},
		{name: "service name in cdp mode", opts: map[string]any{"urls": "http://chrome:9222"}, wantErr: []string{`urls[0]: host "chrome" must be an IP address or localhost`}},
		{name: "ws scheme", opts: map[string]any{"urls": "ws://127.0.0.1:9222"}, wantErr: []string{"urls[0]: must be an absolute http URL"}},
		{name: "relative", opts: map[string]any{"urls": "127.0.0.1:9222"}, wantErr: []string{"urls[0]:"}},
		{name: "no host", opts: map[string]any{"urls": "http:///json"}, wantErr: []string{"urls[0]: has no host"}},
		{name: "user info not echoed", opts: map[string]any{"urls": "http://user:hunter2@127.0.0.1:9222"}, wantErr: []string{"urls[0]: must not contain user info"}},
		{name: "query", opts: map[string]any{"urls": "http://127.0.0.1:9222/?x=1"}, wantErr: []string{"urls[0]: must not have a query"}},
		{name: "query not echoed", opts: map[string]any{"urls": "http://127.0.0.1:9222/?token=hunter2hunter2#hunter2"}, wantErr: []string{"urls[0]: must not have a query"}},
		{name: "user info not echoed by a scheme error", opts: map[string]any{"urls": "ws://u:hunter2@127.0.0.1:9222/?token=hunter2hunter2"}, wantErr: []string{"urls[0]: must be an absolute http URL"}},
		{name: "duplicate", opts: map[string]any{"urls": "http://127.0.0.1:9222,http://127.0.0.1:9222/"}, wantErr: []string{"urls[1]: duplicate of urls[0]"}},
		{name: "minAvailable above urls", opts: map[string]any{"urls": "http://127.0.0.1:9222", "minAvailable": 2}, wantErr: []string{"minAvailable: must be between 0 and the number of urls (1), got 2"}},
		{name: "minAvailable negative", opts: map[string]any{"urls": "http://127.0.0.1:9222", "minAvailable": -1}, wantErr: []string{"minAvailable: must be between 0"}},
		{name: "minAvailable not a number", opts: map[string]any{"urls": "http://127.0.0.1:9222", "minAvailable": "two"}, wantErr: []string{"minAvailable"}},
		{name: "maxPages negative", opts: map[string]any{"urls": "http://127.0.0.1:9222", "maxPages": -3}, wantErr: []string{"maxPages: must be >= 0"}},
		{name: "maxPages in browserless mode", opts: map[string]any{"urls": "http://127.0.0.1:3000", "mode": "browserless", "maxPages": 3}, wantErr: []string{`maxPages: only applies to mode "cdp"`}},
		{name: "unknown mode", opts: map[string]any{"urls": "http://127.0.0.1:9222", "mode": "puppeteer"}, wantErr: []string{`mode: must be "cdp" or "browserless", got "puppeteer"`}},
		{name: "unknown key", opts: map[string]any{"urls": "http://127.0.0.1:9222", "url": "x"}, wantErr: []string{"unknown key(s): url"}},
		{name: "token in cdp mode", opts: map[string]any{"urls": "http://127.0.0.1:9222", "token": map[string]any{"env": "T"}}, wantErr: []string{`token: only applies to mode "browserless"`}},
		{name: "token written in the config", opts: map[string]any{"urls": "http://b:3000", "mode": "browserless", "token": "s3cret-literal"}, wantErr: []string{"token: reference it with env or file"}},
		{name: "token with a prefix", opts: map[string]any{"urls": "http://b:3000", "mode": "browserless", "token": map[string]any{"env": "T", "prefix": "Bearer "}}, wantErr: []string{"token.prefix: does not apply"}},
		{
			name:    "every problem reported",
			opts:    map[string]any{"urls": "http://chrome:9222,ftp://127.0.0.1", "minAvailable": 3, "maxPages": -1},
			wantErr: []string{"urls[0]:", "urls[1]:", "minAvailable:", "maxPages:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newCDP(Spec{Name: "browserPool", Options: tt.opts})
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				tt.check(t, p.(*cdpProbe))
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the password: %q", err)
			}
			for _, e := range config.Flatten(err) {
				var fe *config.FieldError
				if !errors.As(e, &fe) {
					t.Errorf("error %q (%T) is not a config.FieldError", e, e)
				}
			}
		})
	}
}

// cdpFake is a loopback DevTools endpoint: /json/version and a browser websocket whose answers a test
// chooses. It records what the probe sent.
type cdpFake struct {
	// versionBody is the /json/version body; "" means a valid one whose webSocketDebuggerUrl names
	// another host (localhost:1), as a pool behind a Service would.
	versionBody string
	// versionStatus, wsStatus: when non-zero, answer /json/version or the websocket path with this status.
	versionStatus, wsStatus int
	// answer returns the messages sent back for one request (none: the fake hangs).
	answer func(id int64, method string) []string

	srv    *httptest.Server
	ctx    context.Context
	wg     sync.WaitGroup
	mu     sync.Mutex
	hosts  []string   // Host of every request
	origin []string   // Origin headers of websocket handshakes
	closes []string   // how each websocket session ended
	dialed int        // websocket handshakes seen
	sent   [][]string // methods received per session
}

const cdpFakeWSPath = "/devtools/browser/fake-id"

// start serves f on loopback until the test ends, then waits for every session to finish.
func (f *cdpFake) start(t *testing.T) *cdpFake {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.ctx = ctx
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.srv.Close()
		cancel()
		f.wg.Wait()
	})
	return f
}

func (f *cdpFake) url() string { return f.srv.URL }

func (f *cdpFake) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hosts = append(f.hosts, r.Host)
	f.mu.Unlock()
	switch r.URL.Path {
	case "/json/version":
		if f.versionStatus != 0 {
			http.Error(w, "nope", f.versionStatus)
			return
		}
		body := f.versionBody
		if body == "" {
			body = `{"Browser":"HeadlessChrome/131.0.0.0","Protocol-Version":"1.3","webSocketDebuggerUrl":"ws://localhost:1` + cdpFakeWSPath + `"}`
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	case cdpFakeWSPath:
		f.mu.Lock()
		f.dialed++
		f.origin = append(f.origin, r.Header.Values("Origin")...)
		f.mu.Unlock()
		if f.wsStatus != 0 {
			http.Error(w, "rejected", f.wsStatus)
			return
		}
		f.wg.Add(1)
		defer f.wg.Done()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(-1)
		f.session(c)
	case "/redirect": // a handshake path that sends the client elsewhere
		http.Redirect(w, r, cdpFakeWSPath, http.StatusFound)
	default:
		http.NotFound(w, r)
	}
}

func (f *cdpFake) session(c *websocket.Conn) {
	var methods []string
	defer func() {
		f.mu.Lock()
		f.sent = append(f.sent, methods)
		f.mu.Unlock()
	}()
	for {
		_, b, err := c.Read(f.ctx)
		if err != nil {
			f.mu.Lock()
			f.closes = append(f.closes, fmt.Sprint(websocket.CloseStatus(err)))
			f.mu.Unlock()
			return
		}
		var req struct {
			ID     int64  `json:"id"`
			Method string `json:"method"`
		}
		_ = json.Unmarshal(b, &req)
		methods = append(methods, req.Method)
		for _, m := range f.answer(req.ID, req.Method) {
			if err := c.Write(f.ctx, websocket.MessageText, []byte(m)); err != nil {
				return
			}
		}
	}
}

// snapshot returns copies of what f recorded.
func (f *cdpFake) snapshot() (hosts, origins, closes []string, dialed int, sent [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.hosts...), append([]string(nil), f.origin...), append([]string(nil), f.closes...), f.dialed, append([][]string(nil), f.sent...)
}

// cdpAnswers answers like Chromium with the given targets, with an event and a stray response in the
// way of each answer.
func cdpAnswers(targetTypes ...string) func(int64, string) []string {
	return func(id int64, method string) []string {
		noise := []string{`{"method":"Target.targetCreated","params":{"targetInfo":{"type":"page"}}}`, `{"id":999,"result":{}}`}
		switch method {
		case "Browser.getVersion":
			return append(noise, fmt.Sprintf(`{"id":%d,"result":{"protocolVersion":"1.3","product":"HeadlessChrome/131.0.0.0","userAgent":"x","jsVersion":"13.1"}}`, id))
		case "Target.getTargets":
			var infos []string
			for i, typ := range targetTypes {
				infos = append(infos, fmt.Sprintf(`{"targetId":"T%d","type":%q,"title":"","url":"about:blank","attached":false}`, i, typ))
			}
			return append(noise, fmt.Sprintf(`{"id":%d,"result":{"targetInfos":[%s]}}`, id, strings.Join(infos, ",")))
		}
		return []string{fmt.Sprintf(`{"id":%d,"error":{"code":-32601,"message":"'%s' wasn't found"}}`, id, method)}
	}
}

// cdpAnswerWith answers method with msg (where %d is the id) and everything else like Chromium.
func cdpAnswerWith(method, msg string) func(int64, string) []string {
	ok := cdpAnswers("page")
	return func(id int64, m string) []string {
		if m == method {
			if strings.Contains(msg, "%d") {
				return []string{fmt.Sprintf(msg, id)}
			}
			return []string{msg}
		}
		return ok(id, m)
	}
}

func TestCDPFakeEndpoint(t *testing.T) {
	tests := []struct {
		name       string
		fake       *cdpFake
		maxPages   int
		wantStatus Status               // when no error is wanted
		wantErr    string               // substring of the error
		wantWS     bool                 // the probe must have reached the websocket
		wantClose  websocket.StatusCode // how the probe must end the session; 0: normal closure
		check      func(t *testing.T, res Result)
	}{
		{
			name:       "healthy",
			fake:       &cdpFake{answer: cdpAnswers("page", "page", "service_worker", "iframe", "browser")},
			wantStatus: Healthy,
			wantWS:     true,
			check: func(t *testing.T, res Result) {
				if res.Fields["pages"] != 2 || res.Fields["browserVersion"] != "HeadlessChrome/131.0.0.0" ||
					res.Fields["totalBrowsers"] != 1 || res.Fields["availableBrowsers"] != 1 {
					t.Errorf("fields %v", res.Fields)
				}
				b := res.Fields["browsers"].([]cdpBrowser)
				if len(b) != 1 || !b[0].Available || b[0].Pages != 2 || b[0].Error != "" {
					t.Errorf("browsers %+v", b)
				}
			},
		},
		{
			name:       "more pages than maxPages",
			fake:       &cdpFake{answer: cdpAnswers("page", "page", "page")},
			maxPages:   2,
			wantStatus: Degraded,
			wantWS:     true,
			check: func(t *testing.T, res Result) {
				if !strings.Contains(res.Reason, "3 pages open, more than maxPages 2") {
					t.Errorf("reason %q", res.Reason)
				}
			},
		},
		{name: "version HTTP 500", fake: &cdpFake{versionStatus: 500}, wantErr: "/json/version: HTTP 500"},
		{name: "version garbage", fake: &cdpFake{versionBody: "<html>hello</html>"}, wantErr: "/json/version: malformed answer"},
		{name: "version wrong type", fake: &cdpFake{versionBody: `{"webSocketDebuggerUrl":5}`}, wantErr: "/json/version: malformed answer"},
		{name: "version without websocket", fake: &cdpFake{versionBody: `{"Browser":"Chrome/131"}`}, wantErr: "no webSocketDebuggerUrl"},
		{name: "version with http websocket", fake: &cdpFake{versionBody: `{"webSocketDebuggerUrl":"http://127.0.0.1/x"}`}, wantErr: "is not a ws:// URL"},
		{name: "version too large", fake: &cdpFake{versionBody: `{"Browser":"` + strings.Repeat("x", cdpMaxBody) + `"}`}, wantErr: "body larger than"},
		{name: "websocket rejected", fake: &cdpFake{wsStatus: http.StatusForbidden}, wantErr: "websocket: expected handshake response status code 101 but got 403"},
		{name: "websocket redirect not followed", fake: &cdpFake{versionBody: `{"webSocketDebuggerUrl":"ws://localhost:1/redirect"}`}, wantErr: "websocket: expected handshake response status code 101 but got 302"},
		{name: "garbage message", fake: &cdpFake{answer: cdpAnswerWith("Browser.getVersion", "not json at all")}, wantErr: "Browser.getVersion: malformed answer", wantWS: true},
		{name: "message neither response nor event", fake: &cdpFake{answer: cdpAnswerWith("Browser.getVersion", `{"foo":1}`)}, wantErr: "neither a response nor an event", wantWS: true},
		{name: "error object", fake: &cdpFake{answer: cdpAnswerWith("Target.getTargets", `{"id":%d,"error":{"code":-32000,"message":"Not allowed"}}`)}, wantErr: "Target.getTargets: DevTools error -32000: Not allowed", wantWS: true},
		{name: "result of the wrong type", fake: &cdpFake{answer: cdpAnswerWith("Browser.getVersion", `{"id":%d,"result":{"product":5}}`)}, wantErr: "Browser.getVersion: malformed answer", wantWS: true},
		{name: "targets missing", fake: &cdpFake{answer: cdpAnswerWith("Target.getTargets", `{"id":%d,"result":{}}`)}, wantErr: "Target.getTargets: malformed answer: no targetInfos", wantWS: true},
		{name: "message too large", fake: &cdpFake{answer: cdpAnswerWith("Browser.getVersion", `{"method":"x","params":"`+strings.Repeat("x", cdpMaxMessage)+`"}`)}, wantErr: "message larger than", wantWS: true, wantClose: websocket.StatusMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.fake
			f.start(t)
			p := newTestCDP(t, map[string]any{"urls": f.url(), "maxPages": tt.maxPages})
			res, err := cdpCheckWithin(t, p, 20*time.Second)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				want := "0/1 browsers available, need 1: " + f.url() + ": "
				if !strings.HasPrefix(err.Error(), want) || res.Reason != err.Error() {
					t.Errorf("error %q, reason %q: want both to start %q", err, res.Reason, want)
				}
				if res.Fields["availableBrowsers"] != 0 || res.Fields["totalBrowsers"] != 1 {
					t.Errorf("fields %v", res.Fields)
				}
			} else {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if res.Status != tt.wantStatus {
					t.Errorf("status %s (%s), want %s", res.Status, res.Reason, tt.wantStatus)
				}
			}
			if tt.check != nil {
				tt.check(t, res)
			}
			if _, err := json.Marshal(res.Fields); err != nil {
				t.Errorf("fields do not marshal: %v", err)
			}

			srvHost := strings.TrimPrefix(f.url(), "http://")
			f.srv.Close() // wait for the handlers, so what they recorded is complete
			hosts, origins, closes, dialed, _ := f.snapshot()
			for _, h := range hosts {
				if h != srvHost {
					t.Errorf("request with Host %q, want %q", h, srvHost)
				}
			}
			if len(origins) > 0 {
				t.Errorf("the probe sent Origin %q; Chromium rejects it", origins)
			}
			if tt.wantWS && dialed != 1 {
				t.Errorf("websocket handshakes: %d, want 1", dialed)
			}
			if tt.wantWS {
				// The probe closed the session before Check returned; wait for the fake to record it.
				f.wg.Wait()
				_, _, closes, _, _ = f.snapshot()
				want := fmt.Sprint(websocket.StatusNormalClosure)
				if tt.wantClose != 0 {
					want = fmt.Sprint(tt.wantClose)
				}
				if len(closes) != 1 || closes[0] != want {
					t.Errorf("sessions ended with status %v, want [%s]", closes, want)
				}
			}
		})
	}
}

func TestCDPHangingBrowser(t *testing.T) {
	hang := func(int64, string) []string { return nil }
	t.Run("alone: ctx cuts it and Check returns promptly", func(t *testing.T) {
		f := (&cdpFake{answer: hang}).start(t)
		p := newTestCDP(t, map[string]any{"urls": f.url()})
		start := time.Now()
		_, err := cdpCheckWithin(t, p, 500*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "Browser.getVersion: timed out") {
			t.Fatalf("error %v, want a Browser.getVersion timeout", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Check took %s after a 500ms deadline", d)
		}
		f.srv.Close()
		f.wg.Wait()
		if _, _, _, _, sent := f.snapshot(); len(sent) != 1 || len(sent[0]) != 1 || sent[0][0] != "Browser.getVersion" {
			t.Errorf("methods received: %v", sent)
		}
	})
	t.Run("no deadline: the probe's timeout applies", func(t *testing.T) {
		f := (&cdpFake{answer: hang}).start(t)
		p, err := newCDP(Spec{Name: "browserPool", Timeout: 300 * time.Millisecond, Options: map[string]any{"urls": f.url()}})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := p.Check(context.Background())
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "timed out") {
				t.Errorf("error %v, want a timeout", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Check did not return") // the goroutine leak is then reported too
		}
	})
	t.Run("next to a healthy browser: degraded before the deadline", func(t *testing.T) {
		hung := (&cdpFake{answer: hang}).start(t)
		ok := (&cdpFake{answer: cdpAnswers("page")}).start(t)
		p := newTestCDP(t, map[string]any{"urls": []any{ok.url(), hung.url()}})
		start := time.Now()
		res, err := cdpCheckWithin(t, p, 3*time.Second)
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		// The endpoints get up to 250ms less than Check; only a gross overrun is a failure here, since
		// a loaded machine may well deliver the answer late.
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Check took %s with a 3s deadline", d)
		}
		want := "1/2 browsers available: " + hung.url() + ": Browser.getVersion: timed out"
		if res.Status != Degraded || res.Reason != want {
			t.Errorf("got %s %q, want degraded %q", res.Status, res.Reason, want)
		}
	})
}

func TestCDPVerdicts(t *testing.T) {
	ok1 := (&cdpFake{answer: cdpAnswers("page", "page")}).start(t)
	ok2 := (&cdpFake{answer: cdpAnswers("page")}).start(t)
	dead := cdpDeadURL(t)
	tests := []struct {
		name       string
		urls       []any
		minAvail   int
		maxPages   int
		wantErr    string
		wantStatus Status
		wantReason string
		wantAvail  int
		wantPages  int
	}{
		{name: "all available", urls: []any{ok1.url(), ok2.url()}, minAvail: 2, wantStatus: Healthy, wantAvail: 2, wantPages: 3},
		{name: "one dead, enough left", urls: []any{ok1.url(), dead}, minAvail: 1, wantStatus: Degraded, wantReason: "1/2 browsers available: " + dead + ": /json/version: connection refused", wantAvail: 1, wantPages: 2},
		{name: "one dead, too few left", urls: []any{ok1.url(), dead}, minAvail: 2, wantErr: "1/2 browsers available, need 2: " + dead + ": /json/version: connection refused", wantAvail: 1, wantPages: 2},
		{name: "all dead, minAvailable 0", urls: []any{dead}, minAvail: 0, wantStatus: Degraded, wantReason: "0/1 browsers available: " + dead + ": /json/version: connection refused"},
		{name: "pages over maxPages and one dead", urls: []any{ok1.url(), ok2.url(), dead}, minAvail: 1, maxPages: 2, wantStatus: Degraded, wantReason: "2/3 browsers available: " + dead + ": /json/version: connection refused; 3 pages open, more than maxPages 2", wantAvail: 2, wantPages: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestCDP(t, map[string]any{"urls": tt.urls, "minAvailable": tt.minAvail, "maxPages": tt.maxPages})
			res, err := cdpCheckWithin(t, p, 20*time.Second)
			switch {
			case tt.wantErr != "":
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("error %v, want %q", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("unexpected error: %v", err)
			case res.Status != tt.wantStatus || res.Reason != tt.wantReason:
				t.Errorf("got %s %q, want %s %q", res.Status, res.Reason, tt.wantStatus, tt.wantReason)
			}
			if res.Fields["availableBrowsers"] != tt.wantAvail || res.Fields["totalBrowsers"] != len(tt.urls) || res.Fields["pages"] != tt.wantPages {
				t.Errorf("fields %v", res.Fields)
			}
		})
	}
}

// cdpPressureServer serves body at /pressure with status.
func cdpPressureServer(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pressure" || r.Header.Get("Origin") != "" {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	// A name, not an IP: browserless does not check Host, so service names are allowed in this mode.
	u, _ := url.Parse(srv.URL)
	return "http://localhost:" + u.Port()
}

func TestCDPBrowserless(t *testing.T) {
	const (
		free = `{"pressure":{"cpu":3,"date":1,"isAvailable":true,"maxConcurrent":10,"maxQueued":10,"memory":40,"message":"","queued":0,"reason":"","recentlyRejected":0,"running":2}}`
		full = `{"pressure":{"isAvailable":false,"maxConcurrent":10,"queued":10,"running":10,"reason":"full","message":"Too many sessions"}}`
	)
	dead := cdpDeadURL(t)
	tests := []struct {
		name       string
		urls       []string
		minAvail   int
		wantErr    string
		wantStatus Status
		wantReason string
		wantFields map[string]any
	}{
		{
			name: "available", urls: []string{cdpPressureServer(t, 200, free)}, minAvail: 1, wantStatus: Healthy,
			wantFields: map[string]any{"running": 2, "queued": 0, "maxConcurrent": 10, "isAvailable": true, "totalBrowsers": 1, "availableBrowsers": 1},
		},
		{
			name: "available, fields at top level", urls: []string{cdpPressureServer(t, 200, `{"isAvailable":true,"running":1,"queued":0,"maxConcurrent":5}`)}, minAvail: 1, wantStatus: Healthy,
			wantFields: map[string]any{"running": 1, "maxConcurrent": 5, "isAvailable": true},
		},
		{
			name: "full", urls: []string{cdpPressureServer(t, 200, full)}, minAvail: 1, wantStatus: Degraded,
			wantReason: "not available: full (running 10/10, queued 10)",
			wantFields: map[string]any{"running": 10, "queued": 10, "isAvailable": false, "availableBrowsers": 0, "totalBrowsers": 1},
		},
		{
			name: "full, reason in message", urls: []string{cdpPressureServer(t, 200, `{"isAvailable":false,"message":"queue full"}`)}, minAvail: 1, wantStatus: Degraded,
			wantReason: "not available: queue full",
		},
		{name: "garbage", urls: []string{cdpPressureServer(t, 200, "<html>")}, minAvail: 1, wantErr: "/pressure: malformed answer"},
		{name: "wrong types", urls: []string{cdpPressureServer(t, 200, `{"pressure":{"isAvailable":"yes"}}`)}, minAvail: 1, wantErr: "/pressure: malformed answer"},
		{name: "no isAvailable", urls: []string{cdpPressureServer(t, 200, `{"pressure":{}}`)}, minAvail: 1, wantErr: "no isAvailable"},
		{name: "unauthorized", urls: []string{cdpPressureServer(t, 401, `{"message":"bad token"}`)}, minAvail: 1, wantErr: "/pressure: HTTP 401"},
		{name: "unreachable", urls: []string{dead}, minAvail: 1, wantErr: "0/1 browserless endpoints usable, need 1: " + dead + ": /pressure: connection refused"},
		{
			name: "one of two unreachable", urls: []string{cdpPressureServer(t, 200, free), dead}, minAvail: 1, wantStatus: Degraded,
			wantReason: "1/2 browserless endpoints usable: " + dead + ": /pressure: connection refused",
			wantFields: map[string]any{"isAvailable": true, "availableBrowsers": 1, "totalBrowsers": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestCDP(t, map[string]any{"urls": strings.Join(tt.urls, ","), "mode": "browserless", "minAvailable": tt.minAvail})
			res, err := cdpCheckWithin(t, p, 20*time.Second)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if res.Status != tt.wantStatus || !strings.Contains(res.Reason, tt.wantReason) {
					t.Errorf("got %s %q, want %s containing %q", res.Status, res.Reason, tt.wantStatus, tt.wantReason)
				}
				if tt.wantStatus == Healthy && res.Reason != "" {
					t.Errorf("healthy with reason %q", res.Reason)
				}
			}
			for k, v := range tt.wantFields {
				if res.Fields[k] != v {
					t.Errorf("%s = %v, want %v (fields %v)", k, res.Fields[k], v, res.Fields)
				}
			}
		})
	}
}

func TestCDPWebSocketURL(t *testing.T) {
	endpoint := func(s string) *url.URL {
		u, err := cdpParseEndpoint(s, cdpModeCDP)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name, endpoint, reported, want, wantErr string
	}{
		{name: "chromium's own", endpoint: "http://127.0.0.1:9222", reported: "ws://127.0.0.1:9222/devtools/browser/abc", want: "ws://127.0.0.1:9222/devtools/browser/abc"},
		{name: "remote pool reports its own address", endpoint: "http://10.1.2.3:9222", reported: "ws://localhost:9222/devtools/browser/abc", want: "ws://10.1.2.3:9222/devtools/browser/abc"},
		{name: "ipv6 endpoint", endpoint: "http://[::1]:9333", reported: "ws://127.0.0.1:9222/devtools/browser/abc", want: "ws://[::1]:9333/devtools/browser/abc"},
		{name: "https endpoint", endpoint: "https://127.0.0.1:9443", reported: "ws://127.0.0.1/devtools/browser/abc", want: "wss://127.0.0.1:9443/devtools/browser/abc"},
		{name: "user info dropped", endpoint: "http://127.0.0.1:9222", reported: "ws://u:p@evil.example:1/devtools/browser/abc", want: "ws://127.0.0.1:9222/devtools/browser/abc"},
		{name: "not ws", endpoint: "http://127.0.0.1:9222", reported: "file:///etc/passwd", wantErr: "is not a ws:// URL"},
		{name: "no path", endpoint: "http://127.0.0.1:9222", reported: "ws://127.0.0.1:9222", wantErr: "has no path"},
		{name: "unparsable", endpoint: "http://127.0.0.1:9222", reported: "ws://[::1", wantErr: "malformed answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cdpWebSocketURL(endpoint(tt.endpoint), tt.reported)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func FuzzCDPVersion(f *testing.F) {
	for _, s := range []string{
		`{"Browser":"HeadlessChrome/131.0.0.0","webSocketDebuggerUrl":"ws://127.0.0.1:9222/devtools/browser/abc"}`,
		`{"webSocketDebuggerUrl":"ws://localhost/devtools/browser/x?token=1"}`,
		`{"webSocketDebuggerUrl":"wss://[::1]:1/%zz"}`,
		`{"webSocketDebuggerUrl":5}`,
		`{"webSocketDebuggerUrl":"http://x/y"}`,
		`null`, `[]`, `"x"`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	endpoint, err := cdpParseEndpoint("http://10.0.0.7:9222", cdpModeCDP)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := cdpParseVersion(body)
		if err != nil {
			if !errors.Is(err, errCDPMalformed) {
				t.Fatalf("error %v does not wrap errCDPMalformed", err)
			}
			return
		}
		ws, err := cdpWebSocketURL(endpoint, v.WebSocketDebuggerURL)
		if err != nil {
			return
		}
		u, err := url.Parse(ws)
		if err != nil || u.Host != endpoint.Host || u.Scheme != "ws" {
			t.Fatalf("rewrote %q to %q (%v): must be ws on %s", v.WebSocketDebuggerURL, ws, err, endpoint.Host)
		}
	})
}

func FuzzCDPMessage(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"result":{"product":"HeadlessChrome/131.0.0.0"}}`,
		`{"id":2,"result":{"targetInfos":[{"type":"page"},{"type":"iframe"}]}}`,
		`{"id":2,"result":{"targetInfos":[{"type":5}]}}`,
		`{"id":1,"error":{"code":-32601,"message":"nope"}}`,
		`{"id":1,"error":"nope"}`,
		`{"id":1,"result":null}`,
		`{"id":"1","result":{}}`,
		`{"id":1e400,"result":{}}`,
		`{"method":"Target.targetCreated","params":{}}`,
		`{}`, `null`, `[]`, ``, `{"id":1`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := cdpParseMessage(b)
		if err != nil {
			if !errors.Is(err, errCDPMalformed) {
				t.Fatalf("error %v does not wrap errCDPMalformed", err)
			}
			return
		}
		if m.ID == nil && m.Method == "" {
			t.Fatalf("accepted %q, which is neither a response nor an event", b)
		}
		if m.Error != nil {
			_ = m.Error.Error()
		}
		if _, err := cdpParseBrowserVersion(m.Result); err != nil && !errors.Is(err, errCDPMalformed) {
			t.Fatalf("browser version error %v does not wrap errCDPMalformed", err)
		}
		if n, err := cdpParseTargets(m.Result); err != nil && !errors.Is(err, errCDPMalformed) || n < 0 {
			t.Fatalf("targets: %d, %v", n, err)
		}
	})
}

func FuzzCDPPressure(f *testing.F) {
	for _, s := range []string{
		`{"pressure":{"isAvailable":true,"running":1,"queued":0,"maxConcurrent":10,"reason":"","message":""}}`,
		`{"isAvailable":false,"reason":"full"}`,
		`{"pressure":null,"isAvailable":true}`,
		`{"pressure":{"isAvailable":"yes"}}`,
		`{"pressure":[]}`, `null`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := cdpParsePressure(b); err != nil && !errors.Is(err, errCDPMalformed) {
			t.Fatalf("error %v does not wrap errCDPMalformed", err)
		}
	})
}

// browserlessWithToken is a loopback stand-in for a browserless v2 started with TOKEN=want: /pressure
// answers only a request carrying ?token=want, and a 401 that repeats the token it was given (as a
// careless proxy might) otherwise.
func browserlessWithToken(t *testing.T, want string) (string, *atomic.Int64) {
	t.Helper()
	var ok atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.URL.Query().Get("token")
		if r.URL.Path != "/pressure" || got != want {
			http.Error(w, fmt.Sprintf(`{"message":"bad token %s"}`, got), http.StatusUnauthorized)
			return
		}
		ok.Add(1)
		fmt.Fprint(w, `{"pressure":{"isAvailable":true,"running":0,"queued":0,"maxConcurrent":10}}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &ok
}

// TestCDPBrowserlessToken: the token is read from its variable or file at every check, sent as
// ?token=, and never shown, not even when the server echoes a wrong one.
func TestCDPBrowserlessToken(t *testing.T) {
	const good, stale = "good-token-0123456789", "stale-token-0123456789"
	build := func(t *testing.T, url string, token map[string]any, env map[string]string) Probe {
		t.Helper()
		p, err := newCDP(Spec{Name: "browserPool", Timeout: 2 * time.Second, Env: Env{LookupEnv: envMap(env)},
			Options: map[string]any{"urls": url, "mode": "browserless", "token": token}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	noToken := func(t *testing.T, res Result, err error, tokens ...string) {
		t.Helper()
		shown := fmt.Sprintf("%v %+v", err, res)
		for _, tok := range tokens {
			if strings.Contains(shown, tok) {
				t.Fatal("a token appears in the result or the error")
			}
		}
	}

	t.Run("from env", func(t *testing.T) {
		url, ok := browserlessWithToken(t, good)
		p := build(t, url, map[string]any{"env": "BROWSERLESS_TOKEN"}, map[string]string{"BROWSERLESS_TOKEN": good})
		if w := p.(interface{ Warnings() []string }).Warnings(); len(w) != 0 {
			t.Errorf("warnings with the token set: %v", w)
		}
		res, err := cdpCheckWithin(t, p, 20*time.Second)
		noToken(t, res, err, good)
		if err != nil || res.Status != Healthy || ok.Load() != 1 {
			t.Fatalf("got %s, %v after %d accepted requests; want healthy after 1", res.Status, err, ok.Load())
		}
	})
	t.Run("wrong token, echoed back", func(t *testing.T) {
		url, _ := browserlessWithToken(t, good)
		p := build(t, url, map[string]any{"env": "BROWSERLESS_TOKEN"}, map[string]string{"BROWSERLESS_TOKEN": stale})
		res, err := cdpCheckWithin(t, p, 20*time.Second)
		noToken(t, res, err, stale, good)
		if err == nil || !strings.Contains(err.Error(), "/pressure: HTTP 401") || !strings.Contains(err.Error(), "bad token [redacted]") {
			t.Fatalf("error %v, want HTTP 401 with the echoed token redacted", err)
		}
	})
	t.Run("echoed across the cut of the error snippet", func(t *testing.T) {
		for _, pad := range []int{100, 110, 115} { // the snippet keeps 120 bytes; the token starts before and ends after
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, strings.Repeat("x", pad)+r.URL.Query().Get("token"), http.StatusUnauthorized)
			}))
			p := build(t, srv.URL, map[string]any{"env": "BROWSERLESS_TOKEN"}, map[string]string{"BROWSERLESS_TOKEN": good})
			res, err := cdpCheckWithin(t, p, 20*time.Second)
			srv.Close()
			if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
				t.Fatalf("pad %d: error %v, want HTTP 401", pad, err)
			}
			noPieceOf(t, fmt.Sprintf("pad %d: the error", pad), err.Error(), good)
			noPieceOf(t, fmt.Sprintf("pad %d: the result", pad), fmt.Sprintf("%+v", res), good)
		}
	})
	t.Run("variable unset", func(t *testing.T) {
		url, ok := browserlessWithToken(t, good)
		p := build(t, url, map[string]any{"env": "BROWSERLESS_TOKEN"}, nil)
		if w := p.(interface{ Warnings() []string }).Warnings(); len(w) != 1 || !strings.Contains(w[0], "BROWSERLESS_TOKEN") {
			t.Errorf("warnings %v, want one naming BROWSERLESS_TOKEN", w)
		}
		res, err := cdpCheckWithin(t, p, 20*time.Second)
		if !errors.Is(err, config.ErrSecretAbsent) || !strings.Contains(err.Error(), "BROWSERLESS_TOKEN") || res.Status != Unhealthy {
			t.Fatalf("got %s, %v; want unhealthy naming the variable", res.Status, err)
		}
		if ok.Load() != 0 {
			t.Error("browserless was asked without the token")
		}
	})
	t.Run("from a file, rotated", func(t *testing.T) {
		url, ok := browserlessWithToken(t, good)
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte(stale+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		p := build(t, url, map[string]any{"file": file}, nil)
		if res, err := cdpCheckWithin(t, p, 20*time.Second); err == nil {
			t.Fatalf("stale token accepted: %s", res.Status)
		}
		if err := os.WriteFile(file, []byte(good+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := cdpCheckWithin(t, p, 20*time.Second)
		noToken(t, res, err, good, stale)
		if err != nil || res.Status != Healthy || ok.Load() != 1 {
			t.Fatalf("after rotation: %s, %v; want healthy", res.Status, err)
		}
	})
}
