package egress

import (
	"encoding/json"
	"net/http"
	"time"
)

// apiError is the contract's error envelope's error, with the breaker and its last cause when a
// breaker answered.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Breaker string `json:"breaker,omitempty"`
	Cause   string `json:"cause,omitempty"`
}

// writeError answers with the contract's error envelope.
func writeError(w http.ResponseWriter, status int, e apiError) {
	body, _ := json.Marshal(struct {
		Success   bool     `json:"success"`
		Timestamp string   `json:"timestamp"`
		Error     apiError `json:"error"`
	}{false, time.Now().UTC().Format(time.RFC3339), e})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
