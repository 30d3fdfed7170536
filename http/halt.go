package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"strconv"
	"time"

	"github.com/litefs/litefs"
)

// The HALT API (SPEC 7 and 8.2) on the primary:
//
//	POST   /halt?name=N&id=I[&wait=0]   acquire (wait=0: fail at once when taken)
//	POST   /halt?name=N&id=I&renew=1    renew
//	DELETE /halt?name=N&id=I            release (a lock no longer held: no-op)
//	GET    /halt?name=N                 who holds it
//	POST   /tx?name=N&id=I              one forwarded transaction (see tx.go)
//
// Every request but GET names its node in the Litefs-Id header: the holder.
// Refusals are JSON {"error": message, "code": reason} with a 4xx or 503.

// HaltJSON is a HALT lock in JSON (the answer to POST /halt, GET /halt).
type HaltJSON struct {
	Held    bool      `json:"held"`
	ID      string    `json:"id,omitempty"`     // 16 hex digits
	Holder  string    `json:"holder,omitempty"` // the holder's node id
	Pos     PosJSON   `json:"pos"`
	Expires time.Time `json:"expires,omitzero"`
}

// newHaltJSON formats l.
func newHaltJSON(l litefs.HaltLock) HaltJSON {
	return HaltJSON{Held: true, ID: litefs.FormatNodeID(l.ID), Holder: litefs.FormatNodeID(l.Holder), Pos: NewPosJSON(l.Pos), Expires: l.Expires}
}

// Reason codes of HALT API refusals.
const (
	codeBusy       = "busy"
	codeNotHeld    = "not-held"
	codeNotPrimary = "not-primary"
	codePosition   = "position"
	codeChecksum   = "checksum"
	codeInvalid    = "invalid"
	codeTooLarge   = "too-large"
	codeNotFound   = "not-found"
	codeNoTarget   = "no-target"     // handoff: no such candidate streaming
	codeNotCand    = "not-candidate" // promote: lease.candidate is false
	codeTimeout    = "timeout"
	codeNoStream   = "no-stream" // HALT or /tx from a node without a live replication stream
)

// apiErrorJSON is the body of a refused HALT API request.
type apiErrorJSON struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// haltError writes a refusal for err, choosing status and code from it.
func haltError(w nethttp.ResponseWriter, err error) {
	code, status := codeInvalid, nethttp.StatusBadRequest
	switch {
	case errors.Is(err, litefs.ErrHaltBusy):
		code, status = codeBusy, nethttp.StatusConflict
	case errors.Is(err, litefs.ErrHaltNotHeld):
		code, status = codeNotHeld, nethttp.StatusConflict
	case errors.Is(err, litefs.ErrNotPrimary):
		code, status = codeNotPrimary, nethttp.StatusServiceUnavailable
	case errors.Is(err, litefs.ErrPosMismatch):
		code, status = codePosition, nethttp.StatusConflict
	case errors.Is(err, litefs.ErrChecksumMismatch):
		code, status = codeChecksum, nethttp.StatusConflict
	case errors.Is(err, litefs.ErrDatabaseNotFound):
		code, status = codeNotFound, nethttp.StatusNotFound
	case errors.Is(err, errTooLarge):
		code, status = codeTooLarge, nethttp.StatusRequestEntityTooLarge
	case errors.Is(err, ErrNoStream):
		code, status = codeNoStream, nethttp.StatusForbidden
	}
	writeJSON(w, status, apiErrorJSON{Error: err.Error(), Code: code})
}

// haltRequest is the parsed common part of a HALT API request.
type haltRequest struct {
	db     *litefs.DB
	id     uint64
	holder uint64
}

// parseHaltRequest validates name, id (unless needID is false) and the
// caller's node id; it writes the refusal itself when something is wrong.
func (s *Server) parseHaltRequest(w nethttp.ResponseWriter, r *nethttp.Request, needID bool) (*haltRequest, bool) {
	name, ok := nameParam(w, r)
	if !ok {
		return nil, false
	}
	req := &haltRequest{}
	if needID {
		id, err := parseNodeID(r.URL.Query().Get("id"))
		if err != nil || id == 0 {
			haltError(w, fmt.Errorf("%w: query parameter \"id\" must be the lock id as 16 hex digits, not zero", litefs.ErrHaltInvalid))
			return nil, false
		}
		holder, err := parseNodeID(r.Header.Get(HeaderNodeID))
		if err != nil {
			haltError(w, fmt.Errorf("%w: the request needs the %s header (the holder's node id, 16 hex digits)", litefs.ErrHaltInvalid, HeaderNodeID))
			return nil, false
		}
		req.id, req.holder = id, holder
	}
	if !s.store.IsPrimary() {
		haltError(w, fmt.Errorf("%w: send HALT requests to the primary", litefs.ErrNotPrimary))
		return nil, false
	}
	if req.db = s.store.DB(name); req.db == nil {
		haltError(w, fmt.Errorf("%w: %q", litefs.ErrDatabaseNotFound, name))
		return nil, false
	}
	return req, true
}

// ErrNoStream refuses a HALT or a forwarded transaction from a node that has
// no live replication stream of this cluster from this primary (SPEC 11): a
// HALT belongs to a replica and ends with its stream.
var ErrNoStream = errors.New("no live replication stream from this node")

