package proxy

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// Routes of the proxy's request counter.
const (
	routeLocalRead   = iota // a read served here without waiting
	routeWaitedRead         // a read that waited for its __txid
	routeLocalWrite         // a write on the primary
	routeForwarded          // a write forwarded to the primary's proxy
	routeFlyReplay          // a write answered with Fly-Replay
	routeRetriedRead        // a read retried on the primary
	routePassthrough        // a passthrough path
	routeN
)

var routeNames = [routeN]string{"local_read", "waited_read", "local_write", "forwarded_write", "fly_replay", "retried_read", "passthrough"}

// summary is a Prometheus summary without quantiles: count and sum.
type summary struct {
	n     atomic.Int64
	nanos atomic.Int64
}

func (s *summary) observe(d time.Duration) {
	s.n.Add(1)
	s.nanos.Add(int64(d))
}

// Process-wide counters of the proxy (one proxy per daemon).
var metrics struct {
	requests       [routeN]atomic.Int64
	waitSeconds    summary // reads that carried a __txid on a replica
	forwardSeconds summary // forwarded writes, until the response is copied
	waitTimeouts   atomic.Int64
	forwardErrors  atomic.Int64
	appErrors      atomic.Int64
	authFailures   atomic.Int64
}

// WriteMetrics writes the proxy's metrics in the Prometheus text format;
// the node's GET /metrics includes them.
func WriteMetrics(w io.Writer) {
	fmt.Fprintln(w, "# HELP litefs_proxy_requests_total Requests through the HTTP proxy, by route.")
	fmt.Fprintln(w, "# TYPE litefs_proxy_requests_total counter")
	for i, name := range routeNames {
		fmt.Fprintf(w, "litefs_proxy_requests_total{route=%q} %d\n", name, metrics.requests[i].Load())
	}
	sum := func(name, help string, s *summary) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s summary\n", name, help, name)
		fmt.Fprintf(w, "%s_sum %g\n%s_count %d\n", name, time.Duration(s.nanos.Load()).Seconds(), name, s.n.Load())
	}
	sum("litefs_proxy_wait_seconds", "Time reads waited for the TXID of their cookie.", &metrics.waitSeconds)
	sum("litefs_proxy_forward_seconds", "Duration of writes forwarded to the primary's proxy.", &metrics.forwardSeconds)
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	counter("litefs_proxy_wait_timeouts_total", "Reads answered 504: their TXID did not arrive within proxy.max-lag.", metrics.waitTimeouts.Load())
	counter("litefs_proxy_forward_errors_total", "Writes answered 503: the primary could not be reached or failed.", metrics.forwardErrors.Load())
	counter("litefs_proxy_app_errors_total", "Requests answered 502: the application did not answer.", metrics.appErrors.Load())
	counter("litefs_proxy_auth_failures_total", "Forwarded requests refused for a missing or wrong auth token.", metrics.authFailures.Load())
}
