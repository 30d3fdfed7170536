// Package http is litefs's node-to-node HTTP layer: the replication stream
// between primary and replicas, import/export, node information, events,
// health and metrics. The server side is Server; the replica side of the
// stream is RunReplica.
package http

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	nethttp "net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/litefs/litefs"
)

// HTTP headers exchanged between nodes.
const (
	HeaderNodeID    = "Litefs-Id"         // the calling node's id, 16 hex digits
	HeaderClusterID = "Litefs-Cluster-Id" // the cluster id, on every response once known
)

// Defaults of ServerOptions.
const (
	DefaultAddr            = ":20202"
	DefaultMaxLag          = 10 * time.Second
	DefaultMaxImportSize   = 64 << 30 // 64 GiB
	DefaultMaxTxSize       = 4 << 30  // 4 GiB: one forwarded transaction
	DefaultShutdownTimeout = 5 * time.Second
	DefaultWriteTimeout    = 30 * time.Second

	maxJSONBodySize = 8 << 20 // request bodies that are JSON (stream positions)
)

// ServerOptions configures a Server.
type ServerOptions struct {
	Addr         string // listen address (http.addr); DefaultAddr if empty
	AuthToken    string // if set, every endpoint but /metrics and /healthz needs "Authorization: Bearer <token>"
	Logger       *slog.Logger
	Hostname     string // this node's hostname (lease.hostname), reported when it is primary
	AdvertiseURL string // this node's URL for its peers, reported when it is primary
	Candidate    bool   // this node may become primary (reported by /info)
	MountDir     string // fuse.dir, reported by /info for "litefs run" and "litefs lock"
	LeaseType    string // lease.type, reported by /info for "litefs status"
	ProxyURL     string // this node's HTTP proxy as its peers reach it, reported by /info (empty: no proxy)

	// ExtraMetrics, if set, writes more Prometheus text-format metrics at
	// the end of GET /metrics (the HTTP proxy's).
	ExtraMetrics func(w io.Writer)

	MaxLag          time.Duration // /healthz: a replica further behind is unhealthy; DefaultMaxLag if 0
	MaxImportSize   int64         // largest accepted POST /import body; DefaultMaxImportSize if 0
	MaxTxSize       int64         // largest accepted POST /tx body; DefaultMaxTxSize if 0
	TempDir         string        // for snapshot and import temporary files; os.TempDir() if empty
	ShutdownTimeout time.Duration // graceful shutdown limit; DefaultShutdownTimeout if 0
	WriteTimeout    time.Duration // a write (or request-body read) blocked this long ends the response; DefaultWriteTimeout if 0

	// BackupStatus, if set, reports the backup of every database (backup:
	// in litefs.yml) for /info, /metrics and /healthz. BackupMaxLag, if
	// above 0, makes /healthz fail on the primary when a backup is further
	// behind than that, or refused (backup.max-lag).
	BackupStatus func() []BackupStatus
	BackupMaxLag time.Duration

	// TLSConfig, if set, makes the server speak HTTPS (http.tls). Peers
	// dial with a matching ReplicaOptions.Client.
	TLSConfig *tls.Config

	// OnStreamClosed, if set, is called with the replica's node id when
	// its replication stream ends (for example to drop its HALT locks).
	OnStreamClosed func(nodeID uint64)

	// Promote, if set, serves POST /promote: make this node primary by a
	// handoff from the current primary; it returns once this node is.
	// Handoff, if set, serves POST /handoff?nodeID= on the primary. Both
	// are nil with a static lease (the requests are then refused).
	Promote func(ctx context.Context) error
	Handoff func(ctx context.Context, nodeID uint64) (HandoffTarget, error)
}

// Server serves the litefs HTTP API of one node.
type Server struct {
	store *litefs.Store
	opts  ServerOptions
	log   *slog.Logger
	mux   *nethttp.ServeMux

	mu     sync.Mutex
	ln     net.Listener
	cancel context.CancelFunc // ends long-lived responses (streams, events)
	base   context.Context

	halts     haltFeeds      // HALT events for /events
	published eventFeeds     // events of other parts of the daemon, see Publish
	streams   streamRegistry // live replication streams, for HandOff
}

// NewServer returns a server for store. Call Listen, then Serve.
func NewServer(store *litefs.Store, opts ServerOptions) *Server {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxLag <= 0 {
		opts.MaxLag = DefaultMaxLag
	}
	if opts.MaxImportSize <= 0 {
		opts.MaxImportSize = DefaultMaxImportSize
	}
	if opts.MaxTxSize <= 0 {
		opts.MaxTxSize = DefaultMaxTxSize
	}
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	s := &Server{store: store, opts: opts, log: opts.Logger, mux: nethttp.NewServeMux()}
	s.base, s.cancel = context.WithCancel(context.Background())
	s.routes()
	store.OnHalt(s.onHalt)
	return s
}

