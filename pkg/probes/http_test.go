package probes

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
)

// testCheckTimeout is generous: the machine running the tests may be loaded.
const testCheckTimeout = 20 * time.Second

// buildHTTP builds an http probe from options or fails the test.
func buildHTTP(t *testing.T, spec Spec) *httpProbe {
	t.Helper()
	p, err := newHTTP(spec)
	if err != nil {
		t.Fatalf("newHTTP: %v", err)
	}
	return p.(*httpProbe)
}

func checkOnce(t *testing.T, p Probe) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testCheckTimeout)
	defer cancel()
	return p.Check(ctx)
}

// serve starts a test server that the test closes.
func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// envMap is a LookupEnv backed by a map.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		expectStatus []any
		wantErr      string // empty: healthy
	}{
		{name: "200 is 2xx", status: 200},
		{name: "204 is 2xx", status: 204},
		{name: "299 is 2xx", status: 299},
		{name: "503 is not 2xx", status: 503, wantErr: "status 503, want 2xx"},
		{name: "302 without redirect target is not 2xx", status: 302, wantErr: "status 302, want 2xx"},
		{name: "404 listed", status: 404, expectStatus: []any{404}},
		{name: "200 not in list", status: 200, expectStatus: []any{204, 404}, wantErr: "status 200, want one of 204, 404"},
		{name: "single code", status: 500, expectStatus: []any{200}, wantErr: "status 500, want 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(tt.status) })
			opts := map[string]any{"url": srv.URL}
			if tt.expectStatus != nil {
				opts["expectStatus"] = tt.expectStatus
			}
			res, err := checkOnce(t, buildHTTP(t, Spec{Name: "x", Options: opts}))
			if got := res.Fields["statusCode"]; got != tt.status {
				t.Errorf("statusCode = %v, want %d", got, tt.status)
			}
			if tt.wantErr == "" {
				if err != nil || res.Status != Healthy {
					t.Fatalf("got %v, %v; want healthy", res.Status, err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestHTTPMethod(t *testing.T) {
	var got atomic.Value
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Method + " " + r.UserAgent())
	})
	p := buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL, "method": "head"}})
	if _, err := checkOnce(t, p); err != nil {
		t.Fatal(err)
	}
	if got.Load() != "HEAD health-agent" {
		t.Errorf("server saw %q, want HEAD from health-agent", got.Load())
	}
}

