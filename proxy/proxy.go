// Package proxy is the HTTP proxy in front of the application (SPEC section
// 13, docs/proxy.md): reads wait until this node has the client's last
// write (the __txid cookie), writes go to the primary's application (on a
// replica forwarded by this proxy to the primary's proxy), and the
// response of a write tags the client with the TXIDs it produced.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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

// Defaults of Config.
const (
	DefaultMaxLag                 = 10 * time.Second
	DefaultPrimaryRedirectTimeout = 5 * time.Second
	DefaultDialRetryInterval      = 100 * time.Millisecond
	DefaultDialRetryTimeout       = 30 * time.Second
)

// Headers between proxies. A request forwarded by a replica's proxy carries
// ForwardedHeader (the replica's node id): the primary's proxy never
// forwards it again. With a cluster auth token it also carries TokenHeader,
// which the primary's proxy checks and strips; the application's own
// Authorization header passes untouched.
const (
	ForwardedHeader = "Litefs-Proxy-Forwarded"
	TokenHeader     = "Litefs-Proxy-Token"
	// FlyReplayHeader is the header of proxy.fly-replay.
	FlyReplayHeader = "Fly-Replay"
	// HealthPath is the proxy's own health check.
	HealthPath = "/litefs/health"
)

// Config configures a Server (the proxy section of litefs.yml).
type Config struct {
	Addr          string   // listen address
	Target        string   // the application, host:port or a URL
	DB            string   // database of the __txid cookie
	Passthrough   []string // path patterns sent straight to the application
	AlwaysForward []string // path regexps (LiteFS's syntax) handled as writes whatever the method

	// MaxLag bounds the wait of a read for its __txid, and makes
	// /litefs/health 503 beyond it. DefaultMaxLag if 0.
	MaxLag time.Duration
	// PrimaryRedirectTimeout bounds the wait of a write on a replica for a
	// known primary. DefaultPrimaryRedirectTimeout if 0.
	PrimaryRedirectTimeout time.Duration
	// FlyReplay answers writes on a replica with a Fly-Replay header
	// instead of forwarding them.
	FlyReplay bool
	// RetryFailedReadsOnPrimary retries on the primary a GET or HEAD
	// without body during which this replica refused the application a
	// write.
	RetryFailedReadsOnPrimary bool
	// AuthToken is the cluster's auth token (http.auth-token): sent with
	// forwarded requests and required of them; also used to ask the
	// primary's API for its proxy address.
	AuthToken string
	// PeerTLS, if set, is the TLS configuration of requests to a peer's
	// node API (http.tls): the primary's GET /info, and a proxyURL that is
	// https.
	PeerTLS *tls.Config
	// CookieTTL is the lifetime of the TXID cookies; DefaultCookieTTL if 0.
	CookieTTL time.Duration
	// DialRetryInterval and DialRetryTimeout pace the dial of the
	// application while it starts (defaults 100 ms, 30 s).
	DialRetryInterval, DialRetryTimeout time.Duration
	// Logger receives the proxy's logs.
	Logger *slog.Logger
	// OnEvent, if set, is told about the proxy's significant events (the
	// node's /events); it must not block.
	OnEvent func(Event)
}

// Server is the proxy of one node.
type Server struct {
	cfg         Config
	store       *litefs.Store
	log         *slog.Logger
	passthrough Patterns
	always      Regexps
	local       *httputil.ReverseProxy // to the application
	remote      *httputil.ReverseProxy // to the primary's proxy
	primaries   primaryCache

	mu  sync.Mutex
	ln  net.Listener
	srv *http.Server
}

// New returns the proxy of store; Listen and Serve start it.
func New(store *litefs.Store, cfg Config) (*Server, error) {
	if cfg.Target == "" || cfg.DB == "" {
		return nil, errors.New("proxy: target and db are required")
	}
	setDefaults(&cfg)
	target, err := targetURL(cfg.Target)
	if err != nil {
		return nil, err
	}
	always, err := CompileRegexps("proxy.always-forward", cfg.AlwaysForward)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, store: store, log: cfg.Logger.With("component", "proxy"),
		passthrough: CompilePatterns(cfg.Passthrough),
		always:      always,
	}
	s.local = s.newLocalProxy(target)
	s.remote = s.newRemoteProxy()
	s.primaries.token = cfg.AuthToken
	return s, nil
}

func setDefaults(cfg *Config) {
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = DefaultMaxLag
	}
	if cfg.PrimaryRedirectTimeout <= 0 {
		cfg.PrimaryRedirectTimeout = DefaultPrimaryRedirectTimeout
	}
	if cfg.CookieTTL <= 0 {
		cfg.CookieTTL = DefaultCookieTTL
	}
	if cfg.DialRetryInterval <= 0 {
		cfg.DialRetryInterval = DefaultDialRetryInterval
	}
	if cfg.DialRetryTimeout <= 0 {
		cfg.DialRetryTimeout = DefaultDialRetryTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
}

// Listen opens the proxy's listener.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("proxy: listen on %s: %w", s.cfg.Addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.mu.Unlock()
	s.log.Info("proxy listening", "addr", ln.Addr().String(), "target", s.cfg.Target, "db", s.cfg.DB)
	s.emit(EventStarted, "", "", ln.Addr().String())
	return nil
}

// Addr is the listener's address (after Listen).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Serve serves until ctx is done, then closes the listener and, after up
// to 2 s of grace, every connection; hijacked ones (WebSockets) end with
// the daemon.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.mu.Unlock()
	if srv == nil {
		return errors.New("proxy: Serve before Listen")
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			_ = srv.Close()
		case <-done:
		}
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("proxy: %w", err)
	}
	return nil
}

// ServeHTTP routes one request (docs/proxy.md, "Routing").
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == HealthPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		s.serveHealth(w)
		return
	}
	if s.passthrough.Match(r.URL.Path) {
		metrics.requests[routePassthrough].Add(1)
		s.local.ServeHTTP(w, r)
		return
	}
	forwarded := r.Header.Get(ForwardedHeader) != ""
	if forwarded && !s.acceptForwarded(w, r) {
		return
	}
	if s.isWrite(r) {
		s.serveWrite(w, r, forwarded)
		return
	}
	s.serveRead(w, r, forwarded)
}

// isWrite reports whether r goes to the primary.
func (s *Server) isWrite(r *http.Request) bool {
	return (r.Method != http.MethodGet && r.Method != http.MethodHead) || s.always.Match(r.URL.Path)
}

// serveHealth answers GET /litefs/health: 503 on a replica that is
// disconnected, not caught up, or further behind than proxy.max-lag.
func (s *Server) serveHealth(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.store.Connected() {
		// Disconnected, the lag is unknown and growing.
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "replica not connected to its primary")
		return
	}
	if lag := s.store.Lag(); lag > s.cfg.MaxLag {
		w.WriteHeader(http.StatusServiceUnavailable)
		if lag >= litefs.NotSyncedLag {
			fmt.Fprintln(w, "not caught up with the primary yet")
			return
		}
		fmt.Fprintf(w, "replication lag %s exceeds proxy.max-lag %s\n", lag.Round(time.Millisecond), s.cfg.MaxLag)
		return
	}
	fmt.Fprintln(w, "OK")
}

// targetURL turns proxy.target (host:port, :port or a URL) into a URL.
func targetURL(target string) (*url.URL, error) {
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("proxy.target %q: want host:port or http://host:port", target)
	}
	if strings.HasPrefix(u.Host, ":") {
		u.Host = "localhost" + u.Host
	}
	return u, nil
}
