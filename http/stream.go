package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	nethttp "net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// HeartbeatInterval is how often the primary sends a Heartbeat frame.
const HeartbeatInterval = time.Second

// StreamRequest is the body of POST /stream: the replica's position for
// every database it has.
type StreamRequest struct {
	DBs map[string]PosJSON `json:"dbs"`
}

// handleStream answers POST /stream: it sends the replica what it lacks,
// then every new transaction as it commits, until the replica goes away,
// this node stops being primary, or the server shuts down.
func (s *Server) handleStream(w nethttp.ResponseWriter, r *nethttp.Request) {
	if !s.store.IsPrimary() {
		host, url := s.primaryInfo()
		httpError(w, nethttp.StatusConflict, fmt.Sprintf("this node is not the primary; stream from the primary %s (%s)", host, url))
		return
	}
	sess, ok := s.newStreamSession(w, r)
	if !ok {
		return
	}
	// The primary names the cluster; replicas adopt the id from this header.
	clusterID, err := s.store.EnsureClusterID()
	if err != nil {
		httpError(w, nethttp.StatusInternalServerError, fmt.Sprintf("cannot create the cluster id: %v", err))
		return
	}
	w.Header().Set(HeaderClusterID, clusterID)
	// The holder's daemon died or restarted: its HALT locks go at once.
	defer s.store.ReleaseHaltsOf(sess.nodeID)
	if s.opts.OnStreamClosed != nil {
		defer s.opts.OnStreamClosed(sess.nodeID)
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	sub := s.store.Subscribe() // before the first catch-up: no later commit is missed
	defer sub.Close()
	defer func() { _ = sess.rc.SetWriteDeadline(time.Time{}) }()

	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(nethttp.StatusOK)
	if err := sess.rc.Flush(); err != nil {
		return
	}
	metrics.streamsActive.Add(1)
	defer metrics.streamsActive.Add(-1)
	sess.log.Info("replica connected", "dbs", len(sess.have))

	s.streams.add(sess)
	err = sess.run(ctx, sub)
	s.streams.remove(sess)
	close(sess.ended)
	var reason string
	switch {
	case s.base.Err() != nil:
		reason = "server shutting down"
	case r.Context().Err() != nil:
		sess.log.Info("replica disconnected", "reason", "replica went away")
		return
	case err != nil:
		reason = err.Error()
	}
	_ = sess.fw.WriteEnd(reason) // best effort: the stream may be broken
	_ = sess.rc.Flush()
	sess.log.Info("replica disconnected", "reason", reason)
}

// streamSession is one replica's stream: what it has, what it wants.
type streamSession struct {
	s      *Server
	nodeID uint64 // the replica's node id
	log    *slog.Logger
	rc     *nethttp.ResponseController
	fw     *FrameWriter
	filter map[string]bool    // nil: every database
	have   map[string]ltx.Pos // the replica's position of each database, as sent so far

	// For handoff (handoff.go): what the replica says of itself.
	candidate    bool
	advertiseURL string
	hostname     string
	handoff      chan handoffReq // HandOff's request to send the Handoff frame
	ended        chan struct{}   // closed when run returns
	readyAt      atomic.Int64    // unix ns of the Ready frame, 0 before

	// caughtUpAt is the start of the last completed syncAll: everything
	// committed before it has been sent. Heartbeats carry it.
	caughtUpAt time.Time
}

// newStreamSession validates a stream request; on a bad request it writes
// the 4xx response and returns false.
func (s *Server) newStreamSession(w nethttp.ResponseWriter, r *nethttp.Request) (*streamSession, bool) {
	id := r.Header.Get(HeaderNodeID)
	nodeID, err := parseNodeID(id)
	if err != nil {
		httpError(w, nethttp.StatusBadRequest, fmt.Sprintf("a stream request needs the %s header (16 hex digits)", HeaderNodeID))
		return nil, false
	}
	if nodeID == s.store.NodeID() {
		httpError(w, nethttp.StatusBadRequest, "a node cannot stream from itself: check lease.advertise-url / lease.hostname")
		return nil, false
	}
	if theirs, ours := r.Header.Get(HeaderClusterID), s.store.ClusterID(); theirs != "" && ours != "" && theirs != ours {
		httpError(w, nethttp.StatusConflict, fmt.Sprintf("cluster id mismatch: this node belongs to cluster %s, the caller to %s", ours, theirs))
		return nil, false
	}
	filter, err := parseFilter(r.URL.Query().Get("filter"))
	if err != nil {
		httpError(w, nethttp.StatusBadRequest, err.Error())
		return nil, false
	}
	rc := nethttp.NewResponseController(w)
	body := &deadlineReader{r: nethttp.MaxBytesReader(w, r.Body, maxJSONBodySize), rc: rc, timeout: s.opts.WriteTimeout}
	have, code, err := readStreamRequest(body)
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		httpError(w, code, err.Error())
		return nil, false
	}
	sess := &streamSession{
		s:      s,
		nodeID: nodeID,
		log:    s.log.With("replica", id, "remote", r.RemoteAddr),
		rc:     rc,
		fw:     NewFrameWriter(&deadlineWriter{w: w, rc: rc, timeout: s.opts.WriteTimeout}),
		filter: filter,
		have:   make(map[string]ltx.Pos),

		candidate:    r.Header.Get(HeaderCandidate) == "true",
		advertiseURL: r.Header.Get(HeaderAdvertiseURL),
		hostname:     r.Header.Get(HeaderHostname),
		handoff:      make(chan handoffReq),
		ended:        make(chan struct{}),

		caughtUpAt: time.Now(),
	}
	for name, pos := range have {
		if sess.wants(name) {
			sess.have[name] = pos
		}
	}
	return sess, true
}