func TestHTTPExpectJSON(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		conds   []any
		wantErr string // empty: healthy
	}{
		{name: "string match", body: `{"status":"ok"}`, conds: []any{cond("status", "ok")}},
		{name: "bool match", body: `{"ready":true}`, conds: []any{cond("ready", true)}},
		{name: "int equals float", body: `{"n":3.0}`, conds: []any{cond("n", 3)}},
		{name: "exponent equals int", body: `{"n":1e2}`, conds: []any{cond("n", 100)}},
		{name: "float match", body: `{"load":0.5}`, conds: []any{cond("load", 0.5)}},
		{name: "null match", body: `{"err":null}`, conds: []any{cond("err", nil)}},
		{name: "nested", body: `{"data":{"status":"ok"}}`, conds: []any{cond("data.status", "ok")}},
		{name: "array index", body: `{"items":[{"name":"a"},{"name":"b"}]}`, conds: []any{cond("items.1.name", "b")}},
		{name: "top-level array", body: `[1,2,3]`, conds: []any{cond("2", 3)}},
		{name: "numeric object key", body: `{"0":"zero"}`, conds: []any{cond("0", "zero")}},
		{name: "several conditions hold", body: `{"a":1,"b":"x"}`, conds: []any{cond("a", 1), cond("b", "x")}},
		{name: "string mismatch", body: `{"status":"down"}`, conds: []any{cond("status", "ok")},
			wantErr: `json status = "down", want "ok"`},
		{name: "string is not number", body: `{"n":"3"}`, conds: []any{cond("n", 3)},
			wantErr: `json n = "3", want 3`},
		{name: "bool is not string", body: `{"ok":true}`, conds: []any{cond("ok", "true")},
			wantErr: `json ok = true, want "true"`},
		{name: "object is not scalar", body: `{"data":{"x":1}}`, conds: []any{cond("data", "x")},
			wantErr: `json data = {"x":1}, want "x"`},
		{name: "missing path", body: `{"data":{}}`, conds: []any{cond("data.status", "ok")},
			wantErr: `json data.status: not found, want "ok"`},
		{name: "index out of range", body: `{"items":[]}`, conds: []any{cond("items.0.name", "a")},
			wantErr: `json items.0.name: not found, want "a"`},
		{name: "null is not missing", body: `{}`, conds: []any{cond("err", nil)},
			wantErr: `json err: not found, want null`},
		{name: "every failure reported", body: `{"a":2,"b":"y"}`, conds: []any{cond("a", 1), cond("b", "x")},
			wantErr: `json a = 2, want 1; json b = "y", want "x"`},
		{name: "not JSON", body: `<html>ok</html>`, conds: []any{cond("status", "ok")}, wantErr: "body is not JSON"},
		{name: "empty body", body: ``, conds: []any{cond("status", "ok")}, wantErr: "body is not JSON"},
		{name: "trailing garbage", body: `{"status":"ok"} x`, conds: []any{cond("status", "ok")}, wantErr: "body is not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, tt.body)
			})
			p := buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL, "expectJSON": tt.conds}})
			res, err := checkOnce(t, p)
			if tt.wantErr == "" {
				if err != nil || res.Status != Healthy {
					t.Fatalf("got %v, %v; want healthy", res.Status, err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if res.Body != nil {
				t.Errorf("body kept without legacy: %s", res.Body)
			}
		})
	}
}

func cond(path string, equals any) map[string]any {
	return map[string]any{"path": path, "equals": equals}
}

func TestHTTPHeaders(t *testing.T) {
	const want = "Bearer tok-123" // what the server requires
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		header any
		env    map[string]string
	}{
		{name: "literal", header: "Bearer tok-123"},
		{name: "literal as value", header: map[string]any{"value": "Bearer tok-123"}},
		{name: "env with prefix", header: map[string]any{"env": "TOKEN", "prefix": "Bearer "}, env: map[string]string{"TOKEN": "tok-123"}},
		{name: "file with prefix", header: map[string]any{"file": tokenFile, "prefix": "Bearer "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != want || r.Header.Get("X-Env") != "prod" {
					w.WriteHeader(http.StatusUnauthorized)
				}
			})
			p := buildHTTP(t, Spec{
				Options: map[string]any{"url": srv.URL, "headers": map[string]any{"authorization": tt.header, "X-Env": "prod"}},
				Env:     Env{LookupEnv: envMap(tt.env)},
			})
			if res, err := checkOnce(t, p); err != nil || res.Status != Healthy {
				t.Fatalf("got %v, %v; want healthy (server got the headers)", res.Status, err)
			}
			if w := p.Warnings(); len(w) != 0 {
				t.Errorf("warnings with every secret present: %q", w)
			}
		})
	}
}

func TestHTTPHeaderFileRotation(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	var seen atomic.Value
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { seen.Store(r.Header.Get("X-Token")) })
	p := buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL, "headers": map[string]any{"X-Token": map[string]any{"file": tokenFile}}}})

	// Not mounted yet: the check fails naming the file, and the server is not called.
	_, err := checkOnce(t, p)
	if !errors.Is(err, config.ErrSecretAbsent) || !strings.Contains(err.Error(), tokenFile) {
		t.Fatalf("err = %v, want ErrSecretAbsent naming %s", err, tokenFile)
	}
	if seen.Load() != nil {
		t.Fatal("server called although the secret was absent")
	}
	for _, token := range []string{"first", "second"} {
		if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := checkOnce(t, p); err != nil {
			t.Fatal(err)
		}
		if seen.Load() != token {
			t.Fatalf("server saw a stale token after rotation to %q", token) // the test tokens are not secrets
		}
	}
}