// checkStream refuses req (403) unless its holder streams req.db from this
// primary; it writes the refusal itself.
func (s *Server) checkStream(w nethttp.ResponseWriter, req *haltRequest) bool {
	if s.streams.streaming(req.holder, req.db.Name()) {
		return true
	}
	err := fmt.Errorf("%w: node %s has no replication stream of %s from this primary; a HALT is granted only to a replica of this cluster while its stream is connected",
		ErrNoStream, litefs.FormatNodeID(req.holder), req.db.Name())
	s.log.Warn("refused HALT request", "db", req.db.Name(), "node", litefs.FormatNodeID(req.holder), "reason", "no live replication stream")
	haltError(w, err)
	return false
}

// handleHaltAcquire answers POST /halt: acquire or renew.
func (s *Server) handleHaltAcquire(w nethttp.ResponseWriter, r *nethttp.Request) {
	req, ok := s.parseHaltRequest(w, r, true)
	if !ok || !s.checkStream(w, req) {
		return
	}
	renew, err := boolParam(r, "renew", false)
	if err != nil {
		haltError(w, err)
		return
	}
	wait, err := boolParam(r, "wait", true)
	if err != nil {
		haltError(w, err)
		return
	}
	if renew {
		l, err := req.db.RenewHalt(req.id, req.holder)
		if err != nil {
			haltError(w, err)
			return
		}
		writeJSON(w, nethttp.StatusOK, newHaltJSON(l))
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	l, err := req.db.AcquireHalt(ctx, req.id, req.holder, wait)
	if err != nil {
		haltError(w, err)
		return
	}
	if ctx.Err() != nil { // the caller gave up while waiting: it will never release
		req.db.ReleaseHalt(req.id, req.holder)
		return
	}
	// The stream may have ended while the lock was awaited, after its
	// ReleaseHaltsOf ran: a lock granted now would outlive it.
	if !s.checkStream(w, req) {
		req.db.ReleaseHalt(req.id, req.holder)
		return
	}
	writeJSON(w, nethttp.StatusOK, newHaltJSON(l))
}

// boolParam returns the boolean query parameter name, def when absent.
func boolParam(r *nethttp.Request, name string, def bool) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: query parameter %q must be true or false", litefs.ErrHaltInvalid, name)
	}
	return b, nil
}

// handleHaltRelease answers DELETE /halt.
func (s *Server) handleHaltRelease(w nethttp.ResponseWriter, r *nethttp.Request) {
	req, ok := s.parseHaltRequest(w, r, true)
	if !ok {
		return
	}
	released := req.db.ReleaseHalt(req.id, req.holder)
	writeJSON(w, nethttp.StatusOK, map[string]bool{"released": released})
}

// handleHaltQuery answers GET /halt.
func (s *Server) handleHaltQuery(w nethttp.ResponseWriter, r *nethttp.Request) {
	req, ok := s.parseHaltRequest(w, r, false)
	if !ok {
		return
	}
	l, held := req.db.HaltHolder()
	if !held {
		writeJSON(w, nethttp.StatusOK, HaltJSON{Pos: NewPosJSON(req.db.Pos())})
		return
	}
	writeJSON(w, nethttp.StatusOK, newHaltJSON(l))
}

// handleTx answers POST /tx: one transaction from the HALT holder.
func (s *Server) handleTx(w nethttp.ResponseWriter, r *nethttp.Request) {
	req, ok := s.parseHaltRequest(w, r, true)
	if !ok || !s.checkStream(w, req) {
		return
	}
	if r.ContentLength > s.opts.MaxTxSize {
		haltError(w, fmt.Errorf("%w: body of %d bytes exceeds the limit of %d bytes", errTooLarge, r.ContentLength, s.opts.MaxTxSize))
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	body := io.Reader(nethttp.MaxBytesReader(w, r.Body, s.opts.MaxTxSize))
	body = &deadlineReader{r: body, rc: nethttp.NewResponseController(w), timeout: s.opts.WriteTimeout}
	pos, err := req.db.ApplyForwardedLTX(ctx, req.id, req.holder, body)
	if err != nil {
		var mbe *nethttp.MaxBytesError
		if errors.As(err, &mbe) {
			err = fmt.Errorf("%w: body exceeds the limit of %d bytes", errTooLarge, s.opts.MaxTxSize)
		}
		haltError(w, err)
		return
	}
	writeJSON(w, nethttp.StatusOK, struct {
		Pos PosJSON `json:"pos"`
	}{NewPosJSON(pos)})
}

// errTooLarge marks a body over the size limit.
var errTooLarge = errors.New("request body too large")

// decodeAPIError reads a refusal of the node-to-node API (HALT, handoff)
// into an error the caller can test with errors.Is.
func decodeAPIError(status int, body []byte) error {
	var e apiErrorJSON
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		return fmt.Errorf("primary answered %d: %s", status, truncate(string(body), 300))
	}
	var base error
	switch e.Code {
	case codeBusy:
		base = litefs.ErrHaltBusy
	case codeNotHeld:
		base = litefs.ErrHaltNotHeld
	case codeNotPrimary:
		base = litefs.ErrNotPrimary
	case codePosition:
		base = litefs.ErrPosMismatch
	case codeChecksum:
		base = litefs.ErrChecksumMismatch
	case codeNotFound:
		base = litefs.ErrDatabaseNotFound
	case codeNoTarget:
		base = ErrNoHandoffTarget
	case codeNotCand:
		base = ErrNotCandidate
	case codeTimeout:
		base = context.DeadlineExceeded
	case codeNoStream:
		base = ErrNoStream
	default:
		base = litefs.ErrHaltInvalid
	}
	return fmt.Errorf("%w (primary: %s)", base, e.Error)
}

// truncate shortens s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
