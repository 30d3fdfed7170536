package http

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/litefs/litefs"
)

// Headers a replica sends with POST /stream so that the primary can hand
// it the lease (SPEC section 9, "Handoff").
const (
	HeaderCandidate    = "Litefs-Candidate"     // "true": the replica may become primary
	HeaderAdvertiseURL = "Litefs-Advertise-Url" // the replica's own URL for its peers
	HeaderHostname     = "Litefs-Hostname"      // the replica's own hostname
)

// ErrNoHandoffTarget is returned by HandOff when no candidate replica (or
// not the one asked for) is streaming from this primary.
var ErrNoHandoffTarget = errors.New("no candidate replica to hand the lease to")

// HandoffTarget names the replica a primary handed the lease to.
type HandoffTarget struct {
	NodeID       uint64
	Hostname     string
	AdvertiseURL string
}

// handoffReq asks one stream session to send its Handoff frame.
type handoffReq struct {
	done chan error
}

// streamRegistry is the set of live stream sessions of a primary.
type streamRegistry struct {
	mu   sync.Mutex
	live map[*streamSession]struct{}
}

func (r *streamRegistry) add(ss *streamSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live == nil {
		r.live = make(map[*streamSession]struct{})
	}
	r.live[ss] = struct{}{}
}

func (r *streamRegistry) remove(ss *streamSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, ss)
}

// streaming reports whether node nodeID has a live stream that carries
// database name: the condition for granting it a HALT (SPEC 11).
func (r *streamRegistry) streaming(nodeID uint64, name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ss := range r.live {
		if ss.nodeID == nodeID && ss.wants(name) {
			return true
		}
	}
	return false
}

// pick returns the session of candidate nodeID, or with nodeID 0 the
// candidate that completed its catch-up first among those streaming.
func (r *streamRegistry) pick(nodeID uint64) (*streamSession, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *streamSession
	for ss := range r.live {
		switch {
		case nodeID != 0 && ss.nodeID != nodeID:
			continue
		case !ss.candidate || ss.advertiseURL == "":
			if nodeID != 0 {
				return nil, fmt.Errorf("%w: node %s is not a candidate (lease.candidate: false) or did not send its advertise URL",
					ErrNoHandoffTarget, litefs.FormatNodeID(nodeID))
			}
			continue
		}
		if best == nil || ss.readyAt.Load() != 0 && (best.readyAt.Load() == 0 || ss.readyAt.Load() < best.readyAt.Load()) {
			best = ss
		}
	}
	if best == nil {
		if nodeID != 0 {
			return nil, fmt.Errorf("%w: node %s is not streaming from this primary", ErrNoHandoffTarget, litefs.FormatNodeID(nodeID))
		}
		return nil, fmt.Errorf("%w: none is streaming from this primary", ErrNoHandoffTarget)
	}
	return best, nil
}

// HandOff sends everything committed, then a Handoff frame, to the
// stream of candidate replica nodeID (0: any candidate, the longest caught
// up first) and returns who it is. The caller must have stopped writes
// (litefs.Store.FenceWrites and DrainCommits) and releases the lease
// afterwards, naming the target in LeaseInfo.HandoffTo. The stream ends
// after the frame.
func (s *Server) HandOff(ctx context.Context, nodeID uint64) (HandoffTarget, error) {
	ss, err := s.streams.pick(nodeID)
	if err != nil {
		return HandoffTarget{}, err
	}
	req := handoffReq{done: make(chan error, 1)}
	select {
	case ss.handoff <- req:
	case <-ss.ended:
		return HandoffTarget{}, fmt.Errorf("%w: the stream of node %s ended", ErrNoHandoffTarget, litefs.FormatNodeID(ss.nodeID))
	case <-ctx.Done():
		return HandoffTarget{}, fmt.Errorf("hand off to node %s: %w", litefs.FormatNodeID(ss.nodeID), ctx.Err())
	}
	select {
	case err := <-req.done:
		if err != nil {
			return HandoffTarget{}, fmt.Errorf("hand off to node %s: %w", litefs.FormatNodeID(ss.nodeID), err)
		}
	case <-ctx.Done():
		return HandoffTarget{}, fmt.Errorf("hand off to node %s: %w", litefs.FormatNodeID(ss.nodeID), ctx.Err())
	}
	return HandoffTarget{NodeID: ss.nodeID, Hostname: ss.hostname, AdvertiseURL: ss.advertiseURL}, nil
}

// errHandedOff ends a stream session after its Handoff frame.
var errHandedOff = errors.New("lease handed off to this replica")

// sendHandoff sends what is left, then the Handoff frame.
func (ss *streamSession) sendHandoff(ctx context.Context) error {
	if err := ss.sync(ctx); err != nil {
		return err
	}
	if err := ss.fw.WriteHandoff(); err != nil {
		return err
	}
	if err := ss.rc.Flush(); err != nil {
		return fmt.Errorf("flush stream: %w", err)
	}
	ss.log.Info("handed the lease off to this replica")
	return nil
}