// parseFilter parses the filter query parameter: comma-separated names.
func parseFilter(v string) (map[string]bool, error) {
	if v == "" {
		return nil, nil
	}
	m := make(map[string]bool)
	for _, name := range strings.Split(v, ",") {
		if name == "" {
			continue
		}
		if err := litefs.ValidateName(name); err != nil {
			return nil, fmt.Errorf("bad database name in filter: %w", err)
		}
		m[name] = true
	}
	if len(m) == 0 {
		return nil, nil // "filter=," names nothing: no filter
	}
	return m, nil
}

// readStreamRequest decodes and validates the replica's positions.
func readStreamRequest(body io.Reader) (map[string]ltx.Pos, int, error) {
	var req StreamRequest
	dec := json.NewDecoder(body)
	if err := dec.Decode(&req); err != nil {
		var mbe *nethttp.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nethttp.StatusRequestEntityTooLarge, fmt.Errorf("stream request body exceeds %d bytes", mbe.Limit)
		}
		return nil, nethttp.StatusBadRequest, fmt.Errorf(`bad stream request body: %w (want {"dbs":{"NAME":{"txid":"<16 hex>","checksum":"<16 hex>"}}})`, err)
	}
	out := make(map[string]ltx.Pos, len(req.DBs))
	for name, pj := range req.DBs {
		if err := litefs.ValidateName(name); err != nil {
			return nil, nethttp.StatusBadRequest, fmt.Errorf("bad database name in stream request: %w", err)
		}
		pos, err := pj.Pos()
		if err != nil {
			return nil, nethttp.StatusBadRequest, fmt.Errorf("bad position of %q in stream request: %w", name, err)
		}
		out[name] = pos
	}
	return out, 0, nil
}

// wants reports whether the replica replicates database name.
func (ss *streamSession) wants(name string) bool { return ss.filter == nil || ss.filter[name] }

// run sends the initial catch-up and Ready, then follows the store.
func (ss *streamSession) run(ctx context.Context, sub *litefs.Subscription) error {
	if err := ss.sync(ctx); err != nil {
		return err
	}
	if err := ss.fw.WriteReady(ss.caughtUpAt); err != nil {
		return err
	}
	if err := ss.rc.Flush(); err != nil {
		return fmt.Errorf("flush stream: %w", err)
	}
	ss.readyAt.Store(time.Now().UnixNano())
	tick := time.NewTicker(HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.C:
			if err := ss.sync(ctx); err != nil {
				return err
			}
		case req := <-ss.handoff:
			err := ss.sendHandoff(ctx)
			req.done <- err
			if err != nil {
				return err
			}
			return errHandedOff
		case <-tick.C:
			if !ss.s.store.IsPrimary() {
				return errors.New("this node is no longer the primary")
			}
			// Everything committed before the heartbeat's time is sent
			// before it: a replica reading it is caught up to that time.
			if err := ss.sync(ctx); err != nil {
				return err
			}
			if err := ss.fw.WriteHeartbeat(ss.caughtUpAt); err != nil {
				return err
			}
		}
		if err := ss.rc.Flush(); err != nil {
			return fmt.Errorf("flush stream: %w", err)
		}
	}
}

// sync runs syncAll and records when the replica was caught up.
func (ss *streamSession) sync(ctx context.Context) error {
	start := time.Now()
	if err := ss.syncAll(ctx); err != nil {
		return err
	}
	ss.caughtUpAt = start
	return nil
}

