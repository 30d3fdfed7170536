package http

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	nethttp "net/http"
	"net/url"
	"strings"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// Defaults of ReplicaOptions.
const (
	DefaultReconnectDelay = time.Second
	DefaultStallTimeout   = 5 * time.Second
	maxReconnectBackoff   = 10 // the delay grows up to this many times ReconnectDelay
)

// ReplicaOptions configures RunReplica.
type ReplicaOptions struct {
	PrimaryURL      string        // the primary's advertise URL, e.g. http://primary:20202
	PrimaryHostname string        // the primary's hostname (shown in .primary, /info)
	Databases       []string      // replicate only these (lease.databases); all if empty
	ReconnectDelay  time.Duration // wait after a failed or ended stream; DefaultReconnectDelay if 0
	StallTimeout    time.Duration // a stream that delivers no byte this long is dead; DefaultStallTimeout if 0
	AuthToken       string        // sent as "Authorization: Bearer <token>" when set
	Logger          *slog.Logger
	Client          *nethttp.Client // for tests; if nil, one with bounded connect and header waits using TLSConfig
	TLSConfig       *tls.Config     // http.tls for https:// URLs (LoadTLS's Client); nil: the system roots

	// Candidate, OwnURL and OwnHostname describe this node to the primary,
	// which may hand the lease to a candidate (HandOff).
	Candidate   bool
	OwnURL      string
	OwnHostname string
	// OnHandoff, if set, is called when the primary hands the lease to
	// this node: every transaction it committed is applied here by then.
	// The stream ends after it.
	OnHandoff func()
}

// errReconnect marks stream endings after which the replica reconnects at
// once (the primary will send a snapshot).
var errReconnect = errors.New("reconnect for a snapshot")

// RunReplica makes store a replica of the primary at opts.PrimaryURL and
// keeps it replicating until ctx is done: it connects to the primary's
// /stream, applies every frame, and after any error logs one line, marks
// the store disconnected, waits ReconnectDelay (doubling up to 10x while
// attempts keep failing) and reconnects. It never exits the process. It
// returns nil once ctx is done, or an error at once for unusable options.
//
// Lag: Ready and every Heartbeat frame carry a primary clock time T and are
// sent only after every transaction the primary committed before T; frames
// are applied in order, so on reading one this replica has applied
// everything the primary committed before T. The lag recorded in the store
// at each of them is max(0, local clock - T): network delay plus apply
// backlog (plus any clock skew; node clocks are assumed NTP-synchronized).
// While a snapshot is prepared the primary repeats the old T, so the lag
// grows. On reconnect the lag is the time since the last such T. A stream
// that delivers nothing for StallTimeout is dropped and the store marked
// disconnected.
func RunReplica(ctx context.Context, store *litefs.Store, opts ReplicaOptions) error {
	if u, err := url.Parse(opts.PrimaryURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("bad primary URL %q: want http://host:port or https://host:port", opts.PrimaryURL)
	}
	for _, name := range opts.Databases {
		if err := litefs.ValidateName(name); err != nil {
			return fmt.Errorf("bad database name in lease.databases: %w", err)
		}
	}
	if opts.ReconnectDelay <= 0 {
		opts.ReconnectDelay = DefaultReconnectDelay
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = DefaultStallTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Client == nil {
		opts.Client = defaultStreamClient(opts.TLSConfig)
	}
	store.SetReplica(&litefs.PrimaryInfo{Hostname: opts.PrimaryHostname, AdvertiseURL: opts.PrimaryURL})
	rc := &replicaClient{store: store, opts: opts, log: opts.Logger.With("primary", opts.PrimaryURL)}
	return rc.loop(ctx)
}

// replicaClient is the replica side of the stream.
type replicaClient struct {
	store *litefs.Store
	opts  ReplicaOptions
	log   *slog.Logger

	// lastCaughtUp is the primary's time T of the last Ready or Heartbeat:
	// this node had applied everything the primary committed before it.
	lastCaughtUp time.Time
}

// caughtUp records that everything the primary committed before t is
// applied here, and sets the lag to max(0, now - t).
func (c *replicaClient) caughtUp(t time.Time) {
	if t.After(c.lastCaughtUp) {
		c.lastCaughtUp = t
	}
	c.store.SetConnected(true, true, max(0, time.Since(c.lastCaughtUp)))
}

// loop connects, streams and reconnects until ctx is done.
func (c *replicaClient) loop(ctx context.Context) error {
	delay := c.opts.ReconnectDelay
	var prevReconnect bool
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			metrics.streamReconnects.Add(1)
		}
		synced, err := c.streamOnce(ctx)
		c.store.SetConnected(false, false, 0)
		if ctx.Err() != nil {
			return nil
		}
		if synced {
			delay = c.opts.ReconnectDelay // the stream worked: start over
		}
		// A position mismatch is fixed by reconnecting at once (the primary
		// then sends a snapshot); twice in a row backs off like any error.
		wait := delay
		if reconnect := errors.Is(err, errReconnect); reconnect && !prevReconnect {
			wait = 0
			prevReconnect = true
		} else {
			prevReconnect = reconnect
			delay = min(delay*2, c.opts.ReconnectDelay*maxReconnectBackoff)
		}
		if errors.Is(err, litefs.ErrClusterMismatch) {
			c.log.Error("primary belongs to another cluster: not replicating; fix the data directory or the lease", "error", err, "retry_in", wait)
		} else {
			c.log.Warn("disconnected from primary", "error", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// streamOnce runs one stream until it fails or ctx is done. synced reports
// whether the stream reached Ready.
func (c *replicaClient) streamOnce(ctx context.Context) (synced bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.connect(sctx)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if id := resp.Header.Get(HeaderClusterID); id != "" {
		if err := c.store.SetClusterID(id); err != nil {
			return false, fmt.Errorf("adopt cluster id: %w", err)
		}
	}
	c.log.Info("connected to primary")
	if c.lastCaughtUp.IsZero() {
		c.store.SetConnected(true, false, 0)
	} else {
		c.store.SetConnected(true, true, time.Since(c.lastCaughtUp))
	}
	body := newStallReader(resp.Body, c.opts.StallTimeout, cancel)
	defer body.stop()
	s := &replicaStream{c: c, fr: NewFrameReader(body)}
	err = s.run(ctx)
	if sctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("stream stalled: no data for %s: %w", c.opts.StallTimeout, err)
	}
	return s.synced, err
}

// connect sends the stream request with this node's positions.
func (c *replicaClient) connect(ctx context.Context) (*nethttp.Response, error) {
	req := StreamRequest{DBs: make(map[string]PosJSON)}
	for name, pos := range c.store.Positions() {
		if c.wants(name) {
			req.DBs[name] = NewPosJSON(pos)
		}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode stream request: %w", err)
	}
	u := strings.TrimRight(c.opts.PrimaryURL, "/") + "/stream"
	if len(c.opts.Databases) > 0 {
		u += "?filter=" + url.QueryEscape(strings.Join(c.opts.Databases, ","))
	}
	hreq, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("stream request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set(HeaderNodeID, litefs.FormatNodeID(c.store.NodeID()))
	if id := c.store.ClusterID(); id != "" {
		hreq.Header.Set(HeaderClusterID, id)
	}
	if c.opts.Candidate {
		hreq.Header.Set(HeaderCandidate, "true")
	}
	if c.opts.OwnURL != "" {
		hreq.Header.Set(HeaderAdvertiseURL, c.opts.OwnURL)
	}
	if c.opts.OwnHostname != "" {
		hreq.Header.Set(HeaderHostname, c.opts.OwnHostname)
	}
	if c.opts.AuthToken != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.opts.AuthToken)
	}
	resp, err := c.opts.Client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("connect to primary: %w", explainTLSError(err, "the primary"))
	}
	if resp.StatusCode != nethttp.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		err := fmt.Errorf("primary refused the stream: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
		if resp.StatusCode == nethttp.StatusConflict && strings.Contains(string(msg), "cluster id mismatch") {
			err = fmt.Errorf("%w: %w", litefs.ErrClusterMismatch, err)
		}
		return nil, err
	}
	return resp, nil
}

