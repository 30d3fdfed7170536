package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/litefs/litefs"
	lhttp "github.com/litefs/litefs/http"
	"github.com/superfly/ltx"
)

// servePrimary makes this node primary under lease and serves until the
// lease is lost, handed off, or ctx ends (shutdown: hand off or release).
// When it returns this node is a replica that accepts no write.
func (n *leaseNode) servePrimary(ctx context.Context, lease litefs.Lease) {
	n.stopStream()
	n.store.SetLeaseDeadline(lease.Deadline)
	n.store.SetReplica(nil)
	n.log.Info("primary: holding the lease", "hostname", n.self.Hostname, "url", n.self.AdvertiseURL)

	published := lease.Info().Positions
	tick := time.NewTicker(publishInterval)
	defer tick.Stop()
	for {
		select {
		case <-lease.Done():
			n.store.SetReplica(&litefs.PrimaryInfo{})
			n.log.Error("lost the lease: stopped accepting writes, continuing as a replica", "error", lease.Err())
			return
		case <-tick.C:
			published = n.publish(ctx, lease, published)
		case call := <-n.handoffs:
			target, err := n.handOff(lease, call.nodeID)
			call.done <- handoffResult{target: target, err: err}
			if err == nil {
				return
			}
		case <-ctx.Done():
			n.stepDown(lease)
			return
		}
	}
}

// publish updates the lease with the positions if they changed since
// published, and returns what is published now.
func (n *leaseNode) publish(ctx context.Context, lease litefs.Lease, published map[string]ltx.Pos) map[string]ltx.Pos {
	pos := n.store.Positions()
	if maps.Equal(pos, published) {
		return published
	}
	info := lease.Info()
	info.Positions = pos
	if err := lease.Update(ctx, info); err != nil {
		n.log.Warn("publish positions with the lease", "error", err)
		return published
	}
	return pos
}

// handOff stops writes, sends replica nodeID (0: any candidate) everything
// and a Handoff frame, then releases the lease naming it. On failure the
// node stays primary and writes resume.
func (n *leaseNode) handOff(lease litefs.Lease, nodeID uint64) (lhttp.HandoffTarget, error) {
	start := time.Now()
	n.store.FenceWrites(fmt.Errorf("%w: the primary role is being handed off", litefs.ErrNotPrimary))
	n.store.DrainCommits()
	ctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
	defer cancel()
	target, err := n.srv.HandOff(ctx, nodeID)
	if err != nil {
		n.store.SetLeaseDeadline(lease.Deadline) // writes resume
		return lhttp.HandoffTarget{}, err
	}
	n.store.SetReplica(&litefs.PrimaryInfo{Hostname: target.Hostname, AdvertiseURL: target.AdvertiseURL})
	info := lease.Info()
	info.Positions, info.HandoffTo = n.store.Positions(), target.AdvertiseURL
	if err := lease.Release(ctx, info); err != nil {
		// The target takes over once the lease expires.
		n.log.Warn("release the lease after the handoff", "error", err)
	}
	n.log.Info("handed the primary role off", "to", target.AdvertiseURL, "took", time.Since(start).Round(time.Millisecond))
	return target, nil
}

// stepDown ends this node's primary role at shutdown: a handoff to a
// candidate replica if one is streaming, else a release with the final
// positions so that any up-to-date candidate takes over at once.
func (n *leaseNode) stepDown(lease litefs.Lease) {
	_, err := n.handOff(lease, 0)
	if err == nil {
		return
	}
	if !errors.Is(err, lhttp.ErrNoHandoffTarget) {
		n.log.Warn("handoff at shutdown failed; releasing the lease", "error", err)
	}
	n.store.FenceWrites(fmt.Errorf("%w: the node is shutting down", litefs.ErrNotPrimary))
	n.store.DrainCommits()
	n.store.SetReplica(&litefs.PrimaryInfo{})
	ctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
	defer cancel()
	info := lease.Info()
	info.Positions = n.store.Positions()
	if err := lease.Release(ctx, info); err != nil {
		n.log.Warn("release the lease at shutdown", "error", err)
		return
	}
	n.log.Info("released the lease at shutdown")
}

// Handoff serves POST /handoff on the primary.
func (n *leaseNode) Handoff(ctx context.Context, nodeID uint64) (lhttp.HandoffTarget, error) {
	if !n.store.IsPrimary() {
		return lhttp.HandoffTarget{}, fmt.Errorf("handoff: %w", litefs.ErrNotPrimary)
	}
	call := handoffCall{nodeID: nodeID, done: make(chan handoffResult, 1)}
	select {
	case n.handoffs <- call:
	case <-ctx.Done():
		return lhttp.HandoffTarget{}, fmt.Errorf("handoff: %w", ctx.Err())
	}
	select {
	case r := <-call.done:
		return r.target, r.err
	case <-ctx.Done():
		return lhttp.HandoffTarget{}, fmt.Errorf("handoff: %w", ctx.Err())
	}
}

// Promote serves POST /promote: ask the primary to hand this node the
// lease, and return once this node is primary.
func (n *leaseNode) Promote(ctx context.Context) error {
	if !n.cfg.Lease.Candidate {
		return lhttp.ErrNotCandidate
	}
	if n.store.IsPrimary() {
		return nil
	}
	if err := n.requestHandoff(ctx); err != nil {
		return err
	}
	for !n.store.IsPrimary() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the primary handed the lease over, but this node did not take it in time: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// requestHandoff asks the primary for the lease once this node streams
// from it, retrying while the primary does not see the stream yet (a node
// that just switched primaries).
func (n *leaseNode) requestHandoff(ctx context.Context) error {
	for {
		p := n.store.Primary()
		if p == nil || p.AdvertiseURL == "" {
			return fmt.Errorf("%w: no primary holds the lease now; this candidate takes it when it may", litefs.ErrNotPrimary)
		}
		var err error
		if n.store.Connected() && n.store.Lag() < litefs.NotSyncedLag {
			err = n.peer.RequestHandoff(ctx)
			if !errors.Is(err, lhttp.ErrNoHandoffTarget) {
				return err
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("this node is not connected to the primary")
			}
			return fmt.Errorf("promote: %w (%w)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// promoteAtStart implements lease.promote: once this candidate has caught
// up with a primary, it asks for the role.
func (n *leaseNode) promoteAtStart(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if n.store.IsPrimary() {
			return
		}
		if p := n.store.Primary(); p != nil && p.AdvertiseURL != "" && n.store.Lag() < litefs.NotSyncedLag {
			pctx, cancel := context.WithTimeout(ctx, lhttp.DefaultPromoteTimeout)
			err := n.Promote(pctx)
			cancel()
			if err == nil {
				n.log.Info("lease.promote: this node is now primary")
				return
			}
			n.log.Warn("lease.promote: handoff failed; retrying", "error", err, "attempt", attempt+1)
		}
		select {
		case <-ctx.Done():
		case <-time.After(leaseRetryDelay):
		}
	}
}