// syncAll brings every wanted database of the replica up to the primary's
// current position, and drops databases the primary no longer has.
func (ss *streamSession) syncAll(ctx context.Context) error {
	present := make(map[string]bool)
	for _, db := range ss.s.store.DBs() {
		if !ss.wants(db.Name()) {
			continue
		}
		present[db.Name()] = true
		if err := ss.syncDB(ctx, db); err != nil {
			return err
		}
	}
	for name := range ss.have {
		if present[name] {
			continue
		}
		if err := ss.fw.WriteDrop(name); err != nil {
			return err
		}
		delete(ss.have, name)
		ss.log.Info("database dropped on replica", "db", name)
	}
	return nil
}

// syncDB sends what the replica lacks of one database: the LTX files after
// its position if they exist and line up, a snapshot otherwise.
func (ss *streamSession) syncDB(ctx context.Context, db *litefs.DB) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name, pos := db.Name(), db.Pos()
	have, ok := ss.have[name]
	switch {
	case ok && have == pos:
		return nil
	case pos.TXID == 0:
		// Created but never committed: nothing to send. A replica with
		// data under this name has a database the primary replaced.
		if ok && have.TXID != 0 {
			delete(ss.have, name)
			return ss.fw.WriteDrop(name)
		}
		return nil
	case !ok:
		return ss.sendSnapshot(ctx, db, "replica does not have the database")
	case have.TXID > pos.TXID:
		return ss.sendSnapshot(ctx, db, "replica is ahead of the primary (diverged)")
	case have.TXID == pos.TXID:
		return ss.sendSnapshot(ctx, db, "replica checksum differs at the same txid (diverged)")
	}
	reason, err := ss.sendLTXFiles(ctx, db, have, pos.TXID)
	if err != nil || reason == "" {
		return err
	}
	return ss.sendSnapshot(ctx, db, reason)
}

// sendLTXFiles sends the LTX files that take the replica from have to
// upTo. It returns a reason when a snapshot must be sent instead (history
// removed by retention, or the files do not line up with the replica).
func (ss *streamSession) sendLTXFiles(ctx context.Context, db *litefs.DB, have ltx.Pos, upTo ltx.TXID) (string, error) {
	name := db.Name()
	for have.TXID < upTo {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		f, err := db.OpenLTX(have.TXID + 1)
		if errors.Is(err, litefs.ErrLTXNotFound) {
			return fmt.Sprintf("ltx file for txid %s is gone (retention)", have.TXID+1), nil
		} else if err != nil {
			return "", fmt.Errorf("open ltx of %q: %w", name, err)
		}
		next, reason, err := ss.sendLTXFile(name, f, have)
		_ = f.Close()
		if err != nil || reason != "" {
			return reason, err
		}
		have = next
		ss.have[name] = have
	}
	return "", nil
}

// sendLTXFile checks that the open LTX file f continues from have and sends
// it; it returns the replica's new position.
func (ss *streamSession) sendLTXFile(name string, f *litefs.LTXFile, have ltx.Pos) (ltx.Pos, string, error) {
	hdr, trailer, size, err := readLTXEnds(f, f.Size())
	if err != nil {
		return ltx.Pos{}, "", fmt.Errorf("read ltx %s of %q: %w", have.TXID+1, name, err)
	}
	if hdr.MinTXID != have.TXID+1 {
		return ltx.Pos{}, fmt.Sprintf("ltx file starts at txid %s, replica needs %s", hdr.MinTXID, have.TXID+1), nil
	}
	if !hdr.IsSnapshot() && hdr.PreApplyChecksum != have.PostApplyChecksum {
		return ltx.Pos{}, fmt.Sprintf("replica checksum %s at txid %s does not match the primary's history %s (diverged)",
			have.PostApplyChecksum, have.TXID, hdr.PreApplyChecksum), nil
	}
	if err := ss.fw.WriteLTX(name, f, size); err != nil {
		return ltx.Pos{}, "", err
	}
	metrics.ltxFramesSent.Add(1)
	return ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}, "", nil
}