// wants reports whether this replica replicates database name.
func (c *replicaClient) wants(name string) bool {
	if len(c.opts.Databases) == 0 {
		return true
	}
	for _, n := range c.opts.Databases {
		if n == name {
			return true
		}
	}
	return false
}

// replicaStream applies the frames of one stream.
type replicaStream struct {
	c      *replicaClient
	fr     *FrameReader
	synced bool
}

// run reads and applies frames until the stream ends.
func (s *replicaStream) run(ctx context.Context) error {
	var next *Frame // a frame read ahead by a batch it did not belong to
	for {
		var f Frame
		var err error
		if next != nil {
			f, next = *next, nil
		} else if f, err = s.fr.Next(); errors.Is(err, io.EOF) {
			return errors.New("primary closed the stream")
		} else if err != nil {
			return fmt.Errorf("read stream: %w", err)
		}
		switch f.Type {
		case FrameLTX:
			next, err = s.applyLTX(ctx, f)
		case FrameDrop:
			err = s.drop(f.Name)
		case FrameReady:
			s.synced = true
			s.c.caughtUp(f.Time)
			s.c.log.Info("caught up with primary", "lag", s.c.store.Lag().Round(time.Millisecond))
		case FrameHeartbeat:
			if s.synced {
				s.c.caughtUp(f.Time)
			}
		case FrameEnd:
			return fmt.Errorf("primary ended the stream: %s", f.Reason)
		case FrameHandoff:
			s.c.log.Info("the primary handed the lease to this node")
			if s.c.opts.OnHandoff != nil {
				s.c.opts.OnHandoff()
			}
			return errors.New("the primary handed the lease to this node")
		}
		if err != nil {
			return err
		}
	}
}

// maxApplyBatch bounds how many transactions a replica applies under one
// lock-out of its readers.
const maxApplyBatch = 64

