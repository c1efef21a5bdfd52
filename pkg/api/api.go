// Package api serves the agent's HTTP endpoints with gin. Every handler answers from the monitor's
// latest snapshot: no request runs a probe, waits on one, or takes a lock a probe holds.
package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/health-agent/health-agent/pkg/monitor"
)

// Source is what the handlers read: the monitor.
type Source interface {
	Snapshot() *monitor.Snapshot
	Alive(now time.Time) bool
}

// Options are the handler's collaborators.
type Options struct {
	// Token returns server.detailsToken (it may change on reload). Empty: the detail endpoints are open.
	Token func() string
	// Metrics serves /metrics (nil: 404). It is behind the token like the detail endpoints.
	Metrics http.Handler
	// Page serves the status page at / and its assets under /static/ (nil: a JSON index of the
	// endpoints at /).
	Page   http.Handler
	Logger *slog.Logger
	// Now is the clock for timestamps (default time.Now).
	Now func() time.Time
}

type handler struct {
	src  Source
	opts Options
	// The plain /readyz and /startupz answers for the latest snapshot (see kubeAnswer).
	readyzPlain, startupzPlain atomic.Pointer[kubeAnswer]
	docs                       renderer
}

// NewHandler returns the agent's HTTP handler.
func NewHandler(src Source, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Token == nil {
		opts.Token = func() string { return "" }
	}
	h := &handler{src: src, opts: opts}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.Use(h.recover)

	get := func(path string, hs ...gin.HandlerFunc) {
		r.GET(path, hs...)
		r.HEAD(path, hs...)
	}
	get("/api/health", h.health)
	get("/api/health/detailed", h.auth, h.detailed)
	get("/api/health/circuit-breakers", h.auth, h.breakers)
	get("/livez", h.livez)
	get("/livez/:check", h.livez)
	get("/readyz", h.readyz)
	get("/readyz/:check", h.readyz)
	get("/startupz", h.startupz)
	get("/startupz/:check", h.startupz)
	if opts.Metrics != nil {
		get("/metrics", h.auth, gin.WrapH(opts.Metrics))
	}
	if opts.Page != nil {
		get("/", gin.WrapH(opts.Page))
		get("/static/*filepath", gin.WrapH(opts.Page))
	} else {
		get("/", h.index)
	}
	r.NoRoute(func(c *gin.Context) { h.fail(c, http.StatusNotFound, "not_found", "no such endpoint") })
	r.NoMethod(func(c *gin.Context) {
		h.fail(c, http.StatusMethodNotAllowed, "method_not_allowed", "only GET and HEAD are served")
	})
	return r
}

func (h *handler) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.opts.Logger.Error("handler panic", "path", c.Request.URL.Path, "panic", v)
			h.fail(c, http.StatusInternalServerError, "internal", "internal error")
			c.Abort()
		}
	}()
	c.Next()
}

// Authorized reports whether r may see what server.detailsToken guards: token is empty, or r carries
// "Authorization: Bearer <token>". The comparison takes the same time whatever the value sent. The API
// and the status page both decide with it.
func Authorized(r *http.Request, token string) bool {
	if token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	want := sha256.Sum256([]byte(token))
	have := sha256.Sum256([]byte(strings.TrimSpace(got)))
	return ok && subtle.ConstantTimeCompare(want[:], have[:]) == 1
}

// auth enforces server.detailsToken on the detail endpoints.
func (h *handler) auth(c *gin.Context) {
	if !Authorized(c.Request, h.opts.Token()) {
		c.Header("WWW-Authenticate", `Bearer realm="health-agent"`)
		h.fail(c, http.StatusUnauthorized, "unauthorized", "this endpoint requires Authorization: Bearer <server.detailsToken>")
		c.Abort()
	}
}

func (h *handler) health(c *gin.Context) {
	data, code := h.docs.documents(h.src.Snapshot()).healthDoc()
	h.envelope(c, code, data)
}

func (h *handler) detailed(c *gin.Context) {
	data, code := h.docs.documents(h.src.Snapshot()).detailedDoc()
	h.envelope(c, code, data)
}

func (h *handler) breakers(c *gin.Context) {
	h.envelope(c, http.StatusOK, h.docs.documents(h.src.Snapshot()).breakersDoc())
}

const (
	envelopeHead = `{"success":true,"timestamp":"`
	envelopeData = `","data":`
)

// envelope writes {"success":true,"timestamp":…,"data":data} around prepared bytes. "success" says the
// request was served; the health verdict is in data and the HTTP status.
func (h *handler) envelope(c *gin.Context, code int, data []byte) {
	var ts [40]byte
	stamp := h.opts.Now().UTC().AppendFormat(ts[:0], time.RFC3339)
	hdr := c.Writer.Header()
	hdr.Set("Content-Type", "application/json; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(envelopeHead)+len(stamp)+len(envelopeData)+len(data)+1))
	c.Status(code)
	w := c.Writer
	_, _ = w.WriteString(envelopeHead)
	_, _ = w.Write(stamp)
	_, _ = w.WriteString(envelopeData)
	_, _ = w.Write(data)
	_, _ = w.WriteString("}")
}

// fail writes the contract's error envelope.
func (h *handler) fail(c *gin.Context, code int, errCode, msg string) {
	c.Header("Cache-Control", "no-store")
	c.JSON(code, gin.H{
		"success":   false,
		"timestamp": h.opts.Now().UTC().Format(time.RFC3339),
		"error":     gin.H{"code": errCode, "message": msg},
	})
}

func (h *handler) index(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{
		"success":   true,
		"timestamp": h.opts.Now().UTC().Format(time.RFC3339),
		"data": gin.H{"endpoints": []string{
			"/api/health", "/api/health/detailed", "/api/health/circuit-breakers",
			"/livez", "/readyz", "/startupz", "/metrics",
		}},
	})
}
