package probes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
)

const (
	figmaTestToken    = "figd_TEST-token-value-0123456789"
	figmaRevokedToken = "figd_revoked-token-000"
	figmaFileToken1   = "figd_FILE-token-one-aaaa"
	figmaFileToken2   = "figd_FILE-token-two-bbbb"
)

// figmaSafe is how tests print an error: test tokens masked, so even a failing run shows none.
func figmaSafe(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	for _, tok := range []string{figmaTestToken, figmaRevokedToken, figmaFileToken1, figmaFileToken2} {
		s = strings.ReplaceAll(s, tok, "[TOKEN]")
	}
	return s
}

// figmaFake plays Figma's GET /v1/me as documented: the token in X-Figma-Token (personal access token)
// or "Authorization: Bearer" (OAuth); 403 {"status":403,"err":"Invalid token"} for a token it does not
// know; 429 with Retry-After and X-Figma-Rate-Limit-Type when rate limited.
type figmaFake struct {
	release chan struct{}

	mu        sync.Mutex
	mode      string // "" answers normally; see ServeHTTP for the others
	valid     map[string]bool
	gotTokens []string // what the server received, compared by tests, never printed
	gotStyles []string // "personal" or "oauth"
	hits      int
}

func (f *figmaFake) set(mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode = mode
}

func (f *figmaFake) last() (token, style string, hits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.gotTokens) == 0 {
		return "", "", f.hits
	}
	return f.gotTokens[len(f.gotTokens)-1], f.gotStyles[len(f.gotStyles)-1], f.hits
}

func (f *figmaFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/v1/me" {
		http.NotFound(w, r)
		return
	}
	token, style := r.Header.Get("X-Figma-Token"), "personal"
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		token, style = b, "oauth"
	}
	f.mu.Lock()
	mode, valid := f.mode, f.valid[token]
	f.gotTokens = append(f.gotTokens, token)
	f.gotStyles = append(f.gotStyles, style)
	f.hits++
	f.mu.Unlock()

	writeJSON := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch mode {
	case "slow":
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
		return
	case "401":
		writeJSON(http.StatusUnauthorized, map[string]any{"status": 401, "err": "Unauthorized"})
		return
	case "403 echo": // a careless proxy that repeats the token it was given
		writeJSON(http.StatusForbidden, map[string]any{"status": 403, "err": "Invalid token " + token})
		return
	case "429":
		w.Header().Set("Retry-After", "30")
		w.Header().Set("X-Figma-Rate-Limit-Type", "low")
		w.Header().Set("X-Figma-Plan-Tier", "starter")
		writeJSON(http.StatusTooManyRequests, map[string]any{"status": 429, "err": "Rate limit exceeded"})
		return
	case "429 echo": // a proxy that puts the token it was given in the rate-limit headers
		w.Header().Set("X-Figma-Rate-Limit-Type", token)
		w.Header().Set("X-Figma-Plan-Tier", token)
		w.WriteHeader(http.StatusTooManyRequests)
		return
	case "429 bare":
		w.WriteHeader(http.StatusTooManyRequests)
		return
	case "429 huge":
		w.Header().Set("Retry-After", "604800")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	case "500":
		http.Error(w, "internal", http.StatusInternalServerError)
		return
	case "503":
		http.Error(w, "<html>maintenance</html>", http.StatusServiceUnavailable)
		return
	case "html":
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Sign in to the Wi-Fi</body></html>")
		return
	case "no handle":
		writeJSON(http.StatusOK, map[string]any{"status": "ok"})
		return
	case "handle echo": // a proxy that puts the token it was given in the answer
		writeJSON(http.StatusOK, map[string]any{"handle": "bot " + token})
		return
	case "long handle":
		writeJSON(http.StatusOK, map[string]any{"handle": strings.Repeat("é", 300)})
		return
	case "huge":
		writeJSON(http.StatusOK, map[string]any{"handle": "x", "pad": strings.Repeat("a", 70<<10)})
		return
	case "redirect":
		http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound)
		return
	}
	if !valid {
		writeJSON(http.StatusForbidden, map[string]any{"status": 403, "err": "Invalid token"})
		return
	}
	writeJSON(http.StatusOK, map[string]any{
		"id": "1234567890", "handle": "Design Bot", "img_url": "https://s3-alpha.figma.com/profile/x",
		"email": "bot@example.com",
	})
}

