package standin

import (
	"encoding/json"
	"math"
	"net/http"
	"time"
)

// AppHeapUsed is the heap the stand-in app reports, as the legacy Node app formats it
// (Math.round(heapUsed/1024/1024) + "MB"). The agent's memory probe shows it as memory.heapUsed.
const AppHeapUsed = "21MB"

// NewApp returns the stand-in for the legacy Node.js app: GET /api/health answers with a body shaped
// like the app's own health JSON, which the agent embeds as data.legacy.
func NewApp(addr string) *Server {
	started := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, _ *http.Request) {
		now := time.Now()
		body := map[string]any{
			"status":    "ok",
			"timestamp": now.UTC().Format("2006-01-02T15:04:05.000Z"), // JavaScript's toISOString()
			"uptime":    math.Round(now.Sub(started).Seconds()*1000) / 1000,
			"memory": map[string]string{
				"rss": "64MB", "heapTotal": "34MB", "heapUsed": AppHeapUsed, "external": "3MB",
			},
			"services": map[string]string{
				"browserPool": "ready", "mcpClient": "connected", "figmaApi": "configured",
			},
			"version": "1.4.2",
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(body)
	})
	return newServer("app", addr, mux, nil)
}
