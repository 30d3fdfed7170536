package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/litefs/litefs"
	lhttp "github.com/litefs/litefs/http"
)

// Timings of the lease loop (docs/lifecycle.md).
const (
	// handoffGrace is how long other candidates leave the lease to the node
	// a primary handed it to before they compete for it themselves.
	handoffGrace = 3 * time.Second
	// handoffRetry is how often the named node retries while the last
	// frames of the old primary's stream are still being applied.
	handoffRetry = 20 * time.Millisecond
	// leaseRetryDelay is the wait after a failed call to the leaser (Consul
	// unreachable, say) before the loop tries again.
	leaseRetryDelay = time.Second
	// publishInterval is how often a primary publishes new positions with
	// the lease (safe promotion).
	publishInterval = time.Second
	// handoffTimeout bounds a primary's handoff, on request or at shutdown.
	handoffTimeout = 5 * time.Second
	// minGiveUp is the shortest leaser outage after which exit-on-error
	// ends the daemon (the session TTL if longer).
	minGiveUp = 10 * time.Second
)

// leaseNode runs a node whose primary is chosen by a Leaser (lease.type
// consul): it competes for the lease when it is a candidate, serves as
// primary while it holds it, and otherwise follows the holder.
type leaseNode struct {
	store  *litefs.Store
	leaser litefs.Leaser
	srv    *lhttp.Server
	peer   *lhttp.HaltClient // this node's client of the primary's API
	cfg    *Config
	log    *slog.Logger
	self   litefs.PrimaryInfo // this node's hostname and advertise URL

	handoffs chan handoffCall // POST /handoff, served by the primary phase
	wake     chan struct{}    // a stream's Handoff frame: re-evaluate now

	// Loop goroutine only.
	stream       context.CancelFunc // the replica stream, nil if none
	streamDone   chan struct{}
	following    string    // advertise URL the stream follows
	releaseIndex uint64    // lease index of the handed-off release last seen
	releaseSeen  time.Time // when it was first seen
	staleIndex   uint64    // lease index at which staleness was last logged
	quietUntil   time.Time // no competing before this (lease.demote-delay)
	failingSince time.Time // first of the leaser errors in a row, zero if none
	lastErr      error     // the last leaser error
}

// handoffCall is one POST /handoff for the primary phase.
type handoffCall struct {
	nodeID uint64
	done   chan handoffResult
}

type handoffResult struct {
	target lhttp.HandoffTarget
	err    error
}

func newLeaseNode(store *litefs.Store, leaser litefs.Leaser, cfg *Config, log *slog.Logger) *leaseNode {
	return &leaseNode{
		store: store, leaser: leaser, cfg: cfg, log: log,
		self:     litefs.PrimaryInfo{Hostname: cfg.Lease.Hostname, AdvertiseURL: cfg.Lease.AdvertiseURL},
		handoffs: make(chan handoffCall),
		wake:     make(chan struct{}, 1),
	}
}

// run is the lease loop. It returns nil once ctx is done and, if this node
// was primary, its role was handed off or released; it returns an error
// only for what retrying cannot fix (another cluster's data).
func (n *leaseNode) run(ctx context.Context) error {
	defer n.stopStream()
	if err := n.adoptClusterID(ctx); err != nil {
		return err
	}
	st := n.watch(ctx, litefs.LeaseState{}, 0)
	for ctx.Err() == nil {
		if err := n.giveUp(); err != nil {
			return err
		}
		served, retry, err := n.compete(ctx, st)
		if err != nil {
			return err
		}
		if served {
			st = n.watch(ctx, litefs.LeaseState{}, 0) // the state now
			continue
		}
		n.follow(ctx, st.Primary())
		st = n.watch(ctx, st, retry)
	}
	return nil
}

// compete takes the lease if st allows it and serves as primary until the
// lease ends (served). Otherwise it returns how soon to re-evaluate without
// a state change (0: only on a change).
func (n *leaseNode) compete(ctx context.Context, st litefs.LeaseState) (served bool, retry time.Duration, err error) {
	if !n.cfg.Lease.Candidate || st.Held {
		return false, 0, nil
	}
	if at := n.mayAcquireLater(st); !at.IsZero() {
		return false, time.Until(at), nil // not yet: look again then
	}
	info, err := n.leaseInfo()
	if err != nil {
		return false, 0, err
	}
	lease, err := n.leaser.Acquire(ctx, info)
	if err == nil || errors.Is(err, litefs.ErrLeaseHeld) || errors.Is(err, litefs.ErrStaleCandidate) {
		n.failingSince = time.Time{} // Consul answered
	}
	switch {
	case err == nil:
		n.servePrimary(ctx, lease)
		n.quietUntil = time.Now().Add(n.cfg.Lease.DemoteDelay)
		return true, 0, nil
	case errors.Is(err, litefs.ErrLeaseHeld), ctx.Err() != nil:
		return false, 0, nil
	case errors.Is(err, litefs.ErrClusterMismatch):
		return false, 0, fmt.Errorf("lease: %w", err)
	case errors.Is(err, litefs.ErrStaleCandidate):
		if st.Info.HandoffTo == n.self.AdvertiseURL && time.Since(n.releaseSeen) < handoffGrace {
			return false, handoffRetry, nil // the old primary's last frames are on their way
		}
		if n.staleIndex != st.Index {
			n.staleIndex = st.Index
			n.log.Warn("not taking the lease: this node's data is behind what the last primary published; "+
				"waiting as a replica for a node with newer data", "last-primary", st.Info.String(), "error", err)
		}
		return false, 0, nil
	default:
		n.failed(err)
		n.log.Warn("lease acquire failed; retrying", "error", err)
		return false, leaseRetryDelay, nil
	}
}

