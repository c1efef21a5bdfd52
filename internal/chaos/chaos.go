// Package chaos is a loopback HTTP dependency whose behaviour changes at run time, for fault-injection
// tests: it answers, fails, stalls, resets, babbles, floods, rate-limits or flaps on demand, and counts
// the requests that reach it.
package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what the server does with a request.
type Kind int

// The behaviours a Mode can take.
const (
	OK          Kind = iota // 200 with Mode.Body (default {"status":"ok"})
	Status                  // Mode.Code with Mode.Body, or a small JSON error body
	Slow                    // wait Mode.Delay, then answer as OK
	Hang                    // never answer: hold the request until the client or the server gives up
	Reset                   // take the request, then reset the connection (TCP RST) without a byte of answer
	GarbageBody             // 200 whose body is not JSON
	GarbageWire             // bytes on the connection that are not HTTP at all, then close
	Endless                 // 200 whose body never ends (until the client goes away)
	TooMany                 // 429 with Retry-After: Mode.RetryAfter
	Flap                    // Mode.Every requests answered OK, the next Mode.Every with 500, and so on
	Echo                    // Mode.Code with every request header value in the body: a dependency that leaks what it was sent
)

// Mode is the server's behaviour; Set changes it at run time.
type Mode struct {
	Kind       Kind
	Code       int           // Status, Echo
	Delay      time.Duration // Slow
	RetryAfter string        // TooMany: the header value
	Every      int           // Flap
	Body       string        // OK, Slow, Flap's good half (default {"status":"ok"}), Status
}

// Modes, named as the tests read them.
func Healthy() Mode                 { return Mode{Kind: OK} }
func Failing(code int) Mode         { return Mode{Kind: Status, Code: code} }
func Slowed(d time.Duration) Mode   { return Mode{Kind: Slow, Delay: d} }
func Hanging() Mode                 { return Mode{Kind: Hang} }
func Resetting() Mode               { return Mode{Kind: Reset} }
func Garbage() Mode                 { return Mode{Kind: GarbageBody} }
func NotHTTP() Mode                 { return Mode{Kind: GarbageWire} }
func EndlessBody() Mode             { return Mode{Kind: Endless} }
func RateLimited(after string) Mode { return Mode{Kind: TooMany, RetryAfter: after} }
func Flapping(every int) Mode       { return Mode{Kind: Flap, Every: max(every, 1)} }
func Echoing(code int) Mode         { return Mode{Kind: Echo, Code: code} }
func Responding(code int, body string) Mode {
	return Mode{Kind: Status, Code: code, Body: body}
}
func Answering(body string) Mode      { return Mode{Kind: OK, Body: body} }
func (m Mode) WithBody(b string) Mode { m.Body = b; return m }

func (m Mode) String() string {
	switch m.Kind {
	case OK:
		return "ok"
	case Status:
		return fmt.Sprintf("status %d", m.Code)
	case Slow:
		return fmt.Sprintf("slow %s", m.Delay)
	case Hang:
		return "hang"
	case Reset:
		return "connection reset"
	case GarbageBody:
		return "garbage body"
	case GarbageWire:
		return "garbage on the wire"
	case Endless:
		return "endless body"
	case TooMany:
		return "429 Retry-After " + m.RetryAfter
	case Flap:
		return fmt.Sprintf("flapping every %d", m.Every)
	case Echo:
		return fmt.Sprintf("echo %d", m.Code)
	default:
		return fmt.Sprintf("kind %d", int(m.Kind))
	}
}

const defaultBody = `{"status":"ok"}`

// chunk is what an endless body repeats; it opens like JSON so a parser keeps reading.
var chunk = []byte(`{"status":"ok","filler":"` + strings.Repeat("x", 32<<10) + `",`)

// Server is the chaos dependency. Build it with New, Start it, Close it.
type Server struct {
	mu       sync.Mutex
	mode     Mode
	inMode   int64 // requests since the mode was set (Flap counts from here)
	closed   bool
	headers  []http.Header // the last few requests' headers, for the tests that look at what was sent
	arrivals []time.Time   // when the last few requests arrived

	requests atomic.Int64
	bodyOut  atomic.Int64 // body bytes written by Endless

	srv    *http.Server
	ln     net.Listener
	quit   chan struct{} // closed by Close: every held request lets go
	served chan struct{} // closed when Serve returns
	active sync.WaitGroup
}

// New returns a server in mode m. It starts nothing.
func New(m Mode) *Server {
	s := &Server{mode: m, quit: make(chan struct{}), served: make(chan struct{})}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(s.serve),
		// The server misbehaves on purpose; its complaints about that are noise.
		ErrorLog:          log.New(io.Discard, "", 0),
		ReadHeaderTimeout: time.Minute,
	}
	return s
}

