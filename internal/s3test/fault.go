package s3test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
)

// FaultProxy is an HTTP proxy in front of a Server that can answer every
// request with S3's throttling error (503 SlowDown) instead of passing it
// on, as a store under load does.
type FaultProxy struct {
	// Endpoint is the proxy's URL, http://127.0.0.1:PORT: give it to
	// clients instead of the server's.
	Endpoint string

	throttle atomic.Bool
	injected atomic.Int64
	srv      *http.Server
}

// slowDownBody is S3's XML error for throttling.
const slowDownBody = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`

// StartFaultProxy starts a proxy to s on 127.0.0.1 (HTTP servers only),
// stopped when the test ends.
func StartFaultProxy(t testing.TB, s *Server) *FaultProxy {
	t.Helper()
	target, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("s3test: fault proxy: %v", err)
	}
	p := &FaultProxy{Endpoint: fmt.Sprintf("http://%s", l.Addr())}
	rp := httputil.NewSingleHostReverseProxy(target)
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.throttle.Load() {
			p.injected.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(slowDownBody))
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.srv.Serve(l) }()
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

// Throttle turns the 503 SlowDown answers on or off.
func (p *FaultProxy) Throttle(on bool) { p.throttle.Store(on) }

// Injected is the number of requests answered with 503 SlowDown so far.
func (p *FaultProxy) Injected() int64 { return p.injected.Load() }
