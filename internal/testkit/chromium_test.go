//go:build unix

package testkit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// version fetches /json/version on a fresh connection.
func version(url string) (map[string]string, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get(url + "/json/version")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	v := map[string]string{}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// TestStartChromium: a port of Chromium's choosing, extra flags, kill, then a restart on the same port
// owned by another cleanup, as the CDP probe and the demo tests use it.
func TestStartChromium(t *testing.T) {
	const ua = "testkit-agent/1"
	c := StartChromium(t, ChromiumOptions{Args: []string{"--user-agent=" + ua}})
	port := c.Port()
	if port <= 0 || c.URL() != fmt.Sprintf("http://127.0.0.1:%d", port) {
		t.Fatalf("Port() = %d, URL() = %q", port, c.URL())
	}
	v, err := version(c.URL())
	if err != nil {
		t.Fatalf("/json/version: %v", err)
	}
	if !strings.Contains(v["Browser"], "Chrome/") || v["User-Agent"] != ua {
		t.Errorf("/json/version %v: want a Chrome browser and the User-Agent %q from Args", v, ua)
	}
	if want := fmt.Sprintf("DevTools listening on ws://127.0.0.1:%d/", port); !strings.Contains(c.Log(), want) {
		t.Errorf("Log() lacks %q:\n%s", want, tail(c.Log(), 2000))
	}

	c.Kill()
	c.Kill() // idempotent
	if _, err := version(c.URL()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("/json/version after Kill: %v, want connection refused", err)
	}

	var owned []func()
	again := StartChromium(t, ChromiumOptions{Port: port, Cleanup: func(f func()) { owned = append(owned, f) }})
	t.Cleanup(func() { // should an assertion below fail; each is idempotent
		for i := len(owned) - 1; i >= 0; i-- {
			owned[i]()
		}
	})
	if again.Port() != port {
		t.Fatalf("restarted on port %d, want %d", again.Port(), port)
	}
	if _, err := version(again.URL()); err != nil {
		t.Fatalf("/json/version after the restart on port %d: %v", port, err)
	}
	if len(owned) == 0 {
		t.Fatal("nothing registered with the given Cleanup")
	}
	for i := len(owned) - 1; i >= 0; i-- {
		owned[i]()
	}
	if _, err := version(again.URL()); err == nil {
		t.Fatal("/json/version still answers after the owner's cleanup")
	}
}