// mayAcquireLater returns when this node may compete for the free lease
// st shows, zero if it may now: never before lease.demote-delay after it
// lost or gave up the role, and not during handoffGrace after a primary
// handed the lease to another node.
func (n *leaseNode) mayAcquireLater(st litefs.LeaseState) time.Time {
	at := n.quietUntil
	if to := st.Info.HandoffTo; !st.Held && to != "" {
		if st.Index != n.releaseIndex {
			n.releaseIndex, n.releaseSeen = st.Index, time.Now()
		}
		if to != n.self.AdvertiseURL {
			at = maxTime(at, n.releaseSeen.Add(handoffGrace))
		} else {
			at = time.Time{} // handed to this node: take it at once
		}
	}
	if time.Now().After(at) {
		return time.Time{}
	}
	return at
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// failed records a leaser error.
func (n *leaseNode) failed(err error) {
	if n.failingSince.IsZero() {
		n.failingSince = time.Now()
	}
	n.lastErr = err
}

// giveUp returns an error ending the daemon when exit-on-error is set and
// the leaser has failed for longer than the session TTL: a process manager
// restarting the node is then the better cure than waiting.
func (n *leaseNode) giveUp() error {
	limit := max(n.cfg.Lease.Consul.TTL, minGiveUp)
	if !n.cfg.ExitOnError || n.failingSince.IsZero() || time.Since(n.failingSince) < limit {
		return nil
	}
	return fmt.Errorf("lease: Consul has failed for %s (longer than lease.consul.ttl); exiting because exit-on-error is true: %w",
		time.Since(n.failingSince).Round(time.Second), n.lastErr)
}

// leaseInfo is what this node publishes when it holds the lease.
func (n *leaseNode) leaseInfo() (litefs.LeaseInfo, error) {
	id, err := n.store.EnsureClusterID()
	if err != nil {
		return litefs.LeaseInfo{}, err
	}
	return litefs.LeaseInfo{PrimaryInfo: n.self, ClusterID: id, Positions: n.store.Positions()}, nil
}

// adoptClusterID checks this node's cluster id against the one stored
// with the lease (adopting it if this node has none), retrying while the
// leaser is unreachable.
func (n *leaseNode) adoptClusterID(ctx context.Context) error {
	for {
		id, err := n.leaser.ClusterID(ctx)
		if err == nil {
			n.failingSince = time.Time{}
			if id == "" {
				return nil
			}
			if err := n.store.SetClusterID(id); err != nil {
				return fmt.Errorf("lease: %w", err)
			}
			return nil
		}
		n.failed(err)
		if err := n.giveUp(); err != nil {
			return err
		}
		n.log.Warn("cannot read the cluster id from the lease; retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(leaseRetryDelay):
		}
	}
}

// watch waits until the lease state differs from prev, a stream hands
// this node the lease, or retry passes (if > 0). On a leaser error it logs,
// waits leaseRetryDelay and returns prev: the node keeps its role and its
// stream meanwhile.
func (n *leaseNode) watch(ctx context.Context, prev litefs.LeaseState, retry time.Duration) litefs.LeaseState {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if retry > 0 {
		t := time.AfterFunc(retry, cancel)
		defer t.Stop()
	}
	go func() {
		select {
		case <-n.wake:
			cancel()
		case <-wctx.Done():
		}
	}()
	st, err := n.leaser.Watch(wctx, prev)
	switch {
	case err == nil:
		n.failingSince = time.Time{}
		return st
	case ctx.Err() != nil || wctx.Err() != nil:
		return prev
	}
	n.failed(err)
	n.log.Warn("cannot follow the lease; retrying", "error", err)
	select {
	case <-ctx.Done():
	case <-time.After(leaseRetryDelay):
	}
	return prev
}

// follow makes this node replicate from p. With p nil (no holder) or p
// naming this node (its previous session, after a restart), it keeps
// whatever stream it has.
func (n *leaseNode) follow(ctx context.Context, p *litefs.PrimaryInfo) {
	if p == nil || p.AdvertiseURL == n.self.AdvertiseURL {
		if n.stream == nil {
			n.store.SetReplica(&litefs.PrimaryInfo{})
		}
		return
	}
	if n.stream != nil && n.following == p.AdvertiseURL {
		select {
		case <-n.streamDone:
		default:
			return // already following p
		}
	}
	n.stopStream()
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	n.stream, n.streamDone, n.following = cancel, done, p.AdvertiseURL
	opts := lhttp.ReplicaOptions{
		PrimaryURL: p.AdvertiseURL, PrimaryHostname: p.Hostname,
		Databases: n.cfg.Lease.Databases, ReconnectDelay: n.cfg.Lease.ReconnectDelay,
		AuthToken: n.cfg.HTTP.AuthToken, Logger: n.log, TLSConfig: n.cfg.clientTLS(),
		Candidate: n.cfg.Lease.Candidate, OwnURL: n.self.AdvertiseURL, OwnHostname: n.self.Hostname,
		OnHandoff: n.handedOff,
	}
	n.log.Info("following primary", "primary", p.Hostname, "url", p.AdvertiseURL)
	go func() {
		defer close(done)
		if err := lhttp.RunReplica(sctx, n.store, opts); err != nil {
			n.log.Error("replica stream", "error", err)
		}
	}()
}

// handedOff is called by the stream when the primary hands this node the
// lease: wake the loop.
func (n *leaseNode) handedOff() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// stopStream stops the replica stream and waits until it applied its last
// frame.
func (n *leaseNode) stopStream() {
	if n.stream == nil {
		return
	}
	n.stream()
	<-n.streamDone
	n.stream, n.streamDone, n.following = nil, nil, ""
}