// applyLTX applies an LTX frame, creating the database if needed, together
// with the LTX frames for the same database that have already arrived
// behind it (see litefs.DB.ApplySpooled). It returns a frame it read ahead
// that belongs to no batch, for the caller to handle next.
func (s *replicaStream) applyLTX(ctx context.Context, f Frame) (*Frame, error) {
	hdr, r, err := ltx.PeekHeader(f.Body)
	if err != nil {
		return nil, fmt.Errorf("read ltx header for %q: %w", f.Name, eofUnexpected(err))
	}
	db, created := s.c.store.DB(f.Name), false
	if db == nil {
		if db, err = s.c.store.CreateDB(f.Name); err != nil && !errors.Is(err, litefs.ErrDatabaseExists) {
			return nil, fmt.Errorf("create database %q: %w", f.Name, err)
		}
		created = err == nil
	}
	batch, next, err := s.spoolBatch(db, f.Name, r, hdr.IsSnapshot())
	last := hdr
	if len(batch) > 0 {
		last = batch[len(batch)-1].Header()
	}
	pos, aerr := db.ApplySpooled(ctx, batch)
	if err == nil {
		err = aerr
	} else if aerr != nil {
		err = errors.Join(err, aerr)
	}
	if err != nil && created {
		_ = s.c.store.DeleteDB(f.Name) // a refused file leaves nothing behind
	}
	if errors.Is(err, litefs.ErrPosMismatch) {
		return nil, fmt.Errorf("apply ltx %s-%s to %q: %w: %w", hdr.MinTXID, last.MaxTXID, f.Name, err, errReconnect)
	} else if err != nil {
		return nil, fmt.Errorf("apply ltx %s-%s to %q: %w", hdr.MinTXID, last.MaxTXID, f.Name, err)
	}
	metrics.ltxFramesApplied.Add(int64(len(batch)))
	if hdr.IsSnapshot() {
		size := f.BodySize
		if size < 0 {
			size = s.fr.chunkedSize()
		}
		metrics.snapshotsRecv.Add(1)
		metrics.snapshotBytesRecv.Add(size)
		s.c.log.Info("snapshot applied", "db", f.Name, "txid", pos.TXID.String(), "bytes", size)
	}
	return next, nil
}

// spoolBatch spools the first file (body r) and then, while the stream
// already holds more, the following LTX frames for the same database. A
// snapshot is applied alone. It returns the spooled files, a frame read
// ahead that is not part of the batch, and the error that ended the batch
// (the files spooled before it are still returned, to be applied).
func (s *replicaStream) spoolBatch(db *litefs.DB, name string, r io.Reader, snapshot bool) ([]*litefs.Incoming, *Frame, error) {
	first, err := db.SpoolLTX(r)
	if err != nil {
		return nil, nil, err
	}
	batch := []*litefs.Incoming{first}
	for !snapshot && len(batch) < maxApplyBatch && s.fr.Buffered() > 0 {
		f, err := s.fr.Next()
		if err != nil {
			return batch, nil, fmt.Errorf("read stream: %w", err)
		}
		if f.Type != FrameLTX || f.Name != name {
			return batch, &f, nil
		}
		hdr, r, err := ltx.PeekHeader(f.Body)
		if err != nil {
			return batch, nil, fmt.Errorf("read ltx header for %q: %w", f.Name, eofUnexpected(err))
		}
		if hdr.IsSnapshot() {
			f.Body = r // PeekHeader's reader gives the header back
			return batch, &f, nil
		}
		in, err := db.SpoolLTX(r)
		if err != nil {
			return batch, nil, err
		}
		batch = append(batch, in)
	}
	return batch, nil, nil
}

// drop deletes a database the primary no longer has.
func (s *replicaStream) drop(name string) error {
	if err := s.c.store.DeleteDB(name); err != nil && !errors.Is(err, litefs.ErrDatabaseNotFound) {
		return fmt.Errorf("drop database %q: %w", name, err)
	}
	s.c.log.Info("database dropped (deleted on the primary)", "db", name)
	return nil
}

// stallReader cancels the stream when a Read waits longer than timeout.
// Only time spent inside Read counts: applying a large file does not.
type stallReader struct {
	r       io.Reader
	timeout time.Duration
	timer   *time.Timer
}

// newStallReader wraps r; cancel is called when a Read stalls.
func newStallReader(r io.Reader, timeout time.Duration, cancel context.CancelFunc) *stallReader {
	t := time.AfterFunc(timeout, cancel)
	t.Stop()
	return &stallReader{r: r, timeout: timeout, timer: t}
}

// Read implements io.Reader.
func (s *stallReader) Read(p []byte) (int, error) {
	s.timer.Reset(s.timeout)
	n, err := s.r.Read(p)
	s.timer.Stop()
	return n, err
}

// stop disarms the timer for good.
func (s *stallReader) stop() { s.timer.Stop() }

// defaultStreamClient returns an HTTP client for the stream: bounded
// connect and response-header waits, no limit on the (endless) body.
func defaultStreamClient(tlsConf *tls.Config) *nethttp.Client {
	return &nethttp.Client{Transport: NewPeerTransport(tlsConf, 30*time.Second)}
}
