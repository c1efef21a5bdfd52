package egress

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// BenchmarkProxy compares a 1 KiB answer through the egress proxy with a bare httputil.ReverseProxy,
// both over loopback in this process.
func BenchmarkProxy(b *testing.B) {
	body := `{"data":"` + strings.Repeat("x", 1013) + `"}`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, body) }))
	defer up.Close()

	u, _ := url.Parse(up.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	bare := httptest.NewServer(http.StripPrefix("/up", rp))
	defer bare.Close()

	h := newHarness(&testing.T{}, nil, testRoute("up", "/up/", up.URL))
	defer func() { h.srv.Close(); h.proxy.Close() }()

	for _, tc := range []struct{ name, url string }{{"bare", bare.URL}, {"egress", h.srv.URL}} {
		b.Run(tc.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			defer client.CloseIdleConnections()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(tc.url + "/up/x")
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