func figmaStart(t *testing.T, valid ...string) (*figmaFake, string) {
	t.Helper()
	f := &figmaFake{release: make(chan struct{}), valid: map[string]bool{}}
	for _, v := range valid {
		f.valid[v] = true
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(f.release) })
	return f, srv.URL
}

func figmaNewProbe(t *testing.T, opts map[string]any, env map[string]string) *figmaProbe {
	t.Helper()
	p, err := Kinds["figma"].New(Spec{Name: "figmaApi", Options: opts, Env: Env{LookupEnv: mcpLookup(env)}})
	if err != nil {
		t.Fatalf("newFigma: %v", err)
	}
	return p.(*figmaProbe)
}

// figmaNoSecret fails the test when the token shows in the error, the result or its reason.
func figmaNoSecret(t *testing.T, res Result, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if err != nil && strings.Contains(err.Error(), s) {
			t.Error("the token appears in the error")
		}
		if strings.Contains(fmt.Sprintf("%+v %#v", res, res), s) {
			t.Error("the token appears in the result")
		}
	}
}

func TestFigmaScenarios(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mode       string
		token      string
		wantErr    string
		wantIs     error
		wantStatus Status
		wantFields map[string]any
		wantRetry  time.Duration
	}{
		{name: "healthy", token: figmaTestToken, wantStatus: Healthy,
			wantFields: map[string]any{"handle": "Design Bot", "rateLimited": false, "retryAfterSeconds": 0, "tokenSource": "env FIGMA_TOKEN"}},
		{name: "invalid token", token: figmaRevokedToken, wantErr: "token rejected (HTTP 403): check the token from env FIGMA_TOKEN: Invalid token",
			wantIs: ErrFigmaTokenRejected, wantFields: map[string]any{"rateLimited": false}},
		{name: "401", mode: "401", token: figmaTestToken, wantErr: "token rejected (HTTP 401)", wantIs: ErrFigmaTokenRejected},
		{name: "403 echoing the token", mode: "403 echo", token: figmaTestToken, wantErr: "Invalid token [redacted]", wantIs: ErrFigmaTokenRejected},
		{name: "rate limited", mode: "429", token: figmaTestToken, wantStatus: Degraded, wantRetry: 30 * time.Second,
			wantFields: map[string]any{"rateLimited": true, "retryAfterSeconds": 30, "rateLimitType": "low", "planTier": "starter"}},
		{name: "rate limit headers echoing the token", mode: "429 echo", token: figmaTestToken, wantStatus: Degraded, wantRetry: time.Minute,
			wantFields: map[string]any{"rateLimited": true, "rateLimitType": "[redacted]", "planTier": "[redacted]"}},
		{name: "rate limited without Retry-After", mode: "429 bare", token: figmaTestToken, wantStatus: Degraded, wantRetry: time.Minute,
			wantFields: map[string]any{"rateLimited": true, "retryAfterSeconds": 60, "rateLimitType": ""}},
		{name: "rate limited for a week", mode: "429 huge", token: figmaTestToken, wantStatus: Degraded, wantRetry: time.Hour,
			wantFields: map[string]any{"retryAfterSeconds": 3600}},
		{name: "500", mode: "500", token: figmaTestToken, wantErr: "status 500", wantFields: map[string]any{"rateLimited": false}},
		{name: "503", mode: "503", token: figmaTestToken, wantErr: "status 503"},
		{name: "html instead of json", mode: "html", token: figmaTestToken, wantErr: "malformed JSON"},
		{name: "json without handle", mode: "no handle", token: figmaTestToken, wantErr: "no user handle"},
		{name: "handle echoing the token", mode: "handle echo", token: figmaTestToken, wantStatus: Healthy,
			wantFields: map[string]any{"handle": "bot [redacted]"}},
		{name: "handle too long", mode: "long handle", token: figmaTestToken, wantStatus: Healthy,
			wantFields: map[string]any{"handle": strings.Repeat("é", 126) + "…"}},
		{name: "oversized answer", mode: "huge", token: figmaTestToken, wantErr: "larger than 64 KiB"},
		{name: "redirect not followed", mode: "redirect", token: figmaTestToken, wantErr: "unexpected status 302"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, url := figmaStart(t, figmaTestToken)
			f.set(tc.mode)
			p := figmaNewProbe(t, map[string]any{"url": url}, map[string]string{"FIGMA_TOKEN": tc.token})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			res, err := p.Check(ctx)
			figmaNoSecret(t, res, err, tc.token)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", figmaSafe(err), tc.wantErr)
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("error %q is not %v", figmaSafe(err), tc.wantIs)
				}
			} else {
				if err != nil {
					t.Fatalf("check: %v", figmaSafe(err))
				}
				if res.Status != tc.wantStatus {
					t.Errorf("status = %q, want %q", res.Status, tc.wantStatus)
				}
			}
			for k, v := range tc.wantFields {
				if res.Fields[k] != v {
					t.Errorf("fields[%s] = %#v, want %#v", k, res.Fields[k], v)
				}
			}
			if _, ok := res.Fields["email"]; ok {
				t.Error("the email reached the fields")
			}
			if strings.Contains(fmt.Sprint(res.Fields), "bot@example.com") {
				t.Error("the email appears in the result")
			}
			if res.RetryAfter != tc.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", res.RetryAfter, tc.wantRetry)
			}
			if tc.wantStatus == Degraded && !strings.Contains(res.Reason, "rate limited") {
				t.Errorf("reason = %q, want it to say rate limited", res.Reason)
			}
			if got, style, _ := f.last(); got != tc.token || style != "personal" {
				t.Errorf("the server did not get the token in X-Figma-Token (style %q)", style)
			}
		})
	}
}

