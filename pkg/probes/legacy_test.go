package probes

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// The legacy body is embedded in /api/health only when it is the app's own valid UTF-8 JSON, nested at
// most maxJSONDepth levels; otherwise legacyError says why.

// nested is a JSON document nested depth levels deep: [[[…1…]]].
func nested(depth int) string {
	return strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth)
}

func TestHTTPLegacyBodyRules(t *testing.T) {
	for _, tc := range []struct {
		name, body, wantErr string // wantErr empty: the body is kept as it is
	}{
		{name: "plain", body: `{"status":"ok"}`},
		{name: "nested 64 levels", body: nested(64)},
		{name: "nested 65 levels", body: nested(65), wantErr: "body nests deeper than 64 levels"},
		{name: "brackets in strings do not nest", body: `{"a":"` + strings.Repeat("[{", 100) + `"}`},
		{name: "escaped quote then brackets", body: `["\"[[[[",` + nested(63) + `]`},
		{name: "invalid UTF-8 in a string", body: "{\"status\":\"ok\xff\"}", wantErr: "body is not valid UTF-8"},
		{name: "not JSON", body: `<html>`, wantErr: "body is not JSON"},
		{name: "a surrogate pair", body: `{"s":"\ud83d\ude00 \\ud800"}`},
		{name: "a lone high surrogate", body: `{"s":"\ud800 x"}`, wantErr: "body escapes a lone UTF-16 surrogate"},
		{name: "a high surrogate before a non-surrogate", body: `{"s":"\ud800\u0041"}`, wantErr: "body escapes a lone UTF-16 surrogate"},
		{name: "a lone low surrogate", body: `{"s":"\udfff"}`, wantErr: "body escapes a lone UTF-16 surrogate"},
		{name: "a high surrogate at the end", body: `["\ud800"]`, wantErr: "body escapes a lone UTF-16 surrogate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(tc.body)) })
			res, err := checkOnce(t, buildHTTP(t, Spec{Legacy: true, Options: map[string]any{"url": srv.URL}}))
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantErr == "" {
				if string(res.Body) != tc.body || res.Fields["legacyError"] != nil {
					t.Fatalf("body %.80s, legacyError %v; want the body kept", res.Body, res.Fields["legacyError"])
				}
				return
			}
			if got, _ := res.Fields["legacyError"].(string); res.Body != nil || !strings.HasPrefix(got, tc.wantErr) {
				t.Fatalf("body %.80s, legacyError %q; want none and %q", res.Body, res.Fields["legacyError"], tc.wantErr)
			}
		})
	}
}

func TestHTTPFollowRedirects(t *testing.T) {
	var otherHits atomic.Int32
	other := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		otherHits.Add(1)
		_, _ = w.Write([]byte(`{"status":"ok","from":"elsewhere"}`))
	})
	app := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/health?k=s3cretvalue", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/health", http.StatusMovedPermanently)
		default:
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		}
	})
	for _, tc := range []struct {
		name, path, follow  string
		wantErr, wantLegacy string // substrings; wantLegacy empty: the body is kept
		wantOther           bool
	}{
		{name: "same host is followed by default", path: "/moved"},
		{name: "another host is not followed by default", path: "/away",
			wantErr: "status 302, want 2xx: redirect to " + other.URL + "/health?k=[redacted] not followed (followRedirects: sameHost)", wantLegacy: "not followed"},
		{name: "none follows nothing", path: "/moved", follow: "none",
			wantErr: "status 301, want 2xx: redirect to " + app.URL + "/health not followed (followRedirects: none)", wantLegacy: "not followed"},
		{name: "any follows, but the legacy body from another host is not kept", path: "/away", follow: "any",
			wantLegacy: "body came from another host (redirected to " + other.URL + "/health?k=[redacted])", wantOther: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			otherHits.Store(0)
			opts := map[string]any{"url": app.URL + tc.path}
			if tc.follow != "" {
				opts["followRedirects"] = tc.follow
			}
			res, err := checkOnce(t, buildHTTP(t, Spec{Legacy: true, Options: opts}))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			legacyErr, _ := res.Fields["legacyError"].(string)
			if tc.wantLegacy == "" && (res.Body == nil || legacyErr != "") {
				t.Errorf("legacyError %q, want the body kept", legacyErr)
			}
			if tc.wantLegacy != "" && (res.Body != nil || !strings.Contains(legacyErr, tc.wantLegacy)) {
				t.Errorf("body %s, legacyError %q; want none and %q", res.Body, legacyErr, tc.wantLegacy)
			}
			if got := otherHits.Load() > 0; got != tc.wantOther {
				t.Errorf("other host asked: %v, want %v", got, tc.wantOther)
			}
		})
	}
	t.Run("an unknown policy is a config error", func(t *testing.T) {
		_, err := newHTTP(Spec{Options: map[string]any{"url": app.URL, "followRedirects": "sometimes"}})
		assertFieldErrors(t, err, []string{`followRedirects: must be sameHost, any or none, got "sometimes"`})
	})
}

// TestLegacyBodiesParseEverywhere embeds every body the probe accepts, as /api/health embeds it, and
// parses the result with jq, Python's json and Go's encoding/json.
func TestLegacyBodiesParseEverywhere(t *testing.T) {
	bodies := []string{
		`{"status":"ok","uptime":12.5,"checks":[true,false,null]}`,
		nested(64),
		`{"a":` + nested(63) + `}`,
		`{"esc":"\" \\ \/ \b \f \n \r \t \u0000 \u001f \u00e9 \ud83d\ude00"}`,
		"{\"sep\":\"line\u2028para\u2029end\"}",
		`{"html":"<script>&amp;</script>"}`,
		`{"notSurrogate":"\\ud800"}`,
		`{"big":123456789012345678901234567890,"tiny":1e-400,"huge":1e308,"neg":-0}`,
		`{"":"empty key","dup":1,"dup":2}`,
		"{\"raw\":\"é ü ✓ 😀\"}",
		`[]`, `{}`, `"just a string"`, `0`, `null`,
	}
	var embedded []json.RawMessage
	for _, b := range bodies {
		srv := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(b)) })
		res, err := checkOnce(t, buildHTTP(t, Spec{Legacy: true, Options: map[string]any{"url": srv.URL}}))
		if err != nil || res.Body == nil {
			t.Fatalf("body %.60q: err %v, legacyError %v; want it accepted", b, err, res.Fields["legacyError"])
		}
		embedded = append(embedded, res.Body)
	}
	for i, body := range embedded {
		// What /api/health serves: the body under data, through encoding/json (which gin uses).
		doc, err := json.Marshal(map[string]any{"success": true, "data": map[string]any{"status": "ok", "legacy": body}})
		if err != nil {
			t.Fatalf("body %d: marshal: %v", i, err)
		}
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Errorf("body %d: encoding/json: %v", i, err)
		}
		for _, parser := range [][]string{{"jq", "."}, {"python3", "-c", "import json,sys; json.load(sys.stdin)"}} {
			if _, err := exec.LookPath(parser[0]); err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s is needed in CI: %v", parser[0], err)
				}
				t.Logf("skipping %s: %v", parser[0], err)
				continue
			}
			cmd := exec.Command(parser[0], parser[1:]...)
			cmd.Stdin = bytes.NewReader(doc)
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = nil, &stderr
			if err := cmd.Run(); err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("%s: %v", parser[0], err)
				}
				t.Errorf("body %d (%.60q): %s refused /api/health: %v %s", i, bodies[i], parser[0], err, stderr.String())
			}
		}
	}
}
