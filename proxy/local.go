package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/superfly/ltx"
)

// reqState is what the proxy remembers of one request between routing it
// and the application's response.
type reqState struct {
	in      *http.Request       // the request as received
	write   bool                // a write: tag the response with TXIDs
	tag     bool                // a read on the primary: tag it if it wrote
	prior   Targets             // the TXIDs the request's cookies carried
	before  map[string]ltx.TXID // positions when the request went to the app
	refused uint64              // the store's refused-write count then
	retry   bool                // retry on the primary if the app was refused a write
	primary *url.URL            // the primary's proxy (forwarded requests)
	started time.Time
}

type stateKey struct{}

func withState(r *http.Request, st *reqState) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
}

func stateOf(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	return st
}

// errRetryOnPrimary ends a local read whose application was refused a
// write: the ErrorHandler sends it to the primary instead.
var errRetryOnPrimary = errors.New("the application attempted a write on a replica")

// newLocalProxy returns the reverse proxy to the application at target.
func (s *Server) newLocalProxy(target *url.URL) *httputil.ReverseProxy {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = s.dialApp
	tr.MaxIdleConnsPerHost = 64
	tr.Proxy = nil
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			setForwardedHeaders(pr)
			boundOutBody(pr)
		},
		Transport:      tr,
		FlushInterval:  -1, // streaming responses (SSE, chunked) flow at once
		ModifyResponse: s.modifyLocal,
		ErrorHandler:   s.localError,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// dialApp dials the application, retrying a refused connection every
// DialRetryInterval for up to DialRetryTimeout while it starts.
func (s *Server) dialApp(ctx context.Context, network, addr string) (net.Conn, error) {
	deadline := time.Now().Add(s.cfg.DialRetryTimeout)
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	for {
		c, err := d.DialContext(ctx, network, addr)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(s.cfg.DialRetryInterval):
		}
	}
}

// modifyLocal tags a write's response with the TXIDs after it, and turns
// a read whose application was refused a write into a retry on the
// primary (opt-in).
func (s *Server) modifyLocal(resp *http.Response) error {
	st := stateOf(resp.Request)
	if st == nil {
		return nil
	}
	if st.retry && s.store.RefusedWrites() > st.refused {
		return errRetryOnPrimary
	}
	if st.write || st.tag {
		s.tagResponse(resp.Header, st)
	}
	return nil
}

// tagResponse sets the TXID cookies after a write: proxy.db always, and
// every other database whose TXID moved while the request ran (another
// request's write can move it too: the read then waits a little longer,
// never too little). A read on the primary (one that writes sessions, or
// a read retried from a replica) is tagged only if a database moved.
func (s *Server) tagResponse(h http.Header, st *reqState) {
	moved := Targets{}
	for name, pos := range s.store.Positions() {
		if st.write && name == s.cfg.DB || pos.TXID > st.before[name] {
			moved[name] = pos.TXID
		}
	}
	if len(moved) == 0 {
		return
	}
	t := Targets{}
	t.merge(st.prior)
	t.merge(moved)
	t.setCookies(h, s.cfg.DB, s.cfg.CookieTTL)
}

// localError answers a request the application did not answer.
func (s *Server) localError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r)
	if errors.Is(err, errRetryOnPrimary) && st != nil {
		metrics.requests[routeRetriedRead].Add(1)
		s.log.Info("retrying a read on the primary: the application attempted a write", "method", st.in.Method, "path", st.in.URL.Path)
		s.emit(EventRetriedRead, st.in.Method, st.in.URL.Path, "")
		s.forward(w, st.in)
		return
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	metrics.appErrors.Add(1)
	s.log.Warn("application unreachable", "target", s.cfg.Target, "error", err)
	s.emit(EventAppUnreachable, r.Method, r.URL.Path, err.Error())
	httpError(w, http.StatusBadGateway, "litefs proxy: the application at "+s.cfg.Target+" did not answer: "+err.Error())
}

// serveLocal sends r to the application.
func (s *Server) serveLocal(w http.ResponseWriter, r *http.Request, st *reqState) {
	if st.write || st.tag {
		st.before = positions(s)
	}
	if st.retry {
		st.refused = s.store.RefusedWrites()
	}
	s.local.ServeHTTP(w, withState(r, st))
}

func positions(s *Server) map[string]ltx.TXID {
	m := make(map[string]ltx.TXID)
	for name, pos := range s.store.Positions() {
		m[name] = pos.TXID
	}
	return m
}

// httpError writes a plain-text error answer.
func httpError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg + "\n"))
}

// setForwardedHeaders keeps the X-Forwarded-Host and X-Forwarded-Proto a
// request arrived with (an edge that terminated TLS says https there, and
// applications redirect on it), setting them only when absent, and appends
// the client's address to X-Forwarded-For. (httputil's SetXForwarded
// would replace the first two with what this hop sees.)
func setForwardedHeaders(pr *httputil.ProxyRequest) {
	in, out := pr.In.Header, pr.Out.Header
	for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := in.Values(h); len(v) > 0 {
			out[h] = v
		}
	}
	if out.Get("X-Forwarded-Host") == "" {
		out.Set("X-Forwarded-Host", pr.In.Host)
	}
	if out.Get("X-Forwarded-Proto") == "" {
		proto := "http"
		if pr.In.TLS != nil {
			proto = "https"
		}
		out.Set("X-Forwarded-Proto", proto)
	}
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		if prior := strings.Join(in.Values("X-Forwarded-For"), ", "); prior != "" {
			ip = prior + ", " + ip
		}
		out.Set("X-Forwarded-For", ip)
	}
}