// Start listens on a free loopback port and serves in the background until Close.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("chaos: listen: %w", err)
	}
	s.ln = ln
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	return nil
}

// URL is http://127.0.0.1:port (no trailing slash).
func (s *Server) URL() string { return "http://" + s.Addr() }

// Addr is 127.0.0.1:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Set changes the mode for the requests that arrive from now on.
func (s *Server) Set(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode, s.inMode = m, 0
}

// Mode returns the current mode.
func (s *Server) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// Requests is how many requests have reached the server since it started.
func (s *Server) Requests() int64 { return s.requests.Load() }

// BodyBytes is how many body bytes Endless has written in all.
func (s *Server) BodyBytes() int64 { return s.bodyOut.Load() }

// Headers returns copies of the headers of the last requests (up to 16), oldest first.
func (s *Server) Headers() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]http.Header, len(s.headers))
	for i, h := range s.headers {
		out[i] = h.Clone()
	}
	return out
}

// Arrivals returns when the last requests (up to 256) arrived, oldest first.
func (s *Server) Arrivals() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.arrivals)
}

// Close stops the server, cuts every connection (hung requests included) and waits until every
// request it was serving has returned.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	err := s.srv.Close()
	if s.ln != nil {
		<-s.served
	}
	s.active.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// enter registers a request; false when the server is closing (so active.Add never races Wait).
func (s *Server) enter(r *http.Request) (Mode, int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Mode{}, 0, false
	}
	s.active.Add(1)
	s.requests.Add(1)
	n := s.inMode
	s.inMode++
	s.headers = append(s.headers, r.Header.Clone())
	if len(s.headers) > 16 {
		s.headers = slices.Delete(s.headers, 0, len(s.headers)-16)
	}
	s.arrivals = append(s.arrivals, time.Now())
	if len(s.arrivals) > 256 {
		s.arrivals = slices.Delete(s.arrivals, 0, len(s.arrivals)-256)
	}
	return s.mode, n, true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	m, n, ok := s.enter(r)
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	defer s.active.Done()
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))

	switch m.Kind {
	case OK:
		answer(w, m.Body)
	case Status:
		if m.Body != "" {
			writeJSON(w, m.Code, m.Body)
			break
		}
		writeJSON(w, m.Code, fmt.Sprintf(`{"status":"error","code":%d}`, m.Code))
	case Slow:
		t := time.NewTimer(m.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			answer(w, m.Body)
		case <-r.Context().Done():
		case <-s.quit:
		}
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.quit:
		}
	case Reset:
		hijack(w, func(c net.Conn) {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // close sends RST, not FIN
			}
		})
	case GarbageBody:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("\x00\xff<html>not json{{{\"status\":"))
	case GarbageWire:
		hijack(w, func(c net.Conn) {
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02garbage\r\n\r\n"))
		})
	case Endless:
		s.endless(w, r)
	case TooMany:
		w.Header().Set("Retry-After", m.RetryAfter)
		writeJSON(w, http.StatusTooManyRequests, `{"status":"rate limited"}`)
	case Flap:
		if (n/int64(m.Every))%2 == 0 {
			answer(w, m.Body)
		} else {
			writeJSON(w, http.StatusInternalServerError, `{"status":"error"}`)
		}
	case Echo:
		// Each header as a member (lower-cased name), and all of them in err and message, where Figma and
		// JSON-RPC servers put their error text.
		out := map[string]string{}
		var vals []string
		for _, k := range slices.Sorted(maps.Keys(r.Header)) {
			v := strings.Join(r.Header[k], ",")
			out[strings.ToLower(k)] = v
			vals = append(vals, k+"="+v)
		}
		out["err"] = strings.Join(vals, " ")
		out["message"] = "you sent " + out["err"]
		b, _ := json.Marshal(out)
		writeJSON(w, m.Code, string(b))
	default:
		writeJSON(w, http.StatusNotImplemented, `{"status":"unknown chaos mode"}`)
	}
}

func (s *Server) endless(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.quit:
			return
		default:
		}
		n, err := w.Write(chunk)
		s.bodyOut.Add(int64(n))
		if err != nil || rc.Flush() != nil {
			return
		}
	}
}

func answer(w http.ResponseWriter, body string) {
	if body == "" {
		body = defaultBody
	}
	writeJSON(w, http.StatusOK, body)
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// hijack takes the connection from net/http, lets do act on it, and closes it.
func hijack(w http.ResponseWriter, do func(net.Conn)) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	do(c)
	_ = c.Close()
}
