package probes

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// echoToken is a header secret a careless dependency sends back.
const echoToken = "0123456789abcdef0123456789abcdef"

// noPieceOf fails when s holds any 10-byte piece of secret: a clipped message must not keep part of it.
func noPieceOf(t *testing.T, what, s, secret string) {
	t.Helper()
	for i := 0; i+10 <= len(secret); i++ {
		if strings.Contains(s, secret[i:i+10]) {
			t.Errorf("%s holds a piece of the secret", what)
			return
		}
	}
}

// TestHTTPEchoedSecretsAreRedacted: a dependency that echoes the secret headers it was sent, in the
// JSON a condition reads or in the app's legacy body, does not get them into the reason, the legacy
// body or legacyError.
func TestHTTPEchoedSecretsAreRedacted(t *testing.T) {
	tests := []struct {
		name       string
		body       func(auth string) string
		wantReason string // in the error
		wantBody   string // in the kept legacy body; empty: the body is withheld
	}{
		{"echoed in a string",
			func(auth string) string { return fmt.Sprintf(`{"status":%q}`, auth) },
			`json status = "[redacted]", want "ok"`, `{"status":"[redacted]"}`},
		{"raw token without its prefix",
			func(auth string) string { return fmt.Sprintf(`{"status":%q}`, strings.TrimPrefix(auth, "Bearer ")) },
			`json status = "[redacted]"`, `{"status":"[redacted]"}`},
		{"straddling the 64-byte clip of a message",
			func(auth string) string { return fmt.Sprintf(`{"status":%q}`, strings.Repeat("x", 50)+auth) },
			`json status = "xxxxxxxxxx`, `{"status":"` + strings.Repeat("x", 50) + `[redacted]"}`},
		{"written with JSON escapes",
			func(auth string) string { return `{"status":"\u0030` + strings.TrimPrefix(auth, "Bearer 0") + `"}` },
			`json status = "[redacted]"`, ""},
		{"in a key",
			func(auth string) string { return fmt.Sprintf(`{%q:1,"status":"ok"}`, auth) },
			"", `{"[redacted]":1,"status":"ok"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, tt.body(r.Header.Get("Authorization")))
			})
			p := buildHTTP(t, Spec{Name: "app", Legacy: true, Env: Env{LookupEnv: envMap(map[string]string{"TOKEN": echoToken})},
				Options: map[string]any{
					"url":        srv.URL,
					"headers":    map[string]any{"Authorization": map[string]any{"env": "TOKEN", "prefix": "Bearer "}},
					"expectJSON": []any{map[string]any{"path": "status", "equals": "ok"}},
				}})
			res, err := checkOnce(t, p)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("check failed: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantReason) {
				t.Fatalf("error %v, want it to contain %q", err, tt.wantReason)
			}
			fields, _ := json.Marshal(res.Fields)
			if err != nil {
				noPieceOf(t, "the error", err.Error(), echoToken)
			}
			noPieceOf(t, "the fields", string(fields), echoToken)
			noPieceOf(t, "the legacy body", string(res.Body), echoToken)
			switch {
			case tt.wantBody != "" && string(res.Body) != tt.wantBody:
				t.Errorf("legacy body %s, want %s", res.Body, tt.wantBody)
			case tt.wantBody == "" && (res.Body != nil || !strings.Contains(fmt.Sprint(res.Fields["legacyError"]), "withheld")):
				t.Errorf("legacy body %s, legacyError %v: want the body withheld", res.Body, res.Fields["legacyError"])
			}
		})
	}
}

// TestHTTPLiteralHeadersAreNotRedacted: only secrets (env or file) are redacted, not literal values.
func TestHTTPLiteralHeadersAreNotRedacted(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"status":%q}`, r.Header.Get("X-Tenant"))
	})
	p := buildHTTP(t, Spec{Name: "app", Options: map[string]any{
		"url":        srv.URL,
		"headers":    map[string]any{"X-Tenant": map[string]any{"value": "acme"}},
		"expectJSON": []any{map[string]any{"path": "status", "equals": "ok"}},
	}})
	if _, err := checkOnce(t, p); err == nil || !strings.Contains(err.Error(), `json status = "acme"`) {
		t.Fatalf("error %v, want the literal value shown", err)
	}
}