func TestFigmaOAuth(t *testing.T) {
	f, url := figmaStart(t, figmaTestToken)
	p := figmaNewProbe(t, map[string]any{"url": url, "auth": "oauth"}, map[string]string{"FIGMA_TOKEN": figmaTestToken})
	res, err := p.Check(t.Context())
	figmaNoSecret(t, res, err, figmaTestToken)
	if err != nil {
		t.Fatalf("check: %v", figmaSafe(err))
	}
	if got, style, _ := f.last(); got != figmaTestToken || style != "oauth" {
		t.Errorf("the server did not get the token as a Bearer (style %q)", style)
	}
}

func TestFigmaSlow(t *testing.T) {
	f, url := figmaStart(t, figmaTestToken)
	f.set("slow")
	p := figmaNewProbe(t, map[string]any{"url": url}, map[string]string{"FIGMA_TOKEN": figmaTestToken})
	const timeout = time.Second
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	res, err := p.Check(ctx)
	figmaNoSecret(t, res, err, figmaTestToken)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want a deadline", figmaSafe(err))
	}
	if elapsed := time.Since(start); elapsed > timeout+10*time.Second {
		t.Errorf("check took %v after a %v deadline", elapsed, timeout)
	}
}

func TestFigmaTokenSources(t *testing.T) {
	f, url := figmaStart(t, figmaTestToken, figmaFileToken1, figmaFileToken2)
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts := map[string]any{"url": url, "token": map[string]any{"env": "FIGMA_TOKEN", "file": file}}
	check := func(env map[string]string) (Result, error) {
		t.Helper()
		p := figmaNewProbe(t, opts, env)
		res, err := p.Check(t.Context())
		figmaNoSecret(t, res, err, figmaTestToken, figmaFileToken1, figmaFileToken2)
		return res, err
	}

	t.Run("file not there yet", func(t *testing.T) {
		p := figmaNewProbe(t, opts, nil)
		w := p.Warnings()
		if len(w) != 1 || !strings.Contains(w[0], "FIGMA_TOKEN") || !strings.Contains(w[0], file) {
			t.Errorf("warnings = %q, want one naming FIGMA_TOKEN and %s", w, file)
		}
		_, err := p.Check(t.Context())
		if !errors.Is(err, config.ErrSecretAbsent) || !strings.Contains(err.Error(), "FIGMA_TOKEN") || !strings.Contains(err.Error(), file) {
			t.Errorf("error = %v, want an absent secret naming FIGMA_TOKEN and the file", figmaSafe(err))
		}
		if _, _, hits := f.last(); hits != 0 {
			t.Errorf("the probe called Figma without a token")
		}
	})
	t.Run("file, rotated between checks", func(t *testing.T) {
		p := figmaNewProbe(t, opts, map[string]string{"FIGMA_TOKEN": ""}) // empty counts as unset
		for _, tok := range []string{figmaFileToken1, figmaFileToken2} {
			write("  " + tok + "\n") // as a Secret's file often is: trailing newline
			res, err := p.Check(t.Context())
			figmaNoSecret(t, res, err, figmaFileToken1, figmaFileToken2)
			if err != nil {
				t.Fatalf("check: %v", figmaSafe(err))
			}
			if got, _, _ := f.last(); got != tok {
				t.Error("the server did not get the file's current token")
			}
			if res.Fields["tokenSource"] != "file "+file {
				t.Errorf("tokenSource = %v", res.Fields["tokenSource"])
			}
		}
		if w := p.Warnings(); len(w) != 0 {
			t.Errorf("warnings with the file present: %q", w)
		}
	})
	t.Run("env wins over the file", func(t *testing.T) {
		write(figmaFileToken1)
		if _, err := check(map[string]string{"FIGMA_TOKEN": figmaTestToken}); err != nil {
			t.Fatalf("check: %v", figmaSafe(err))
		}
		if got, _, _ := f.last(); got != figmaTestToken {
			t.Error("the server did not get the env token")
		}
	})
	t.Run("empty file", func(t *testing.T) {
		write("\n")
		_, err := check(nil)
		if !errors.Is(err, config.ErrSecretAbsent) || !strings.Contains(err.Error(), "empty") {
			t.Errorf("error = %v, want an absent secret saying the file is empty", figmaSafe(err))
		}
	})
	t.Run("control characters", func(t *testing.T) {
		write("figd_abc\r\ndef")
		_, err := check(nil)
		if err == nil || !strings.Contains(err.Error(), "control characters") || strings.Contains(err.Error(), "figd_abc") {
			t.Errorf("error = %v, want a control-character error without the value", figmaSafe(err))
		}
	})
	t.Run("no file configured", func(t *testing.T) {
		p := figmaNewProbe(t, map[string]any{"url": url, "token": map[string]any{"env": "MY_FIGMA"}}, nil)
		_, err := p.Check(t.Context())
		if !errors.Is(err, config.ErrSecretAbsent) || !strings.Contains(err.Error(), "MY_FIGMA") {
			t.Errorf("error = %v, want an absent secret naming MY_FIGMA", figmaSafe(err))
		}
	})
	t.Run("file only", func(t *testing.T) {
		write(figmaFileToken2)
		p := figmaNewProbe(t, map[string]any{"url": url, "token": map[string]any{"file": file}}, map[string]string{"FIGMA_TOKEN": figmaTestToken})
		res, err := p.Check(t.Context())
		figmaNoSecret(t, res, err, figmaTestToken, figmaFileToken2)
		if err != nil {
			t.Fatalf("check: %v", figmaSafe(err))
		}
		if got, _, _ := f.last(); got != figmaFileToken2 {
			t.Error("the server did not get the file's token (FIGMA_TOKEN is not configured here)")
		}
	})
	t.Run("blank variable falls back to the file", func(t *testing.T) {
		write(figmaFileToken1)
		if _, err := check(map[string]string{"FIGMA_TOKEN": " \n"}); err != nil {
			t.Fatalf("check: %v", figmaSafe(err))
		}
		if got, _, _ := f.last(); got != figmaFileToken1 {
			t.Error("the server did not get the file's token")
		}
	})
	t.Run("the token file is a FIFO", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "token")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		p := figmaNewProbe(t, map[string]any{"url": url, "token": map[string]any{"file": fifo}}, nil)
		err := testkit.Returns(t, 5*time.Second, func() error { _, err := p.Check(t.Context()); return err })
		if err == nil || errors.Is(err, config.ErrSecretAbsent) || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "named pipe") {
			t.Errorf("error = %v, want a prompt error naming %s as a named pipe", figmaSafe(err), fifo)
		}
	})
	t.Run("the token file is too large", func(t *testing.T) {
		big := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(big, make([]byte, config.MaxSecretBytes+1), 0o600); err != nil {
			t.Fatal(err)
		}
		p := figmaNewProbe(t, map[string]any{"url": url, "token": map[string]any{"file": big}}, nil)
		_, err := p.Check(t.Context())
		if !errors.Is(err, config.ErrTooLarge) || !strings.Contains(err.Error(), big) {
			t.Errorf("error = %v, want a too-large error naming %s", figmaSafe(err), big)
		}
	})
}

