package probes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// httpFuzzToken is the header secret the fuzzed dependency may echo ($SECRET in its body).
const httpFuzzToken = "c4e8a1f6b3d9e2a7f0c5b8d1e4a9f2c6"

// httpFuzzMaxBody is the probe's maxBodyBytes in the fuzz target: small, so the bound is exercised.
const httpFuzzMaxBody = 512

// FuzzHTTPBody serves arbitrary status codes and bodies to a legacy http probe with a JSON condition
// and a secret header. A pass needs a 2xx JSON body within maxBodyBytes whose status is "ok"; a body
// over the bound fails with ErrBodyTooLarge and is not kept; a kept legacy body is valid JSON; and the
// secret, which the dependency may echo, appears in no error, field or kept body.
func FuzzHTTPBody(f *testing.F) {
	for _, s := range []struct {
		code uint16
		body string
	}{
		{200, `{"status":"ok"}`},
		{200, `{"status":"ok","memory":{"heapUsed":"21MB"},"uptime":12}`},
		{200, ` {"status" : "ok"} `},
		{200, `{"status":"ok"}{"status":"ok"}`},
		{200, `{"status":"ok","status":"down"}`},
		{200, `{"status":"$SECRET"}`},
		{200, `{"status":"Bearer $SECRET"}`},
		{200, `{"status":"` + strings.Repeat("x", 50) + `$SECRET"}`},
		{200, `{"$SECRET":"ok","status":"ok"}`},
		{200, `{"status":"\u006fk"}`},
		{503, `{"status":"error","auth":"$SECRET"}`},
		{204, ``},
		{200, `{"status":"` + strings.Repeat("a", httpFuzzMaxBody) + `"}`},
		{200, `not json`},
		{200, `{"status":1e400}`},
		{200, `[{"status":"ok"}]`},
		{301, `{"status":"ok"}`},
		{429, `{}`},
	} {
		f.Add(s.code, []byte(s.body))
	}
	var mu sync.Mutex
	var code int
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		c, b := code, body
		mu.Unlock()
		b = bytes.ReplaceAll(b, []byte("$SECRET"), []byte(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
		w.Header().Set("Content-Type", "application/json")
		// The server closes first, so the closed connection waits out TIME_WAIT on the server's side and
		// a long fuzzing session does not run the probe out of loopback ports.
		w.Header().Set("Connection", "close")
		w.WriteHeader(c)
		_, _ = w.Write(b)
	}))
	f.Cleanup(srv.Close)
	p, err := newHTTP(Spec{Name: "app", Legacy: true, Env: Env{LookupEnv: envMap(map[string]string{"TOKEN": httpFuzzToken})},
		Options: map[string]any{
			"url":          srv.URL,
			"maxBodyBytes": httpFuzzMaxBody,
			"headers":      map[string]any{"Authorization": map[string]any{"env": "TOKEN", "prefix": "Bearer "}},
			"expectJSON":   []any{map[string]any{"path": "status", "equals": "ok"}},
		}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status uint16, b []byte) {
		c := 200 + int(status)%400 // 1xx are interim answers, not a verdict
		if c == http.StatusSwitchingProtocols || c >= 300 && c < 400 {
			c = 200 // a redirect without Location; 3xx with one would be followed
		}
		mu.Lock()
		code, body = c, b
		mu.Unlock()
		sent := len(bytes.ReplaceAll(b, []byte("$SECRET"), []byte(httpFuzzToken)))

		// A short deadline: a stuck check must fail here, not hang the fuzzing worker.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := p.Check(ctx)
		fields, jerr := json.Marshal(res.Fields)
		if jerr != nil {
			t.Fatalf("fields cannot be rendered: %v", jerr)
		}
		for what, s := range map[string]string{"fields": string(fields), "kept body": string(res.Body), "error": fmt.Sprint(err)} {
			if strings.Contains(s, httpFuzzToken) {
				t.Fatalf("the secret appears in the %s", what)
			}
		}
		if res.Body != nil && (!json.Valid(res.Body) || len(res.Body) > httpFuzzMaxBody) {
			t.Fatalf("kept a legacy body that is not JSON or over the bound: %q", res.Body)
		}
		if sent > httpFuzzMaxBody && c != http.StatusNoContent {
			if !errors.Is(err, ErrBodyTooLarge) || res.Body != nil {
				t.Fatalf("a %d-byte body: error %v, body kept %v", sent, err, res.Body != nil)
			}
			return
		}
		if err != nil {
			return
		}
		doc, derr := decodeJSONBody(bytes.ReplaceAll(b, []byte("$SECRET"), []byte(httpFuzzToken)))
		got, ok := jsonPath{"status"}.lookup(doc)
		if c > 299 || derr != nil || !ok || got != "ok" {
			t.Fatalf("passed a %d answer whose status is %v (decode error %v)", c, got, derr)
		}
	})
}
