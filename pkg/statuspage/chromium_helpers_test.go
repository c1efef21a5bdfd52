package statuspage_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/health-agent/health-agent/internal/testkit"
)

// chromium is a headless Chromium (started by testkit) driven over the DevTools protocol: one page,
// one CDP session.
type chromium struct {
	t      *testing.T
	page   *websocket.Conn
	nextID int64
}

// startChromium launches headless Chromium with an about:blank page and connects to that page. It skips
// the test when Chromium is not installed, unless CI is set.
func startChromium(t *testing.T, ctx context.Context) *chromium {
	t.Helper()
	browser := testkit.StartChromium(t, testkit.ChromiumOptions{
		Args: []string{"--window-size=1280,900", "--remote-debugging-address=127.0.0.1"},
	})
	c := &chromium{t: t}
	t.Cleanup(c.close) // registered after the browser's kill, so it runs before it

	var targets []struct {
		Type, URL, WebSocketDebuggerURL string
	}
	resp, err := http.Get(browser.URL() + "/json/list")
	if err != nil {
		t.Fatalf("list targets: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
		t.Fatalf("decode targets: %v", err)
	}
	for _, tg := range targets {
		if tg.Type == "page" {
			c.page = dial(t, ctx, tg.WebSocketDebuggerURL)
			return c
		}
	}
	t.Fatalf("no page target in %+v", targets)
	return nil
}

func dial(t *testing.T, ctx context.Context, url string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	conn.SetReadLimit(64 << 20) // screenshots
	return conn
}

// call sends one CDP command on conn and waits for its answer, skipping events.
func (c *chromium) call(ctx context.Context, conn *websocket.Conn, method string, params any, result any) error {
	c.nextID++
	id := c.nextID
	if params == nil {
		params = struct{}{}
	}
	if err := wsjson.Write(ctx, conn, map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	for {
		var msg struct {
			ID     int64           `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := wsjson.Read(ctx, conn, &msg); err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		if msg.ID != id {
			continue // an event, or an answer to nothing we wait for
		}
		if msg.Error != nil {
			return fmt.Errorf("%s: %s", method, msg.Error.Message)
		}
		if result == nil {
			return nil
		}
		return json.Unmarshal(msg.Result, result)
	}
}

// do is call on the page, failing the test on error.
func (c *chromium) do(ctx context.Context, method string, params any, result any) {
	c.t.Helper()
	if err := c.call(ctx, c.page, method, params, result); err != nil {
		c.t.Fatal(err)
	}
}

// navigate loads url and waits until the document has loaded.
func (c *chromium) navigate(ctx context.Context, url string) {
	c.t.Helper()
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	c.do(ctx, "Page.navigate", map[string]any{"url": url}, &nav)
	if nav.ErrorText != "" {
		c.t.Fatalf("navigate %s: %s", url, nav.ErrorText)
	}
	c.waitFor(ctx, "document loaded", `document.readyState === "complete" && location.href === `+jsString(url), nil)
}

// eval evaluates a JavaScript expression in the page and decodes its JSON-able value into out.
func (c *chromium) eval(ctx context.Context, expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := c.call(ctx, c.page, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("evaluate %q: %s", expr, res.ExceptionDetails.Text)
	}
	if len(res.Result.Value) == 0 {
		return errors.New("evaluate: no value")
	}
	return json.Unmarshal(res.Result.Value, out)
}

// waitFor polls a boolean expression until it is true; on timeout it fails and shows describe's value.
func (c *chromium) waitFor(ctx context.Context, what, expr string, describe func() string) {
	c.t.Helper()
	var lastErr error
	done := testkit.Poll(60*time.Second, func() bool {
		var ok bool
		lastErr = c.eval(ctx, expr, &ok)
		return ctx.Err() != nil || lastErr == nil && ok
	})
	if err := ctx.Err(); err != nil {
		c.t.Fatal(err)
	}
	if !done {
		msg := fmt.Sprintf("waiting for %s: timed out (last error: %v)", what, lastErr)
		if describe != nil {
			msg += "\n" + describe()
		}
		c.t.Fatal(msg)
	}
}

// screenshot saves a PNG of the page into dir and returns its path.
func (c *chromium) screenshot(ctx context.Context, dir, name string) string {
	c.t.Helper()
	var shot struct {
		Data string `json:"data"`
	}
	c.do(ctx, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		c.t.Fatalf("decode screenshot: %v", err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		c.t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		c.t.Fatalf("write screenshot: %v", err)
	}
	return p
}

// close ends the CDP session; testkit then kills Chromium.
func (c *chromium) close() {
	if c.page != nil {
		_ = c.page.CloseNow()
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// artifactsDir is where screenshots are kept: $HEALTH_AGENT_ARTIFACTS, else the test's temp dir.
func artifactsDir(t *testing.T) string {
	if d := os.Getenv("HEALTH_AGENT_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}
