package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// tcpDeps are loopback TCP dependencies that accept a connection, count it and close it: what a tcp
// probe (or a peer's dial check) sees of a database port.
type tcpDeps struct {
	lns   []net.Listener
	count atomic.Int64
	wg    sync.WaitGroup
}

func startTCPDeps(n int) (*tcpDeps, error) {
	d := &tcpDeps{}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("listen: %w", err)
		}
		d.lns = append(d.lns, ln)
		d.wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue // e.g. EMFILE under a peer's dial storm: keep serving
				}
				d.count.Add(1)
				_ = c.Close()
			}
		})
	}
	return d, nil
}

// Addr is the address of the i-th dependency (round robin).
func (d *tcpDeps) Addr(i int) string { return d.lns[i%len(d.lns)].Addr().String() }

// Requests is the number of connections the dependencies accepted so far.
func (d *tcpDeps) Requests() int64 { return d.count.Load() }

func (d *tcpDeps) Close() {
	for _, ln := range d.lns {
		_ = ln.Close()
	}
	d.wg.Wait()
}

// httpDep is a loopback HTTP dependency whose health the runner switches: 200 {"status":"ok"} when
// up, 503 when down.
type httpDep struct {
	srv   *http.Server
	ln    net.Listener
	down  atomic.Bool
	count atomic.Int64
	done  chan struct{}
}

func startHTTPDep() (*httpDep, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	d := &httpDep{ln: ln, done: make(chan struct{})}
	d.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		d.count.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if d.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"error"}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})}
	go func() {
		defer close(d.done)
		_ = d.srv.Serve(ln)
	}()
	return d, nil
}

func (d *httpDep) URL() string { return "http://" + d.ln.Addr().String() + "/health" }

func (d *httpDep) Close() {
	_ = d.srv.Close()
	<-d.done
}