func TestHTTPSecretAbsent(t *testing.T) {
	const literal = "literal-value-42"
	missingFile := filepath.Join(t.TempDir(), "nope")
	tests := []struct {
		name   string
		header map[string]any
		names  string // what the error must name
	}{
		{name: "env unset", header: map[string]any{"env": "MY_API_TOKEN", "prefix": "Bearer "}, names: "MY_API_TOKEN"},
		{name: "file missing", header: map[string]any{"file": missingFile}, names: missingFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
			spec := Spec{
				Legacy: true,
				Options: map[string]any{"url": srv.URL, "headers": map[string]any{
					"Authorization": tt.header, "X-Literal": literal,
				}},
				Env: Env{LookupEnv: envMap(map[string]string{"OTHER": "other-secret"})},
			}
			p := buildHTTP(t, spec)
			res, err := checkOnce(t, p)
			if !errors.Is(err, config.ErrSecretAbsent) {
				t.Fatalf("err = %v, want ErrSecretAbsent", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.names) {
				t.Errorf("error %q does not name %s", msg, tt.names)
			}
			for _, v := range []string{literal, "other-secret", "Bearer"} {
				if strings.Contains(msg, v) || strings.Contains(fmt.Sprint(res.Fields), v) {
					t.Errorf("error or fields contain a header value") // the value itself is not printed
				}
			}
			if calls.Load() != 0 {
				t.Error("server called although the secret was absent")
			}
			w := p.Warnings()
			if len(w) != 1 || !strings.Contains(w[0], tt.names) || !strings.HasPrefix(w[0], "headers[Authorization]: ") {
				t.Errorf("warnings = %q, want one naming %s", w, tt.names)
			}
		})
	}
}

func TestHTTPBodyLimit(t *testing.T) {
	stop := make(chan struct{})
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat(" ", 32<<10))
		for {
			select {
			case <-stop:
				return
			case <-r.Context().Done():
				return
			default:
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	t.Cleanup(func() { close(stop) }) // runs before srv.Close
	tests := []struct {
		name   string
		legacy bool
		conds  []any
	}{
		{name: "expectJSON", conds: []any{cond("status", "ok")}},
		{name: "legacy", legacy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := map[string]any{"url": srv.URL, "maxBodyBytes": 4096}
			if tt.conds != nil {
				opts["expectJSON"] = tt.conds
			}
			res, err := checkOnce(t, buildHTTP(t, Spec{Legacy: tt.legacy, Options: opts}))
			if !errors.Is(err, ErrBodyTooLarge) || err.Error() != "body exceeds 4096 bytes" {
				t.Fatalf("err = %v, want body exceeds 4096 bytes", err)
			}
			if tt.legacy && (res.Body != nil || res.Fields["legacyError"] != "body exceeds 4096 bytes") {
				t.Errorf("legacy: body %d bytes, legacyError %v", len(res.Body), res.Fields["legacyError"])
			}
		})
	}
}

func TestHTTPContextCutsOffHangingServer(t *testing.T) {
	release := make(chan struct{})
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	p := buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL}})

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := p.Check(ctx)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
	case <-time.After(testCheckTimeout):
		t.Fatal("Check did not return after its context expired")
	}
}