// The deprecated tokenEnv/tokenFile keep working, with a warning naming the token form that replaces them.
func TestFigmaDeprecatedTokenOptions(t *testing.T) {
	f, url := figmaStart(t, figmaTestToken, figmaFileToken1)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(figmaFileToken1+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		opts      map[string]any
		env       map[string]string
		wantToken string
		warning   string
	}{
		{"tokenEnv", map[string]any{"tokenEnv": "MY_FIGMA"}, map[string]string{"MY_FIGMA": figmaTestToken}, figmaTestToken,
			"tokenEnv: tokenEnv and tokenFile are deprecated; write token: {env: MY_FIGMA} instead"},
		{"tokenFile alone still reads FIGMA_TOKEN first", map[string]any{"tokenFile": file}, map[string]string{"FIGMA_TOKEN": figmaTestToken}, figmaTestToken,
			"tokenFile: tokenEnv and tokenFile are deprecated; write token: {env: FIGMA_TOKEN, file: " + file + "} instead"},
		{"both, the variable unset", map[string]any{"tokenEnv": "FIGMA_TOKEN", "tokenFile": file}, nil, figmaFileToken1,
			"tokenEnv: tokenEnv and tokenFile are deprecated; write token: {env: FIGMA_TOKEN, file: " + file + "} instead"},
		{"tokenFile empty (FIGMA_TOKEN_FILE unset)", map[string]any{"tokenEnv": "FIGMA_TOKEN", "tokenFile": ""}, map[string]string{"FIGMA_TOKEN": figmaTestToken}, figmaTestToken,
			"tokenEnv: tokenEnv and tokenFile are deprecated; write token: {env: FIGMA_TOKEN} instead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := map[string]any{"url": url}
			for k, v := range tc.opts {
				opts[k] = v
			}
			p := figmaNewProbe(t, opts, tc.env)
			if w := p.Warnings(); len(w) != 1 || w[0] != tc.warning {
				t.Errorf("warnings = %q, want [%q]", w, tc.warning)
			}
			res, err := p.Check(t.Context())
			figmaNoSecret(t, res, err, figmaTestToken, figmaFileToken1)
			if err != nil {
				t.Fatalf("check: %v", figmaSafe(err))
			}
			if got, _, _ := f.last(); got != tc.wantToken {
				t.Error("the server did not get the expected token")
			}
		})
	}
	t.Run("through validation: the warning names the option path", func(t *testing.T) {
		p := &config.Probe{Name: "figmaApi", Kind: "figma", Options: map[string]any{"url": url, "tokenEnv": "FIGMA_TOKEN"}}
		_, warnings, err := Kinds.CheckProbe(p)
		if err != nil || len(warnings) == 0 || !strings.HasPrefix(warnings[0], "tokenEnv: ") || !strings.Contains(warnings[0], "token: {env: FIGMA_TOKEN}") {
			t.Errorf("CheckProbe = %q, %v; want a deprecation warning at tokenEnv", warnings, err)
		}
	})
}