// routes registers every endpoint on the server's mux.
func (s *Server) routes() {
	s.mux.HandleFunc("POST /stream", s.handleStream)
	s.mux.HandleFunc("GET /info", s.handleInfo)
	s.mux.HandleFunc("GET /events", s.handleEvents)
	s.mux.HandleFunc("GET /export", s.handleExport)
	s.mux.HandleFunc("POST /import", s.handleImport)
	s.mux.HandleFunc("GET /healthz", s.handleHealthz)
	s.mux.HandleFunc("POST /halt", s.handleHaltAcquire)
	s.mux.HandleFunc("DELETE /halt", s.handleHaltRelease)
	s.mux.HandleFunc("GET /halt", s.handleHaltQuery)
	s.mux.HandleFunc("POST /tx", s.handleTx)
	s.mux.HandleFunc("POST /promote", s.handlePromote)
	s.mux.HandleFunc("POST /handoff", s.handleHandoff)
	s.mux.HandleFunc("GET /metrics", s.handleMetrics)
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// Handler returns the server's HTTP handler (authentication, headers and
// every endpoint), for use with any net/http server such as httptest.
func (s *Server) Handler() nethttp.Handler { return nethttp.HandlerFunc(s.serveHTTP) }

// serveHTTP applies the checks common to every request, then routes it.
func (s *Server) serveHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	if id := s.store.ClusterID(); id != "" {
		w.Header().Set(HeaderClusterID, id)
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="litefs"`)
		httpError(w, nethttp.StatusUnauthorized, "missing or wrong auth token: send the header \"Authorization: Bearer <http.auth-token>\"")
		return
	}
	if id := r.Header.Get(HeaderNodeID); id != "" {
		if _, err := parseNodeID(id); err != nil {
			httpError(w, nethttp.StatusBadRequest, err.Error())
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// authorized reports whether r may use the API: no token configured, an
// unauthenticated endpoint, or the right bearer token.
func (s *Server) authorized(r *nethttp.Request) bool {
	if s.opts.AuthToken == "" || r.URL.Path == "/metrics" || r.URL.Path == "/healthz" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.AuthToken)) == 1
}

// Listen binds the listen address. It fails at once if the address is taken.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (http.addr): %w", s.opts.Addr, err)
	}
	if s.opts.TLSConfig != nil {
		ln = tls.NewListener(ln, s.opts.TLSConfig)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve serves requests until ctx is done (calling Listen first if needed),
// then ends every stream and shuts down gracefully within ShutdownTimeout.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	hs := &nethttp.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ErrorLog:          newServerErrorLog(s.log),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("http server listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		s.cancel()
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	s.cancel() // streams and event feeds send End and return
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
		return fmt.Errorf("http server shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, nethttp.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

// requestContext returns a context that ends with the request or when the
// server shuts down, whichever is first.
func (s *Server) requestContext(r *nethttp.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.base, cancel)
	return ctx, func() { stop(); cancel() }
}

// httpError writes a plain-text error response.
func httpError(w nethttp.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, msg)
}

// writeJSON writes v as an indented JSON response.
func writeJSON(w nethttp.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// nameParam returns the validated "name" query parameter, or writes a 400.
func nameParam(w nethttp.ResponseWriter, r *nethttp.Request) (string, bool) {
	q := r.URL.Query()
	if _, ok := q["name"]; !ok {
		httpError(w, nethttp.StatusBadRequest, "missing query parameter \"name\" (the database name)")
		return "", false
	}
	name := q.Get("name")
	if err := litefs.ValidateName(name); err != nil {
		httpError(w, nethttp.StatusBadRequest, fmt.Sprintf("bad database name: %v (a name is a plain file name: not empty, no '/', not '.' or '..', no NUL, at most %d bytes)", err, litefs.MaxNameLen))
		return "", false
	}
	return name, true
}

// parseNodeID parses a node id: exactly 16 hex digits.
func parseNodeID(s string) (uint64, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("bad %s header %q: want the node id as 16 hex digits", HeaderNodeID, s)
	}
	var id uint64
	for _, c := range b {
		id = id<<8 | uint64(c)
	}
	return id, nil
}

// primaryInfo returns the primary's hostname and URL as this node knows them.
func (s *Server) primaryInfo() (hostname, url string) {
	if p := s.store.Primary(); p != nil {
		return p.Hostname, p.AdvertiseURL
	}
	return s.opts.Hostname, s.opts.AdvertiseURL
}
