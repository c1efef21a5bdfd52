package standin

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// FigmaMode is how the fake Figma API answers GET /v1/me.
type FigmaMode string

// Figma modes, named as in the demo's commands (`figma ok`, `figma 429`, `figma 403`).
const (
	FigmaOK            FigmaMode = "ok"  // 200 with the user, when the token matches (else 403)
	FigmaRateLimited   FigmaMode = "429" // 429 with Retry-After
	FigmaTokenRejected FigmaMode = "403" // 403 whatever the token, as for a revoked one
)

// The user the fake Figma API answers with. The agent reports the handle, never the email.
const (
	FigmaHandle = "Demo Designer"
	FigmaEmail  = "designer@example.com"
)

// Figma is a fake of the Figma REST API's GET /v1/me.
type Figma struct {
	*Server
	token      string
	retryAfter time.Duration
	mode       atomic.Value // FigmaMode
}

// NewFigma returns the fake Figma API. It accepts token in X-Figma-Token (or as an OAuth bearer token);
// in mode 429 it asks for retryAfter (whole seconds, at least 1).
func NewFigma(addr, token string, retryAfter time.Duration) *Figma {
	f := &Figma{token: token, retryAfter: max(retryAfter, time.Second)}
	f.mode.Store(FigmaOK)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/me", f.me)
	f.Server = newServer("figma", addr, mux, nil)
	return f
}

// Mode is the current answering mode.
func (f *Figma) Mode() FigmaMode { return f.mode.Load().(FigmaMode) }

// SetMode changes how the next requests are answered.
func (f *Figma) SetMode(m FigmaMode) error {
	switch m {
	case FigmaOK, FigmaRateLimited, FigmaTokenRejected:
		f.mode.Store(m)
		return nil
	}
	return fmt.Errorf("figma mode must be %s, %s or %s, got %q", FigmaOK, FigmaRateLimited, FigmaTokenRejected, m)
}

func (f *Figma) me(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	token := r.Header.Get("X-Figma-Token")
	if b, ok := cutBearer(r.Header.Get("Authorization")); ok && token == "" {
		token = b
	}
	valid := token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(f.token)) == 1
	switch {
	case f.Mode() == FigmaRateLimited:
		// What Figma sends when a plan's budget is spent.
		w.Header().Set("Retry-After", strconv.Itoa(int(f.retryAfter/time.Second)))
		w.Header().Set("X-Figma-Rate-Limit-Type", "low")
		w.Header().Set("X-Figma-Plan-Tier", "starter")
		w.WriteHeader(http.StatusTooManyRequests)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": 429, "err": "Rate limit exceeded"})
	case f.Mode() == FigmaTokenRejected || !valid:
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": 403, "err": "Invalid token"})
	default:
		_ = json.NewEncoder(w).Encode(map[string]string{
			"id": "1234567890", "handle": FigmaHandle, "email": FigmaEmail,
			"img_url": "https://s3-alpha.figma.com/profile/demo-designer",
		})
	}
}

func cutBearer(h string) (string, bool) {
	const prefix = "Bearer "
	if len(h) > len(prefix) && h[:len(prefix)] == prefix {
		return h[len(prefix):], true
	}
	return "", false
}