func TestFigmaConfig(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		p := figmaNewProbe(t, nil, nil)
		if p.endpoint != "https://api.figma.com/v1/me" || p.oauth || p.tokenRef != (config.Value{Env: "FIGMA_TOKEN"}) || p.deprecated != "" {
			t.Errorf("defaults: endpoint %q oauth %v token %+v deprecated %q", p.endpoint, p.oauth, p.tokenRef, p.deprecated)
		}
	})
	t.Run("the default config's options", func(t *testing.T) {
		// As viper hands them over from configs/agent.yaml: lower-cased keys, FIGMA_TOKEN_FILE unset.
		p := figmaNewProbe(t, map[string]any{"url": "https://api.figma.com/", "token": map[string]any{"env": "FIGMA_TOKEN", "file": ""}}, nil)
		if p.endpoint != "https://api.figma.com/v1/me" || p.tokenRef != (config.Value{Env: "FIGMA_TOKEN"}) || p.deprecated != "" {
			t.Errorf("endpoint = %q, token %+v, deprecated %q", p.endpoint, p.tokenRef, p.deprecated)
		}
	})
	t.Run("a null token means not set", func(t *testing.T) {
		p := figmaNewProbe(t, map[string]any{"token": nil}, nil)
		if p.tokenRef != (config.Value{Env: "FIGMA_TOKEN"}) {
			t.Errorf("token %+v, want the default", p.tokenRef)
		}
	})
	t.Run("plain http to a remote host warns", func(t *testing.T) {
		p := figmaNewProbe(t, map[string]any{"url": "http://figma-proxy.internal"}, map[string]string{"FIGMA_TOKEN": "x"})
		if w := p.Warnings(); len(w) != 1 || !strings.Contains(w[0], "unencrypted") {
			t.Errorf("warnings = %q", w)
		}
	})
	for _, tc := range []struct {
		name string
		opts map[string]any
		want []string
	}{
		{"relative url", map[string]any{"url": "api.figma.com"}, []string{"url: must be an absolute http or https URL"}},
		{"empty url", map[string]any{"url": ""}, []string{"url: must not be empty"}},
		{"url with query", map[string]any{"url": "https://api.figma.com?x=1"}, []string{"url: must be a base URL"}},
		{"credentials in url", map[string]any{"url": "https://u:p@api.figma.com"}, []string{"url: must not carry credentials"}},
		{"bad auth", map[string]any{"auth": "basic"}, []string{`auth: must be personal (X-Figma-Token) or oauth (Authorization: Bearer), got "basic"`}},
		{"no token source", map[string]any{"tokenEnv": "", "tokenFile": ""}, []string{"tokenEnv: set tokenEnv or tokenFile"}},
		{"the token itself", map[string]any{"token": "figd_x"}, []string{"token: must come from env or file, never written in the config"}},
		{"a token with no source", map[string]any{"token": map[string]any{"prefix": "x"}}, []string{"token: set env"}},
		{"an empty token", map[string]any{"token": map[string]any{}}, []string{"token: set env"}},
		{"a token prefix", map[string]any{"token": map[string]any{"env": "T", "prefix": "Bearer "}}, []string{"token.prefix: not used by the figma kind"}},
		{"token and tokenEnv", map[string]any{"token": map[string]any{"env": "T"}, "tokenEnv": "T"}, []string{"token: set token or the deprecated tokenEnv/tokenFile, not both"}},
		{"every problem at once", map[string]any{"url": "ftp://x", "auth": "x", "tokenEnv": ""}, []string{"url:", "auth:", "tokenEnv:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Kinds["figma"].New(Spec{Name: "figmaApi", Options: tc.opts})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", figmaSafe(err), w)
				}
			}
		})
	}
}

func TestFigmaRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   string
		want time.Duration
	}{
		{"seconds", "30", 30 * time.Second},
		{"spaces", " 45 ", 45 * time.Second},
		{"zero", "0", time.Second},
		{"missing", "", time.Minute},
		{"negative", "-5", time.Minute},
		{"garbage", "soon", time.Minute},
		{"huge", "99999999999999999999", time.Minute}, // does not parse as int64: unusable
		{"capped", "86400", time.Hour},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"http date in the past", now.Add(-time.Hour).Format(http.TimeFormat), time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := figmaRetryAfter(tc.in, now); got != tc.want {
				t.Errorf("figmaRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzFigmaRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "30", "-1", "86400", "Wed, 21 Oct 2015 07:28:00 GMT", "1e3", "+5"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d := figmaRetryAfter(s, now); d < time.Second || d > time.Hour {
			t.Errorf("figmaRetryAfter(%q) = %v, outside [1s, 1h]", s, d)
		}
	})
}
