package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/litefs/litefs"
)

// primaryCache remembers the proxy URL of each primary's API URL, learned
// from the primary's GET /info (field proxyURL).
type primaryCache struct {
	token  string
	client http.Client

	mu sync.Mutex
	m  map[string]*url.URL // advertise URL -> proxy URL
}

// infoJSON is the part of GET /info the proxy reads.
type infoJSON struct {
	Role     string `json:"role"`
	ProxyURL string `json:"proxyURL"`
}

// lookup returns the proxy URL of the primary whose API is at apiURL.
func (c *primaryCache) lookup(ctx context.Context, apiURL string) (*url.URL, error) {
	c.mu.Lock()
	u := c.m[apiURL]
	c.mu.Unlock()
	if u != nil {
		return u, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(apiURL, "/")+"/info", nil)
	if err != nil {
		return nil, fmt.Errorf("primary API URL %q: %w", apiURL, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask the primary for its proxy address: %w", err)
	}
	defer resp.Body.Close()
	var info infoJSON
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("ask the primary for its proxy address: GET %s/info: %s: %s", apiURL, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info); err != nil {
		return nil, fmt.Errorf("ask the primary for its proxy address: decode /info: %w", err)
	}
	if info.ProxyURL == "" {
		return nil, fmt.Errorf("the primary at %s runs no proxy (its /info has no proxyURL): set proxy.addr on every node", apiURL)
	}
	if u, err = url.Parse(info.ProxyURL); err != nil || u.Host == "" {
		return nil, fmt.Errorf("the primary's proxyURL %q is not a URL", info.ProxyURL)
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]*url.URL)
	}
	c.m[apiURL] = u
	c.mu.Unlock()
	return u, nil
}

// forget drops what is known of the primary at apiURL (after a failure).
func (c *primaryCache) forget(apiURL string) {
	c.mu.Lock()
	delete(c.m, apiURL)
	c.mu.Unlock()
}

// newRemoteProxy returns the reverse proxy to the primary's proxy; each
// request names its destination in its reqState.
func (s *Server) newRemoteProxy() *httputil.ReverseProxy {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext
	tr.MaxIdleConnsPerHost = 32
	tr.Proxy = nil
	if s.cfg.PeerTLS != nil {
		tr.TLSClientConfig = s.cfg.PeerTLS.Clone()
	}
	s.primaries.client = http.Client{Timeout: 5 * time.Second, Transport: tr}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := stateOf(pr.In)
			pr.SetURL(st.primary)
			pr.Out.Host = pr.In.Host
			setForwardedHeaders(pr)
			boundOutBody(pr)
			pr.Out.Header.Set(ForwardedHeader, litefs.FormatNodeID(s.store.NodeID()))
			if s.cfg.AuthToken != "" {
				pr.Out.Header.Set(TokenHeader, s.cfg.AuthToken)
			}
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorHandler:  s.remoteError,
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// remoteError answers a forwarded request the primary did not answer: a
// clear 503, at once (the primary failed or went away).
func (s *Server) remoteError(w http.ResponseWriter, r *http.Request, err error) {
	if cause := context.Cause(r.Context()); errors.Is(cause, errPrimaryChanged) {
		err = cause
	} else if r.Context().Err() != nil {
		return // the client went away
	}
	metrics.forwardErrors.Add(1)
	if p := s.store.Primary(); p != nil {
		s.primaries.forget(p.AdvertiseURL)
	}
	s.log.Warn("forwarding to the primary failed", "method", r.Method, "path", r.URL.Path, "error", err)
	s.emit(EventForwardFailed, r.Method, r.URL.Path, err.Error())
	httpError(w, http.StatusServiceUnavailable, "litefs proxy: the primary did not complete the request: "+err.Error()+
		" (it may be failing over; retry)")
}

// forward sends r to the primary's proxy, or answers with Fly-Replay.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PrimaryRedirectTimeout)
	p, u, err := s.findPrimary(ctx)
	cancel()
	switch {
	case errors.Is(err, errBecamePrimary):
		metrics.requests[routeLocalWrite].Add(1)
		s.serveLocal(w, r, &reqState{in: r, write: true, prior: priorTargets(r, s.cfg.DB)})
		return
	case err != nil:
		metrics.forwardErrors.Add(1)
		s.emit(EventForwardFailed, r.Method, r.URL.Path, err.Error())
		httpError(w, http.StatusServiceUnavailable, "litefs proxy: cannot forward the write to the primary: "+err.Error())
		return
	}
	if s.cfg.FlyReplay {
		metrics.requests[routeFlyReplay].Add(1)
		w.Header().Set(FlyReplayHeader, "instance="+p.Hostname)
		httpError(w, http.StatusConflict, "litefs proxy: writes go to the primary "+p.Hostname+" (fly-replay)")
		return
	}
	metrics.requests[routeForwarded].Add(1)
	start := time.Now()
	ctx, stop := s.watchPrimary(r.Context(), p.AdvertiseURL)
	defer stop()
	s.remote.ServeHTTP(w, withState(r.WithContext(ctx), &reqState{in: r, primary: u}))
	metrics.forwardSeconds.observe(time.Since(start))
}