// TestFigmaClippedDetailKeepsNoPieceOfTheToken: Figma's error text is clipped at 200 bytes; a token
// across the cut is redacted before the clip.
func TestFigmaClippedDetailKeepsNoPieceOfTheToken(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"status":403,"err":"%s%s"}`, strings.Repeat("x", 188), r.Header.Get("X-Figma-Token"))
	})
	p := figmaNewProbe(t, map[string]any{"url": srv.URL}, map[string]string{"FIGMA_TOKEN": echoToken})
	_, err := checkOnce(t, p)
	if err == nil || !strings.Contains(err.Error(), "token rejected") {
		t.Fatalf("error %v, want token rejected", err)
	}
	noPieceOf(t, "the error", err.Error(), echoToken)
}

// TestHTTPShortEnvValuesDoNotGarbleTheLegacyBody: a header from env that is a short word is not hunted
// for in the legacy body (it would garble every occurrence), but still kept out of messages.
func TestHTTPShortEnvValuesDoNotGarbleTheLegacyBody(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"ok","tenant":"acme","count":1}`)
	})
	p := buildHTTP(t, Spec{Name: "app", Legacy: true, Env: Env{LookupEnv: envMap(map[string]string{"TENANT": "acme"})},
		Options: map[string]any{
			"url":        srv.URL,
			"headers":    map[string]any{"X-Tenant": map[string]any{"env": "TENANT"}},
			"expectJSON": []any{map[string]any{"path": "tenant", "equals": "other"}},
		}})
	res, err := checkOnce(t, p)
	if string(res.Body) != `{"status":"ok","tenant":"acme","count":1}` {
		t.Errorf("legacy body %s, want it as the app sent it", res.Body)
	}
	if err == nil || !strings.Contains(err.Error(), `json tenant = "[redacted]"`) {
		t.Errorf("error %v, want the value redacted from the message", err)
	}
}

func TestShownURL(t *testing.T) {
	for _, tt := range []struct{ raw, want string }{
		{"http://127.0.0.1:3007/api/health", "http://127.0.0.1:3007/api/health"},
		{"https://user:s3cret@api.example/x", "https://user:xxxxx@api.example/x"},
		{"https://api.example/x?api_key=s3cret&verbose&a=", "https://api.example/x?api_key=[redacted]&verbose&a="},
		{"https://api.example/x?k=v#frag-s3cret", "https://api.example/x?k=[redacted]"},
		{"http://user:s3cret@host:port/x?k=s3cret", "http://[redacted]@host:port/x?[redacted]"}, // does not parse
		{"http://host:port/x#s3cret", "http://host:port/x?[redacted]"},                          // does not parse
	} {
		if got := shownURL(tt.raw); got != tt.want {
			t.Errorf("shownURL(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

// TestHTTPURLSecretsHidden: a password or an API key written into a probe's URL (from a ${VAR}) does
// not reach the error of a failed connection, legacyError, or a config error.
func TestHTTPURLSecretsHidden(t *testing.T) {
	const pass, key = "pass-0123456789", "key-0123456789"
	srv := serve(t, func(http.ResponseWriter, *http.Request) {})
	addr := srv.Listener.Addr().String()
	srv.Close() // nothing listens there now: the connection is refused

	p := buildHTTP(t, Spec{Name: "app", Legacy: true, Options: map[string]any{
		"url": "http://user:" + pass + "@" + addr + "/health?api_key=" + key + "&verbose",
	}})
	res, err := checkOnce(t, p)
	if err == nil {
		t.Fatal("check against a closed port succeeded")
	}
	fields, _ := json.Marshal(res.Fields)
	for _, s := range []string{err.Error(), string(fields)} {
		if strings.Contains(s, pass) || strings.Contains(s, key) {
			t.Fatalf("a URL secret shows: %s", strings.NewReplacer(pass, "[PASS]", key, "[KEY]").Replace(s))
		}
	}
	if want := "/health?api_key=[redacted]&verbose"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not show the URL as %q", err, want)
	}

	_, err = newHTTP(Spec{Name: "app", Options: map[string]any{"url": "http://user:" + pass + "@" + addr + ":x/?k=" + key}})
	if err == nil {
		t.Fatal("an unparseable URL was accepted")
	}
	if strings.Contains(err.Error(), pass) || strings.Contains(err.Error(), key) {
		t.Errorf("the config error shows a URL secret: %s", strings.NewReplacer(pass, "[PASS]", key, "[KEY]").Replace(err.Error()))
	}
}