func TestHTTPLegacyBody(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantErr    string
		wantBody   string // empty: nil
		wantLegacy string // Fields["legacyError"]
	}{
		{name: "JSON kept", status: 200, body: `{"status":"ok","uptime":3}`, wantBody: `{"status":"ok","uptime":3}`},
		{name: "JSON kept on 503", status: 503, body: `{"status":"error"}`, wantBody: `{"status":"error"}`, wantErr: "status 503, want 2xx"},
		{name: "not JSON", status: 200, body: `OK`, wantLegacy: "body is not JSON"},
		{name: "not JSON on 500", status: 500, body: `boom`, wantErr: "status 500, want 2xx", wantLegacy: "body is not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			})
			res, err := checkOnce(t, buildHTTP(t, Spec{Legacy: true, Options: map[string]any{"url": srv.URL}}))
			if gotErr := fmt.Sprint(err); (tt.wantErr == "" && err != nil) || (tt.wantErr != "" && gotErr != tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if string(res.Body) != tt.wantBody {
				t.Errorf("Body = %q, want %q", res.Body, tt.wantBody)
			}
			if tt.wantBody == "" && res.Body != nil {
				t.Errorf("Body = %q, want nil", res.Body)
			}
			if got, _ := res.Fields["legacyError"].(string); got != tt.wantLegacy {
				t.Errorf("legacyError = %q, want %q", got, tt.wantLegacy)
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close() // nothing listens there any more
		res, err := checkOnce(t, buildHTTP(t, Spec{Legacy: true, Options: map[string]any{"url": srv.URL}}))
		if err == nil || res.Body != nil || res.Fields["legacyError"] != err.Error() {
			t.Fatalf("err = %v, body %q, legacyError %v", err, res.Body, res.Fields["legacyError"])
		}
	})
}

func TestHTTPTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		tls      map[string]any
		wantErr  string // substring; empty: healthy
		wantWarn bool
	}{
		{name: "caFile", tls: map[string]any{"caFile": caFile}},
		{name: "system roots reject a private CA", tls: nil, wantErr: "certificate"},
		{name: "insecureSkipVerify", tls: map[string]any{"insecureSkipVerify": true}, wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := map[string]any{"url": srv.URL}
			if tt.tls != nil {
				opts["tls"] = tt.tls
			}
			p := buildHTTP(t, Spec{Options: opts})
			_, err := checkOnce(t, p)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("err = %v, want healthy", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
			if got := len(p.Warnings()) > 0; got != tt.wantWarn {
				t.Errorf("warnings = %q, want some: %v", p.Warnings(), tt.wantWarn)
			}
		})
	}
}

func TestHTTPRedirects(t *testing.T) {
	t.Run("bounded", func(t *testing.T) {
		var hits atomic.Int32
		srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.Redirect(w, r, "/again", http.StatusFound)
		})
		_, err := checkOnce(t, buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL}}))
		if err == nil || !strings.Contains(err.Error(), "stopped after 3 redirects") {
			t.Fatalf("err = %v, want stopped after 3 redirects", err)
		}
		if n := hits.Load(); n != maxRedirects+1 {
			t.Errorf("server hit %d times, want %d", n, maxRedirects+1)
		}
	})
	t.Run("same host keeps headers", func(t *testing.T) {
		srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/" {
				http.Redirect(w, r, "/health", http.StatusFound)
				return
			}
			if r.Header.Get("X-Key") != "k" {
				w.WriteHeader(http.StatusUnauthorized)
			}
		})
		_, err := checkOnce(t, buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL, "headers": map[string]any{"X-Key": "k"}}}))
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("other host drops headers", func(t *testing.T) {
		var leaked atomic.Bool
		other := serve(t, func(w http.ResponseWriter, r *http.Request) {
			leaked.Store(r.Header.Get("X-Key") != "" || r.Header.Get("Authorization") != "")
		})
		srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/health", http.StatusFound)
		})
		headers := map[string]any{"X-Key": map[string]any{"env": "KEY"}, "Authorization": map[string]any{"env": "KEY"}}
		p := buildHTTP(t, Spec{
			Options: map[string]any{"url": srv.URL, "headers": headers, "followRedirects": "any"},
			Env:     Env{LookupEnv: envMap(map[string]string{"KEY": "k"})},
		})
		if _, err := checkOnce(t, p); err != nil {
			t.Fatal(err)
		}
		if leaked.Load() {
			t.Error("configured headers followed a redirect to another host")
		}
	})
}