// errPrimaryChanged cancels a forwarded request whose primary lost the
// role meanwhile: a primary cut off by a partition may never answer it.
var errPrimaryChanged = errors.New("the primary changed during the request")

// primaryWatchInterval is how often a forwarded request checks that its
// primary still is one.
const primaryWatchInterval = 100 * time.Millisecond

// watchPrimary returns a context of parent canceled with errPrimaryChanged
// once this node follows another primary than apiURL (or is primary).
func (s *Server) watchPrimary(parent context.Context, apiURL string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	go func() {
		t := time.NewTicker(primaryWatchInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if p := s.store.Primary(); p == nil || p.AdvertiseURL != apiURL {
					cancel(errPrimaryChanged)
					return
				}
			}
		}
	}()
	return ctx, func() { cancel(nil) }
}

var errBecamePrimary = errors.New("this node is the primary")

// findPrimary waits (until ctx ends) for a known primary and, unless
// proxy.fly-replay is set, its proxy URL.
func (s *Server) findPrimary(ctx context.Context) (*litefs.PrimaryInfo, *url.URL, error) {
	var lastErr error
	for {
		p := s.store.Primary()
		switch {
		case p == nil:
			return nil, nil, errBecamePrimary
		case s.cfg.FlyReplay && p.Hostname != "":
			return p, nil, nil
		case !s.cfg.FlyReplay && p.AdvertiseURL != "":
			u, err := s.primaries.lookup(ctx, p.AdvertiseURL)
			if err == nil {
				return p, u, nil
			}
			lastErr = err
		default:
			lastErr = errors.New("no primary is known yet")
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%w (waited proxy.primary-redirect-timeout %s)", lastErr, s.cfg.PrimaryRedirectTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// acceptForwarded checks a request forwarded by a peer's proxy: with an
// auth token it must carry it. The proxy headers are stripped either way.
func (s *Server) acceptForwarded(w http.ResponseWriter, r *http.Request) bool {
	token := r.Header.Get(TokenHeader)
	r.Header.Del(TokenHeader)
	r.Header.Del(ForwardedHeader)
	if s.cfg.AuthToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AuthToken)) != 1 {
		metrics.authFailures.Add(1)
		s.log.Warn("refused a forwarded request without the cluster auth token", "remote", r.RemoteAddr, "path", r.URL.Path)
		s.emit(EventAuthRefused, r.Method, r.URL.Path, "from "+r.RemoteAddr)
		httpError(w, http.StatusUnauthorized, "litefs proxy: a forwarded request needs the cluster auth token in "+TokenHeader)
		return false
	}
	return true
}
