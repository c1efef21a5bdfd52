package egress

import (
	"net/url"
	"testing"
	"time"
)

func TestTrafficSummary(t *testing.T) {
	tr := newTraffic()
	now := time.Now()
	old := now.Add(-2 * time.Minute)
	tr.add(old, time.Hour, true, false) // out of the window
	for i := 1; i <= 100; i++ {
		tr.add(now.Add(-time.Duration(i)*100*time.Millisecond), time.Duration(i)*time.Millisecond, i%10 == 0, false)
	}
	tr.add(now, 0, false, true) // a rejection counts, but has no latency
	s := tr.summary(now)
	if s.Requests != 101 || s.Errors != 10 || s.Rejected != 1 {
		t.Errorf("counts %+v", s)
	}
	if s.P50 != 50*time.Millisecond || s.P99 != 99*time.Millisecond {
		t.Errorf("p50 %v p99 %v, want 50ms and 99ms", s.P50, s.P99)
	}
	if later := tr.summary(now.Add(2 * time.Minute)); later.Requests != 0 || later.P99 != 0 {
		t.Errorf("a minute later the window is empty, got %+v", later)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", 12 * time.Second: "12"} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestProxiedLocation(t *testing.T) {
	up, _ := url.Parse("https://api.example.com/v2")
	rt := &route{base: "/figma", up: up, upRaw: "/v2"}
	for loc, want := range map[string]string{
		"https://api.example.com/v2/files/a?x=1": "http://127.0.0.1:3009/figma/files/a?x=1",
		"/v2/files/a":                            "/figma/files/a",
		"https://other.example.com/v2/files":     "https://other.example.com/v2/files", // another host: left alone
		"http://api.example.com/v2/files":        "http://api.example.com/v2/files",    // another scheme
		"/v3/files":                              "/v3/files",                          // outside the upstream's path
		"/v2x/files":                             "/v2x/files",
		"files/a":                                "files/a", // relative: already right
	} {
		if got := rt.proxiedLocation(loc, "127.0.0.1:3009"); got != want {
			t.Errorf("proxiedLocation(%q) = %q, want %q", loc, got, want)
		}
	}
}