func TestHTTPRetryAfter(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	res, err := checkOnce(t, buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL}}))
	if err == nil || res.RetryAfter != 120*time.Second {
		t.Fatalf("err = %v, RetryAfter = %v; want a failure asking for 2m", err, res.RetryAfter)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name  string
		value string
		want  time.Duration
	}{
		{name: "absent", value: "", want: 0},
		{name: "seconds", value: "30", want: 30 * time.Second},
		{name: "zero", value: "0", want: 0},
		{name: "negative", value: "-5", want: 0},
		{name: "capped", value: "999999999", want: 24 * time.Hour},
		{name: "date", value: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "past date", value: now.Add(-time.Hour).Format(http.TimeFormat), want: 0},
		{name: "garbage", value: "soon", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.value != "" {
				h.Set("Retry-After", tt.value)
			}
			if got := RetryAfter(h.Get("Retry-After"), now, 0, httpMaxRetryAfter); got != tt.want {
				t.Errorf("retryAfter(%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

func TestHTTPBadOptions(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	const u = "http://127.0.0.1:3007/api/health"
	tests := []struct {
		name    string
		opts    map[string]any
		legacy  bool
		wantErr []string // each FieldError, in order
	}{
		{name: "unknown key", opts: map[string]any{"url": u, "bogus": 1}, wantErr: []string{"bogus"}},
		{name: "missing url", opts: map[string]any{}, wantErr: []string{"url: required"}},
		{name: "relative url", opts: map[string]any{"url": "foo"}, wantErr: []string{`url: must be an absolute http(s) URL, got "foo"`}},
		{name: "ftp url", opts: map[string]any{"url": "ftp://host/x"}, wantErr: []string{`url: must be an absolute http(s) URL, got "ftp://host/x"`}},
		{name: "unparsable url", opts: map[string]any{"url": "http://[::1"}, wantErr: []string{`url: must be an absolute http(s) URL, got "http://[::1"`}},
		{name: "url password redacted", opts: map[string]any{"url": "ftp://u:pw123@host/"}, wantErr: []string{`url: must be an absolute http(s) URL, got "ftp://u:xxxxx@host/"`}},
		{name: "bad method", opts: map[string]any{"url": u, "method": "FETCH"},
			wantErr: []string{`method: must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, got "FETCH"`}},
		{name: "HEAD with legacy", opts: map[string]any{"url": u, "method": "HEAD"}, legacy: true,
			wantErr: []string{"method: HEAD responses have no body, but legacy or expectJSON needs one"}},
		{name: "bad expectStatus", opts: map[string]any{"url": u, "expectStatus": []any{200, 42}},
			wantErr: []string{"expectStatus[1]: must be an HTTP status 100-599, got 42"}},
		{name: "non-numeric expectStatus", opts: map[string]any{"url": u, "expectStatus": []any{"ok"}}, wantErr: []string{"expectStatus[0]"}},
		{name: "missing caFile", opts: map[string]any{"url": u, "tls": map[string]any{"caFile": missing}},
			wantErr: []string{fmt.Sprintf("tls.caFile: cannot read %q: no such file or directory", missing)}},
		{name: "caFile not PEM", opts: map[string]any{"url": u, "tls": map[string]any{"caFile": notPEM}},
			wantErr: []string{fmt.Sprintf("tls.caFile: no PEM certificate in %q", notPEM)}},
		{name: "maxBodyBytes zero", opts: map[string]any{"url": u, "maxBodyBytes": 0}, wantErr: []string{"maxBodyBytes: must be > 0, got 0"}},
		{name: "header without source", opts: map[string]any{"url": u, "headers": map[string]any{"X-A": map[string]any{"prefix": "Bearer "}}},
			wantErr: []string{"headers[X-A]: must set exactly one of value, env or file"}},
		{name: "header with two sources", opts: map[string]any{"url": u, "headers": map[string]any{"X-A": map[string]any{"env": "A", "file": "/a"}}},
			wantErr: []string{"headers[X-A]: must set exactly one of value, env or file"}},
		{name: "duplicate header", opts: map[string]any{"url": u, "headers": map[string]any{"X-A": "1", "x-a": map[string]any{"env": "A"}}},
			wantErr: []string{"headers[x-a]: duplicate of headers[X-A] (header names are case-insensitive)"}},
		{name: "prefix on literal", opts: map[string]any{"url": u, "headers": map[string]any{"X-A": map[string]any{"value": "v", "prefix": "p"}}},
			wantErr: []string{"headers[X-A].prefix: applies only to env or file; write it into value"}},
		{name: "bad header name", opts: map[string]any{"url": u, "headers": map[string]any{"X A": "v"}},
			wantErr: []string{"headers[X A]: not a valid header name"}},
		{name: "equals missing", opts: map[string]any{"url": u, "expectJSON": []any{map[string]any{"path": "status"}}},
			wantErr: []string{"expectJSON[0].equals: required (use null to require a JSON null)"}},
		{name: "equals not scalar", opts: map[string]any{"url": u, "expectJSON": []any{cond("a", []any{1})}},
			wantErr: []string{"expectJSON[0].equals: must be a string, number, boolean or null, got [1]"}},
		{name: "empty path", opts: map[string]any{"url": u, "expectJSON": []any{cond("a", 1), cond("", 1)}},
			wantErr: []string{"expectJSON[1].path: must not be empty"}},
		{name: "empty path segment", opts: map[string]any{"url": u, "expectJSON": []any{cond("a..b", 1)}},
			wantErr: []string{`expectJSON[0].path: empty segment in "a..b"`}},
		{name: "every problem reported", opts: map[string]any{"url": "foo", "method": "X", "expectStatus": []any{1}},
			wantErr: []string{"url: ", "method: ", "expectStatus[0]: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newHTTP(Spec{Legacy: tt.legacy, Options: tt.opts})
			if err == nil {
				t.Fatalf("built %T, want an error", p)
			}
			assertFieldErrors(t, err, tt.wantErr)
		})
	}
}

// assertFieldErrors checks that err joins exactly len(want) FieldErrors, each starting with (or, for
// short fragments, containing) its want.
func assertFieldErrors(t *testing.T, err error, want []string) {
	t.Helper()
	leaves := config.Flatten(err)
	if len(leaves) != len(want) {
		t.Fatalf("got %d errors %q, want %d", len(leaves), err, len(want))
	}
	for i, e := range leaves {
		var fe *config.FieldError
		if !errors.As(e, &fe) {
			t.Errorf("error %d %q is a %T, want a *config.FieldError", i, e, e)
		}
		if !strings.HasPrefix(e.Error(), want[i]) && !strings.Contains(e.Error(), want[i]) {
			t.Errorf("error %d = %q, want %q", i, e, want[i])
		}
	}
}

func TestHTTPThroughRegistry(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok"})
	})
	p := &config.Probe{Name: "app", Kind: "http", Legacy: true, Options: map[string]any{
		"url": srv.URL, "headers": map[string]any{"X-Token": map[string]any{"env": "HA_TEST_UNSET_TOKEN"}},
	}}
	local, warnings, err := Kinds.CheckProbe(p)
	if err != nil || local || len(warnings) != 1 || !strings.Contains(warnings[0], "HA_TEST_UNSET_TOKEN") {
		t.Fatalf("CheckProbe = %v, %q, %v; want remote, one warning naming the variable", local, warnings, err)
	}
	delete(p.Options, "headers")
	pr, err := Kinds.Build(p, Env{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := checkOnce(t, pr)
	if err != nil || string(res.Body) != "{\"status\":\"ok\"}\n" {
		t.Fatalf("got %q, %v", res.Body, err)
	}
}
