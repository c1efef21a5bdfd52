package chaos

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/health-agent/health-agent/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, m Mode) *Server {
	t.Helper()
	s := New(m)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// client opens a fresh connection per request, like the agent's probes.
func client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

type reply struct {
	code int
	hdr  http.Header
	body string
	err  error
	took time.Duration
}

func get(c *http.Client, url string, hdr ...string) reply {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return reply{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return reply{code: resp.StatusCode, hdr: resp.Header, body: string(b), err: err, took: time.Since(start)}
}

func TestModes(t *testing.T) {
	tests := []struct {
		name  string
		mode  Mode
		check func(t *testing.T, r reply)
	}{
		{"ok", Healthy(), func(t *testing.T, r reply) {
			if r.err != nil || r.code != 200 || r.body != `{"status":"ok"}` {
				t.Fatalf("%+v", r)
			}
		}},
		{"custom body", Answering(`{"status":"fine"}`), func(t *testing.T, r reply) {
			if r.code != 200 || r.body != `{"status":"fine"}` {
				t.Fatalf("%+v", r)
			}
		}},
		{"custom status and body", Responding(403, `{"err":"no"}`), func(t *testing.T, r reply) {
			if r.code != 403 || r.body != `{"err":"no"}` {
				t.Fatalf("%+v", r)
			}
		}},
		{"500", Failing(500), func(t *testing.T, r reply) {
			if r.err != nil || r.code != 500 {
				t.Fatalf("%+v", r)
			}
		}},
		{"slow", Slowed(100 * time.Millisecond), func(t *testing.T, r reply) {
			if r.err != nil || r.code != 200 || r.took < 100*time.Millisecond {
				t.Fatalf("%+v", r)
			}
		}},
		{"hang", Hanging(), func(t *testing.T, r reply) {
			if r.err == nil || !strings.Contains(r.err.Error(), "Timeout") {
				t.Fatalf("a hung request must time out on the client: %+v", r)
			}
		}},
		{"reset", Resetting(), func(t *testing.T, r reply) {
			if !errors.Is(r.err, syscall.ECONNRESET) {
				t.Fatalf("want connection reset, got %+v", r)
			}
		}},
		{"garbage body", Garbage(), func(t *testing.T, r reply) {
			if r.code != 200 || json.Valid([]byte(r.body)) {
				t.Fatalf("%+v", r)
			}
		}},
		{"garbage on the wire", NotHTTP(), func(t *testing.T, r reply) {
			if r.err == nil || !strings.Contains(r.err.Error(), "malformed HTTP") {
				t.Fatalf("%+v", r)
			}
		}},
		{"endless", EndlessBody(), func(t *testing.T, r reply) {
			if r.code != 200 || len(r.body) != 1<<20 {
				t.Fatalf("read %d bytes, %v", len(r.body), r.err)
			}
		}},
		{"429", RateLimited("7"), func(t *testing.T, r reply) {
			if r.code != 429 || r.hdr.Get("Retry-After") != "7" {
				t.Fatalf("%+v", r)
			}
		}},
		{"echo", Echoing(403), func(t *testing.T, r reply) {
			if r.code != 403 || !strings.Contains(r.body, "X-Secret=hush") || !strings.Contains(r.body, `"x-secret":"hush"`) {
				t.Fatalf("%+v", r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.mode)
			tt.check(t, get(client(300*time.Millisecond), s.URL()+"/health", "X-Secret", "hush"))
			if s.Requests() != 1 {
				t.Fatalf("counted %d requests, want 1", s.Requests())
			}
		})
	}
}

func TestFlapAndSet(t *testing.T) {
	s := start(t, Healthy())
	c := client(time.Second)
	if r := get(c, s.URL()); r.code != 200 {
		t.Fatalf("%+v", r)
	}
	s.Set(Flapping(2))
	var codes []int
	for range 6 {
		codes = append(codes, get(c, s.URL()).code)
	}
	if want := []int{200, 200, 500, 500, 200, 200}; !slices.Equal(codes, want) {
		t.Fatalf("flapping every 2: %v, want %v", codes, want)
	}
	if s.Requests() != 7 || s.Mode().Kind != Flap {
		t.Fatalf("requests %d mode %v", s.Requests(), s.Mode())
	}
	if h := s.Headers(); len(h) != 7 || h[0].Get("User-Agent") == "" {
		t.Fatalf("headers: %v", h)
	}
	if a := s.Arrivals(); len(a) != 7 || !slices.IsSortedFunc(a, func(x, y time.Time) int { return x.Compare(y) }) {
		t.Fatalf("arrivals: %v", a)
	}
}

func TestCloseReleasesHeldRequests(t *testing.T) {
	for _, m := range []Mode{Hanging(), Slowed(time.Hour), EndlessBody()} {
		t.Run(m.String(), func(t *testing.T) {
			s := New(m)
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			got := make(chan reply, 1)
			go func() {
				c := client(0)
				r := get(c, s.URL())
				c.CloseIdleConnections()
				got <- r
			}()
			testkit.Eventually(t, 10*time.Second, func() bool { return s.Requests() > 0 }, "the request arrived")
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close waited on a held request")
			}
			select {
			case <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("the client was not released")
			}
		})
	}
}
