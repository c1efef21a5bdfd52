// Command bareproxy is the floor any Go reverse proxy pays: httputil.ReverseProxy to one upstream, in
// its own process like the agent, with enough idle connections per host for 64 clients and nothing
// else. The egress benchmark runs it beside the agent.
//
//	bareproxy -listen 127.0.0.1:8080 -upstream http://127.0.0.1:9000   # serves /up/... -> upstream/...
package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	upstream := flag.String("upstream", "", "upstream base URL")
	flag.Parse()
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		fmt.Fprintln(os.Stderr, "bareproxy: -upstream must be an absolute URL")
		os.Exit(2)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 128
	rp.Transport = tr
	srv := &http.Server{Addr: *listen, Handler: http.StripPrefix("/up", rp), ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
}
