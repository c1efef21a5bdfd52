package probes

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/health-agent/health-agent/pkg/config"
)

// Failures a retry cannot change are marked permanent (errors.Is(err, ErrPermanent)), so the retry
// policy spends one request on them; every other failure stays retryable.

func TestHTTPPermanentStatuses(t *testing.T) {
	for _, tc := range []struct {
		code      int
		permanent bool
	}{
		{400, true}, {401, true}, {403, true}, {404, true}, {405, true}, {410, true}, {422, true},
		{408, false}, {409, false}, {429, false}, {500, false}, {502, false}, {503, false}, {504, false},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tc.code) })
			_, err := checkOnce(t, buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL}}))
			if err == nil {
				t.Fatal("status accepted")
			}
			if got := errors.Is(err, ErrPermanent); got != tc.permanent {
				t.Errorf("%v: permanent = %v, want %v", err, got, tc.permanent)
			}
		})
	}
	t.Run("an expected 404 is no failure", func(t *testing.T) {
		srv := serve(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) })
		if _, err := checkOnce(t, buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL, "expectStatus": []any{404}}})); err != nil {
			t.Fatal(err)
		}
	})
}

func TestHTTPPermanentSecretAndTLS(t *testing.T) {
	t.Run("secret absent", func(t *testing.T) {
		srv := serve(t, func(http.ResponseWriter, *http.Request) {})
		p := buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL, "headers": map[string]any{"X-Key": map[string]any{"env": "NOPE"}}}, Env: Env{LookupEnv: envMap(nil)}})
		_, err := checkOnce(t, p)
		if !errors.Is(err, config.ErrSecretAbsent) || !errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want a permanent ErrSecretAbsent", err)
		}
	})
	t.Run("certificate from an unknown authority", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		t.Cleanup(srv.Close)
		_, err := checkOnce(t, buildHTTP(t, Spec{Options: map[string]any{"url": srv.URL}}))
		if !errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want permanent", err)
		}
	})
	t.Run("connection refused stays retryable", func(t *testing.T) {
		_, err := checkOnce(t, buildHTTP(t, Spec{Options: map[string]any{"url": cdpDeadURL(t)}}))
		if err == nil || errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want a retryable failure", err)
		}
	})
}

func TestMCPPermanent(t *testing.T) {
	t.Run("required tool missing", func(t *testing.T) {
		ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a"}})
		_, err := mcpCheck(t, mcpNewProbe(t, map[string]any{"url": ts.url, "requiredTools": []any{"b"}}, nil), 30*time.Second)
		if !errors.Is(err, ErrMCPToolsMissing) || !errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want a permanent ErrMCPToolsMissing", err)
		}
		ts.waitNoSessions(t)
	})
	t.Run("too few tools stays retryable", func(t *testing.T) {
		ts := mcpStartServer(t, mcpServerConfig{tools: []string{"a"}})
		_, err := mcpCheck(t, mcpNewProbe(t, map[string]any{"url": ts.url, "minTools": 2}, nil), 30*time.Second)
		if err == nil || errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want a retryable failure", err)
		}
		ts.waitNoSessions(t)
	})
	t.Run("secret absent", func(t *testing.T) {
		p := mcpNewProbe(t, map[string]any{"url": "http://127.0.0.1:1/mcp", "headers": map[string]any{"Authorization": map[string]any{"env": "NOPE"}}}, nil)
		_, err := mcpCheck(t, p, 30*time.Second)
		if !errors.Is(err, config.ErrSecretAbsent) || !errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want a permanent ErrSecretAbsent", err)
		}
	})
	t.Run("certificate from an unknown authority", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		t.Cleanup(srv.Close)
		_, err := mcpCheck(t, mcpNewProbe(t, map[string]any{"url": srv.URL + "/mcp"}, nil), 30*time.Second)
		if !errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want permanent", err)
		}
	})
}

