package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
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
		httpError(w, nethttp.StatusBadRequest, fmt.Sprintf("handoff: nodeID %q: want the 16 hex digits of a replica's node id (GET /info on it)", truncate(raw, 40)))
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

// promoteError writes the refusal of a promote or handoff request.
func promoteError(w nethttp.ResponseWriter, what string, err error) {
	status := nethttp.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotCandidate), errors.Is(err, ErrNoHandoffTarget):
		status = nethttp.StatusConflict
	case errors.Is(err, litefs.ErrNotPrimary):
		status = nethttp.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		status = nethttp.StatusGatewayTimeout
	}
	httpError(w, status, fmt.Sprintf("%s: %v", what, err))
}

// RequestHandoff asks the primary at primaryURL to hand the lease to node
// nodeID (POST /handoff). It returns once the primary has sent that node
// everything and released the lease to it.
func RequestHandoff(ctx context.Context, client *nethttp.Client, primaryURL, token string, nodeID uint64) error {
	if client == nil {
		client = nethttp.DefaultClient
	}
	u := strings.TrimRight(primaryURL, "/") + "/handoff?nodeID=" + litefs.FormatNodeID(nodeID)
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("handoff request: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ask the primary %s for the lease: %w", primaryURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != nethttp.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		err := fmt.Errorf("the primary %s refused the handoff: %s: %s", primaryURL, resp.Status, strings.TrimSpace(string(msg)))
		switch resp.StatusCode {
		case nethttp.StatusServiceUnavailable:
			err = fmt.Errorf("%w: %w", litefs.ErrNotPrimary, err)
		case nethttp.StatusConflict:
			err = fmt.Errorf("%w: %w", ErrNoHandoffTarget, err)
		}
		return err
	}
	return nil
}
