package http

import (
	"context"
	"errors"
	"fmt"
	nethttp "net/http"
	"net/url"
	"time"

	"github.com/litefs/litefs"
)

// ErrNotCandidate is returned by a Promote hook on a node that can never
// be primary (lease.candidate: false).
var ErrNotCandidate = errors.New("this node is not a candidate (lease.candidate: false)")

// DefaultPromoteTimeout bounds POST /promote and POST /handoff.
const DefaultPromoteTimeout = 30 * time.Second

// PromoteJSON is the answer of POST /promote and POST /handoff.
type PromoteJSON struct {
	Primary PrimaryJSON `json:"primary"` // the primary once the request is done
}

// handlePromote answers POST /promote: make this node the primary by a
// graceful handoff from the current primary. It returns once this node is
// primary.
func (s *Server) handlePromote(w nethttp.ResponseWriter, r *nethttp.Request) {
	if s.opts.Promote == nil {
		httpError(w, nethttp.StatusConflict, "this node cannot be promoted: with lease.type static the primary is fixed by litefs.yml; use lease.type consul to move it")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), DefaultPromoteTimeout)
	defer cancel()
	if err := s.opts.Promote(ctx); err != nil {
		promoteError(w, "promote", err)
		return
	}
	host, url := s.primaryInfo()
	writeJSON(w, nethttp.StatusOK, PromoteJSON{Primary: PrimaryJSON{Hostname: host, URL: url}})
}

// handleHandoff answers POST /handoff?nodeID=ID on the primary: stop
// writes, send replica ID everything, hand it the lease.
func (s *Server) handleHandoff(w nethttp.ResponseWriter, r *nethttp.Request) {
	raw := r.URL.Query().Get("nodeID")
	nodeID, err := parseNodeID(raw)
	if err != nil {
		writeJSON(w, nethttp.StatusBadRequest, apiErrorJSON{Code: codeInvalid,
			Error: fmt.Sprintf("handoff: nodeID %q: want the 16 hex digits of a replica's node id (GET /info on it)", truncate(raw, 40))})
		return
	}
	if s.opts.Handoff == nil {
		httpError(w, nethttp.StatusConflict, "this node cannot hand off: with lease.type static the primary is fixed by litefs.yml")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), DefaultPromoteTimeout)
	defer cancel()
	target, err := s.opts.Handoff(ctx, nodeID)
	if err != nil {
		promoteError(w, "handoff", err)
		return
	}
	writeJSON(w, nethttp.StatusOK, PromoteJSON{Primary: PrimaryJSON{Hostname: target.Hostname, URL: target.AdvertiseURL}})
}

// promoteError writes the refusal of a promote or handoff request as the
// API's JSON error (decodeAPIError reads it back).
func promoteError(w nethttp.ResponseWriter, what string, err error) {
	code, status := "", nethttp.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotCandidate):
		code, status = codeNotCand, nethttp.StatusConflict
	case errors.Is(err, ErrNoHandoffTarget):
		code, status = codeNoTarget, nethttp.StatusConflict
	case errors.Is(err, litefs.ErrNotPrimary):
		code, status = codeNotPrimary, nethttp.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		code, status = codeTimeout, nethttp.StatusGatewayTimeout
	}
	writeJSON(w, status, apiErrorJSON{Error: fmt.Sprintf("%s: %v", what, err), Code: code})
}

// RequestHandoff asks the primary this replica follows to hand it the
// lease (POST /handoff with this node's id). It returns once the primary
// has sent this node everything and released the lease to it; a primary
// that does not see this node's stream yet answers ErrNoHandoffTarget.
func (c *HaltClient) RequestHandoff(ctx context.Context) error {
	q := url.Values{"nodeID": {litefs.FormatNodeID(c.store.NodeID())}}
	return c.call(ctx, nethttp.MethodPost, "/handoff", q, nil, nil)
}