func TestFigmaPermanent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mode      string
		token     string
		permanent bool
	}{
		{name: "403 invalid token", token: figmaRevokedToken, permanent: true},
		{name: "401", mode: "401", token: figmaTestToken, permanent: true},
		{name: "500", mode: "500", token: figmaTestToken, permanent: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, url := figmaStart(t, figmaTestToken)
			f.set(tc.mode)
			_, err := checkOnce(t, figmaNewProbe(t, map[string]any{"url": url}, map[string]string{"FIGMA_TOKEN": tc.token}))
			if err == nil {
				t.Fatal("check passed")
			}
			if got := errors.Is(err, ErrPermanent); got != tc.permanent {
				t.Errorf("%s: permanent = %v, want %v", figmaSafe(err), got, tc.permanent)
			}
		})
	}
	t.Run("token absent", func(t *testing.T) {
		_, url := figmaStart(t, figmaTestToken)
		_, err := checkOnce(t, figmaNewProbe(t, map[string]any{"url": url}, nil))
		if !errors.Is(err, config.ErrSecretAbsent) || !errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want a permanent ErrSecretAbsent", figmaSafe(err))
		}
	})
	t.Run("certificate from an unknown authority", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		t.Cleanup(srv.Close)
		_, err := checkOnce(t, figmaNewProbe(t, map[string]any{"url": srv.URL}, map[string]string{"FIGMA_TOKEN": figmaTestToken}))
		if !errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want permanent", figmaSafe(err))
		}
	})
}

func TestCDPPermanent(t *testing.T) {
	browserless := func(t *testing.T, urls string, env map[string]string) Probe {
		t.Helper()
		p, err := newCDP(Spec{Name: "browserPool", Timeout: 2 * time.Second, Env: Env{LookupEnv: envMap(env)},
			Options: map[string]any{"urls": urls, "mode": "browserless", "token": map[string]any{"env": "BROWSERLESS_TOKEN"}}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("browserless 401 is a rejected token, reachable", func(t *testing.T) {
		url, _ := browserlessWithToken(t, "good-token-0123456789")
		res, err := cdpCheckWithin(t, browserless(t, url, map[string]string{"BROWSERLESS_TOKEN": "stale-token-0123456789"}), 20*time.Second)
		if !errors.Is(err, ErrPermanent) || res.Status != Unhealthy {
			t.Fatalf("got %s, %v; want unhealthy and permanent", res.Status, err)
		}
		pools, _ := res.Fields["browsers"].([]cdpPool)
		if len(pools) != 1 || !pools[0].Reachable || !pools[0].TokenRejected || pools[0].Available || !strings.Contains(pools[0].Error, "token rejected") {
			t.Fatalf("browsers = %+v, want one reachable endpoint that rejected the token", pools)
		}
	})
	t.Run("a rejected token and an unreachable endpoint stay retryable", func(t *testing.T) {
		url, _ := browserlessWithToken(t, "good-token-0123456789")
		_, err := cdpCheckWithin(t, browserless(t, url+","+cdpDeadURL(t), map[string]string{"BROWSERLESS_TOKEN": "stale-token-0123456789"}), 20*time.Second)
		if err == nil || errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want a retryable failure", err)
		}
	})
	t.Run("token absent", func(t *testing.T) {
		url, _ := browserlessWithToken(t, "good-token-0123456789")
		_, err := cdpCheckWithin(t, browserless(t, url, nil), 20*time.Second)
		if !errors.Is(err, config.ErrSecretAbsent) || !errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v, want a permanent ErrSecretAbsent", err)
		}
	})
	t.Run("certificate from an unknown authority", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		t.Cleanup(srv.Close)
		res, err := cdpCheckWithin(t, newTestCDP(t, map[string]any{"urls": srv.URL}), 20*time.Second)
		if !errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v (%v), want permanent", err, res.Fields["browsers"])
		}
	})
}