// readLTXEnds reads an LTX file's header and trailer and returns its size;
// f is left positioned at the start.
func readLTXEnds(f interface {
	io.ReaderAt
	io.Seeker
}, size int64) (ltx.Header, ltx.Trailer, int64, error) {
	var hdr ltx.Header
	var trailer ltx.Trailer
	if size < ltx.HeaderSize+ltx.TrailerSize {
		return hdr, trailer, 0, fmt.Errorf("ltx file is %d bytes: too short", size)
	}
	b := make([]byte, ltx.HeaderSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return hdr, trailer, 0, err
	}
	if err := hdr.UnmarshalBinary(b); err != nil {
		return hdr, trailer, 0, fmt.Errorf("ltx header: %w", err)
	}
	if _, err := f.ReadAt(b[:ltx.TrailerSize], size-ltx.TrailerSize); err != nil {
		return hdr, trailer, 0, err
	}
	if err := trailer.UnmarshalBinary(b[:ltx.TrailerSize]); err != nil {
		return hdr, trailer, 0, fmt.Errorf("ltx trailer: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return hdr, trailer, 0, err
	}
	return hdr, trailer, size, nil
}

// sendSnapshot sends the whole database as one snapshot LTX file. While
// the database is copied, heartbeats keep the stream alive; they carry the
// time of the last completed catch-up, so the replica's lag grows
// meanwhile. The copy is then encoded straight into the stream (a chunked
// frame): no second temporary file, and the replica decodes while the
// primary encodes.
func (ss *streamSession) sendSnapshot(ctx context.Context, db *litefs.DB, reason string) error {
	start := time.Now()
	var snap *litefs.Snapshot
	err := withKeepalive(ctx, func(ctx context.Context) (err error) {
		snap, err = db.PrepareSnapshot(ctx)
		return err
	}, func() error {
		if err := ss.fw.WriteHeartbeat(ss.caughtUpAt); err != nil {
			return err
		}
		return ss.rc.Flush()
	})
	if err != nil {
		if snap != nil { // copied, but the stream failed meanwhile
			snap.Close()
		}
		return fmt.Errorf("snapshot %q: %w", db.Name(), err)
	}
	defer snap.Close()
	size, err := ss.fw.WriteLTXStream(db.Name(), func(w io.Writer) error {
		_, err := snap.Encode(ctx, w)
		return err
	})
	if err != nil {
		return err
	}
	pos := snap.Pos()
	ss.have[db.Name()] = pos
	metrics.ltxFramesSent.Add(1)
	metrics.snapshotsSent.Add(1)
	metrics.snapshotBytesSent.Add(size)
	ss.log.Info("snapshot sent", "db", db.Name(), "txid", pos.TXID.String(), "bytes", size,
		"reason", reason, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// writeSnapshotTemp writes a snapshot of db into a temporary file, returned
// open and positioned at its start with its position and size.
func (s *Server) writeSnapshotTemp(ctx context.Context, db *litefs.DB) (*os.File, ltx.Pos, int64, error) {
	f, err := os.CreateTemp(s.opts.TempDir, "litefs-snapshot-*.ltx")
	if err != nil {
		return nil, ltx.Pos{}, 0, fmt.Errorf("create snapshot temp file: %w", err)
	}
	pos, err := db.WriteSnapshot(ctx, f)
	var size int64
	if err == nil {
		if size, err = f.Seek(0, io.SeekCurrent); err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
	}
	if err != nil {
		removeTemp(f)
		return nil, ltx.Pos{}, 0, fmt.Errorf("snapshot %q: %w", db.Name(), err)
	}
	return f, pos, size, nil
}

// withKeepalive runs fn and, until it returns, calls keepalive every
// HeartbeatInterval. An error from keepalive cancels fn's context and is
// returned once fn has returned.
func withKeepalive(ctx context.Context, fn func(context.Context) error, keepalive func() error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	tick := time.NewTicker(HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if err := keepalive(); err != nil {
				cancel()
				<-done
				return err
			}
		}
	}
}

// deadlineReader extends the connection's read deadline before every read
// of a request body, so a client that stops sending is cut off instead of
// holding a goroutine and a temporary file forever. The caller clears the
// deadline when the body is read.
type deadlineReader struct {
	r       io.Reader
	rc      *nethttp.ResponseController
	timeout time.Duration
}

// Read implements io.Reader.
func (d *deadlineReader) Read(p []byte) (int, error) {
	_ = d.rc.SetReadDeadline(time.Now().Add(d.timeout)) // unsupported by some writers (tests): ignored
	return d.r.Read(p)
}

// removeTemp closes and removes a temporary file.
func removeTemp(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// deadlineWriter extends the connection's write deadline before every
// write, so a replica that stops reading ends its stream instead of
// holding a goroutine and a snapshot forever.
type deadlineWriter struct {
	w       io.Writer
	rc      *nethttp.ResponseController
	timeout time.Duration
}

// Write implements io.Writer.
func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout)) // unsupported by some writers (tests): ignored
	return d.w.Write(p)
}
