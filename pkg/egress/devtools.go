package egress

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxDevToolsList bounds the /json/list answer the proxy rewrites (a browser with many tabs lists a
// few hundred bytes each); a larger one passes unchanged.
const maxDevToolsList = 1 << 20

// isDevToolsList reports whether rest is one of Chromium's HTTP endpoints that answer with websocket
// URLs: /json/version, /json/list (also /json) and /json/new.
func isDevToolsList(rest string) bool {
	switch strings.TrimSuffix(rest, "/") {
	case "/json", "/json/list", "/json/version", "/json/new":
		return true
	}
	return false
}

// rewriteDevTools makes the websocket URLs of a DevTools answer (webSocketDebuggerUrl and the ws=
// parameter of devtoolsFrontendUrl) lead back through the proxy, so that a client which connects to
// the URL it was given (puppeteer.connect with browserURL) stays on the route and its breaker.
func (rt *route) rewriteDevTools(resp *http.Response, inHost string) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDevToolsList+1))
	if err != nil || len(body) > maxDevToolsList {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
		return
	}
	_ = resp.Body.Close()
	out := body
	if rewritten, ok := rt.rewriteDevToolsJSON(body, inHost); ok {
		out = rewritten
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
}

func (rt *route) rewriteDevToolsJSON(body []byte, inHost string) ([]byte, bool) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(body, &list); err == nil {
		changed := false
		for _, t := range list {
			changed = rt.rewriteTarget(t, inHost) || changed
		}
		if !changed {
			return nil, false
		}
		out, err := json.MarshalIndent(list, "", "   ")
		return out, err == nil
	}
	var one map[string]json.RawMessage
	if err := json.Unmarshal(body, &one); err != nil || !rt.rewriteTarget(one, inHost) {
		return nil, false
	}
	out, err := json.MarshalIndent(one, "", "   ")
	return out, err == nil
}

// rewriteTarget rewrites one target's URLs in place; it reports whether any changed.
func (rt *route) rewriteTarget(t map[string]json.RawMessage, inHost string) bool {
	// The upstream builds its URLs from the Host it was sent: the upstream's own host.
	from := rt.up.Host + rt.upRaw + "/"
	to := inHost + rt.base + "/"
	changed := false
	for key, rewrite := range map[string]func(string) string{
		"webSocketDebuggerUrl": func(s string) string {
			for _, scheme := range []string{"ws://", "wss://"} {
				if rest, ok := strings.CutPrefix(s, scheme+from); ok {
					return "ws://" + to + rest
				}
			}
			return s
		},
		"devtoolsFrontendUrl": func(s string) string {
			s = strings.Replace(s, "ws="+from, "ws="+to, 1)
			return strings.Replace(s, "wss="+from, "ws="+to, 1)
		},
	} {
		raw, ok := t[key]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			continue
		}
		if n := rewrite(s); n != s {
			b, err := json.Marshal(n)
			if err == nil {
				t[key] = b
				changed = true
			}
		}
	}
	return changed
}
